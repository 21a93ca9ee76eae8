"""loihi-sim's compiled CPU path (``Program.run(kernel="fused")``, :mod:`snnc.backends.loihi.kernels`, layer by layer
over windows of steps) against its whole-tensor path (``kernel="tensor"``, step by step): every output, trace (u, v,
spikes at every step), spike and activity count and overflow counter equal, on programs that exercise each branch
of the kernel -- negative and positive weight exponents, u wrapping and v clipping, current memory and none, per-neuron
decays and thresholds, several projections into one group, synaptic delays across window boundaries, the float64
synaptic path, the host's per-sample bias with sum-pooling convolutions, spiking and voltage readouts. The tensor path
itself is checked against lava-nc's equations in tests/test_loihi.py and against Lava in tests/test_lava.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from snnc.backends.loihi.sim import Program
from snnc.errors import SnncError
from snnc.targets import load_target

from conftest import TinySNN, digits_batch
from test_loihi import _compiled, _hand_config

TARGET = load_target("loihi-sim")


def _assert_same(a, b):
    assert a.outputs.keys() == b.outputs.keys()
    for k in a.outputs:
        assert a.outputs[k].dtype == b.outputs[k].dtype == torch.int64
        assert torch.equal(a.outputs[k], b.outputs[k]), k
    for k in a.spikes:
        assert torch.equal(a.spikes[k], b.spikes[k]), k
        assert torch.equal(a.active[k], b.active[k]), k
    assert a.overflow == b.overflow and a.max_abs_input == b.max_abs_input
    assert a.host_bias_clipped == b.host_bias_clipped
    assert a.trace.keys() == b.trace.keys()
    for g in a.trace:
        for key in ("u", "v", "spikes"):
            assert a.trace[g][key].dtype == b.trace[g][key].dtype, (g, key)
            assert torch.equal(a.trace[g][key], b.trace[g][key]), (g, key)


def _both(prog, x, window_bytes=None, **kw):
    if window_bytes is not None:
        prog.FUSED_WINDOW_BYTES = window_bytes
    f = prog.run(x, kernel="fused", **kw)
    t = prog.run(x, kernel="tensor", **kw)
    _assert_same(f, t)
    return f


def _layers(rng, n_in):
    def w(o, i, lo=-128):
        return (2 * rng.integers(lo, 128, size=(o, i))).astype(np.int64)
    return [
        (w(32, n_in), -2, 3000, 500, rng.integers(-4096, 4096, 32), 50),   # CUBA, negative weight_exp
        (w(8, 32, -40), 7, 4095, 0, rng.integers(-2000, 2000, 8), 131071),  # large input: u wraps, v clips
        (w(5, 8, -20), 0, 100, 4095, np.zeros(5, np.int64), 1),            # slow current, fast voltage decay
    ]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("window_bytes", [None, 1])
def test_fused_equals_tensor_path_on_the_lava_chain(seed, window_bytes):
    """The chain of tests/test_loihi.py (wrap, clip, negative exponent), in one window and in windows of one step."""
    rng = np.random.default_rng(seed)
    cfg, arrays = _hand_config(_layers(rng, 12), 12, 12)
    x = (rng.random((12, 7, 12)) < 0.4).astype(np.float32)
    res = _both(Program(cfg, arrays, TARGET), x, window_bytes, record=True, batch_size=4)
    ov = res.overflow
    assert ov["g1"]["u_wrap_24bit"] > 0 and ov["g1"]["v_saturated_24bit"] > 0  # the limits are exercised
    assert res.spikes["g2"].sum() > 0


def test_fused_equals_tensor_path_with_delays_skips_and_per_neuron_parameters():
    """Delays reaching back across window boundaries (windows of 2 steps), a second projection into a group
    (from the input, another weight exponent), per-neuron du/dv and thresholds, a bias on from step 0, and the
    float64 synaptic path."""
    rng = np.random.default_rng(3)
    layers = _layers(rng, 10)
    cfg, arrays = _hand_config(layers, 10, 9)
    g1, g2 = cfg["groups"][1], cfg["groups"][2]
    g1["projections"][0]["delay"] = 2
    g2["offset"] = 5
    g2["bias_from"] = 0
    arrays["g2.bias_mant"] = rng.integers(-300, 300, 5).astype(np.int32)
    arrays["g2.p1.weight"] = (2 * rng.integers(-128, 128, size=(5, 10))).astype(np.int32)
    g2["projections"].append(dict(g2["projections"][0], source="input", source_shape=[10], weight_key="g2.p1.weight",
                                  weight_exp=3, delay=1, synapses=int((arrays["g2.p1.weight"] != 0).sum())))
    cfg["latency_steps"] += 3
    cfg["outputs"][0]["read_step"] = cfg["latency_steps"] - 1
    prog = Program(cfg, arrays, TARGET)
    g0 = prog.groups["g0"]
    g0.du_eff = torch.as_tensor(rng.integers(1, 4097, 32))
    g0.dv_eff = torch.as_tensor(rng.integers(0, 4096, 32))
    g0.vth = torch.as_tensor(rng.integers(1, 200, 32) << 6)
    p = prog.groups["g1"].projections[0]
    p.weight = p.weight.to(torch.float64)  # the path taken when a partial sum could pass 2^24
    x = (rng.random((9, 6, 10)) < 0.5).astype(np.float32)
    res = _both(prog, x, window_bytes=4 * 6 * 32 * 2, record=True)
    assert all(res.spikes[g].sum() > 0 for g in ("g0", "g1", "g2"))


def test_fused_equals_tensor_path_on_a_conv_net_with_direct_input():
    """Host-computed per-sample bias (current memory: the ramp the host writes step by step), sum-pooling before a
    convolution and before a dense readout, a voltage readout."""
    x = digits_batch(40, seed=5)
    for tau_syn in (1e-3, 3e-3):
        _, _, (cfg, arrays, _) = _compiled(TinySNN(tau_syn=tau_syn, channels=6), x)
        prog = Program(cfg, arrays, TARGET)
        res = _both(prog, x, record=True, batch_size=16)
        assert res.spikes["lif1"].sum() > 0 and res.spikes["lif2"].sum() > 0
        _both(prog, x, window_bytes=1, batch_size=40)


def test_spiking_output_counts_and_recurrent_programs():
    rng = np.random.default_rng(4)
    layers = [((2 * rng.integers(-30, 128, size=(6, 5))).astype(np.int64), 0, 4095, 400, np.zeros(6, np.int64), 100)]
    cfg, arrays = _hand_config(layers, 5, 10)
    x = (rng.random((10, 3, 5)) < 0.5).astype(np.float32)
    _both(Program(cfg, arrays, TARGET), x, window_bytes=4 * 3 * 6 * 3)
    # a projection from the group to itself: only the step-by-step path can run it
    g = cfg["groups"][0]
    arrays["g0.p1.weight"] = (2 * rng.integers(-50, 50, size=(6, 6))).astype(np.int32)
    g["projections"].append(dict(g["projections"][0], source="g0", source_shape=[6], weight_key="g0.p1.weight",
                                 recurrent=True, synapses=36))
    prog = Program(cfg, arrays, TARGET)
    assert not prog.feedforward
    with pytest.raises(SnncError, match="feed-forward programs only"):
        prog.run(x, kernel="fused")
    _assert_same(prog.run(x), prog.run(x, kernel="tensor"))  # auto: the tensor path
    with pytest.raises(SnncError, match="kernel must be"):
        prog.run(x, kernel="numba")


@pytest.mark.parametrize("window_bytes", [None, 1])
def test_several_outputs_of_one_group_and_early_reads(window_bytes):
    """Two voltage outputs of one readout group read at different steps, and a spiking output of a hidden group read
    before the last step: each its own value, in one window and in windows of one step."""
    rng = np.random.default_rng(6)
    layers = _layers(rng, 10)
    cfg, arrays = _hand_config(layers, 10, 8)
    last = cfg["groups"][-1]
    last.update(kind="readout", vth_mant=131071, reset="none")
    L = cfg["latency_steps"]
    cfg["outputs"] = [{"name": "a", "group": "g2", "read_step": L - 1}, {"name": "b", "group": "g2", "read_step": L - 4},
                      {"name": "h", "group": "g0", "read_step": L - 3}]
    x = (rng.random((8, 5, 10)) < 0.5).astype(np.float32)
    res = _both(Program(cfg, arrays, TARGET), x, window_bytes, record=True)
    assert not torch.equal(res.outputs["a"], res.outputs["b"]) and res.outputs["b"].abs().sum() > 0
    assert torch.equal(res.outputs["b"], res.trace["g2"]["v"][:, L - 4])
    assert res.outputs["h"].sum() > 0
