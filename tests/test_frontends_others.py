"""Norse, SpikingJelly and Sinabs: the traced graph run by snnc's executor equals each library's own
simulation; compiled loihi-sim predictions agree with the library's on >= 97% of test images where the
semantics match; semantics the target cannot keep are refused, then measured."""
import numpy as np
import pytest
import torch
from torch import nn

from snnc.frontends import load_model, run_steps, trace_module
from snnc.ir.reference import run_graph

from frontend_helpers import digits_inputs, own_run, train_digits

T = 10


def _xs(n=16, f=6, scale=2.0, seed=0):
    return torch.rand(T, n, f, generator=torch.Generator().manual_seed(seed)) * scale


def _scaled(m, gain):
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(gain)
    return m


def _agreement(model, kind, out_dir, encode=None, **compile_kw):
    import snnc
    from snnc.backends.loihi.sim import load_program
    rep = snnc.compile(model, input_shape=(1, 8, 8), num_steps=T, out_dir=out_dir, data="digits", encode=encode,
                       **compile_kw)
    x, xs, y = digits_inputs(T, encode=encode, flatten=False)
    with torch.no_grad():
        own = own_run(model, xs, kind).sum(0).argmax(1).numpy()
    prog = load_program(out_dir)
    comp = prog.run(xs.numpy() if encode else x).scores().argmax(1)
    return float((own == comp).mean()), rep


# ------------------------------------------------------------------ Norse
norse = pytest.importorskip("norse.torch", reason="Norse not installed (pip install --no-deps norse)")


@pytest.mark.parametrize("cell", ["LIFCell", "LIFBoxCell", "IAFCell", "LICell"])
def test_norse_equals_own_simulation(cell):
    torch.manual_seed(0)
    last = norse.LICell() if cell == "LICell" else norse.LIFCell()
    first = norse.LIFCell() if cell == "LICell" else getattr(norse, cell)()
    m = _scaled(norse.SequentialState(nn.Linear(6, 8), first, nn.Linear(8, 4), last), 4.0)
    xs = _xs()
    g = trace_module(m, (6,), num_steps=T)
    ref = run_steps(m, xs).double()
    out, _ = run_graph(g, xs, None)
    assert ref.abs().sum() > 0
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)  # float32 (Norse) vs float64 (snnc)
    if cell != "LICell":
        assert torch.equal(out, ref)  # spikes bit-equal


def test_norse_compiled_agreement(tmp_path):
    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0))  # tau_mem = 2 ms at Norse's dt = 1 ms
    m = norse.SequentialState(nn.Flatten(), nn.Linear(64, 48), norse.LIFBoxCell(p), nn.Linear(48, 10),
                              norse.LIFBoxCell(p))
    m = train_digits(m, T, kind="state", flatten=False, epochs=6, lr=5e-3)
    agree, rep = _agreement(m, "state", tmp_path / "o")
    assert rep["model"]["framework"] == "norse" and rep["accuracy"]["float"] > 0.6
    assert agree >= 0.97


# ------------------------------------------------------------------ SpikingJelly
sj = pytest.importorskip("spikingjelly.activation_based.neuron", reason="SpikingJelly not installed")


@pytest.mark.parametrize("kind", ["lif", "lif_soft", "if", "lif_nodecay", "plif"])
def test_spikingjelly_equals_own_simulation(kind):
    from spikingjelly.activation_based import functional, layer, neuron
    mk = {"lif": lambda: neuron.LIFNode(tau=2.0), "lif_soft": lambda: neuron.LIFNode(tau=3.0, v_reset=None),
          "if": neuron.IFNode, "lif_nodecay": lambda: neuron.LIFNode(tau=2.0, decay_input=False),
          "plif": neuron.ParametricLIFNode}[kind]
    torch.manual_seed(0)
    m = _scaled(nn.Sequential(layer.Linear(6, 8), mk(), layer.Linear(8, 4), neuron.LIFNode(tau=2.0)), 3.0)
    xs = _xs(scale=3.0)
    g = trace_module(m, (6,), num_steps=T)
    functional.reset_net(m)
    with torch.no_grad():
        ref = torch.stack([m(x) for x in xs]).double()
    functional.reset_net(m)
    out, _ = run_graph(g, xs, None)
    assert ref.sum() > 0 and torch.equal(out, ref)
    lif = [n for n in g.nodes.values() if hasattr(n, "v_threshold")][0]
    assert lif.metadata["snnc.threshold_op"] == ">="


