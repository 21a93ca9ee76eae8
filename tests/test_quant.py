"""quantize in depth (issue 7): weight bits, calibrated (MSE) and per-channel scales, fixed-point edges,
saturation/overflow counters, the per-core parameter-set rule, memory per weight bit, QAT, the CLI."""
import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from snnc.backends.loihi import mapping as M
from snnc.backends.loihi import rules
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.sim import Program
from snnc.cli import main
from snnc.frontend import trace
from snnc.neurons import CubaLIF, Integrator
from snnc.passes import PassContext, Pipeline
from snnc.passes.quantize import cluster_levels, input_moments, mse_clip, weight_grids
from snnc.targets import load_target

from conftest import TinySNN, digits_batch

TARGET = load_target("loihi-sim")
FP = TARGET.fixed_point  # the loihi backend's fixed-point rules, constants from the target file


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stderr, r.stdout


class DenseSNN(nn.Module):
    """Direct input 16 -> fc1 (host) -> lif1 24 -> fc2 -> lif2 12 -> fc3 -> readout 4. Gains are 1 (snnc's
    CubaLIF with tau_syn = dt, Integrator), so the composite weights are the layer weights."""

    def __init__(self, seed=0, n=(16, 24, 12, 4)):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(n[0], n[1])), ("lif1", CubaLIF((n[1],), threshold=1.0)),
            ("fc2", nn.Linear(n[1], n[2], bias=False)), ("lif2", CubaLIF((n[2],), threshold=1.0)),
            ("fc3", nn.Linear(n[2], n[3], bias=False)), ("readout", Integrator((n[3],))),
        ]))
        self.eval()

    def forward(self, x):
        return self.net(x)


def dense_graph(m=None, T=6):
    return Pipeline("fold_bn").run(trace(m or DenseSNN(), (16,), num_steps=T), PassContext())


def quantized(g, spec, x=None, T=6):
    ctx = PassContext(target=TARGET, calibration=x, num_steps=T)
    return Pipeline(spec).run(g, ctx), ctx


# ------------------------------------------------------------------ fixed point on small cases
def test_weights_at_the_edge_of_the_range():
    """8 bits: even mantissas in [-256, 254]; 254 is the top, 255 rounds (half to even) to 256 and is
    clipped (counted), -256 is representable, -259 rounds to -260 and is clipped. 4 bits: multiples of 32
    in [-256, 224]."""
    s, e = 2.0 ** 6, 0          # one unit of w = one mantissa LSB
    w = np.array([[254.0, 255.0, -256.0, -259.0, 253.0, 1.0, -1.0, 0.0, -257.0]])
    q, clipped = FP.quantize_rows(w, s, e, 8)
    assert q.tolist() == [[254, 254, -256, -256, 252, 0, 0, 0, -256]] and clipped == 2
    q4, clipped4 = FP.quantize_rows(np.array([[224.0, 239.9, 240.0, -256.0, -280.0, 15.9, 16.1]]), s, e, 4)
    assert q4.tolist() == [[224, 224, 224, -256, -256, 0, 32]] and clipped4 == 2  # 240 -> 256, -280 -> -288
    assert [FP.weight_step(b) for b in (8, 6, 4, 2)] == [2, 8, 32, 128]


def test_exponent_choice_is_the_smallest_that_fits():
    """weight_exp = the smallest exponent with max|w| s / 2^(6+e) <= 254, clamped to -7..7."""
    s = 1.0
    for e_want in (-7, -3, 0, 2, 7):
        m = 254 * 2.0 ** (6 + e_want)             # exactly the top mantissa at e_want
        q, e = FP.quantize_weights(np.array([m, -m / 3]), s, 8)
        assert e == e_want and q[0] == 254
        q, e = FP.quantize_weights(np.array([m * 1.001]), s, 8)  # just over: one exponent up (or clipped at 7)
        assert e == min(e_want + 1, 7)
    q, e = FP.quantize_weights(np.array([1e-9]), s, 8)
    assert e == FP["weight_exp_min"]


