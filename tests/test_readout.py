"""One readout rule for float and compiled accuracy (issue 5, defect 2).

A model whose output layer spikes is read as spike counts over the T steps on both sides; a
non-spiking readout as its voltage after T steps. The old float rule (argmax of the last step's
output) gave a spiking-output model a float accuracy far from its compiled one.
"""
import json
from collections import OrderedDict

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from snnc.backends.loihi.sim import load_program
from snnc.cli import main
from snnc.data import load_digits
from snnc.neurons import CubaLIF, run_float


def spiking_output_model():
    torch.manual_seed(1)
    m = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1)),
        ("lif1", CubaLIF((4, 8, 8), tau_syn=1e-3, tau_mem=5e-3, threshold=0.5)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(256, 10)),
        ("lif_out", CubaLIF((10,), tau_syn=1e-3, tau_mem=5e-3, threshold=0.5)),
    ]))
    with torch.no_grad():
        m.conv1.weight.mul_(3.0)
        m.fc.weight.mul_(4.0)
    return m.eval()


def test_spiking_output_uses_spike_counts_on_both_sides(tmp_path):
    m = spiking_output_model()
    p = tmp_path / "m.pt"
    torch.save(m, p)
    T, n = 8, 297
    r = CliRunner().invoke(main, ["compile", str(p), "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", str(T),
                                  "-o", str(tmp_path / "o"), "--data", "digits"])
    assert r.exit_code == 0, r.output
    acc = json.loads((tmp_path / "o" / "report.json").read_text())["accuracy"]
    x, y = load_digits("test")
    with torch.no_grad():
        out = run_float(m, torch.from_numpy(x), T)          # [T, N, 10] spikes
    counts_pred, last_pred = out.sum(0).argmax(1).numpy(), out[-1].argmax(1).numpy()
    compiled_pred = load_program(tmp_path / "o").run(x).scores().argmax(1)
    assert acc["samples"] == n and "spike counts of 'lif_out'" in acc["readout"]
    assert acc["float"] == pytest.approx(float((counts_pred == y).mean()), abs=1e-7)
    assert acc["compiled"] == pytest.approx(float((compiled_pred == y).mean()), abs=1e-7)
    assert acc["agreement"] == pytest.approx(float((counts_pred == compiled_pred).mean()), abs=1e-7)
    assert acc["agreement"] >= 0.9
    # the old float rule (last step's output) disagrees with the compiled predictions far more
    assert float((last_pred == compiled_pred).mean()) < acc["agreement"] - 0.2


def test_membrane_readout_rule_named(tmp_path):
    from conftest import TinySNN
    p = tmp_path / "t.pt"
    torch.save(TinySNN(), p)
    r = CliRunner().invoke(main, ["compile", str(p), "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", "6",
                                  "-o", str(tmp_path / "o"), "--data", "digits", "--limit", "100"])
    assert r.exit_code == 0, r.output
    acc = json.loads((tmp_path / "o" / "report.json").read_text())["accuracy"]
    assert "voltage of the non-spiking readout 'readout'" in acc["readout"] and "readout (float and compiled" in r.output