def test_spikingjelly_multistep_conv_equals():
    from spikingjelly.activation_based import functional, layer, neuron
    torch.manual_seed(1)
    m = nn.Sequential(layer.Conv2d(1, 4, 3), neuron.LIFNode(tau=2.0), layer.MaxPool2d(2), layer.Flatten(),
                      layer.Linear(36, 5), neuron.IFNode())
    functional.set_step_mode(m, "m")
    xi = (torch.rand(T, 8, 1, 8, 8) < 0.5).float()
    with torch.no_grad():
        ref = m(xi).double()
    functional.reset_net(m)
    notes = []
    g = trace_module(m, (1, 8, 8), num_steps=T, notes=notes)
    out, _ = run_graph(g, xi, None)
    assert ref.sum() > 0 and torch.equal(out, ref) and "multi-step" in notes[0]


class _TutorialCSNN(nn.Module):
    """SpikingJelly's conv tutorial network as written there: multi-step, forward() repeats the image T times
    and returns the firing rate (mean over T)."""

    def __init__(self, T=6, c=4):
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
        super().__init__()
        self.T = T
        self.conv_fc = nn.Sequential(
            layer.Conv2d(1, c, 3, padding=1, bias=False), layer.BatchNorm2d(c),
            neuron.IFNode(surrogate_function=surrogate.ATan()), layer.MaxPool2d(2, 2),
            layer.Flatten(), layer.Linear(c * 4 * 4, 10, bias=False), neuron.IFNode(surrogate_function=surrogate.ATan()))
        functional.set_step_mode(self, step_mode="m")

    def forward(self, x):
        x_seq = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.conv_fc(x_seq).mean(0)


def test_spikingjelly_tutorial_csnn_gets_in_as_written():
    """Issue 19: the tutorial CSNN (time dimension built inside forward) is traced through its layers, with a
    note, and its firing rates equal snnc's spike counts / T."""
    from spikingjelly.activation_based import functional
    torch.manual_seed(5)
    m = _TutorialCSNN().eval()
    with torch.no_grad():
        m.conv_fc[0].weight.mul_(3)
        m.conv_fc[5].weight.mul_(3)
    notes = []
    g = trace_module(m, (1, 8, 8), num_steps=6, notes=notes)
    assert any("traced its submodule 'conv_fc'" in n for n in notes)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    functional.reset_net(m)
    with torch.no_grad():
        fr = m(x).double()
    out, _ = run_graph(g, x.unsqueeze(0).repeat(6, 1, 1, 1, 1), None)
    assert fr.sum() > 0 and torch.equal(out.sum(0), torch.round(fr * 6))  # the rate is a float32 mean of counts


def test_spikingjelly_compiled_agreement_ge_threshold(tmp_path):
    from spikingjelly.activation_based import functional, layer, neuron
    m = nn.Sequential(layer.Flatten(), layer.Linear(64, 48), neuron.IFNode(), layer.Linear(48, 10), neuron.IFNode())
    m = train_digits(m, T, flatten=False, epochs=6, lr=5e-3)
    functional.reset_net(m)
    agree, rep = _agreement(m, "step", tmp_path / "o")
    assert not [c for c in rep["checks"] if c["check"] == "SEMANTIC_CHANGE"]  # >= and hard reset to 0: kept
    assert rep["accuracy"]["float"] > 0.6 and agree >= 0.97