def test_mse_clip_keeps_weights_already_on_a_grid_and_clips_outliers():
    rng = np.random.default_rng(0)
    x = (rng.random((500, 10)) < 0.3).astype(np.float64)
    mom = ("full", (x.T @ x)[None])
    c = 0.25
    grid = rng.integers(-6, 8, size=(3, 10)) * (c / 7)           # 4-bit: mantissas -8..7 of c / 7
    grid[:, 0] = c
    got = mse_clip(grid, mom, 4, per_row=True, fp=FP)
    np.testing.assert_allclose(got, c, rtol=1e-12)                # zero error: the grid itself
    from snnc.passes.quantize import _row_errors
    w = rng.normal(0, 0.1, size=(4, 200))
    w[0, 0] = 3.0                                                 # one outlier
    xm = (rng.random((400, 200)) < 0.2).astype(np.float64)
    mom = ("full", (xm.T @ xm)[None])
    c_row = mse_clip(w, mom, 4, per_row=True, fp=FP)
    err = _row_errors(FP.grid(w, c_row[:, None] / 224, 4) - w, mom)
    mx = np.abs(w).max(1)
    err_max = _row_errors(FP.grid(w, mx[:, None] / 224, 4) - w, mom)
    assert np.all(err <= err_max * (1 + 1e-12)) and err[0] < err_max[0] and c_row[0] < 3.0


def test_input_moments_are_the_exact_second_moments():
    g = dense_graph()
    x = digits_batch(20, seed=1).reshape(20, -1)[:, :16]
    from snnc.ir.lowering import lower
    from snnc.ir.reference import run_graph
    low = lower(g)
    projs = [p for grp in low.groups.values() for p in grp.projections if not p.host]
    mom = input_moments(g, low, PassContext(calibration=x), 5, projs)
    _, rec = run_graph(g, x, 5, record=("lif1", "lif2"), dtype=torch.float32)
    for p, src in zip(projs, ("lif1", "lif2")):
        s = rec[src].double().reshape(-1, rec[src].shape[-1]).numpy()
        kind, m = mom[p.weighted]
        assert kind == "full"
        np.testing.assert_array_equal(m[0], s.T @ s)


def test_cluster_levels_is_optimal_and_never_rounds_up():
    s = np.array([1.0, 1.05, 1.1, 2.0, 2.1, 4.0, 4.4, 8.0])
    lv = cluster_levels(s, 3)
    assert len(np.unique(lv)) == 3 and np.all(lv <= s)
    best = min(  # brute force over all cuts of the sorted values into 3 runs
        sum(np.log(s[i:j] / s[i]).sum() for i, j in ((0, a), (a, b), (b, len(s))))
        for a in range(1, len(s)) for b in range(a + 1, len(s)))
    assert np.log(s / lv).sum() == pytest.approx(best)
    np.testing.assert_array_equal(cluster_levels(s, 8), s)


# ------------------------------------------------------------------ per-channel == per-layer where scales coincide
def _equal_rows_model():
    """Every output row of fc2 (and of fc3) holds the same weights, on the 8-bit grid of clip 0.25: every
    channel gets the same scale, and that scale puts v_th = 1 on a whole vThMant."""
    m = DenseSNN(seed=3)
    unit = 0.25 / 254
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for name, (o, i) in (("fc2", (12, 24)), ("fc3", (4, 12))):
            row = 2 * rng.integers(-127, 128, size=i) * unit
            row[0], row[1] = 0.25, -0.25
            getattr(m.net, name).weight.copy_(torch.as_tensor(np.tile(row, (o, 1)), dtype=torch.float32))
        m.net.fc1.weight.mul_(4.0)
    return m


