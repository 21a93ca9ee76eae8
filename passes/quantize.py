"""``quantize``: weights, thresholds, decays and biases to Loihi fixed-point fields.

For each neuron group (see :mod:`snnc.groups`) a float->integer voltage scale
``s`` is chosen (v_int = s * v_float) and then, with the target's formats
(``[fixed_point]`` of ``loihi-sim.toml``; lava-nc ``AbstractPyLifModelFixed``)::

    vThMant  = round(s * v_th / 2^6)                  17-bit unsigned (vth_eff = vThMant << 6)
               (threshold_op ">=": vThMant = floor((s v_th - 1) / 2^6) and s = (vThMant 2^6 + 1) / v_th,
                so integer v >= s v_th is exactly v > vth_eff)
    du       = round(4096 * dt / tau_syn) - 1         12-bit (ds_offset = 1: du = 4095 -> no current memory)
    dv       = round(4096 * dt / tau_mem)             12-bit (dv = 0 -> no leak)
    weights  q = W * s / 2^(6 + weight_exp), even integers in [-256, 254]   (6 = act_shift)
             (8-bit mixed-sign: lava truncates one LSB), one weight_exp in -7..7 per projection
    bias     s * b = bias_mant << bias_exp, 13-bit signed mantissa, bias_exp 0..7

``s`` is the largest value that keeps every field in range: the largest
weight fits the mantissa at weight_exp = 7, the largest bias fits at
bias_exp = 7, for spiking groups vth_eff <= 2^21 (a quarter of the 24-bit
voltage range), for non-spiking readouts the largest voltage seen on the
calibration data (times ``headroom``) stays below vth_eff at vThMant = 131071,
so a readout never fires, the largest current u (times ``headroom``) stays
inside its 24 bits (u accumulates up to 1/(1 - alpha) times the per-step input
when tau_syn > dt), and the largest per-step synaptic input (times
``headroom``) fits Loihi's 16-bit dendritic input. Host-computed biases of a
direct input get the same headroom over their calibration maximum. Without
calibration data worst-case bounds are used (inputs assumed in [-1, 1]).

The pass is "fake quantization" on the NIR graph: weights, thresholds, decays
and biases are replaced by the values the integers represent, so the float
graph runs the quantized model, and each node's ``metadata["snnc.quant"]``
records the formats (scale, vThMant, du, dv, weight_exp, bias exponent) that
the loihi backend reads instead of re-deriving them. Biases of on-chip
projections move into the neuron node's ``v_leak`` (where it has one).
Direct analog input (graph metadata ``snnc.input_encoding = "direct"``) is
computed by the host and written as a per-sample bias; its weights stay float.
"""
from __future__ import annotations

import math

import nir
import numpy as np
import torch

from snnc.groups import Group, Lowered, lower, prepare_graph
from snnc.ir import NEURON_TYPES
from snnc.passes.manager import PassContext, register
from snnc.targets import load_target



def weight_step(weight_bits: int) -> int:
    """Spacing of representable mixed-sign weights for ``weight_bits`` (lava truncate_weights)."""
    if not 1 <= weight_bits <= 8:
        raise ValueError(f"weight_bits must be 1..8, got {weight_bits}")
    return 2 ** (8 - weight_bits + 1)


def quantize_weights(w: np.ndarray, scale: float, fp: dict, weight_bits: int) -> tuple[np.ndarray, int]:
    """Float composite weights -> (even int weights in [-256, 254], weight_exp).

    weight_exp is the smallest exponent in [weight_exp_min, weight_exp_max]
    with ``max|w| * scale / 2^(6+e) <= 254``.
    """
    m = float(np.abs(w).max()) if w.size else 0.0
    qmax = 256 - weight_step(weight_bits)
    if m == 0:
        return np.zeros(w.shape, np.int32), 0
    e = math.ceil(math.log2(m * scale / (2 ** fp["act_shift"] * qmax)) - 1e-12)
    e = int(min(max(e, fp["weight_exp_min"]), fp["weight_exp_max"]))
    step = weight_step(weight_bits)
    q = step * np.rint(w * scale / 2 ** (fp["act_shift"] + e) / step)
    return np.clip(q, -256, qmax).astype(np.int32), e