# ------------------------------------------------------------------ Sinabs
sl = pytest.importorskip("sinabs.layers", reason="Sinabs not installed (pip install --no-deps sinabs pbr)")


@pytest.mark.parametrize("kind", ["iaf", "iaf_floor", "lif", "single_reset", "lif_syn"])
def test_sinabs_equals_own_simulation(kind):
    from sinabs.activation import MembraneReset, SingleSpike
    mk = {"iaf": sl.IAF, "iaf_floor": lambda: sl.IAF(min_v_mem=-0.5), "lif": lambda: sl.LIF(tau_mem=5.0),
          "single_reset": lambda: sl.IAF(spike_fn=SingleSpike, reset_fn=MembraneReset()),
          "lif_syn": lambda: sl.LIF(tau_mem=5.0, tau_syn=3.0)}[kind]
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), mk(), nn.Linear(8, 4), sl.IAF())
    with torch.no_grad():
        m[0].weight.mul_(3)
        m[2].weight.mul_(3)
    xs = _xs(scale=2.0) - 0.5
    g = trace_module(m, (6,), num_steps=T)
    with torch.no_grad():
        ref = own_run(m, xs, "sinabs").double()
    out, _ = run_graph(g, xs, None)
    assert ref.sum() > 0
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    md = [n for n in g.nodes.values() if hasattr(n, "v_threshold")][0].metadata
    assert md["snnc.threshold_op"] == ">=" and (md.get("snnc.spikes") == "multi") == (kind != "single_reset")


def test_sinabs_squeeze_conv_equals():
    torch.manual_seed(2)
    m = _scaled(nn.Sequential(nn.Conv2d(1, 4, 3), sl.IAFSqueeze(batch_size=8), sl.SumPool2d(2), nn.Flatten(),
                              nn.Linear(36, 5), sl.IAFSqueeze(batch_size=8)), 2.0)
    xi = (torch.rand(T, 8, 1, 8, 8) < 0.5).float()
    g = trace_module(m, (1, 8, 8), num_steps=T)
    for layer_ in m:
        if hasattr(layer_, "reset_states"):
            layer_.reset_states()
    with torch.no_grad():
        ref = m(xi.transpose(0, 1).reshape(8 * T, 1, 8, 8)).reshape(8, T, 5).transpose(0, 1).double()
    out, _ = run_graph(g, xi, None)
    assert ref.sum() > 0 and torch.equal(out, ref)


def test_sinabs_from_model_network_gets_in_as_written():
    """Issue 19: Sinabs' tutorial converts an ANN with ``from_model(ann)``; the Network it returns is traced
    through its spiking_model (with a note) and equals Sinabs' own run of it."""
    from sinabs.from_torch import from_model
    torch.manual_seed(3)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 5), nn.ReLU())
    with torch.no_grad():
        ann[0].weight.mul_(3)
        ann[4].weight.mul_(3)
    net = from_model(ann, input_shape=(1, 8, 8), batch_size=8)
    notes = []
    g = trace_module(net, (1, 8, 8), num_steps=T, notes=notes)
    assert any("from_model" in n and "spiking_model" in n for n in notes)
    xi = (torch.rand(T, 8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    net.reset_states()
    with torch.no_grad():
        ref = net.spiking_model(xi.transpose(0, 1).reshape(8 * T, 1, 8, 8)).reshape(8, T, 5).transpose(0, 1)
    out, _ = run_graph(g, xi, None)
    assert ref.sum() > 0 and torch.equal(out, ref.double())


def test_sinabs_default_neurons_refused_then_measured_and_single_spike_agrees(tmp_path):
    from sinabs.activation import MembraneReset, SingleSpike
    from snnc.ir.semantics import SemanticChangeError
    import snnc
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), sl.IAFSqueeze(num_timesteps=T), nn.Linear(48, 10),
                      sl.IAFSqueeze(num_timesteps=T))
    m = train_digits(m, T, kind="sinabs-squeeze", flatten=False, epochs=5, lr=3e-3)
    with pytest.raises(SemanticChangeError, match="several spikes per step"):
        snnc.compile(m, input_shape=(1, 8, 8), num_steps=T, out_dir=tmp_path / "a", data="digits")
    agree, rep = _agreement(m, "sinabs-squeeze", tmp_path / "b", allow_semantic_change=True)
    sem = [c for c in rep["checks"] if c["check"] == "SEMANTIC_CHANGE"]
    assert {c["what"] for c in sem} == {"reset", "spikes"}
    # the reported agreement (snnc's source-semantics executor vs the chip, 256 calibration images) is what
    # Sinabs' own run vs the chip shows on the test images, and the conversion costs agreement
    assert abs(sem[0]["agreement"] - agree) <= 0.1 and agree < 0.99, (sem[0]["agreement"], agree)
    one = dict(spike_fn=SingleSpike, reset_fn=MembraneReset(), num_timesteps=T)
    m2 = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), sl.IAFSqueeze(**one), nn.Linear(48, 10), sl.IAFSqueeze(**one))
    m2 = train_digits(m2, T, kind="sinabs-squeeze", flatten=False, epochs=5, lr=3e-3)
    agree2, rep2 = _agreement(m2, "sinabs-squeeze", tmp_path / "c")
    assert rep2["accuracy"]["float"] > 0.6 and agree2 >= 0.97