def test_per_channel_equals_per_layer_where_the_scales_coincide():
    g = dense_graph(_equal_rows_model())
    x = np.random.default_rng(2).random((64, 16)).astype(np.float32)
    ql, _ = quantized(g, "quantize:scales=mse", x)
    qc, ctx = quantized(g, "quantize:scales=mse;per_channel=true", x)
    notes = ctx.log[-1]["notes"]["groups"]
    assert notes["lif2"]["per_channel"]["applied"] and notes["lif2"]["per_channel"]["levels"] == 1
    cl, al, _ = compile_graph(ql, TARGET)
    cc, ac, _ = compile_graph(qc, TARGET)
    for k in al:
        np.testing.assert_array_equal(al[k], ac[k], err_msg=k)
    assert np.all(ac["lif2.vth_mant"] == cl["groups"][1]["vth_mant"])
    xt = np.random.default_rng(3).random((40, 16)).astype(np.float32)
    rl, rc = Program(cl, al, TARGET).run(xt), Program(cc, ac, TARGET).run(xt)
    for n in rl.spikes:
        assert torch.equal(rl.spikes[n], rc.spikes[n])
    np.testing.assert_allclose(rc.scores(), rl.scores() / cl["groups"][2]["scale"])


def test_per_channel_is_exact_and_matches_its_float_graph():
    """Per-channel scales on a conv net: every channel's weights fill the mantissa range, the float graph
    (fake quant) keeps one threshold, and the chip follows it as closely as per-layer does."""
    from snnc.ir.reference import run_graph
    g = Pipeline("fold_bn").run(trace(TinySNN(channels=6), (1, 8, 8), num_steps=6), PassContext())
    x = digits_batch(64, seed=5)
    q, ctx = quantized(g, "quantize:weight_bits=4;per_channel=true", x)
    n = ctx.log[-1]["notes"]["groups"]
    assert n["lif2"]["per_channel"]["applied"] and n["lif2"]["per_channel"]["exact"]
    assert not n["lif1"]["per_channel"]["applied"]              # host-driven: no on-chip weights
    assert np.ptp(q.nodes["lif2"].v_threshold) == 0               # one threshold in the float graph
    cfg, arr, _ = compile_graph(q, TARGET)
    w = arr["lif2.p0.weight"]                                     # conv2 rows: 6 output channels
    assert np.abs(w).reshape(6, -1).max(1).min() >= 224 - 32      # every channel (nearly) fills 4 bits
    assert len(np.unique(arr["lif2.vth_mant"])) <= 8
    xt = digits_batch(100, seed=9)

    def chip_vs_float(qg, cfg_, arr_):  # share of test images where the chip and its float graph agree
        res = Program(cfg_, arr_, TARGET).run(xt)
        ref, _ = run_graph(qg, xt, 6)
        return float((res.scores().argmax(1) == ref[-1].numpy().argmax(1)).mean())

    agree = chip_vs_float(q, cfg, arr)
    ql, _ = quantized(g, "quantize:weight_bits=4", x)              # the same 4 bits, one scale per layer
    agree_layer = chip_vs_float(ql, *compile_graph(ql, TARGET)[:2])
    assert agree >= 0.95 and agree >= agree_layer - 0.02, (agree, agree_layer)


def test_vth_profiles_per_core_are_a_design_rule():
    g = Pipeline("fold_bn").run(trace(TinySNN(channels=4), (1, 8, 8), num_steps=4), PassContext())
    x = digits_batch(32, seed=1)
    q, _ = quantized(g, "quantize:per_channel=true;channel_levels=6", x, T=4)
    cfg, arr, _ = compile_graph(q, TARGET)
    assert len(cfg["cores"]) == 1
    rows = rules.profile_counts(cfg["cores"], cfg["groups"], arr)
    assert rows[0]["vth"] == len(np.unique(arr["lif2.vth_mant"])) + 2  # lif2's + lif1's + the readout's
    lim = dict(TARGET["profiles"], vth_per_core=3)
    small = type(TARGET)(TARGET.name, "", "loihi", dict(TARGET.data, profiles=lim))
    v = rules.profile_rules(cfg["cores"], cfg["groups"], arr, small)
    assert [x.rule for x in v] == ["CORE_VTH_PROFILES"] and v[0].value == rows[0]["vth"] and v[0].limit == 3
    assert not rules.profile_rules(cfg["cores"], cfg["groups"], arr, TARGET)
    assert TARGET["profiles"] == {"vth_per_core": 16, "compartment_per_core": 32, "synapse_formats_per_core": 16}
    assert "validate_core" in TARGET.sources["profiles"]


