"""Neuron semantics survive every round trip (issue 16, defect 1): ``snnc finetune`` of an snnTorch
subtract-reset model and of a SpikingJelly model (fires on ``v >= v_th``) writes a checkpoint that
reloads with the source's :class:`~snnc.ir.semantics.NeuronSemantics`, and compiling it is refused (or
accepted) exactly as the source is; ``nir.write``/``nir.read`` keeps every field too."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
from click.testing import CliRunner

from snnc.cli import main
from snnc.frontends import load_model
from snnc.ir import SPIKING_TYPES, NEURON_TYPES
from snnc.ir.semantics import NeuronSemantics

SNNTORCH = """import snntorch as snn
import torch
from torch import nn

def make_model():  # seeded: compile refuses a factory whose weights change on every call (random init)
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), snn.Leaky(beta=0.9, init_hidden=True),
                         nn.Linear(32, 10), snn.Leaky(beta=0.9, init_hidden=True))
make_model.input_shape = (1, 8, 8)
make_model.num_steps = 6
"""
SPIKINGJELLY = """from spikingjelly.activation_based import layer, neuron
import torch
from torch import nn

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(layer.Flatten(), layer.Linear(64, 32), neuron.LIFNode(tau=2.0),
                         layer.Linear(32, 10), neuron.LIFNode(tau=2.0))
make_model.input_shape = (1, 8, 8)
make_model.num_steps = 6
"""


def semantics(graph):
    return {n: NeuronSemantics.of(node) for n, node in sorted(graph.nodes.items()) if isinstance(node, NEURON_TYPES)}


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def refusal(r) -> str:
    """The part of a SEMANTIC_CHANGE refusal that names what is not kept (the agreement figure after it
    depends on the weights)."""
    assert r.exit_code == 1, r.output
    return r.stderr.split("; compiled with them converted")[0]


@pytest.mark.parametrize("framework, source, refused", [
    pytest.param("snntorch", SNNTORCH, True, id="snntorch-subtract"),
    pytest.param("spikingjelly", SPIKINGJELLY, False, id="spikingjelly-ge"),
])
def test_finetuned_checkpoint_keeps_semantics(tmp_path, framework, source, refused):
    pytest.importorskip(framework)
    (tmp_path / "net.py").write_text(source)
    model = f"{tmp_path}/net.py:make_model"
    src_graph, _, _ = load_model(model)
    want = semantics(src_graph)
    spiking = [n for n, node in src_graph.nodes.items() if isinstance(node, SPIKING_TYPES)]
    if framework == "snntorch":
        assert all(want[n].reset == "subtract" and want[n].reset_timing == "next_step" for n in spiking)
    else:
        assert all(want[n].threshold_op == ">=" for n in spiking)
    r = cli("finetune", model, "-o", tmp_path / "ft.pt", "--data", "digits", "--epochs", "1", "--train-limit", "400",
            "--val-samples", "100", "--limit", "100", "--batch-size", "100")
    assert r.exit_code == 0, r.output
    ft_graph, _, info = load_model(tmp_path / "ft.pt")
    assert info["arch"] == "nir_graph"
    assert semantics(ft_graph) == want  # every field: dt, reset and its timing, >= vs >, spikes, floor, source

    a = cli("compile", model, "-o", tmp_path / "a", "--data", "digits", "--limit", "50")
    b = cli("compile", tmp_path / "ft.pt", "-o", tmp_path / "b", "--data", "digits", "--limit", "50")
    if refused:
        assert "cannot keep the model's neuron semantics" in a.stderr
        assert refusal(b) == refusal(a)
        assert not (tmp_path / "b").exists()
    else:
        assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
        rep = json.loads((tmp_path / "b" / "report.json").read_text())
        assert not [c for c in rep.get("checks", []) if c["check"] == "SEMANTIC_CHANGE"]


def test_nir_write_read_keeps_semantics(tmp_path):
    full = NeuronSemantics(dt=1e-3, reset="subtract", reset_timing="next_step", threshold_op=">=", spikes="multi",
                           v_min=-2.5, source="test.Neuron")
    one = np.ones(1, np.float32)
    node = nir.LIF(tau=2e-3 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one, metadata=full.to_metadata())
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}), "lif": node,
                            "output": nir.Output(output_type={"output": np.array([1])})},
                     edges=[("input", "lif"), ("lif", "output")], type_check=False)
    nir.write(tmp_path / "g.nir", g)
    assert NeuronSemantics.of(nir.read(tmp_path / "g.nir").nodes["lif"]) == full


def test_bad_semantics_value_is_refused():
    with pytest.raises(ValueError, match=r"'snnc.threshold_op' is '=>'; allowed: >, >="):
        NeuronSemantics.from_metadata({"snnc.dt": 1e-3, "snnc.threshold_op": "=>"})
    with pytest.raises(ValueError, match=r"'snnc.dt' must be a positive time in s"):
        NeuronSemantics.from_metadata({"snnc.dt": -1.0})
