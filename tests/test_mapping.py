"""Mapping onto cores (issue 9): shared-weight population formats, counts against a hand count and a
synapse-by-synapse enumeration, packing against the lower bound, multi-chip placement, --max-chips."""
import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from snnc.backends.loihi import mapping as M
from snnc.backends.loihi import rules
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.energy import measure
from snnc.backends.loihi.validate import check_program
from snnc.errors import SnncError
from snnc.ir.ops import apply_ops, synapse_counts
from snnc.backends.loihi.sim import Program, slice_counts_for
from snnc.frontend import load_model, trace
from snnc.neurons import CubaLIF, Integrator
from snnc.passes import PassContext, Pipeline
from snnc.targets import load_target

from conftest import TinySNN, digits_batch

TARGET = load_target("loihi-sim")
FMT = TARGET["synapse_format"]
LIM = TARGET["core"]


def _quantized(model, in_shape, T, calib=None, encoding="direct"):
    g = trace(model, in_shape, num_steps=T, input_encoding=encoding)
    return Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=calib, num_steps=T))


def _within_limits(cfg):
    for c in cfg["cores"]:
        assert c["neurons"] <= LIM["neurons"] and c["axons_in"] <= LIM["axons_in"], c
        assert c["axons_out"] <= LIM["axons_out"] and c["memory_bits"] <= LIM["synapse_memory_bits"], c
        assert c["chip"] == c["core"] // TARGET["chip"]["cores"]