def test_lava_refuses_per_channel_thresholds():
    from snnc.backends.lava.engine import LavaMappingError, check_lava_form
    g = dense_graph()
    q, _ = quantized(g, "quantize:per_channel=true", np.random.default_rng(0).random((32, 16)).astype(np.float32))
    cfg, _, _ = compile_graph(q, TARGET)
    with pytest.raises(LavaMappingError, match="per-channel"):
        check_lava_form(cfg)


# ------------------------------------------------------------------ saturation and overflow, counted per group
def test_overflow_counters_count_every_event():
    """One hand-made group fed by spikes: huge weights push the 16-bit synaptic input, the 24-bit u (wraps,
    as lava) and v (clipped) over; the counters equal an independent count, and the results equal a run
    that does not count (the counters change nothing)."""
    rng = np.random.default_rng(4)
    n_in, n, T = 10, 6, 5
    W = 2 * rng.integers(-127, 128, size=(n, n_in))
    W[:3] = 254
    e, bias = 7, rng.integers(-4000, 4000, n)
    cfg = {"format": "snnc-loihi-sim", "version": 1, "target": "loihi-sim", "num_steps": T, "dt": 1e-3,
           "latency_steps": T + 1, "input": {"name": "input", "shape": [n_in], "encoding": "spikes"},
           "outputs": [{"name": "out", "group": "g", "read_step": T}],
           "groups": [{"name": "g", "kind": "spiking", "shape": [n], "size": n, "du": 4095, "dv": 0, "vth_mant": 131071,
                       "bias_exp": 0, "host_bias_exp": -1, "scale": 1.0, "reset": "zero", "offset": 1,
                       "slices": [{"core": 0, "start": 0, "stop": n}],
                       "projections": [{"source": "input", "source_shape": [n_in], "ops": [{"op": "dense", "node": "fc"}],
                                        "weight_key": "g.p0.weight", "weight_exp": e, "delay": 0, "weight_bits": 8,
                                        "host": False, "recurrent": False, "synapses": int((W != 0).sum())}]}],
           "cores": [{"core": 0, "chip": 0, "groups": ["g"], "neurons": n, "axons_in": n_in, "axons_out": 0,
                      "synapses": int((W != 0).sum()), "memory_bits": 0}]}
    arrays = {"g.bias_mant": bias.astype(np.int32), "g.p0.weight": W.astype(np.int32)}
    x = (rng.random((T, 4, n_in)) < 0.7).astype(np.float32)
    res = Program(cfg, arrays, TARGET).run(x)
    umax = 2 ** 23
    cnt = {"a": 0, "u": 0, "v": 0}
    for b in range(4):
        v = np.zeros(n, np.int64)
        for t in range(T + 1):
            a = (W @ x[t - 1, b].astype(np.int64)) << e if 1 <= t <= T else np.zeros(n, np.int64)
            cnt["a"] += int((np.abs(a) > 2 ** 15 - 1).sum())
            u = a << 6
            cnt["u"] += int(((u > umax) | (u <= -umax)).sum())
            u = np.where(u > umax, u - 2 * umax, np.where(u <= -umax, u + 2 * umax, u))
            v = v + u + (bias if t >= 1 else 0)
            cnt["v"] += int((np.abs(v) > umax - 1).sum())
            v = np.clip(v, -umax + 1, umax - 1)
            v = np.where(v > 131071 << 6, 0, v)
    ov = res.overflow["g"]
    assert ov == {"synaptic_input_16bit": cnt["a"], "u_wrap_24bit": cnt["u"], "v_saturated_24bit": cnt["v"],
                  "host_bias_clipped": 0}
    assert min(cnt.values()) > 0
    from snnc.backends.loihi.energy import measure
    from snnc.backends.loihi.sim import slice_counts_for
    m = measure(Program(cfg, arrays, TARGET), res, slice_counts_for(Program(cfg, arrays, TARGET)))
    assert m["overflow"]["groups"]["g"] == ov
    assert {c["check"] for c in m["checks"]} >= {"SYNAPTIC_INPUT_16BIT", "U_WRAP_24BIT", "V_SATURATED_24BIT"}


