"""fold_timesteps (issue 7): identity at k = 1, decays composed in fixed point, constant (host-bias) input
accumulated exactly, spike weights / k, threshold recalibration, errors."""
from collections import OrderedDict

import json

import numpy as np
import pytest
import torch
from torch import nn

from snnc.backends.loihi.compile import compile_graph
from snnc.frontend import trace
from snnc.ir import summarize
from snnc.neurons import CubaLIF, Integrator
from snnc.passes import PassContext, Pipeline
from snnc.passes.fold_timesteps import folded_decay
from snnc.ir.reference import run_graph
from snnc.targets import load_target

from conftest import TinySNN

TARGET = load_target("loihi-sim")


class Chain(nn.Module):
    """Direct input 6 -> fc1 -> lif1 (tau_mem = m dt, no current memory) -> fc2 -> readout (integrator)."""

    def __init__(self, tau_mem_steps=2, threshold=1.0, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(6, 5)), ("lif1", CubaLIF((5,), tau_mem=tau_mem_steps * 1e-3, threshold=threshold,
                                                       bias=0.05)),
            ("fc2", nn.Linear(5, 3)), ("readout", Integrator((3,))),
        ]))
        self.eval()

    def forward(self, x):
        return self.net(x)


def graph_of(m, T=8):
    return Pipeline("fold_bn").run(trace(m, (6,), num_steps=T), PassContext())


def fold(g, steps, T=8, **kw):
    ctx = PassContext(target=TARGET, num_steps=T, **kw)
    opts = {"steps": steps, "recalibrate": kw.get("calibration") is not None}
    return Pipeline([("fold_timesteps", opts)]).run(g, ctx), ctx


def test_k1_is_the_identity():
    g = graph_of(Chain())
    out, ctx = fold(g, 8)
    assert summarize(out) == summarize(g) and ctx.log[0]["notes"]["changed"] is False