# ------------------------------------------------------------------ counts
CONV = {"op": "conv2d", "node": "c", "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1}


def test_hand_count_small_conv():
    """2 input channels x 4x4 -> 3x3 conv (padding 1) -> 3 channels x 4x4, all weights non-zero, 48 target
    neurons on one core (index 6 bits, 8-bit weights: 14 bits per synapse). Per axis a source row reaches
    2 (first/last) or 3 (middle) target rows, so each source pixel reaches 4 (corner), 6 (edge) or 9
    (interior) positions x 3 channels.

    discrete: 32 axons (one per source neuron); lists of 12 / 18 / 27 synapses -> 12*14+10 = 178 -> 192,
    262 -> 320, 388 -> 448 bits; per channel 4*192 + 8*320 + 4*448 = 5,120; x2 = 10,240 bits.
    population (pop32, atoms = 2 channels): 16 axons (one per pixel); one entry per distinct set of valid
    taps: 3 row variants x 3 column variants = 9 entries (middle rows and columns share theirs), each
    2 atoms x targets: corners 2*12 = 24 synapses -> 24*14+10 = 346 -> 384 bits, edges 36 -> 514 -> 576,
    interior 54 -> 766 -> 768: 4*384 + 4*576 + 768 = 4,608 bits, 4*24 + 4*36 + 54 = 294 stored synapses.
    Connections: 2 channels x 100 (source pixel, target position) pairs x 3 = 600."""
    w = np.ones((3, 2, 3, 3))
    pc = M.ProjCounter({"source_shape": [2, 4, 4], "ops": [CONV]}, w, (3, 4, 4), 3, 2)
    st = pc.stats(0, 0, 16)
    assert st.synapses == 600
    assert st.axons == {"discrete": 32, "population": 16}
    assert pc.memory(st, "discrete", 14, FMT) == (10240, 600)
    assert pc.memory(st, "population", 14, FMT, offset=0, unit_neurons=3) == (4608, 294)
    # the same entries from compartment 250 on: targets past 256 need their own copy of a pattern
    bits, stored = pc.memory(st, "population", 14, FMT, offset=250, unit_neurons=3)
    assert bits > 4608 and stored > 294


def _enumerate(src_shape, ops, weight, tgt_shape, order, start, stop, bpw, offset, atoms):
    """Every synapse one by one (probing each source neuron through the ops), then nengo-loihi's rules:
    discrete = one list per source; population = one entry per distinct (atom block, targets relative to
    the first, 256-compartment block of the base, weight matrix)."""
    n = int(np.prod(src_shape))
    eye = torch.eye(n, dtype=torch.float64).reshape((n,) + tuple(src_shape))
    y = apply_ops(eye, ops, torch.as_tensor(weight, dtype=torch.float64)).reshape(n, -1).numpy()
    pos = np.empty(y.shape[1], np.int64)
    pos[order] = np.arange(len(order))
    s, t = np.nonzero(y)
    local = pos[t] - start
    keep = (local >= 0) & (local < stop - start)
    s, local, w = s[keep], local[keep], y[np.nonzero(y)][keep]

    def bits(k):
        return sum(-(-(min(64, k - i) * bpw + 10) // 64) * 64 for i in range(0, k, 64))

    _, cnt = np.unique(s, return_counts=True)
    out = {"synapses": len(s), "discrete_axons": len(cnt), "discrete_bits": sum(bits(int(c)) for c in cnt)}
    if atoms:
        c, h, wd = src_shape if len(src_shape) == 3 else (src_shape[0], 1, 1)   # 1-D: consecutive neurons
        pops: dict = {}
        for si, li, wi in zip(s, local, w):
            ch, px = divmod(int(si), h * wd)
            pops.setdefault((ch // atoms, px), []).append((ch % atoms, int(li), wi))
        entries, tot, stored = set(), 0, 0
        for (js, _), lst in pops.items():
            targets = sorted({li for _, li, _ in lst})
            mat = np.zeros((min(atoms, c - js * atoms), len(targets)))
            col = {li: k for k, li in enumerate(targets)}
            for a, li, wi in lst:
                mat[a, col[li]] = wi
            key = (js, tuple(li - targets[0] for li in targets), (offset + targets[0]) // 256, mat.tobytes())
            if key not in entries:
                entries.add(key)
                tot += bits(mat.size)
                stored += mat.size
        out.update(pop_axons=len(pops), pop_bits=tot, pop_stored=stored)
    return out


POOL2 = {"op": "sum_pool2d", "kernel": [2, 2]}
FLAT = {"op": "flatten", "start_dim": 0, "end_dim": -1}


@pytest.mark.parametrize("case", [
    # source, ops, weight shape, target shape, target block, source atoms, unit ranges, core offset
    ((3, 8, 8), [CONV], (8, 3, 3, 3), (8, 8, 8), 8, 3, [(0, 0, 64), (0, 5, 45), (0, 17, 18)], 0),
    ((3, 8, 8), [CONV], (8, 3, 3, 3), (8, 8, 8), 8, 3, [(0, 5, 45)], 200),
    ((4, 16, 16), [POOL2, dict(CONV, stride=[2, 2])], (6, 4, 4, 4), (6, 4, 4), 6, 4, [(0, 0, 16), (0, 3, 11)], 0),
    ((4, 6, 6), [CONV], (8, 4, 3, 3), (8, 6, 6), 3, 2, [(0, 0, 36), (1, 4, 20), (2, 10, 36)], 0),
    ((4, 7, 7), [dict(CONV, padding=[2, 2], dilation=[2, 2], groups=2)], (6, 2, 3, 3), (6, 7, 7), 6, 4,
     [(0, 0, 49), (0, 10, 30)], 0),
    ((5, 4, 4), [POOL2, FLAT, {"op": "dense", "node": "f"}], (7, 20), (7,), None, 5, [(0, 0, 7), (0, 2, 5)], 0),
    ((30,), [{"op": "dense", "node": "f"}], (12, 30), (12,), None, None, [(0, 0, 12), (0, 5, 9)], 0),
    ((30,), [{"op": "dense", "node": "f"}], (12, 30), (12,), None, 8, [(0, 0, 12), (0, 5, 9)], 0),
])
def test_counts_equal_synapse_by_synapse_enumeration(case):
    src, ops, wshape, tgt, tblock, atoms, ranges, offset = case
    rng = np.random.default_rng(len(ranges) + offset)
    w = rng.integers(1, 100, size=wshape) * rng.choice([-1, 1], size=wshape)
    w[rng.random(wshape) < 0.15] = 0
    pc = M.ProjCounter({"source_shape": list(src), "ops": ops}, w != 0, tgt, tblock, atoms)
    order, starts = M.neuron_order(tgt, tblock), M.block_starts(tgt, tblock)
    for j, q0, q1 in ranges:
        bs = M.block_size(tgt, tblock, j)
        ref = _enumerate(src, ops, w, tgt, order, starts[j] + q0 * bs, starts[j] + q1 * bs, 18, offset, atoms)
        st = pc.stats(j, q0, q1)
        got = {"synapses": st.synapses, "discrete_axons": st.axons["discrete"],
               "discrete_bits": pc.memory(st, "discrete", 18, FMT)[0]}
        if atoms:
            b, s = pc.memory(st, "population", 18, FMT, offset, bs)
            got.update(pop_axons=st.axons["population"], pop_bits=b, pop_stored=s)
        assert got == ref, (j, q0, q1)


@pytest.mark.parametrize("case", [
    # source, conv, weight shape, target shape, padding, target block, source atoms, unit ranges, core offset
    ((4, 6, 6), CONV, (8, 4, 3, 3), (8, 6, 6), (1, 1, 1, 1), 8, 4, [(0, 0, 64), (0, 8, 40), (0, 0, 9)], 0),
    ((4, 6, 6), CONV, (6, 4, 3, 3), (6, 6, 6), (1, 1, 1, 1), 3, 2, [(1, 0, 64), (0, 17, 50)], 200),
    ((3, 5, 5), dict(CONV, padding=[2, 2], dilation=[2, 2]), (4, 3, 3, 3), (4, 5, 5), (2, 2, 2, 2), 4, 3,
     [(0, 0, 81)], 0),
    # grouped: an atom block reaches only its group's channels, so an entry's base is at a later channel
    ((8, 6, 6), dict(CONV, groups=8), (8, 1, 3, 3), (8, 6, 6), (1, 1, 1, 1), 8, 2, [(0, 0, 64)], 100),
    ((4, 6, 6), dict(CONV, groups=2), (4, 2, 3, 3), (4, 6, 6), (1, 1, 1, 1), 4, 2, [(0, 0, 64), (0, 9, 40)], 230),
])
def test_padded_counts_equal_synapse_by_synapse_enumeration(case):
    """A padded target layout (Placer's padded conv layout): discrete lists, connections and axons count
    real targets only (the same as the unpadded layout on the same real neurons); population entries
    address every position of the padded grid, planar on the core, one entry per distinct (atom block,
    relative targets, 256-compartment block of the base, weights) -- counted synapse by synapse."""
    src, conv, wshape, tgt, pad, tblock, atoms, ranges, offset = case
    assert M.conv_padding({"source_shape": list(src), "ops": [conv]}, wshape[2:], tgt) == pad
    rng = np.random.default_rng(7)
    w = rng.integers(1, 100, size=wshape) * rng.choice([-1, 1], size=wshape)
    w[rng.random(wshape) < 0.15] = 0
    proj = {"source_shape": list(src), "ops": [conv]}
    pc = M.ProjCounter(proj, w != 0, tgt, tblock, atoms, pad)
    plain = M.ProjCounter(proj, w != 0, tgt, tblock, atoms)
    ptgt = M.padded_shape(tgt, pad)
    real = np.zeros(ptgt[1] * ptgt[2], np.int64)
    real[M.real_positions(tgt, pad)] = 1
    rc = np.concatenate([[0], np.cumsum(real)])
    # the padded grid as a convolution's output: the padding widened by the layout's
    wide = dict(conv, padding=[conv["padding"][0] + pad[0], conv["padding"][1] + pad[2]])
    n = int(np.prod(src))
    eye = torch.eye(n, dtype=torch.float64).reshape((n,) + tuple(src))
    y = apply_ops(eye, [wide], torch.as_tensor(w, dtype=torch.float64)).numpy()   # [n, C, Hp, Wp]
    assert y.shape[1:] == ptgt
    taps = y != 0   # the (source, target) pairs the layout holds: padding included
    for j, q0, q1 in ranges:
        bs = M.block_size(tgt, tblock, j)
        c0 = j * tblock
        st = pc.stats(j, q0, q1)
        ref_plain = plain.stats(j, int(rc[q0]), int(rc[q1]))
        assert st.synapses == ref_plain.synapses and st.axons["discrete"] == ref_plain.axons["discrete"]
        assert pc.memory(st, "discrete", 18, FMT) == plain.memory(ref_plain, "discrete", 18, FMT)
        m = q1 - q0
        entries, tot, stored, axons = set(), 0, 0, 0
        for js in range(0, src[0], atoms):
            for px in range(src[1] * src[2]):
                sidx = [(js + a) * src[1] * src[2] + px for a in range(min(atoms, src[0] - js))]
                tg, has_real = [], False
                for c in range(bs):
                    for q in range(q0, q1):
                        if taps[sidx, c0 + c].reshape(len(sidx), -1)[:, q].any():
                            tg.append((c * m + (q - q0), c, q))
                            has_real |= bool(real[q]) and bool(y[sidx, c0 + c].reshape(len(sidx), -1)[:, q].any())
                if not tg or not has_real:
                    continue
                axons += 1
                tg.sort()
                mat = np.array([[y[s, c0 + c].reshape(-1)[q] for _, c, q in tg] for s in sidx])
                key = (js, tuple(t[0] - tg[0][0] for t in tg), (offset + tg[0][0]) // 256, mat.tobytes())
                if key not in entries:
                    entries.add(key)
                    tot += sum(-(-(min(64, mat.size - i) * 18 + 10) // 64) * 64 for i in range(0, mat.size, 64))
                    stored += mat.size
        assert st.axons["population"] == axons, (j, q0, q1)
        assert pc.memory(st, "population", 18, FMT, offset, 1) == (tot, stored), (j, q0, q1)
    whole = pc.stats(0, 0, ptgt[1] * ptgt[2])
    if offset == 0 and tblock == tgt[0]:  # a whole padded block: every kernel weight stored once
        assert pc.memory(whole, "population", 18, FMT, 0, 1)[1] == int(np.prod(wshape))


def test_slice_counts_equal_autograd_counting():
    """The engine's per-slice, per-source counts (energy's SynOps and messages) equal counting through
    the ops with autograd."""
    x = digits_batch(32, seed=3)
    q = _quantized(TinySNN(channels=8), (1, 8, 8), 4, x)
    cfg, arrays, _ = compile_graph(q, TARGET)
    for g in cfg["groups"]:
        chip = [p for p in g["projections"] if not p["host"]]
        mws = [torch.as_tensor((arrays[p["weight_key"]] != 0).astype(np.float32)) for p in chip]
        bounds = [(s["start"], s["stop"]) for s in g["slices"]]
        fast = M.count_slices(g, chip, mws, bounds)
        masks = M.slice_masks(tuple(g["shape"]), M.neuron_order(tuple(g["shape"]), g.get("channel_block")), bounds)
        for i, (p, mw) in enumerate(zip(chip, mws)):
            ref = synapse_counts(p["ops"], mw, p["source_shape"], tuple(g["shape"]), masks)
            assert torch.equal(fast[i], ref)


# ------------------------------------------------------------------ same results, fewer cores
def _both_formats(q, x):
    """``(config, result, measure)`` of ``q`` compiled with discrete formats and with auto, each simulated on ``x``;
    both within every limit."""
    runs = []
    for fm in ("discrete", "auto"):
        cfg, arrays, viol = compile_graph(q, TARGET, formats=fm)
        assert viol == []
        _within_limits(cfg)
        prog = Program(cfg, arrays, TARGET)
        res = prog.run(x)
        runs.append((cfg, res, measure(prog, res, slice_counts_for(prog))))
    return runs


def test_population_format_gives_the_same_outputs_and_synops():
    x = digits_batch(120, seed=5)
    q = _quantized(TinySNN(channels=8), (1, 8, 8), 5, x)
    (cd, rd, md), (ca, ra, ma) = _both_formats(q, x)
    fmts = {g["name"]: [p["format"] for p in g["projections"] if not p["host"]] for g in ca["groups"]}
    assert fmts["lif2"] == ["population"] and all(p["format"] == "discrete" for g in cd["groups"]
                                                  for p in g["projections"] if not p["host"])
    assert all(torch.equal(rd.outputs[k], ra.outputs[k]) for k in ra.outputs)
    assert all(torch.equal(rd.spikes[k], ra.spikes[k]) for k in ra.spikes)
    assert md["per_inference"]["synops"] == ma["per_inference"]["synops"] > 0
    assert sum(c["synapses"] for c in cd["cores"]) == sum(c["synapses"] for c in ca["cores"])
    assert sum(c["memory_bits"] for c in ca["cores"]) < sum(c["memory_bits"] for c in cd["cores"])


def test_padded_layout_shares_border_kernels(monkeypatch):
    """Deep convolutions at 4x4 take the padded layout (one population entry per source block instead of one per set
    of valid taps): about half the cores of the same compile without it, the same simulated outputs and SynOps,
    every limit and emitted field checked (check_program), each core's compartments = its slices' (padding
    included), and the padding charged in the energy report."""
    from snnc.backends.loihi import placement as P
    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (16, 3, 32, 32)).astype(np.float32)
    model = _vgg((16, "M", 32, "M", 64, "M", 256, 256), 64)
    with torch.no_grad():   # weights that make every convolution's layer spike on these inputs
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.mul_(3.0)
                mod.bias.fill_(0.05)
    q = _quantized(model, (3, 32, 32), 4, x)
    runs = {}
    for padded in (True, False):
        if not padded:
            monkeypatch.setattr(P.Placer, "_pad_option", lambda self, gp: None)
        cfg, arrays, viol = compile_graph(q, TARGET)
        assert viol == []
        _within_limits(cfg)
        check_program(cfg, arrays, TARGET)
        prog = Program(cfg, arrays, TARGET)
        res = prog.run(x[:4])
        runs[padded] = (cfg, res, measure(prog, res, slice_counts_for(prog)))
        if padded:
            arrays_p = arrays
    (cp, rp, mp), (cu, ru, mu) = runs[True], runs[False]
    pads = {g["name"]: g.get("padding") for g in cp["groups"]}
    assert pads["lif4"] == pads["lif5"] == [1, 1, 1, 1] and not any(g.get("padding") for g in cu["groups"])
    assert len(cp["cores"]) < 0.6 * len(cu["cores"])
    lp, lu = cp["mapping"]["lower_bound"], cu["mapping"]["lower_bound"]   # axon terms follow the source blocks
    assert lp["cores"] == lu["cores"] and lp["totals"]["memory_bits"] == lu["totals"]["memory_bits"]
    held = [0] * len(cp["cores"])
    for g in cp["groups"]:
        for sl in g["slices"]:
            held[sl["core"]] += sl.get("compartments", sl["stop"] - sl["start"])
    assert held == [c["neurons"] for c in cp["cores"]]
    n_pad = sum(held) - sum(g["size"] for g in cp["groups"])
    assert n_pad > 0
    assert all(float(rp.spikes[g].sum()) > 0 for g in ("lif3", "lif4", "lif5"))
    assert all(torch.equal(rp.outputs[k], ru.outputs[k]) for k in ru.outputs)
    assert mp["per_inference"]["synops"] == mu["per_inference"]["synops"] > 0
    assert mp["per_inference"]["neuron_updates_padding"] == n_pad * rp.steps
    assert mu["per_inference"]["neuron_updates_padding"] == 0
    # the synaptic events into padding are charged on the chip (energy, time), not as SynOps
    ev = mp["per_inference"]["synaptic_events_padding"]
    assert ev > 0 and mu["per_inference"]["synaptic_events_padding"] == 0
    E = TARGET["energy_pJ"]["synop"]
    assert mp["energy"]["breakdown"]["synops_pJ"] == pytest.approx((mp["per_inference"]["synops"] + ev) * E)
    # a slice claiming padding compartments in a group without padding is refused
    bad = json.loads(json.dumps(cu))
    sl = bad["groups"][0]["slices"][0]
    sl["compartments"] = sl["stop"] - sl["start"] + 1
    bad["cores"][sl["core"]]["neurons"] += 1
    with pytest.raises(SnncError, match="compartments"):
        check_program(bad, arrays, TARGET)
    # padding beyond what the group's convolutions reach, all-zero padding, or more compartments than the grid
    gi = next(i for i, g in enumerate(cp["groups"]) if g.get("padding"))
    for pad, extra, msg in (([2, 2, 2, 2], 0, "within what its convolutions reach"),
                            ([0, 0, 0, 0], 0, "not all 0"), (None, 1, "more than its padded grid")):
        bad = json.loads(json.dumps(cp))
        g = bad["groups"][gi]
        if pad is not None:
            g["padding"] = pad
        for sl in g["slices"][:1]:   # `extra` compartments per unit of the slice
            more = extra * (sl["units"][1] - sl["units"][0])
            sl["compartments"] += more
            bad["cores"][sl["core"]]["neurons"] += more
        with pytest.raises(SnncError, match=msg):
            check_program(bad, arrays_p, TARGET, core_limits=False)


def test_input_axons_one_per_source_and_core():
    """Every core's input axons are one per (source neuron, core) for discrete axons and one per (source population,
    core) for population axons, however many pieces of a group the core holds (their entry lists the targets of
    all): recounted from the simulator's per-slice synapse counts. The model below puts several padded channel
    blocks of one group on a core."""
    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (16, 3, 32, 32)).astype(np.float32)
    q = _quantized(_vgg((16, "M", 32, "M", 64, "M", 256, 256), 64), (3, 32, 32), 4, x)
    cfg, arrays, viol = compile_graph(q, TARGET)
    assert viol == []
    prog = Program(cfg, arrays, TARGET)
    counts = slice_counts_for(prog)
    groups = {g["name"]: g for g in cfg["groups"]}
    want = [0] * len(cfg["cores"])
    shared = 0
    for g in cfg["groups"]:
        chip = [p for p in g["projections"] if not p["host"]]
        shared += sum(1 for c in {sl["core"] for sl in g["slices"]}
                      if sum(1 for s2 in g["slices"] if s2["core"] == c) > 1)
        for j, p in enumerate(chip):
            cnt = counts[g["name"]][j].numpy()                      # [slices, source neurons (C order)]
            for c in {sl["core"] for sl in g["slices"]}:
                rows = [k for k, sl in enumerate(g["slices"]) if sl["core"] == c]
                reach = cnt[rows].sum(0) > 0
                if p["format"] == "population":   # (C, H, W): a position of a channel block; 1-D: `atoms` neurons
                    src = groups[p["source"]]
                    C = src["shape"][0]
                    cb = src.get("channel_block", C) if len(src["shape"]) == 3 else p["atoms"]
                    r = reach.reshape(C, -1)
                    want[c] += int(sum(r[a:a + cb].any(0).sum() for a in range(0, C, cb)))
                else:
                    want[c] += int(reach.sum())
    assert shared > 0   # some core holds more than one piece of a group
    assert want == [c["axons_in"] for c in cfg["cores"]]


def test_one_d_sources_take_population_axons():
    """A 1-D layer with on-chip inputs feeding dense layers gets populations of consecutive neurons (its slices hold
    whole ones): the dense consumers take population axons, one output-axon slot pair per population and core
    instead of one slot per neuron and core, with the same simulated outputs and SynOps as discrete axons
    everywhere. (A host-driven layer fills gaps neuron by neuron and keeps discrete axons.)"""
    torch.manual_seed(0)
    mlp = nn.Sequential(OrderedDict([
        ("flat", nn.Flatten()), ("fc0", nn.Linear(64, 256)), ("lif0", CubaLIF((256,))),
        ("fc1", nn.Linear(256, 1024)), ("lif1", CubaLIF((1024,))),
        ("fc2", nn.Linear(1024, 1024)), ("lif2", CubaLIF((1024,))),
        ("fc3", nn.Linear(1024, 10)), ("readout", Integrator((10,)))])).eval()
    x = digits_batch(24, seed=2)
    q = _quantized(mlp, (1, 8, 8), 4, x)
    (cd, rd, md), (ca, ra, ma) = _both_formats(q, x)
    g2 = next(g for g in ca["groups"] if g["name"] == "lif2")
    p2 = next(p for p in g2["projections"] if not p["host"])
    assert p2["format"] == "population" and 1 < p2["atoms"] <= 1024
    g1 = next(g for g in ca["groups"] if g["name"] == "lif1")
    assert all(sl["start"] % p2["atoms"] == 0 for sl in g1["slices"])   # whole populations per slice
    assert all(torch.equal(rd.outputs[k], ra.outputs[k]) for k in ra.outputs)
    assert md["per_inference"]["synops"] == ma["per_inference"]["synops"] > 0
    assert sum(c["axons_out"] for c in ca["cores"]) < sum(c["axons_out"] for c in cd["cores"]) / 4
    assert len(ca["cores"]) <= len(cd["cores"])


# Cores the packer before issue 9 (bisection per group + next-fit, discrete synapses; commit 67c6683)
# needed, measured with `compile_graph(Pipeline("fold_bn,quantize").run(g, PassContext(target, num_steps=8)))`
# on the same graphs (no calibration data; zoo models with torch.manual_seed(0) random weights).
# fmnist_wide did not fit at all (GROUP_FAN_IN: its readout listens to 6,272 neurons).
BEFORE = {"fmnist_cnn": 48, "fmnist_res": 69, "fmnist_wide": None}


def _zoo(name):
    if name == "fmnist_cnn":
        from conftest import BUNDLED
        if not BUNDLED.is_file():
            pytest.skip("bundled checkpoint missing")
        g, _, _ = load_model(BUNDLED)
        return g
    from snnc.models import ARCHITECTURES
    torch.manual_seed(0)
    return trace(ARCHITECTURES[name]().eval(), (1, 28, 28), num_steps=8)


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_zoo_packing_within_bound_and_never_worse(name):
    q = Pipeline("fold_bn,quantize").run(_zoo(name), PassContext(target=TARGET, num_steps=8))
    cfg, _, viol = compile_graph(q, TARGET)
    assert viol == []
    _within_limits(cfg)
    n, lb = len(cfg["cores"]), cfg["mapping"]["lower_bound"]["cores"]
    assert lb <= n <= 1.1 * lb
    assert lb >= M.ceil_div(sum(g["size"] for g in cfg["groups"]), LIM["neurons"])
    if BEFORE[name] is not None:
        assert n <= BEFORE[name]
    if name == "fmnist_cnn":
        assert n <= BEFORE[name] // 2  # at most half the cores (48 before)


def test_discrete_cores_do_not_hinge_on_how_the_channel_count_divides():
    """fmnist_wide with lif2 pruned to 115 channels needs no more cores than with 120 (discrete axons;
    before blocks were also tried as ceil(C / n) for n = 1, 2, 4, ... blocks: 9 blocks of 13
    channels, 574 cores, against 497)."""
    import copy

    from snnc.models import path
    from snnc.passes.prune import prune

    g, _, _ = load_model(path("fmnist_wide"))
    ctx = PassContext(num_steps=8)
    base = Pipeline("fold_bn").run(g, ctx)
    cores = {}
    for k in (115, 120):
        gp = prune(copy.deepcopy(base), ctx, "l1", {"lif1": 64, "lif2": k})[0]
        q = Pipeline("quantize").run(gp, PassContext(target=TARGET, num_steps=8))
        cfg, _, _ = compile_graph(q, TARGET, raise_on_violation=False, formats="discrete")
        cores[k] = len(cfg["cores"])
        assert len(cfg["cores"]) <= 2 * cfg["mapping"]["lower_bound"]["cores"]
    assert cores[115] <= cores[120]


def test_readout_after_32_channel_14x14_conv_maps_with_population_axons():
    """6,272 source neurons into each readout neuron: more than the 4,096 input axons of a core with
    discrete axons (one per source neuron); population axons need one per source pixel (196)."""
    torch.manual_seed(0)
    m = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 32, 3, padding=1)), ("lif", CubaLIF((32, 14, 14))),
                                   ("flat", nn.Flatten()), ("fc", nn.Linear(6272, 10)), ("readout", Integrator((10,)))]))
    x = digits_batch(16, seed=1).repeat(2, axis=2).repeat(2, axis=3)[:, :, :14, :14]
    q = _quantized(m, (1, 14, 14), 4, x)
    cfg, arrays, viol = compile_graph(q, TARGET)
    assert viol == []
    _within_limits(cfg)
    ro = next(g for g in cfg["groups"] if g["name"] == "readout")
    p = ro["projections"][0]
    assert (p["format"], p["axon_type"], p["atoms"]) == ("population", "pop32", 32)
    assert p["synapses"] == int((arrays[p["weight_key"]] != 0).sum()) > 60000
    core = cfg["cores"][ro["slices"][0]["core"]]
    assert len(ro["slices"]) == 1 and core["axons_in"] == 196  # one axon per lif pixel (host-driven lif: none)
    _, _, viol_d = compile_graph(q, TARGET, formats="discrete", raise_on_violation=False)
    fan = [v for v in viol_d if v.rule == "GROUP_FAN_IN"]
    assert fan and fan[0].where == "readout" and 4096 < fan[0].value <= 6272  # sources with a non-zero weight
    res = Program(cfg, arrays, TARGET).run(x)
    assert res.scores().shape == (16, 10)


# ------------------------------------------------------------------ chips
def _two_chip_model():
    """Host-driven conv to 8 x 132 x 132 = 139,392 neurons (137 cores, more than one chip), a strided conv
    to 4 x 33 x 33 and a readout."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1)), ("lif1", CubaLIF((8, 132, 132), threshold=0.3)),
        ("conv2", nn.Conv2d(8, 4, 4, stride=4)), ("lif2", CubaLIF((4, 33, 33), threshold=0.3)),
        ("pool", nn.AvgPool2d(3)), ("flat", nn.Flatten()), ("fc", nn.Linear(484, 10)),
        ("readout", Integrator((10,)))]))


@pytest.fixture(scope="module")
def two_chips():
    x = np.random.default_rng(0).random((3, 1, 132, 132)).astype(np.float32)
    q = _quantized(_two_chip_model(), (1, 132, 132), 3, x)
    cfg, arrays, viol = compile_graph(q, TARGET)
    return q, cfg, arrays, viol, x


def test_multi_chip_assignment_and_inter_chip_messages(two_chips):
    q, cfg, arrays, viol, x = two_chips
    assert viol == []
    _within_limits(cfg)
    assert len(cfg["cores"]) > 128 and cfg["mapping"]["chips"] == 2
    assert {c["chip"] for c in cfg["cores"]} == {0, 1}
    assert 0 < cfg["mapping"]["inter_chip_routes"] < cfg["mapping"]["routes"]
    prog = Program(cfg, arrays, TARGET)
    res = prog.run(x)
    m = measure(prog, res, slice_counts_for(prog))
    a, e = m["per_inference"], m["energy"]
    assert 0 < a["inter_chip_spike_messages"] <= a["inter_core_spike_messages"] < a["spike_messages"]
    # two chips side by side: one boundary per inter-chip message, priced by [interchip], part of spike messages
    assert e["spike_messages_interchip_pJ"] == pytest.approx(a["inter_chip_spike_messages"] *
                                                             TARGET["interchip"]["energy_pJ"])
    assert e["breakdown"]["spike_messages_pJ"] > e["spike_messages_interchip_pJ"]
    assert e["per_inference_pJ"] == pytest.approx(sum(e["breakdown"].values()))
    lat = TARGET["latency_ns"]
    assert a["spike_message_latency_ns_max"] >= TARGET["interchip"]["latency_ns"] + lat["spike_in_tile"]


def test_max_chips_is_a_clear_design_rule_error(two_chips):
    q = two_chips[0]
    with pytest.raises(rules.DesignRuleError) as e:
        compile_graph(q, TARGET, max_chips=1)
    v = [x for x in e.value.violations if x.rule == "MAX_CHIPS"]
    assert v and v[0].value == 2 and v[0].limit == 1
    assert "needs 2 chips" in str(e.value) and "limit is 1 chip(s)" in str(e.value)


def test_report_shows_chips_and_the_bound(two_chips, tmp_path):
    from rich.console import Console

    from snnc.io.report import build_report, plot_utilisation, print_report
    _, cfg, _, _, _ = two_chips
    rep = build_report(cfg, TARGET)
    assert rep["totals"]["chips"] == 2 and rep["mapping"]["lower_bound"]["cores"] <= rep["totals"]["cores"]
    assert rep["totals"]["stored_synapses"] == sum(c["stored_synapses"] for c in rep["cores"])
    con = Console(record=True, width=160)
    print_report(rep, con)
    text = con.export_text()
    header = next(line for line in text.splitlines() if "groups" in line)
    assert header.split()[1] == "chip" and "lower bound" in text and "on 2 chip(s)" in text
    plot_utilisation(rep, tmp_path / "cores.png")
    assert (tmp_path / "cores.png").stat().st_size > 1000


# ------------------------------------------------------------------ quantize statistics (compile-time change)
def test_calibration_statistics_equal_the_recorded_maxima():
    """quantize keeps running maxima instead of recording every step: the same numbers as reducing the
    recorded tensors once."""
    from snnc.ir.lowering import lower
    from snnc.passes.quantize import calibration_stats
    from snnc.ir.reference import run_graph
    x = digits_batch(40, seed=7)
    g = Pipeline("fold_bn").run(trace(TinySNN(tau_syn=3e-3), (1, 8, 8), num_steps=5), PassContext(target=TARGET))
    low = lower(g)
    st = calibration_stats(g, low, PassContext(target=TARGET, calibration=x, num_steps=5), 5)
    rec = tuple(f"{n}#{v}" for n in low.groups for v in ("i", "v", "x"))
    _, r = run_graph(g, x, 5, record=rec, dtype=torch.float32)
    for n, grp in low.groups.items():
        node = g.nodes[n]
        a = float((r[f"{n}#x"].double() * torch.as_tensor(grp.weight_gain)).abs().max())
        u = a  # no current state: u is the per-step input
        if hasattr(node, "tau_syn"):
            gv = torch.as_tensor(grp.dt / np.asarray(node.tau_mem, np.float64) * np.asarray(node.r, np.float64))
            u = float((r[f"{n}#i"].double() * gv).abs().max())
        assert st[n] == {"a": a, "u": u, "v": float(r[f"{n}#v"].abs().max())}


def test_cli_max_chips(tmp_path):
    from click.testing import CliRunner

    from snnc.cli import main
    p = tmp_path / "m.pt"
    torch.save(_two_chip_model(), p)
    r = CliRunner().invoke(main, ["compile", str(p), "-o", str(tmp_path / "o"), "--trust-pickle", "--input-shape",
                                  "1,132,132", "--num-steps", "2", "--max-chips", "1"], catch_exceptions=False)
    assert r.exit_code == 1 and "[MAX_CHIPS] the model needs 2 chips" in r.stderr and "limit is 1 chip(s)" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("formats", ["auto", "discrete"])
def test_tiling_bound_between_the_weight_bound_and_the_cores(formats):
    """``mapping.tiling_bound`` (the least synaptic memory over the placer's tilings) counts the copies the formats
    force: at least the every-weight-once memory term, never more cores than the mapping found; discrete axons store
    each source's list per core, so their memory term is above the weight bound."""
    x = digits_batch(40, seed=3)
    q = _quantized(TinySNN(channels=16), (1, 8, 8), 4, x)
    cfg, _, viol = compile_graph(q, TARGET, formats=formats, tiling_bound=True)
    assert viol == []
    tb, lb = cfg["mapping"]["tiling_bound"], cfg["mapping"]["lower_bound"]
    assert tb["memory_bits"] >= lb["totals"]["memory_bits"] and tb["terms"]["memory"] >= lb["terms"]["memory"]
    assert lb["cores"] <= tb["bound_cores"] <= len(cfg["cores"])
    assert set(tb["groups"]) == {g["name"] for g in cfg["groups"] if any(not p["host"] for p in g["projections"])}
    if formats == "discrete":
        assert tb["memory_bits"] > lb["totals"]["memory_bits"]
    plain, _, _ = compile_graph(q, TARGET, formats=formats)
    assert "tiling_bound" not in plain["mapping"] and plain["cores"] == cfg["cores"]


def test_tiling_bound_tries_short_ranges_and_never_drops_below_the_weight_bound(monkeypatch):
    """A dense layer whose ranges of a whole 1/TILING_PIECES do not fit a core (fan-in 1,024, discrete): shorter ranges
    are tried, and the group's figure is at least its every-weight-once memory."""
    from snnc.backends.loihi import placement as P
    monkeypatch.setattr(P.Placer, "TILING_PIECES", 2)
    torch.manual_seed(0)
    m = nn.Sequential(OrderedDict([("fc1", nn.Linear(1024, 256)), ("lif", CubaLIF((256,))),
                                   ("fc2", nn.Linear(256, 10)), ("readout", Integrator((10,)))]))
    x = (np.random.default_rng(0).random((2, 8, 1024)) < 0.3).astype(np.float32)
    q = _quantized(m, (1024,), 2, x, encoding="spikes")
    cfg, _, _ = compile_graph(q, TARGET, formats="discrete", tiling_bound=True)
    tb, lb = cfg["mapping"]["tiling_bound"], cfg["mapping"]["lower_bound"]
    assert tb["groups"]["lif"]["units"] < 128 and tb["memory_bits"] >= lb["totals"]["memory_bits"]
    assert lb["cores"] <= tb["bound_cores"] <= len(cfg["cores"])


def _vgg(plan, hidden, num_classes=10):
    layers, c, hw, k = [], 3, 32, 0
    for v in plan:
        if v == "M":
            layers.append((f"pool{k}", nn.AvgPool2d(2)))
            hw //= 2
            continue
        k += 1
        layers += [(f"conv{k}", nn.Conv2d(c, v, 3, padding=1)), (f"lif{k}", CubaLIF((v, hw, hw)))]
        c = v
    layers += [("flatten", nn.Flatten()), ("fc", nn.Linear(c * hw * hw, hidden)), ("lif_fc", CubaLIF((hidden,))),
               ("out", nn.Linear(hidden, num_classes)), ("readout", Integrator((num_classes,)))]
    return nn.Sequential(OrderedDict(layers)).eval()


def test_backward_pass_chooses_source_blocks_for_their_output_axons(monkeypatch):
    """VGG-11's first 6 convolutions: with the consumers' blocks decided, lif4's and lif5's blocks are revisited for the
    output-axon slots their populations need (Placer.choose_formats, backward); fewer cores, every limit kept, the
    weight bound unchanged. Padded layouts are switched off here: with them the same layers need about 240 cores
    either way (test_padded_layout_shares_border_kernels)."""
    from snnc.backends.loihi import placement as P
    monkeypatch.setattr(P.Placer, "_pad_option", lambda self, gp: None)
    torch.manual_seed(0)
    q = _quantized(_vgg((64, "M", 128, "M", 256, 256, "M", 512, 512, "M"), 256), (3, 32, 32), 4)
    cores = {}
    for rounds in (0, P.Placer.BACKWARD_ROUNDS):
        monkeypatch.setattr(P.Placer, "BACKWARD_ROUNDS", rounds)
        cfg, _, viol = compile_graph(q, TARGET)
        assert viol == []
        _within_limits(cfg)
        cores[rounds] = (len(cfg["cores"]), cfg["mapping"]["lower_bound"]["cores"])
    (before, lb0), (after, lb1) = cores[0], cores[P.Placer.BACKWARD_ROUNDS]
    assert lb0 == lb1 and after < 0.9 * before