def test_host_bias_clipping_counted_per_group():
    g = dense_graph()
    x = np.random.default_rng(0).random((32, 16)).astype(np.float32)
    q, _ = quantized(g, "quantize", x)
    cfg, arr, _ = compile_graph(q, TARGET)
    res = Program(cfg, arr, TARGET).run(50 * x)                      # far outside the calibrated range
    assert res.overflow["lif1"]["host_bias_clipped"] == res.host_bias_clipped > 0
    assert res.overflow["lif2"]["host_bias_clipped"] == 0


# ------------------------------------------------------------------ memory per weight bit
def _list_bits(n, bpw):
    """nengo-loihi SynapseFmt.bits_per_axon, written out: blocks of <= 64 synapses, each n*bpw + 4 + 6
    header bits, rounded up to 64-bit words."""
    out = 0
    while n > 0:
        m = min(n, 64)
        out += math.ceil((m * bpw + 10) / 64) * 64
        n -= m
    return out


def test_fewer_weight_bits_shrink_synaptic_memory_as_the_formula_says():
    g = dense_graph(DenseSNN(seed=1, n=(16, 40, 30, 4)))
    x = np.random.default_rng(0).random((32, 16)).astype(np.float32)
    mem = {}
    for bits in (8, 6, 4, 2):
        q, _ = quantized(g, f"quantize:weight_bits={bits}", x)
        cfg, arr, _ = compile_graph(q, TARGET, formats="discrete")
        assert len(cfg["cores"]) == 1
        ib = M.index_bits(cfg["cores"][0]["neurons"], TARGET["synapse_format"])
        want = 0
        for key in ("lif2.p0.weight", "readout.p0.weight"):        # dense: one list per source neuron
            want += sum(_list_bits(int(k), bits + ib) for k in (arr[key] != 0).sum(0))
        assert cfg["cores"][0]["memory_bits"] == want, bits
        mem[bits] = want
    assert mem[8] > mem[6] > mem[4] > mem[2]


# ------------------------------------------------------------------ quantization-aware training
def test_qat_weights_sit_on_the_grid_compile_uses():
    from snnc.data import load_digits
    from snnc.driver.finetune import finetune
    g = Pipeline("fold_bn").run(trace(TinySNN(channels=4), (1, 8, 8), num_steps=4), PassContext())
    x, y = load_digits("train")
    opts = {"weight_bits": 4, "scales": "mse"}
    model, hist = finetune(g, x[:256], y[:256], 4, epochs=1, batch_size=64, qat=opts, qat_refresh=2)
    assert hist[0]["qat_grid_refreshes"] == 2
    trained = model.to_nir()
    q = Pipeline([("quantize", opts)]).run(trained, PassContext(target=TARGET, calibration=x[:256], num_steps=4))
    for node in ("conv2", "fc"):  # re-quantizing the trained weights changes none of them
        np.testing.assert_allclose(q.nodes[node].weight, trained.nodes[node].weight, rtol=1e-5, atol=1e-9)
    grids = weight_grids(trained, q, TARGET)
    unit, step, qmax = grids["fc"]
    m = trained.nodes["fc"].weight / (unit[:, None] * step)
    np.testing.assert_allclose(m, np.rint(m), atol=1e-3)


# ------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def tiny_pickle(tmp_path_factory):
    p = tmp_path_factory.mktemp("q") / "tiny.pt"
    torch.save(TinySNN(channels=6), p)
    return p


