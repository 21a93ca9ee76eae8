"""``--objective cores|latency|energy`` (issue 21): the mapping that minimises the time model's time per inference or
the energy per inference among candidates (synapse format x compartments per core), priced by the calibration
data's activity; ``compile_graph(neurons_per_core=...)`` behind it."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.sim import Program, load_program
from snnc.cli import main
from snnc.errors import SnncError
from snnc.targets import load_target

from conftest import TinySNN, digits_batch
from test_loihi import _compiled

TARGET = load_target("loihi-sim")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_neurons_per_core_caps_every_core_and_keeps_the_bound():
    x = digits_batch(40, seed=1)
    _, q, (base, arrays, _) = _compiled(TinySNN(channels=8), x)
    cfg, arr, viol = compile_graph(q, TARGET, neurons_per_core=64)
    assert viol == [] and all(c["neurons"] <= 64 for c in cfg["cores"])
    assert len(cfg["cores"]) > len(base["cores"]) and cfg["mapping"]["neurons_per_core"] == 64
    assert cfg["mapping"]["lower_bound"] == base["mapping"]["lower_bound"]
    assert "neurons_per_core" not in base["mapping"]
    a, b = Program(base, arrays, TARGET).run(x), Program(cfg, arr, TARGET).run(x)  # where, not what, changes
    assert all(torch.equal(a.outputs[k], b.outputs[k]) for k in a.outputs)
    for bad in (0, TARGET["core"]["neurons"] + 1):
        with pytest.raises(SnncError, match="neurons_per_core must be in 1..1024"):
            compile_graph(q, TARGET, neurons_per_core=bad)


@pytest.mark.parametrize("objective,key", [("latency", "time_per_inference_s"), ("energy", "energy_per_inference_pJ")])
def test_objective_chooses_the_least_among_candidates(tmp_path, tiny, objective, key):
    torch.save(tiny, tmp_path / "t.pt")
    common = ["--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4, "--data", "digits", "--limit", 60]
    r = run("compile", tmp_path / "t.pt", "-o", tmp_path / objective, *common, "--objective", objective, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    o = rep["mapping"]["objective"]
    assert o["objective"] == objective and "calibration samples" in o["activity"]
    fits = [c for c in o["candidates"] if c["fits"]]
    assert len(o["candidates"]) == 10 and len(fits) >= 2
    chosen = o["candidates"][o["chosen"]]
    assert chosen[key] == min(c[key] for c in fits)
    assert rep["totals"]["cores"] == chosen["cores"] and all(c["neurons"] <= (chosen["neurons_per_core"] or 1024)
                                                            for c in rep["cores"])
    cfg = load_program(tmp_path / objective).config
    assert cfg["mapping"]["formats"] == chosen["formats"]
    if objective == "latency":
        base = run("compile", tmp_path / "t.pt", "-o", tmp_path / "cores", *common, "--json")
        b = json.loads(base.stdout)
        assert b["mapping"]["objective"] == {"objective": "cores"}
        fewest = o["candidates"][0]  # auto formats at the core's limit: the default mapping
        assert fewest["cores"] == b["totals"]["cores"] and chosen["time_per_inference_s"] <= fewest[key]
        assert b["accuracy"] == rep["accuracy"]  # the same computation, placed differently


def test_objective_needs_data(tmp_path):
    r = CliRunner().invoke(main, ["compile", "fmnist_cnn", "-o", str(tmp_path / "o"), "--objective", "latency"])
    assert r.exit_code == 1 and "--objective latency needs --data" in r.output
    assert not (tmp_path / "o").exists()