SINABS_FACTORY = """
import torch.nn as nn
import sinabs.layers as sl

def make_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12), sl.IAFSqueeze(batch_size=16), nn.Linear(12, 10),
                         sl.IAFSqueeze(batch_size=16))
make_model.input_shape = (1, 8, 8)
make_model.num_steps = 5
"""


def test_sinabs_state_dict_with_batch_shaped_states_loads_with_a_note(tmp_path):
    """Issue 19: an IAFSqueeze model trained with BPTT saves v_mem of its last batch's shape; the weights load
    (the states are not weights), the note says so, and the traced model equals Sinabs' own run."""
    (tmp_path / "net.py").write_text(SINABS_FACTORY)
    import importlib.util
    spec = importlib.util.spec_from_file_location("sinabs_net", tmp_path / "net.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(4)
    m = mod.make_model()
    with torch.no_grad():
        m[1].weight.mul_(4)
        m[3].weight.mul_(4)
        m(torch.rand(16 * 5, 1, 8, 8))  # a training-like run leaves v_mem [16, 12] and [16, 10] in the state dict
    assert tuple(m.state_dict()["2.v_mem"].shape) == (16, 12)
    torch.save(m.state_dict(), tmp_path / "w.pt")
    g, module, info = load_model(f"{tmp_path}/net.py:make_model", weights=tmp_path / "w.pt")
    assert any("2 Sinabs neuron state buffer(s) (2.v_mem, 4.v_mem)" in n for n in info["notes"])
    xi = (torch.rand(5, 16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    for layer_ in m:
        if hasattr(layer_, "reset_states"):
            layer_.reset_states()
    with torch.no_grad():
        ref = m(xi.transpose(0, 1).reshape(16 * 5, 1, 8, 8)).reshape(16, 5, 10).transpose(0, 1).double()
    out, _ = run_graph(g, xi, None)
    assert ref.sum() > 0 and torch.equal(out, ref)


def test_spikingjelly_layers_module_never_drops_a_layer():
    """The submodule that stands for a multi-step model must hold every neuron (neurons have a surrogate child)."""
    from spikingjelly.activation_based import neuron
    from snnc.frontends.spikingjelly import layers_module
    m = nn.Module()
    m.body = nn.Sequential(nn.Linear(4, 4), neuron.IFNode(), nn.Linear(4, 2))
    m.out = neuron.IFNode()
    assert layers_module(m) is None
    m2 = nn.Module()
    m2.body = nn.Sequential(nn.Linear(4, 4), neuron.IFNode())
    assert layers_module(m2)[0] == "body"
    assert layers_module(nn.Sequential(nn.ReLU())) is None