def test_cli_options_are_recorded(tiny_pickle, tmp_path):
    base = ["compile", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4, "--data", "digits",
            "--limit", 40]
    code, err, out = run(*base, "-o", tmp_path / "o", "--weight-bits", 4, "--per-channel", "--calibrate", 64,
                         "--timesteps", 2)
    assert code == 0, err
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    passes = {e["pass"]: e["options"] for e in rep["pipeline"]}
    assert [e["pass"] for e in rep["pipeline"]] == ["fold_bn", "fold_timesteps", "quantize"]
    assert passes["quantize"]["weight_bits"] == 4 and passes["quantize"]["per_channel"] is True
    assert passes["quantize"]["scales"] == "mse" and passes["fold_timesteps"]["steps"] == 2
    assert rep["num_steps"] == 2 and rep["model"]["num_steps"] == 4
    qz = rep["quantization"]
    assert qz["weight_bits"] == 4 and qz["calibration_images"] == 64 and qz["timesteps"]["k"] == 2
    assert qz["groups"]["lif2"]["per_channel"]["applied"] and "overflow" in qz["groups"]["lif2"]
    flat = " ".join(out.split())
    assert "quantization: 4-bit weights, mse scales" in flat and "T 4 -> 2" in flat
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["num_steps"] == 2 and {p["weight_bits"] for g in cfg["groups"] for p in g["projections"]
                                      if not p["host"]} == {4}
    # the emitted per-neuron thresholds are range-checked: none above the group's vth_mant
    from snnc.backends.loihi.validate import check_program
    from snnc.targets import load_target
    with np.load(tmp_path / "o" / "weights.npz") as z:
        arrays = dict(z)
    lif2 = next(g for g in cfg["groups"] if g["name"] == "lif2")
    check_program(cfg, arrays, load_target("loihi-sim"))
    arrays["lif2.vth_mant"] = arrays["lif2.vth_mant"].copy()
    arrays["lif2.vth_mant"][0] = lif2["vth_mant"] + 1
    with pytest.raises(ValueError, match=r"lif2.vth_mant outside the group's range 1\.\.%d" % lif2["vth_mant"]):
        check_program(cfg, arrays, load_target("loihi-sim"))
    code, err, _ = run("compile", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4, "-o",
                       tmp_path / "x", "--calibrate", 10)
    assert code == 1 and "--calibrate needs --data" in err
    code, err, _ = run(*base, "-o", tmp_path / "y", "--timesteps", 3)
    assert code == 1 and "must divide T = 4" in err
    code, err, _ = run(*base, "-o", tmp_path / "z", "--weight-bits", 1)
    assert code == 2


def test_calibration_statistics_use_every_calibration_sample():
    """Issue 16, defect 5: ``--calibrate N`` promises N images; the statistics were capped at the first 256.
    Here only samples past the 256th carry input, so capping would see no activity at all."""
    from snnc.passes.quantize import calibration_stats
    from snnc.ir.lowering import lower
    g = dense_graph()
    x = np.zeros((300, 16), np.float32)
    x[280:] = np.random.default_rng(0).random((20, 16)).astype(np.float32)
    ctx = PassContext(target=TARGET, calibration=x, num_steps=6)
    full = calibration_stats(g, lower(g), ctx, 6)
    first = calibration_stats(g, lower(g), PassContext(target=TARGET, calibration=x[:256], num_steps=6), 6)
    assert any(full[n]["v"] > first[n]["v"] or full[n]["a"] > first[n]["a"] for n in full), (full, first)
    q_full, _ = quantized(g, "quantize:scales=mse", x)
    q_first, _ = quantized(g, "quantize:scales=mse", x[:256])
    assert any(q_full.nodes[n].metadata["snnc.quant"] != q_first.nodes[n].metadata["snnc.quant"]
               for n in q_full.nodes if "snnc.quant" in (q_full.nodes[n].metadata or {}))
