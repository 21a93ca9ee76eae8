"""loihi-sim backend: bit accuracy against an independent transcription of lava-nc's fixed-point
LIF + Dense equations, mapping limits, design rules, memory accounting."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from snnc.backends.loihi import mapping as M
from snnc.backends.loihi import rules
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.sim import Program
from snnc.frontend import trace
from snnc.neurons import CubaLIF, Integrator
from snnc.passes import PassContext, Pipeline
from snnc.ir.reference import run_graph
from snnc.targets import load_target

from conftest import TinySNN, digits_batch

TARGET = load_target("loihi-sim")


# ------------------------------------------------------------------ lava transcription
def lava_lif_step(u, v, a_in, du, dv, bias, vth):
    """lava-nc src/lava/proc/lif/models.py AbstractPyLifModelFixed.subthr_dynamics + PyLifModelBitAcc."""
    max_uv = 2 ** 23
    dc = np.int64(u) * (4096 - (du + 1))
    dc = np.sign(dc) * np.right_shift(np.abs(dc), 12)
    dc = dc + np.left_shift(a_in, 6)
    w = np.where(dc > max_uv, dc - 2 * max_uv, dc)
    w = np.where(w <= -max_uv, dc + 2 * max_uv, w)
    u = w
    dvv = np.int64(v) * (4096 - dv)
    dvv = np.sign(dvv) * np.right_shift(np.abs(dvv), 12)
    v = np.clip(dvv + u + bias, -max_uv + 1, max_uv - 1)
    s = v > (vth << 6)
    v = np.where(s, 0, v)
    return u, v, s


def lava_dense(weights, s_in, weight_exp):
    """lava-nc src/lava/proc/dense/models.py PyDenseModelBitAcc accumulation."""
    a = weights[:, s_in.astype(bool)].sum(axis=1).astype(np.int64)
    return np.left_shift(a, weight_exp) if weight_exp > 0 else np.right_shift(a, -weight_exp)


def lava_chain(layers, spikes_in, steps):
    """layers: [(W int [out,in], weight_exp, du, dv, bias int [out], vth_mant)]; Dense buffers one step.

    Layer i first receives input at step i + 1; the host sets its bias_mant then (before, 0)."""
    n = len(layers)
    u = [np.zeros(W.shape[0], np.int64) for W, *_ in layers]
    v = [np.zeros(W.shape[0], np.int64) for W, *_ in layers]
    a_buff = [np.zeros(W.shape[0], np.int64) for W, *_ in layers]
    spikes = [np.zeros((steps, W.shape[0]), bool) for W, *_ in layers]
    vtrace = [np.zeros((steps, W.shape[0]), np.int64) for W, *_ in layers]
    utrace = [np.zeros((steps, W.shape[0]), np.int64) for W, *_ in layers]
    for t in range(steps):
        a_now = [a.copy() for a in a_buff]
        for i, (W, e, du, dv, bias, vth) in enumerate(layers):
            u[i], v[i], s = lava_lif_step(u[i], v[i], a_now[i], du, dv, bias if t >= i + 1 else 0, vth)
            spikes[i][t], vtrace[i][t], utrace[i][t] = s, v[i], u[i]
        for i, (W, e, *_rest) in enumerate(layers):
            src = spikes_in[t] if (i == 0 and t < len(spikes_in)) else (
                np.zeros(W.shape[1], bool) if i == 0 else spikes[i - 1][t])
            a_buff[i] = lava_dense(W, src, e)
    return spikes, vtrace, utrace


def _hand_config(layers, n_in, T):
    groups, arrays = [], {}
    prev = "input"
    for i, (W, e, du, dv, bias, vth) in enumerate(layers):
        name = f"g{i}"
        arrays[f"{name}.bias_mant"] = bias.astype(np.int32)
        arrays[f"{name}.p0.weight"] = W.astype(np.int32)
        groups.append({"name": name, "kind": "spiking", "shape": [W.shape[0]], "size": W.shape[0], "du": du, "dv": dv,
                       "vth_mant": vth, "bias_exp": 0, "host_bias_exp": -1, "scale": 1.0, "reset": "zero",
                       "offset": i + 1, "slices": [{"core": i, "start": 0, "stop": W.shape[0]}],
                       "projections": [{"source": prev, "source_shape": [W.shape[1]], "ops": [{"op": "dense", "node": f"fc{i}"}],
                                        "weight_key": f"{name}.p0.weight", "weight_exp": e, "delay": 0, "weight_bits": 8,
                                        "host": False, "recurrent": False, "synapses": int((W != 0).sum())}]})
        prev = name
    L = T + len(layers)
    cfg = {"format": "snnc-loihi-sim", "version": 1, "target": "loihi-sim", "num_steps": T, "dt": 1e-3,
           "latency_steps": L, "input": {"name": "input", "shape": [n_in], "encoding": "spikes"},
           "outputs": [{"name": "output", "group": prev, "read_step": L - 1}], "groups": groups,
           "cores": [{"core": i, "chip": 0, "groups": [f"g{i}"], "neurons": W.shape[0], "axons_in": W.shape[1],
                      "axons_out": 0, "synapses": int((W != 0).sum()), "memory_bits": 0}
                     for i, (W, *_r) in enumerate(layers)]}
    return cfg, arrays


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bit_exact_against_lava_equations(seed):
    rng = np.random.default_rng(seed)
    n_in, T = 12, 12

    def w(o, i):
        return (2 * rng.integers(-128, 128, size=(o, i))).astype(np.int64)  # even, [-256, 254]

    layers = [
        (w(16, n_in), -2, 3000, 500, rng.integers(-4096, 4096, 16), 50),   # CUBA, negative weight_exp
        (w(8, 16), 7, 4095, 0, rng.integers(-2000, 2000, 8), 131071),      # large input: u wraps, v clips
        (w(5, 8), 0, 100, 4095, np.zeros(5, np.int64), 1),                 # slow current, fast voltage decay
    ]
    spikes_in = rng.random((T, 3, n_in)) < 0.4                           # batch of 3 samples
    cfg, arrays = _hand_config(layers, n_in, T)
    prog = Program(cfg, arrays, TARGET)
    res = prog.run(spikes_in.astype(np.float32), record=True)
    wrapped = False
    for b in range(3):
        sp, vt, ut = lava_chain(layers, spikes_in[:, b], prog.L)
        for i in range(3):
            wrapped |= bool(np.abs(vt[i]).max() >= 2 ** 23 - 1)
            tr = res.trace[f"g{i}"]  # every chip step of every sample: spikes, v and u equal lava-nc's, bit for bit
            np.testing.assert_array_equal(tr["spikes"][b].numpy(), sp[i], err_msg=f"spikes g{i} sample {b}")
            np.testing.assert_array_equal(tr["v"][b].numpy(), vt[i], err_msg=f"v g{i} sample {b}")
            np.testing.assert_array_equal(tr["u"][b].numpy(), ut[i], err_msg=f"u g{i} sample {b}")
        assert sum(s.sum() for s in sp) > 0
    assert wrapped  # the case exercises the 24-bit limits


def test_spike_counts_readout_window():
    rng = np.random.default_rng(4)
    layers = [((2 * rng.integers(-30, 128, size=(6, 5))).astype(np.int64), 0, 4095, 400, np.zeros(6, np.int64), 100)]
    spikes_in = rng.random((10, 2, 5)) < 0.5
    cfg, arrays = _hand_config(layers, 5, 10)
    res = Program(cfg, arrays, TARGET).run(spikes_in.astype(np.float32))
    for b in range(2):
        sp, *_ = lava_chain(layers, spikes_in[:, b], 11)
        np.testing.assert_array_equal(res.scores()[b], sp[0][1:11].sum(0))


# ------------------------------------------------------------------ memory and mapping
def test_axon_bits_matches_nengo_loihi_formula():
    fmt = TARGET["synapse_format"]
    bpw = 8 + 10
    counts = torch.tensor([0, 1, 64, 65, 200])
    bits = M.axon_bits(counts, bpw, fmt).tolist()
    # per block of <= 64 synapses: n*bpw + 4 + 6 bits, rounded up to 64-bit words
    assert bits == [0, 64, 1216, 1216 + 64, 3 * 1216 + -(-(8 * bpw + 10) // 64) * 64]
    assert M.index_bits(10, fmt) == 6 and M.index_bits(100, fmt) == 7 and M.index_bits(1024, fmt) == 10


def test_neuron_order_channel_last():
    perm = M.neuron_order((2, 2, 2))
    assert perm.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def _compiled(model, x, T=6, max_cores=None, **kw):
    g = trace(model, tuple(x.shape[1:]), num_steps=T)
    ctx = PassContext(target=TARGET, calibration=x, num_steps=T)
    q = Pipeline("fold_bn,quantize").run(g, ctx)
    return g, q, compile_graph(q, TARGET, max_cores=max_cores, **kw)


def test_every_core_within_limits_and_sim_matches_float():
    x = digits_batch(200, seed=2)
    g, q, (cfg, arrays, viol) = _compiled(TinySNN(channels=8), x)
    assert viol == []
    lim = TARGET["core"]
    for c in cfg["cores"]:
        assert c["neurons"] <= lim["neurons"] and c["axons_in"] <= lim["axons_in"]
        assert c["axons_out"] <= lim["axons_out"] and c["memory_bits"] <= lim["synapse_memory_bits"]
    assert sum(c["neurons"] for c in cfg["cores"]) == 8 * 64 + 6 * 16 + 10
    res = Program(cfg, arrays, TARGET).run(x)
    fq, _ = run_graph(q, x, 6)
    agree = (res.scores().argmax(1) == fq[-1].numpy().argmax(1)).mean()
    assert agree > 0.9
    # offsets: host-driven lif1 at 0, lif2 at 1, readout at 2; read after T - 1 + 2 steps
    assert [gg["offset"] for gg in cfg["groups"]] == [0, 1, 2] and cfg["outputs"][0]["read_step"] == 7


def test_large_layer_is_split_across_cores():
    cfg, _, viol = compile_graph(_wide_model(), TARGET)
    lif_cores = {s["core"] for s in cfg["groups"][0]["slices"]}
    assert viol == [] and len(lif_cores) > 3  # 3000 inputs x 2500 neurons: memory bound
    for c in cfg["cores"]:
        assert c["memory_bits"] <= TARGET["core"]["synapse_memory_bits"]
        assert c["axons_in"] <= TARGET["core"]["axons_in"]


def _wide_model():
    torch.manual_seed(0)
    m = nn.Sequential(OrderedDict([("fc1", nn.Linear(3000, 2500)), ("lif", CubaLIF((2500,))),
                                   ("fc2", nn.Linear(2500, 10)), ("readout", Integrator((10,)))]))
    x = (np.random.default_rng(0).random((2, 8, 3000)) < 0.3).astype(np.float32)  # [T, N, 3000] spikes
    g = trace(m, (3000,), num_steps=2, input_encoding="spikes")
    return Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=x, num_steps=2))


def test_max_cores_reports_limit_and_shortfall():
    q = _wide_model()
    need = len(compile_graph(q, TARGET)[0]["cores"])
    with pytest.raises(rules.DesignRuleError) as e:
        compile_graph(q, TARGET, max_cores=2)
    msg = str(e.value)
    assert "[MAX_CORES]" in msg and "limit is 2" in msg and f"needs {need} cores" in msg
    assert f"short by {need - 2} cores" in msg


def test_subtractive_reset_and_fan_in_violations_all_reported():
    torch.manual_seed(0)
    m = nn.Sequential(OrderedDict([("fc1", nn.Linear(5000, 4)), ("lif", CubaLIF((4,), reset="subtract")),
                                   ("fc2", nn.Linear(4, 2)), ("readout", Integrator((2,)))]))
    x = (np.random.default_rng(0).random((2, 8, 5000)) < 0.3).astype(np.float32)
    g = trace(m, (5000,), num_steps=2, input_encoding="spikes")
    q = Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=x, num_steps=2))
    with pytest.raises(rules.DesignRuleError) as e:
        compile_graph(q, TARGET)
    broken = {v.rule for v in e.value.violations}
    assert {"RESET_MODE", "GROUP_FAN_IN", "CORE_AXONS_IN"} <= broken
    fan = [v for v in e.value.violations if v.rule == "GROUP_FAN_IN"][0]
    assert 4096 < fan.value <= 5000 and fan.limit == 4096  # sources with a non-zero 8-bit weight


def test_unquantized_graph_is_refused(tiny):
    from snnc.backends.loihi.compile import NotQuantizedError
    g = trace(tiny, (1, 8, 8), num_steps=4)
    with pytest.raises(NotQuantizedError, match="quantize"):
        compile_graph(g, TARGET)


def test_backend_reads_the_mantissas_quantize_chose(tiny):
    """Issue 16, defect 5: the backend takes the integer weights from the quantize pass's QuantFormat
    (never rounds float weights again) and refuses a graph whose weights changed after quantize."""
    from snnc.backends.loihi.compile import NotQuantizedError
    from snnc.ir.quant import QuantFormat
    q = Pipeline("fold_bn,quantize").run(trace(tiny, (1, 8, 8), num_steps=4), PassContext(target=TARGET, num_steps=4))
    cfg, arrays, _ = compile_graph(q, TARGET)
    onchip = [(g["name"], i, p) for g in cfg["groups"] for i, p in enumerate(g["projections"]) if not p["host"]]
    assert onchip
    for gname, i, p in onchip:
        node = next(n for n, nd in q.nodes.items() if (nd.metadata or {}).get("snnc.quant", {}).get("group") == gname
                    and "mantissa" in nd.metadata["snnc.quant"])
        np.testing.assert_array_equal(arrays[f"{gname}.p{i}.weight"], QuantFormat.of(node, q.nodes[node]).mantissa)
    node = next(n for n, nd in q.nodes.items() if "mantissa" in (nd.metadata or {}).get("snnc.quant", {}))
    q.nodes[node].weight = q.nodes[node].weight * np.float32(1.01)  # edited after quantize
    with pytest.raises(NotQuantizedError, match="not the mantissas the quantize pass chose"):
        compile_graph(q, TARGET)


def test_bundled_model_maps_and_compiles_close_to_float(bundled, fmnist):
    from snnc.frontend import load_model
    xtr, _, xte, yte = fmnist
    g, m, info = load_model(bundled)
    q = Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=xtr, num_steps=8))
    cfg, arrays, viol = compile_graph(q, TARGET)
    assert viol == [] and len(cfg["cores"]) <= TARGET["chip"]["cores"]
    res = Program(cfg, arrays, TARGET).run(xte[:200])
    from snnc.neurons import run_float
    with torch.no_grad():
        fl = run_float(m, torch.from_numpy(xte[:200]), 8)[-1].argmax(1).numpy()
    comp = res.scores().argmax(1)
    assert (comp == fl).mean() > 0.95
    assert abs((comp == yte[:200]).mean() - (fl == yte[:200]).mean()) <= 0.03


def test_recurrent_braille_fixture_compiles_and_tracks_float(nir_fixtures):
    """A foreign, recurrent NIR graph (snnTorch CubaLIF, spike input) through passes, mapping and simulation."""
    from snnc.frontend import load_model
    g, _, info = load_model(nir_fixtures / "braille_noDelay_noBias_subtract.nir", dt=1e-4)
    assert g.metadata["snnc.input_encoding"] == "spikes"
    T = 40
    g.metadata["snnc.num_steps"] = T
    rng = np.random.default_rng(0)
    calib = (rng.random((T, 64, 12)) < 0.3).astype(np.float32)
    q = Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=calib, num_steps=T))
    cfg, arrays, viol = compile_graph(q, TARGET)
    rec = [p for gg in cfg["groups"] for p in gg["projections"] if p["recurrent"]]
    assert viol == [] and len(rec) == 1 and rec[0]["delay"] == 0
    x = (rng.random((T, 32, 12)) < 0.3).astype(np.float32)
    res = Program(cfg, arrays, TARGET).run(x)
    fq, recs = run_graph(q, x, None, record=("lif1.lif", "lif2"))
    for name in ("lif1.lif", "lif2"):
        sim_total = res.spikes[name].sum().item()
        flt_total = recs[name].sum().item()
        assert flt_total > 0 and abs(sim_total - flt_total) <= 0.1 * flt_total


def test_packed_core_memory_uses_the_core_index_width():
    """Slices packed onto one core address all of its neurons: memory is counted with that index width
    (discrete format: one synapse list per source neuron)."""
    x = digits_batch(64, seed=2)
    _, _, (cfg, arrays, _) = _compiled(TinySNN(channels=8), x, formats="discrete")
    assert len(cfg["cores"]) == 1 and cfg["cores"][0]["neurons"] == 618
    from snnc.backends.loihi.sim import slice_counts_for
    fmt = TARGET["synapse_format"]
    counts = slice_counts_for(Program(cfg, arrays, TARGET))
    want = sum(int(M.axon_bits(c[0], 8 + M.index_bits(618, fmt), fmt).sum())
               for per_proj in counts.values() for c in per_proj.values())
    assert cfg["cores"][0]["memory_bits"] == want


def test_direct_input_with_current_memory_tracks_float():
    """tau_syn > dt: the host writes the ramping bias, so the chip follows the quantized float graph."""
    x = digits_batch(200, seed=4)
    g, q, (cfg, arrays, _) = _compiled(TinySNN(tau_syn=3e-3), x)
    res = Program(cfg, arrays, TARGET).run(x)
    fq, rec = run_graph(q, x, 6, record=("lif1",))
    assert (res.scores().argmax(1) == fq[-1].numpy().argmax(1)).mean() > 0.95
    sim1, flt1 = res.spikes["lif1"].sum().item(), rec["lif1"].sum().item()
    assert abs(sim1 - flt1) <= 0.05 * flt1


def test_slow_leak_stays_finite():
    torch.manual_seed(0)
    m = nn.Sequential(OrderedDict([("fc", nn.Linear(4, 3)), ("lif", CubaLIF((3,), tau_mem=20.0)),
                                   ("out", nn.Linear(3, 2)), ("readout", Integrator((2,)))]))
    x = np.random.default_rng(0).random((16, 4)).astype(np.float32)
    g = trace(m, (4,), num_steps=4)
    q = Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=x, num_steps=4))
    assert q.nodes["lif"].metadata["snnc.quant"]["dv"] == 1
    assert np.all(np.isfinite(q.nodes["lif"].tau_mem)) and np.all(np.isfinite(q.nodes["lif"].r))


def test_partial_flatten_before_linear_is_refused():
    m = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3, padding=1)), ("lif", CubaLIF()),
                                   ("flat", nn.Flatten(2)), ("fc", nn.Linear(16, 3)), ("readout", Integrator())]))
    g = trace(m, (1, 4, 4), num_steps=2)
    from snnc.ir import UnsupportedNodeError
    with pytest.raises(UnsupportedNodeError, match="'fc'.*2-D input"):
        Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, num_steps=2))


def test_program_checks_spike_input():
    rng = np.random.default_rng(4)
    layers = [((2 * rng.integers(-30, 128, size=(6, 5))).astype(np.int64), 0, 4095, 400, np.zeros(6, np.int64), 100)]
    cfg, arrays = _hand_config(layers, 5, 10)
    prog = Program(cfg, arrays, TARGET)
    with pytest.raises(ValueError, match="takes"):
        prog.run(np.zeros((9, 2, 5), np.float32))
    with pytest.raises(ValueError, match="only 0 and 1"):
        prog.run(np.full((10, 2, 5), 3.0, np.float32))


def test_per_neuron_time_constants_are_compartment_profiles(tmp_path):
    """Neurons of one group with different taus get their own du/dv (``<g>.du``/``<g>.dv`` per neuron, one
    compartment profile per distinct pair): each neuron's spikes and voltages equal, step by step, those of the
    same network compiled with that neuron's tau for the whole group (r = tau/dt keeps the weights and the scale
    equal); more than 32 distinct profiles on one core is a CORE_COMPARTMENT_PROFILES violation; the Lava engine
    and netx writer refuse per-neuron decays by name."""
    import nir
    import snnc
    from snnc.backends.lava.engine import LavaMappingError, check_lava_form
    from snnc.backends.loihi.rules import DesignRuleError
    from snnc.backends.loihi.sim import load_program

    def graph(taus):
        rng = np.random.default_rng(0)
        n = len(taus)
        return nir.NIRGraph.from_list(nir.Affine(rng.normal(0.3, 1, (n, 6)), np.zeros(n)),
                                      nir.LIF(tau=np.asarray(taus, float), r=np.asarray(taus, float) / 1e-3,
                                              v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), v_reset=np.zeros(n)))
    x = (np.random.default_rng(2).random((12, 100, 6)) < 0.4).astype(np.float32)
    taus = np.repeat([2e-3, 4e-3, 8e-3], 4)
    runs = {}
    for key, t in (("mixed", taus), (2e-3, np.full(12, 2e-3)), (4e-3, np.full(12, 4e-3)), (8e-3, np.full(12, 8e-3))):
        snnc.compile(graph(t), num_steps=12, out_dir=tmp_path / str(key), dt=1e-3, semantics="nir")
        prog = load_program(tmp_path / str(key))
        runs[key] = (prog, prog.run(x, batch_size=100, record=True).trace["lif"])
    prog, mixed = runs["mixed"]
    assert sorted(set(zip(prog.arrays["lif.du"].tolist(), prog.arrays["lif.dv"].tolist()))) == \
        [(4095, 512), (4095, 1024), (4095, 2048)] and prog.config["groups"][0]["per_neuron_decays"]
    for i, t in enumerate(taus):
        tr = runs[t][1]
        assert torch.equal(mixed["spikes"][..., i], tr["spikes"][..., i]) and torch.equal(mixed["v"][..., i], tr["v"][..., i])
    assert sum(int(mixed["spikes"][..., i].sum()) for i in range(12)) > 1000
    with pytest.raises(LavaMappingError, match="per-neuron time constants"):
        check_lava_form(prog.config)
    with pytest.raises(DesignRuleError, match=r"CORE_COMPARTMENT_PROFILES.*40 distinct compartment parameter sets > 32"):
        snnc.compile(graph(np.linspace(2e-3, 60e-3, 40)), num_steps=12, out_dir=tmp_path / "many", dt=1e-3,
                     semantics="nir")
    assert not (tmp_path / "many").exists()