def test_decays_compose_exactly_where_representable():
    # decay_q = keep / 4096; folded decay = keep^k / 4096^k, exact when 4096^(k-1) divides keep^k
    assert folded_decay(2048, 2, 0, 12) == (0.25, True)            # dv 2048 (1/2) -> 1/4: dv 3072
    assert folded_decay(1024, 3, 0, 12) == (1728 / 4096, True)        # (3/4)^3 = 1728/4096
    assert folded_decay(1, 2, 0, 12)[1] is False                    # 4095^2 / 4096 is not whole
    assert folded_decay(0, 5, 0, 12) == (1.0, True)                # no leak stays no leak
    assert folded_decay(4095, 4, 1, 12) == (0.0, True)             # no current memory stays none
    d, exact = folded_decay(819, 2, 0, 12)                         # the bundled model's dv (tau_mem = 5 dt)
    assert not exact and round(4096 * (1 - d)) == 1474             # 4096 (3277/4096)^2 = 2621.7 -> 2622
    for tau_steps, k, dv_want in ((2, 2, 3072), (2, 4, 4096 - 256), (4, 2, 4096 - 2304), (5, 2, 1474)):
        g = graph_of(Chain(tau_mem_steps=tau_steps))
        f, _ = fold(g, 8 // k)
        q = Pipeline("quantize").run(f, PassContext(target=TARGET, num_steps=8 // k))
        assert q.nodes["lif1"].metadata["snnc.quant"]["dv"] == dv_want
        assert q.nodes["lif1"].metadata["snnc.quant"]["du"] == 4095
        assert q.nodes["readout"].metadata["snnc.quant"]["dv"] == 0


@pytest.mark.parametrize("tau_steps,k", [(2, 2), (4, 2), (4, 4), (2, 8)])
def test_constant_host_bias_input_is_accumulated_exactly(tau_steps, k):
    """Direct (analog) input and biases are constant per step: over k steps v goes to
    beta^k v + a (1 - beta^k)/(1 - beta). The folded graph's voltages equal the original's every k steps
    (no spikes: a threshold no input reaches), the readout's too, up to the float32 the NIR parameters are
    stored in."""
    g = graph_of(Chain(tau_mem_steps=tau_steps, threshold=1e6))
    f, ctx = fold(g, 8 // k)
    assert f.metadata["snnc.num_steps"] == 8 // k and ctx.num_steps == 8  # T' is in the graph; the context keeps the model's T
    x = np.random.default_rng(1).normal(size=(7, 6))
    _, r0 = run_graph(g, x, 8, record=("lif1#v", "readout#v"))
    _, r1 = run_graph(f, x, 8 // k, record=("lif1#v", "readout#v"))
    for key in r0:
        np.testing.assert_allclose(r1[key].numpy(), r0[key][k - 1::k].numpy(), rtol=2e-6, atol=1e-6)


def test_spike_weights_are_divided_by_k_and_recorded():
    g = graph_of(Chain())
    f, ctx = fold(g, 4)
    np.testing.assert_allclose(f.nodes["fc2"].weight, g.nodes["fc2"].weight / 2, rtol=1e-7)
    np.testing.assert_array_equal(f.nodes["fc1"].weight, g.nodes["fc1"].weight)   # constant input: unchanged
    md = f.metadata["snnc.fold_timesteps"]
    assert md["k"] == 2 and md["from_steps"] == 8 and md["dt"] == pytest.approx(2 * md["dt_from"])
    assert f.nodes["lif1"].metadata["snnc.dt"] == pytest.approx(2e-3)
    cfg, _, _ = compile_graph(Pipeline("quantize").run(f, PassContext(target=TARGET, num_steps=4)), TARGET)
    assert cfg["num_steps"] == 4 and cfg["latency_steps"] == 4 + max(g_["offset"] for g_ in cfg["groups"])
    assert cfg["dt"] == pytest.approx(2e-3)


def test_recalibration_keeps_the_model_closer_to_T():
    from snnc.data import load_digits
    x, y = load_digits("train")
    g = Pipeline("fold_bn").run(trace(TinySNN(channels=4), (1, 8, 8), num_steps=8), PassContext())
    f, ctx = fold(g, 2, calibration=x[:128], calibration_labels=y[:128])
    n = ctx.log[0]["notes"]
    assert n["recalibrated"] and set(n["threshold_factors"]) == {"lif1", "lif2"}
    assert n["agreement_with_T"]["recalibrated"] >= n["agreement_with_T"]["folded"]
    assert set(n["calibration_accuracy"]) == {"T=8", "T=2", "T=2 recalibrated"}
    for name, fac in n["threshold_factors"].items():
        np.testing.assert_allclose(f.nodes[name].v_threshold, g.nodes[name].v_threshold * fac, rtol=1e-6)
    assert set(n["spikes_per_image"]["lif1"]) == {"T", "folded", "recalibrated"}


def test_fold_errors():
    g = graph_of(Chain())
    with pytest.raises(ValueError, match="must divide T = 8"):
        fold(g, 3)
    with pytest.raises(ValueError, match="give the new number of steps"):
        Pipeline("fold_timesteps").run(g, PassContext(num_steps=8))
    with pytest.raises(ValueError, match="needs calibration images"):
        Pipeline("fold_timesteps:steps=4").run(g, PassContext(num_steps=8))
    gs = graph_of(Chain())
    gs.metadata["snnc.input_encoding"] = "spikes"
    with pytest.raises(ValueError, match="spike input cannot be folded"):
        fold(gs, 4)
    with pytest.raises(ValueError, match="outside 1..32767"):
        Pipeline("fold_timesteps:steps=-1")


def test_passes_read_T_from_the_graph_not_a_side_channel():
    """Issue 16, defect 5: fold_timesteps records T' in the graph; it no longer rewrites ctx.num_steps, and
    quantize after it in the same pipeline (one context with the model's T) bounds the readout with T'."""
    g = graph_of(Chain())
    ctx = PassContext(target=TARGET, num_steps=8)
    q = Pipeline([("fold_timesteps", {"steps": 2, "recalibrate": False}), ("quantize", {})]).run(g, ctx)
    assert ctx.num_steps == 8 and q.metadata["snnc.num_steps"] == 2
    f, _ = fold(g, 2)
    q2 = Pipeline("quantize").run(f, PassContext(target=TARGET, num_steps=2))
    def fields(graph):
        return json.dumps(graph.nodes["readout"].metadata["snnc.quant"], sort_keys=True,
                          default=lambda a: np.asarray(a).tolist())
    assert fields(q) == fields(q2)