def split_bias(b_int: np.ndarray, fp: dict) -> tuple[np.ndarray, int]:
    """Integer biases -> (mantissa int32, exponent): smallest exp in 0..bias_exp_max that fits 13 bits."""
    mmax = 2 ** (fp["bias_mant_bits"] - 1) - 1
    m = float(np.abs(b_int).max()) if np.size(b_int) else 0.0
    e = 0
    while m / 2 ** e > mmax and e < fp["bias_exp_max"]:
        e += 1
    mant = np.clip(np.rint(np.asarray(b_int, np.float64) / 2 ** e), -mmax - 1, mmax).astype(np.int32)
    return mant, e


def decays(g: Group, fp: dict) -> tuple[int, int]:
    one = 2 ** fp["decay_bits"]  # decay_unity (lava: 2**12)
    du = np.rint(one * (1 - g.alpha)) - fp["ds_offset"]
    dv = np.rint(one * (1 - g.beta)) - fp["dm_offset"]
    if np.ptp(du) or np.ptp(dv):
        raise ValueError(f"group {g.name!r}: per-neuron time constants differ; loihi-sim has one du/dv per group")
    # a leaky neuron keeps at least the smallest leak (dv = 1): dv = 0 would need tau_mem = inf, which
    # NIR's r = tau_mem/dt parametrisation cannot hold (tau_mem >= 8192 dt rounds there)
    dv_min = 1 if np.all(g.beta < 1) else 0
    return int(np.clip(du.flat[0], 0, one - 1)), int(np.clip(dv.flat[0], dv_min, one - 1))


def _host_values(g: Group, lowered: Lowered, calibration) -> np.ndarray | None:
    """Per-sample host bias currents (float, voltage units per step) on calibration inputs, or None."""
    from snnc.backends.loihi.ops import host_bias_float
    host = [p for p in g.projections if p.host]
    if not host:
        return None
    if calibration is None:
        return None
    return host_bias_float(host, g, np.asarray(calibration[:256], np.float64))


def _per_step_bound(g: Group, host: bool, biases: bool = True) -> np.ndarray:
    """Worst-case |input per step| of every neuron of ``g`` (voltage units), over its host-computed
    (``host=True``) or on-chip projections; with ``biases``, their node biases too (on the chip those
    go to v's bias, never into the current u)."""
    from snnc.backends.loihi.ops import input_bound
    tot = np.zeros(g.size)
    for p in g.projections:
        if p.host != host:
            continue
        rows = input_bound(p.weight, p.ops)
        tot += rows.repeat(g.size // rows.size)
        if biases and p.bias is not None:
            tot += np.abs(p.bias).reshape(-1)
    return tot


def calibration_stats(graph, lowered: Lowered, ctx: PassContext, num_steps: int | None) -> dict | None:
    """Largest |v| and |u| (u: the current in voltage units, what Loihi's u holds) of every group
    in a float32 reference run on up to 256 calibration samples; None without calibration data."""
    if ctx.calibration is None:
        return None
    from snnc.reference import GraphExecutor
    spikes = (graph.metadata or {}).get("snnc.input_encoding") == "spikes"
    names = list(lowered.groups)
    calib = np.asarray(ctx.calibration, np.float32)
    in_shape = next(iter(lowered.inputs.values()))
    want = len(in_shape) + (2 if spikes else 1)
    if calib.ndim != want or tuple(calib.shape[-len(in_shape):]) != tuple(in_shape):
        layout = "[T, N, *input_shape] spikes" if spikes else "[N, *input_shape]"
        raise ValueError(f"calibration data of shape {calib.shape} does not fit the graph: expected {layout} "
                         f"with input_shape {tuple(in_shape)} (input encoding {'spikes' if spikes else 'direct'})")
    if spikes:  # time-major [T, N, *input_shape] event data
        steps = list(torch.as_tensor(calib[:, :256]))
    elif num_steps:
        steps = [torch.as_tensor(calib[:256])] * num_steps
    else:
        return None
    # Running per-neuron maxima over samples and steps, scaled once at the end. The same values as
    # recording every step and reducing |x * gain| once: the product of a float32 value and a float64
    # gain rounds monotonically in |x|, so max|fl(x g)| = fl(max|x| |g|). No T x N x neurons tensors.
    scale = {}
    for n, g in lowered.groups.items():
        node = graph.nodes[n]
        sa = torch.as_tensor(np.abs(np.broadcast_to(g.weight_gain, g.shape)).astype(np.float64))
        su = sa
        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            su = torch.as_tensor(np.abs(np.broadcast_to(
                g.dt / np.asarray(node.tau_mem, np.float64) * np.asarray(node.r, np.float64), g.shape)).astype(np.float64))
        scale[n] = (sa, su, isinstance(node, (nir.CubaLIF, nir.CubaLI)))
    mx: dict = {n: {} for n in names}

    def upd(d, k, val):
        d[k] = val if k not in d else torch.maximum(d[k], val)

    ex = GraphExecutor(graph, torch.float32)
    with torch.no_grad():
        for xt in steps:
            ex.step(xt)
            for n in names:
                st = ex.state[n]
                upd(mx[n], "x", st["x"].abs().amax(0))
                if scale[n][2]:
                    upd(mx[n], "i", st["i"].abs().amax(0))
                upd(mx[n], "v", st["v"].abs().amax(0))
    stats = {}
    for n in names:
        sa, su, cuba_node = scale[n]
        a = (mx[n]["x"].double() * sa).max()
        u = (mx[n]["i"].double() * su).max() if cuba_node else a
        stats[n] = {"u": float(u), "v": float(mx[n]["v"].max()), "a": float(a)}
    return stats


def _u_bound(g: Group) -> float:
    """Worst-case |u| (voltage units) from on-chip projections: per-step input bound / (1 - alpha)."""
    per_step = _per_step_bound(g, host=False, biases=False)
    return float(per_step.max() / max(1.0 - float(np.max(g.alpha)), 1e-9)) if per_step.size else 0.0


def _readout_vmax(graph, g: Group, stats: dict | None, num_steps: int | None) -> float:
    if stats is not None and stats[g.name]["v"] > 0:
        return stats[g.name]["v"]
    if not num_steps:
        raise ValueError(f"readout group {g.name!r}: need T (num_steps) or calibration data to bound its voltage")
    per_step = _per_step_bound(g, host=False) + _per_step_bound(g, host=True)
    return float(num_steps * per_step.max() + np.abs(g.v_bias).max())


_LIMIT_TEXT = {"weights": "the largest weight must fit the 8-bit mantissa at the largest weight exponent",
               "bias": "the largest bias must fit the 13-bit mantissa at the largest bias exponent",
               "threshold": "vth at most a quarter of the 24-bit voltage range",
               "voltage": "the readout voltage must stay below the largest threshold",
               "current": "the current u must stay inside 24 bits",
               "synaptic_input": "the per-step synaptic input must fit 16 bits"}


def _check_options(o: dict) -> None:
    if not 2 <= o["weight_bits"] <= 8:
        raise ValueError(f"pass 'quantize', option weight_bits: {o['weight_bits']} is outside 2..8 "
                         "(Loihi synapse formats hold 1..8-bit weights; 1-bit mixed-sign weights can only be <= 0)")
    if not 1.0 <= o["headroom"] <= 1e6:
        raise ValueError(f"pass 'quantize', option headroom: {o['headroom']} is outside 1..1e6 (a factor over "
                         "the largest value seen on calibration data)")


@register("quantize", "weights to 8-bit mantissa + per-projection power-of-two exponent, vThMant, du/dv "
          "and bias mantissa/exponent (Loihi fixed point); writes the quantized values back (fake quant) "
          "and the formats into node metadata", check=_check_options, target="", weight_bits=8, headroom=2.0)
def quantize_pass(graph: nir.NIRGraph, ctx: PassContext, target: str = "", weight_bits: int = 8,
                  headroom: float = 2.0) -> nir.NIRGraph:
    """``target``: a target name or TOML path; empty = the context's target (else loihi-sim)."""
    if target:
        tgt = ctx.target if ctx.target is not None and target in (ctx.target.name, str(ctx.target.path)) \
            else load_target(target)
    else:
        tgt = ctx.target if ctx.target is not None else load_target("loihi-sim")
    fp = dict(tgt["fixed_point"])
    graph, rewrites = prepare_graph(graph)  # exact rewrites: pooling composed into convs, OR groups for max pooling
    if rewrites:
        ctx.note(rewrites=rewrites)
    lowered = lower(graph)
    T = ctx.num_steps or lowered.num_steps
    owner: dict[str, str] = {}
    for g in lowered.groups.values():
        for p in g.projections:
            if owner.setdefault(p.weighted, g.name) != g.name:
                raise ValueError(f"weighted node {p.weighted!r} feeds two neuron groups; not supported by quantize")
    stats = calibration_stats(graph, lowered, ctx, T)
    qmax = 256 - weight_step(weight_bits)
    bias_lim = (2 ** (fp["bias_mant_bits"] - 1) - 1) * 2 ** fp["bias_exp_max"]
    notes = {}
    for g in lowered.groups.values():
        node = graph.nodes[g.name]
        chip = [p for p in g.projections if not p.host]
        m = max((float(np.abs(p.weight).max()) for p in chip if p.weight.size), default=0.0)
        const_bias = g.v_bias.copy()
        for p in chip:
            if p.bias is not None:
                const_bias = const_bias + p.bias
        host_vals = _host_values(g, lowered, ctx.calibration)
        if any(p.host for p in g.projections):
            # estimated on calibration samples: leave headroom for unseen inputs; else a worst-case bound
            hb = headroom * float(np.abs(host_vals + const_bias).max()) if host_vals is not None else \
                float(_per_step_bound(g, host=True).max()) + float(np.abs(const_bias).max())
        else:
            hb = float(np.abs(const_bias).max())
        cands = {}
        if m > 0:
            cands["weights"] = qmax * 2 ** (fp["act_shift"] + fp["weight_exp_max"]) / m
        if hb > 0:
            cands["bias"] = bias_lim / hb
        if g.kind == "spiking":
            th = float(g.threshold.reshape(-1)[0])
            if np.ptp(g.threshold) > 1e-9 * abs(th):
                raise ValueError(f"group {g.name!r} has per-neuron thresholds; run fold_bn (thresholds=true) first")
            if th <= 0:
                raise ValueError(f"group {g.name!r}: threshold must be > 0, got {th}")
            # vth_eff at most a quarter of the voltage range, and within vThMant's field
            cands["threshold"] = min(2 ** (fp["uv_bits"] - 3), fp["vth_mant_max"] * 2 ** fp["vth_shift"]) / th
        else:
            vmax = _readout_vmax(graph, g, stats, T)
            cands["voltage"] = fp["vth_mant_max"] * 2 ** fp["vth_shift"] / (headroom * max(vmax, 1e-12))
        if chip:  # u holds the on-chip current: keep it inside 24 bits (lava wraps it around)
            umax = stats[g.name]["u"] if stats is not None else _u_bound(g)
            if umax > 0:
                cands["current"] = 2 ** (fp["uv_bits"] - 1) / (headroom * umax)
            # the per-step synaptic input a (before << act_shift) inside Loihi's 16-bit dendritic input
            amax = stats[g.name]["a"] if stats is not None else _u_bound(g) * (1 - float(np.max(g.alpha)))
            if amax > 0:
                cands["synaptic_input"] = (2 ** (fp["syn_input_bits"] - 1) - 1) * 2 ** fp["act_shift"] / (headroom * amax)
        limiter = min(cands, key=cands.get)
        s = float(cands[limiter])
        du, dv = decays(g, fp)
        ge = g.kind == "spiking" and (node.metadata or {}).get("snnc.threshold_op", ">") == ">="
        if g.kind == "spiking" and s * th / 2 ** fp["vth_shift"] < 0.5:
            raise ValueError(f"group {g.name!r}: its threshold {th:g} rounds to 0 at the fixed-point scale "
                             f"{s:.3g} that the {limiter} limit sets ({_LIMIT_TEXT[limiter]}): weights, biases or "
                             "currents too large relative to the threshold cannot be represented together "
                             "(retrain or rescale the layer)")
        if ge:
            # v >= v_th exactly: put s * v_th one LSB above a multiple of 2^vth_shift (s only shrinks), so
            # integer v >= s v_th  <=>  v > vThMant << vth_shift, Loihi's strict comparison
            vth_mant = int(np.clip(math.floor((s * th - 1) / 2 ** fp["vth_shift"]), 1, fp["vth_mant_max"]))
            s = (vth_mant * 2 ** fp["vth_shift"] + 1) / th
        elif g.kind == "spiking":
            vth_mant = int(np.clip(np.rint(s * th / 2 ** fp["vth_shift"]), 1, fp["vth_mant_max"]))
        else:
            vth_mant = int(fp["vth_mant_max"])
        b_mant, b_exp = split_bias(np.rint(s * const_bias), fp)
        qinfo = {"target": tgt.name, "scale": s, "scale_limited_by": limiter, "vth_mant": vth_mant,
                 "du": du, "dv": dv, "bias_exp": int(b_exp), "readout": g.kind != "spiking",
                 "host_bias_exp": int(split_bias(np.array([s * hb]), fp)[1]) if any(p.host for p in g.projections) else -1,
                 "weight_bits": int(weight_bits), "exact_bias": bool(g.exact_bias)}
        # ---- fake-quant write-back: weights
        for p in chip:
            q, e = quantize_weights(p.weight, s, fp, weight_bits)
            wn = graph.nodes[p.weighted]
            deq = q.astype(np.float64) * 2 ** (fp["act_shift"] + e) / s
            wn.weight = (deq / p.factor).astype(np.float32)
            wn.metadata = dict(wn.metadata or {}, **{"snnc.quant": {
                "target": tgt.name, "weight_exp": int(e), "weight_bits": int(weight_bits), "group": g.name,
                "scale": s, "clipped": int(np.sum(np.abs(p.weight * s / 2 ** (fp["act_shift"] + e)) > qmax + 1))}})
            if isinstance(wn, (nir.Affine, nir.Conv2d)) and hasattr(node, "v_leak"):
                wn.bias = np.zeros_like(wn.bias)  # moved into the neuron's v_leak below
        for p in g.projections:
            if p.host:
                wn = graph.nodes[p.weighted]
                wn.metadata = dict(wn.metadata or {}, **{"snnc.quant": {"target": tgt.name, "host": True,
                                                                        "group": g.name, "scale": s}})
        # ---- decays, threshold, bias
        dt = g.dt
        a_q = 1 - (du + fp["ds_offset"]) / 2 ** fp["decay_bits"]
        b_q = 1 - (dv + fp["dm_offset"]) / 2 ** fp["decay_bits"]
        bias_deq = (b_mant.astype(np.float64) * 2 ** b_exp / s).reshape(g.shape)
        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            ts_new = dt / (1 - a_q) if a_q < 1 else math.inf
            tm_new = dt / (1 - b_q) if b_q < 1 else math.inf
            node.w_in = (np.asarray(node.w_in, np.float64) * ts_new / np.asarray(node.tau_syn, np.float64)).astype(np.float32)
            r_fac = tm_new / np.asarray(node.tau_mem, np.float64)
            node.r = (np.asarray(node.r, np.float64) * r_fac).astype(np.float32)
            node.tau_syn = np.full(g.shape, ts_new, np.float32)
            node.tau_mem = np.full(g.shape, tm_new, np.float32)
            node.v_leak = (bias_deq * tm_new / dt).astype(np.float32)
        elif isinstance(node, (nir.LIF, nir.LI)):
            t_new = dt / (1 - b_q) if b_q < 1 else math.inf
            node.r = (np.asarray(node.r, np.float64) * t_new / np.asarray(node.tau, np.float64)).astype(np.float32)
            node.tau = np.full(g.shape, t_new, np.float32)
            node.v_leak = (bias_deq * t_new / dt).astype(np.float32)
        elif np.any(b_mant):
            biased = [p for p in chip if p.bias is not None]
            if len(biased) != 1 or np.any(g.v_bias):
                raise ValueError(f"group {g.name!r} ({g.nir_type}) has biases from several nodes and no v_leak "
                                 "to hold their quantized sum")
            wn = graph.nodes[biased[0].weighted]
            per = (bias_deq / g.bias_gain).reshape(len(wn.bias), -1)  # conv: one value per channel
            wn.bias = per[:, 0].astype(np.float32)
        if g.kind == "spiking":
            node.v_threshold = np.full(g.shape, (vth_mant * 2 ** fp["vth_shift"] + (1 if ge else 0)) / s, np.float32)
        for key, val in vars(node).items():
            if isinstance(val, np.ndarray) and val.dtype.kind == "f" and not np.all(np.isfinite(val)):
                raise ValueError(f"group {g.name!r}: quantized {key} is not finite; time constants out of range?")
        qinfo["bias_mant"] = b_mant.reshape(-1).astype(np.int32)
        node.metadata = dict(node.metadata or {}, **{"snnc.quant": qinfo})
        notes[g.name] = {"scale": round(s, 4), "limited_by": limiter, "vth_mant": vth_mant, "du": du, "dv": dv,
                         "bias_exp": int(b_exp)}
    graph.metadata = dict(graph.metadata or {}, **{"snnc.quantized": tgt.name})
    ctx.note(groups=notes)
    return graph


def is_quantized(graph: nir.NIRGraph, target: str = "loihi-sim") -> bool:
    return (graph.metadata or {}).get("snnc.quantized") == target and all(
        "snnc.quant" in (n.metadata or {}) for n in graph.nodes.values() if isinstance(n, NEURON_TYPES))
