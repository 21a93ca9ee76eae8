"""``quantize``: weights, thresholds, decays and biases to Loihi fixed-point fields.

For each neuron group (see :mod:`snnc.ir.lowering`) a float->integer voltage scale
``s`` is chosen (v_int = s * v_float) and then, with the target's formats
(``[fixed_point]`` of ``loihi-sim.toml``; lava-nc ``AbstractPyLifModelFixed``)::

    vThMant  = round(s * v_th / 2^6)                  17-bit unsigned (vth_eff = vThMant << 6)
               (threshold_op ">=": vThMant = floor((s v_th - 1) / 2^6) and s = (vThMant 2^6 + 1) / v_th,
                so integer v >= s v_th is exactly v > vth_eff)
    du       = round(4096 * dt / tau_syn) - 1         12-bit (ds_offset = 1: du = 4095 -> no current memory)
    dv       = round(4096 * dt / tau_mem)             12-bit (dv = 0 -> no leak)
    weights  q = W * s / 2^(6 + weight_exp), even integers in [-256, 254]   (6 = act_shift; 256 = 2^weight_bits)
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
the loihi backend reads instead of re-deriving them (the weight mantissas themselves:
:class:`snnc.ir.quant.QuantFormat`). The integer formats are the backend's: the pass discretises
through ``target.fixed_point`` (:mod:`snnc.backends.loihi.discretize`, constants from the target file)
and decides only the scales. Biases of on-chip
projections move into the neuron node's ``v_leak`` (where it has one).
Direct analog input (graph metadata ``snnc.input_encoding = "direct"``) is
computed by the host and written as a per-sample bias; its weights stay float.

Beyond that default (``scales="max"``, one scale per group), two options
(docs/passes.md, steps 5 and 6):

* ``scales="mse"``: per group, the dominant on-chip projection's clip level is
  the one (of 64 fractions of its largest weight, and the two levels that put
  its extreme weights on the grid) that minimises the projection's output
  squared error on the calibration data, computed exactly from the second
  moments of its inputs (:func:`input_moments`); the scale then maps that level
  to the largest mantissa (at most 2x below the limit the other fields set).
  Weights beyond it are clipped and counted.
* ``per_channel=True``: one scale per output channel (a conv channel, a dense
  neuron), each within that channel's own limits, so every channel's weights
  fill the mantissa range at the projection's shared weight exponent; folded
  exactly into the channel's vThMant (``floor(s_c v_th / 2^6)``, then ``s_c``
  set so that ``s_c v_th = vThMant_c << 6``) and bias mantissas, and, for a
  readout, divided out of the read voltages by the host. A spiking group keeps
  at most ``channel_levels`` distinct scales (rounded down, optimal runs by
  dynamic programming: :func:`cluster_levels`) because a core holds at most 16
  threshold profiles (target ``[profiles]``; nengo-loihi
  ``hardware/validate.py``).
"""
from __future__ import annotations

import math
import time

import nir
import numpy as np
import torch

from snnc.errors import SnncError
from snnc.ir.lowering import Group, Lowered, lower, prepare_graph
from snnc.ir.quant import QuantFormat
from snnc.ir.ops import apply_ops, host_bias_float, input_bound
from snnc.ir.reference import GraphExecutor
from snnc.ir.semantics import NeuronSemantics
from snnc.passes.manager import PassContext, graph_num_steps, register
from snnc.targets import load_target



#: calibration samples run through the float reference at once (the statistics use every sample)
CALIBRATION_BATCH = 256


def _host_values(g: Group, lowered: Lowered, calibration) -> np.ndarray | None:
    """Per-sample host bias currents (float, voltage units per step) on calibration inputs, or None."""
    host = [p for p in g.projections if p.host]
    if not host:
        return None
    if calibration is None:
        return None
    return host_bias_float(host, g, np.asarray(calibration, np.float64))


def _per_step_bound(g: Group, host: bool, biases: bool = True) -> np.ndarray:
    """Worst-case |input per step| of every neuron of ``g`` (voltage units), over its host-computed
    (``host=True``) or on-chip projections; with ``biases``, their node biases too (on the chip those
    go to v's bias, never into the current u)."""
    tot = np.zeros(g.size)
    for p in g.projections:
        if p.host != host:
            continue
        rows = input_bound(p.weight, p.ops)
        tot += rows.repeat(g.size // rows.size)
        if biases and p.bias is not None:
            tot += np.abs(p.bias).reshape(-1)
    return tot


def calibration_stats(graph, lowered: Lowered, ctx: PassContext, num_steps: int | None,
                      per_channel: bool = False) -> dict | None:
    """Largest |v| and |u| (u: the current in voltage units, what Loihi's u holds) and per-step input
    |a| of every group (``{"u", "v", "a"}``) in a float32 reference run on every calibration sample
    (``--calibrate N``: all N; in batches of :data:`CALIBRATION_BATCH`); None without calibration data. With ``per_channel`` also ``"u_ch"``, ``"v_ch"``,
    ``"a_ch"``: the same maxima per channel (first dimension of the group's shape), ``[C]``."""
    if ctx.calibration is None:
        return None
    spikes = (graph.metadata or {}).get("snnc.input_encoding") == "spikes"
    names = list(lowered.groups)
    calib = np.asarray(ctx.calibration, np.float32)
    in_shape = next(iter(lowered.inputs.values()))
    want = len(in_shape) + (2 if spikes else 1)
    if calib.ndim != want or tuple(calib.shape[-len(in_shape):]) != tuple(in_shape):
        layout = "[T, N, *input_shape] spikes" if spikes else "[N, *input_shape]"
        raise SnncError(f"calibration data of shape {calib.shape} does not fit the graph: expected {layout} "
                         f"with input_shape {tuple(in_shape)} (input encoding {'spikes' if spikes else 'direct'})")
    if not spikes and not num_steps:
        return None
    n_samples = calib.shape[1] if spikes else calib.shape[0]
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
        for b0 in range(0, n_samples, CALIBRATION_BATCH):
            ex.reset()
            if spikes:  # time-major [T, N, *input_shape] event data
                steps = list(torch.as_tensor(calib[:, b0:b0 + CALIBRATION_BATCH]))
            else:
                steps = [torch.as_tensor(calib[b0:b0 + CALIBRATION_BATCH])] * num_steps
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
        if not per_channel:
            continue
        # the same maxima per channel (first dimension of the group's shape), for per-channel scales
        C = int(sa.shape[0]) if sa.dim() else 1
        a_n = mx[n]["x"].double() * sa
        u_n = mx[n]["i"].double() * su if cuba_node else a_n
        stats[n].update(a_ch=a_n.reshape(C, -1).amax(1).numpy(), u_ch=u_n.reshape(C, -1).amax(1).numpy(),
                        v_ch=mx[n]["v"].double().reshape(C, -1).amax(1).numpy())
    return stats


def _u_bound(g: Group) -> float:
    """Worst-case |u| (voltage units) from on-chip projections: per-step input bound / (1 - alpha)."""
    per_step = _per_step_bound(g, host=False, biases=False)
    return float(per_step.max() / max(1.0 - float(np.max(g.alpha)), 1e-9)) if per_step.size else 0.0


def _readout_vmax(graph, g: Group, stats: dict | None, num_steps: int | None) -> float:
    if stats is not None and stats[g.name]["v"] > 0:
        return stats[g.name]["v"]
    if not num_steps:
        raise SnncError(f"readout group {g.name!r}: need T (num_steps) or calibration data to bound its voltage")
    per_step = _per_step_bound(g, host=False) + _per_step_bound(g, host=True)
    return float(num_steps * per_step.max() + np.abs(g.v_bias).max())


_LIMIT_TEXT = {"weights": "the largest weight must fit the 8-bit mantissa at the largest weight exponent",
               "bias": "the largest bias must fit the 13-bit mantissa at the largest bias exponent",
               "threshold": "vth at most a quarter of the 24-bit voltage range",
               "voltage": "the readout voltage must stay below the largest threshold",
               "current": "the current u must stay inside 24 bits",
               "synaptic_input": "the per-step synaptic input must fit 16 bits"}

#: ``scales`` option: ``max`` (weight exponent from the largest weight at the group's scale; the
#: default, unchanged) or ``mse`` (clip level per projection, or per output channel, minimising the
#: projection's output error on calibration data; the scale is then set so that the clip level is the
#: largest mantissa).
SCALES = ("max", "mse")
#: Clip levels the MSE calibration tries, as fractions of the largest |weight| (of the projection, or
#: of the output channel): 64 values spaced geometrically from 1 down to 0.05.
MSE_RATIOS = np.geomspace(1.0, 0.05, 64)
#: Above this fan-in (entries per weight row) the MSE uses the diagonal of the input second moments
#: (uncorrelated inputs) instead of the full matrix.
MSE_FULL_MAX_DIM = 8192


def _check_options(o: dict) -> None:
    if not 2 <= o["weight_bits"] <= 8:
        raise SnncError(f"pass 'quantize', option weight_bits: {o['weight_bits']} is outside 2..8 "
                         "(Loihi synapse formats hold 1..8-bit weights; 1-bit mixed-sign weights can only be <= 0)")
    if not 1.0 <= o["headroom"] <= 1e6:
        raise SnncError(f"pass 'quantize', option headroom: {o['headroom']} is outside 1..1e6 (a factor over "
                         "the largest value seen on calibration data)")
    if o["scales"] not in SCALES:
        raise SnncError(f"pass 'quantize', option scales: {o['scales']!r} is not one of {', '.join(SCALES)} "
                         "(max: from the largest weight; mse: clip levels calibrated on data)")
    if not 0 <= o["channel_levels"] <= 4096:
        raise SnncError(f"pass 'quantize', option channel_levels: {o['channel_levels']} is outside 0..4096 "
                         "(0: half the target's threshold profiles per core)")


# ---------------------------------------------------------------------------------------------- calibration
def _rows(w: np.ndarray) -> np.ndarray:
    return np.asarray(w, np.float64).reshape(w.shape[0], -1)


def input_moments(graph, lowered: Lowered, ctx: PassContext, num_steps: int | None, projections,
                  batch_size: int = 256) -> dict:
    """Second moments of what each on-chip projection's weighted op reads, on the calibration data.

    For a projection with weight rows ``w_o`` (``[O, K]``: a conv's ``C_in/groups * kh * kw``
    kernel entries, a dense layer's fan-in) and the input vectors ``x`` it sees (the source's spikes
    after sum pooling and flatten; for a conv, every receptive field, im2col), ``M = sum x x^T`` over
    calibration samples, time steps and positions, so that the output error of weights ``w + e_o``
    is ``sum_o e_o M e_o^T`` exactly. Float32 reference run (spikes are 0/1: the sums are exact).

    Returns ``{weighted node: (kind, M)}``: kind ``"full"`` (``M`` ``[G, K, K]``, one block per conv
    group) or ``"diag"`` (``[G, K]``, for fan-ins above :data:`MSE_FULL_MAX_DIM`). Empty without
    calibration data.
    """
    if ctx.calibration is None or not projections:
        return {}

    spikes = (graph.metadata or {}).get("snnc.input_encoding") == "spikes"
    calib = np.asarray(ctx.calibration, np.float32)
    n = calib.shape[1] if spikes else calib.shape[0]
    acc: dict = {}
    plan = []
    for p in projections:
        op = p.ops[-1]
        w = p.weight
        G = int(op.get("groups", 1)) if op["op"] == "conv2d" else 1
        K = int(np.prod(w.shape[1:]))
        kind = "full" if K <= MSE_FULL_MAX_DIM else "diag"
        acc[p.weighted] = (kind, np.zeros((G, K, K) if kind == "full" else (G, K)))
        plan.append((p, op, G, K, kind))
    with torch.no_grad():
        for i in range(0, n, batch_size):
            ex = GraphExecutor(graph, torch.float32)
            if spikes:
                steps = list(torch.as_tensor(calib[:, i:i + batch_size]))
            else:
                if not num_steps:
                    return {}
                steps = [torch.as_tensor(calib[i:i + batch_size])] * num_steps
            for xt in steps:
                ex.step(xt)
                for p, op, G, K, kind in plan:
                    x = ex.values[p.source].to(torch.float32)
                    x = apply_ops(x, p.ops[:-1], None)
                    if op["op"] == "conv2d":
                        cols = _receptive_fields(x, p.weight.shape[2:], op)
                    else:
                        cols = x.reshape(x.shape[0], -1)
                    m = acc[p.weighted][1]
                    for gi in range(G):
                        c = cols[:, gi * K:(gi + 1) * K]
                        if kind == "full":
                            m[gi] += (c.T @ c).double().numpy()
                        else:
                            m[gi] += (c * c).sum(0).double().numpy()
    return acc


def _receptive_fields(x: torch.Tensor, kernel, op: dict) -> torch.Tensor:
    """im2col: ``x`` ``[B, C, H, W]`` -> ``[B * Ho * Wo, C * kh * kw]`` (the weight's row layout), from
    strided slices of the padded input (the same as ``torch.nn.functional.unfold``, much faster here)."""
    kh, kw = int(kernel[0]), int(kernel[1])
    (sy, sx), (py, px), (dy, dx) = op["stride"], op["padding"], op["dilation"]
    xp = torch.nn.functional.pad(x, (px, px, py, py))
    ho = (xp.shape[2] - dy * (kh - 1) - 1) // sy + 1
    wo = (xp.shape[3] - dx * (kw - 1) - 1) // sx + 1
    taps = [xp[:, :, i * dy:i * dy + sy * (ho - 1) + 1:sy, j * dx:j * dx + sx * (wo - 1) + 1:sx]
            for i in range(kh) for j in range(kw)]
    t = torch.stack(taps, 2)                                     # [B, C, kh*kw, Ho, Wo]
    return t.permute(0, 3, 4, 1, 2).reshape(-1, x.shape[1] * kh * kw)


def _row_errors(err: np.ndarray, moments) -> np.ndarray:
    """Output squared error per weight row: ``e_o M e_o^T`` (``err`` ``[O, K]``)."""
    kind, m = moments
    G = m.shape[0]
    per = err.shape[0] // G
    out = np.empty(err.shape[0])
    for gi in range(G):
        e = err[gi * per:(gi + 1) * per]
        out[gi * per:(gi + 1) * per] = ((e @ m[gi]) * e).sum(1) if kind == "full" else (e * e * m[gi]).sum(1)
    return out


def mse_clip(w: np.ndarray, moments, weight_bits: int, per_row: bool, fp) -> np.ndarray:
    """Clip level(s) minimising the output error on calibration data (see :func:`input_moments`).

    The clip level ``c`` is the value of the largest positive mantissa ``qmax`` (the negative side
    reaches ``-wmax/qmax c``; ``fp``: the target's fixed-point rules, ``target.fixed_point``). Candidates: :data:`MSE_RATIOS` x max|w|, and the two levels
    that put the largest positive or negative weight exactly on the grid (per row with ``per_row``,
    else of the whole projection). Returns ``[O]`` clip levels (equal without ``per_row``).
    """
    W = _rows(w)
    qmax = fp.qmax(weight_bits)
    if per_row:
        mx, hi, lo = np.abs(W).max(1), W.max(1), -W.min(1)
    else:
        mx, hi, lo = (np.full(W.shape[0], v) for v in (np.abs(W).max(), W.max(), -W.min()))
    # the fractions of max|w|, and the two levels that put the largest positive / negative weight exactly
    # on a mantissa (weights already on a grid, e.g. after quantization-aware training, keep it)
    cands = [r * mx for r in MSE_RATIOS] + [np.where(hi > 0, hi, mx), np.where(lo > 0, lo * qmax / fp.wmax, mx)]
    errs = np.empty((len(cands), W.shape[0]))
    for k, c in enumerate(cands):
        c = np.where(c > 0, c, 1.0)[:, None]
        errs[k] = _row_errors(fp.grid(W, c / qmax, weight_bits) - W, moments)
    cands = np.stack(cands)
    if per_row:
        return cands[np.argmin(errs, 0), np.arange(W.shape[0])]
    return cands[int(np.argmin(errs.sum(1)))]


def _mse_exp(w: np.ndarray, scale_rows: np.ndarray, fp: dict, weight_bits: int, moments) -> int:
    """The exponent (in range) whose quantization gives the smallest output error at fixed scales."""
    W = _rows(w)
    best = None
    for e in range(fp["weight_exp_min"], fp["weight_exp_max"] + 1):
        unit = (2.0 ** (fp["act_shift"] + e) / scale_rows).reshape(-1, 1)
        err = float(_row_errors(fp.grid(W, unit, weight_bits) - W, moments).sum())
        if best is None or err < best[0] - 1e-12 * abs(best[0]):
            best = (err, e)
    return best[1]


def cluster_levels(s: np.ndarray, levels: int) -> np.ndarray:
    """At most ``levels`` distinct values, each channel's the largest level not above its own scale.

    Optimal for the loss ``sum_c log(s_c / level_c)`` (the resolution given up): the channels,
    sorted by scale, are cut into contiguous runs by dynamic programming, each run taking its
    smallest scale. ``s``: ``[C]`` positive.
    """
    s = np.asarray(s, np.float64)
    u, inv = np.unique(s, return_inverse=True)
    if len(u) <= levels:
        return s.copy()
    lg = np.log(u)
    w = np.bincount(inv, minlength=len(u)).astype(np.float64)     # channels per distinct value
    cw, cwl = np.concatenate([[0], np.cumsum(w)]), np.concatenate([[0], np.cumsum(w * lg)])
    n = len(u)
    # cost(i, j) of a run over distinct values i..j (inclusive) at level u[i]
    ii = np.arange(n)[:, None]
    jj = np.arange(n)[None, :]
    cost = np.where(jj >= ii, (cwl[jj + 1] - cwl[ii]) - (cw[jj + 1] - cw[ii]) * lg[ii], np.inf)
    D = np.full((levels, n), np.inf)        # D[l, j]: best cost of values 0..j in exactly l + 1 runs
    B = np.zeros((levels, n), np.int64)      # where the last of those runs starts
    D[0] = cost[0]
    for lv in range(1, levels):
        cand = D[lv - 1][:-1, None] + cost[1:, :]        # cand[i, j]: 0..i before, last run i+1..j
        k = np.argmin(cand, 0)
        D[lv] = cand[k, np.arange(n)]
        B[lv] = k + 1
    lv = int(np.argmin(D[:, n - 1]))
    level_of = np.empty(n)
    j = n - 1
    while j >= 0:
        i = int(B[lv, j]) if lv > 0 else 0
        level_of[i:j + 1] = u[i]
        j, lv = i - 1, lv - 1
    return level_of[inv]


# ---------------------------------------------------------------------------------------------- the pass
@register("quantize", "weights to a 2..8-bit mantissa + per-projection power-of-two exponent, vThMant, du/dv "
          "and bias mantissa/exponent (Loihi fixed point); scales from the largest weight or calibrated (MSE), "
          "per layer or per output channel; writes the quantized values back (fake quant) and the formats "
          "into node metadata", check=_check_options, target="", weight_bits=8, headroom=2.0, scales="max",
          per_channel=False, channel_levels=0)
def quantize_pass(graph: nir.NIRGraph, ctx: PassContext, target: str = "", weight_bits: int = 8,
                  headroom: float = 2.0, scales: str = "max", per_channel: bool = False,
                  channel_levels: int = 0) -> nir.NIRGraph:
    """``target``: a target name or TOML path; empty = the context's target (else loihi-sim).

    ``scales="max"`` with ``per_channel=False`` is the original scheme (module docstring);
    ``scales="mse"`` calibrates clip levels on ``ctx.calibration`` (needs it), ``per_channel`` gives
    every output channel of a group with on-chip weights its own scale (folded into that channel's
    vThMant and bias mantissas; at most ``channel_levels`` distinct scales per spiking group, 0 =
    half the target's threshold profiles per core). See docs/passes.md.

    Raises:
        ValueError: fields that cannot be represented (see docs/passes.md "Failures"), ``mse``
            without calibration data.
    """
    if target:
        tgt = ctx.target if ctx.target is not None and target in (ctx.target.name, str(ctx.target.path)) \
            else load_target(target)
    else:
        tgt = ctx.target if ctx.target is not None else load_target("loihi-sim")
    fp = tgt.fixed_point  # the backend's fixed-point rules (target file constants)
    graph, rewrites = prepare_graph(graph)  # exact rewrites: pooling composed into convs, OR groups for max pooling
    if rewrites:
        ctx.note(rewrites=rewrites)
    lowered = lower(graph)
    T = graph_num_steps(graph, ctx)
    owner: dict[str, str] = {}
    for g in lowered.groups.values():
        for p in g.projections:
            if owner.setdefault(p.weighted, g.name) != g.name:
                raise SnncError(f"weighted node {p.weighted!r} feeds two neuron groups; not supported by quantize")
    advanced = scales != "max" or per_channel
    if scales == "mse" and ctx.calibration is None:
        raise SnncError("pass 'quantize', option scales=mse: calibrates on data; give calibration images "
                         "(snnc compile --data ... --calibrate N)")
    t_cal = time.perf_counter()
    stats = calibration_stats(graph, lowered, ctx, T, per_channel=per_channel)
    if stats is not None:
        ctx.time(calibration=time.perf_counter() - t_cal)
    chip_all = [p for g in lowered.groups.values() for p in g.projections if not p.host]
    moments = input_moments(graph, lowered, ctx, T, chip_all) if scales == "mse" else {}
    if scales == "mse" and chip_all and not moments:
        raise SnncError("pass 'quantize', option scales=mse: the number of time steps T is unknown (pass --num-steps)")
    if per_channel and not channel_levels:
        prof = (tgt.data.get("profiles") or {}).get("vth_per_core", 16)
        channel_levels = max(1, int(prof) // 2)
    qmax = fp.qmax(weight_bits)
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
                raise SnncError(f"group {g.name!r} has per-neuron thresholds, which fold_bn (thresholds=true, the "
                                "default) folds into the incoming weights only when every input of the group is a "
                                "Conv2d/Affine/Linear (through Delays; a shared one gets its own copy, except on a "
                                "recurrent edge), with thresholds > 0 (per channel behind a Conv2d); loihi-sim holds "
                                "one threshold per group")
            if th <= 0:
                raise SnncError(f"group {g.name!r}: threshold must be > 0, got {th}")
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
        du, dv = fp.decays(g.name, g.alpha, g.beta, per_neuron=True)  # ints, or per-neuron arrays (profiles)
        ge = g.kind == "spiking" and NeuronSemantics.of(node).threshold_op == ">="
        extra, extra_w = {}, {}
        if per_channel and not chip:
            extra = {"_notes": {"per_channel": {"applied": False, "exact": True,
                                                "why": "no on-chip weights (driven by the host): one scale"}}}
        if advanced and chip:
            # v >= v_th needs s * v_th one LSB above the threshold grid (below), which one scale per
            # channel cannot keep for every channel: such a group keeps one scale
            pc_g = per_channel and not ge
            plan = _advanced(g, chip, cands, stats, host_vals, const_bias, headroom, fp, weight_bits, scales,
                             pc_g, channel_levels, moments, T, bias_lim)
            s, limiter = plan["s"], plan["limited_by"]
            extra, extra_w = plan["meta"], plan["weights"]
            if per_channel and ge:
                extra.setdefault("_notes", {})["per_channel"] = {
                    "applied": False, "exact": True,
                    "why": "threshold comparison v >= v_th (kept exactly with one scale per group)"}
        if g.kind == "spiking":
            if "vth_mant_channel" in extra:
                vth_mant = int(np.max(extra["vth_mant_channel"]))
            else:
                raw = s * th / 2 ** fp["vth_shift"]
                if raw < 0.5:
                    raise SnncError(f"group {g.name!r}: its threshold {th:g} rounds to 0 at the fixed-point scale "
                                     f"{s:.3g} that the {limiter} limit sets ({_LIMIT_TEXT.get(limiter, limiter)}): "
                                     "weights, biases or currents too large relative to the threshold cannot be "
                                     "represented together (retrain or rescale the layer)")
                if ge:
                    # v >= v_th exactly: put s * v_th one LSB above a multiple of 2^vth_shift (s only
                    # shrinks), so integer v >= s v_th  <=>  v > vThMant << vth_shift, Loihi's strict comparison
                    vth_mant = int(np.clip(math.floor((s * th - 1) / 2 ** fp["vth_shift"]), 1, fp["vth_mant_max"]))
                    s = (vth_mant * 2 ** fp["vth_shift"] + 1) / th
                    for p in chip:      # a calibrated plan's weights follow the (slightly smaller) scale
                        if p.weighted in extra_w:
                            e = extra_w[p.weighted][1]
                            q, clipped = fp.quantize_rows(p.weight, s, e, weight_bits)
                            extra_w[p.weighted] = (q, e, clipped, s)
                else:
                    vth_mant = int(np.clip(np.rint(raw), 1, fp["vth_mant_max"]))
        else:
            vth_mant = int(fp["vth_mant_max"])
        s_n = extra.get("_s_neuron", s)        # per-neuron scale ([*shape]) with per-channel scales
        b_mant, b_exp = fp.split_bias(np.rint(s_n * const_bias))
        if any(p.host for p in g.projections):
            host_exp = int(fp.split_bias(np.array([s * hb]))[1]) if "_hb_neuron" not in extra else \
                int(fp.split_bias(np.array([float(np.max(s_n * extra["_hb_neuron"]))]))[1])
        else:
            host_exp = -1
        qinfo = {"target": tgt.name, "scale": s, "scale_limited_by": limiter, "vth_mant": vth_mant,
                 "du": int(np.reshape(du, -1)[0]), "dv": int(np.reshape(dv, -1)[0]), "bias_exp": int(b_exp),
                 "readout": g.kind != "spiking",
                 "host_bias_exp": host_exp, "weight_bits": int(weight_bits), "exact_bias": bool(g.exact_bias)}
        if not g.exact_bias and np.min(du) < 2 ** fp["decay_bits"] - fp["ds_offset"] and \
                any(p.bias is not None and np.any(p.bias) for p in chip):
            # an on-chip layer's bias reaching a neuron with current memory (tau_syn > dt) is applied as its
            # steady-state voltage bias: INEXACT_BIAS (the key only then). The host's direct input is exact: the
            # host writes the current's ramp step by step (loihi-sim Program.host_bias)
            qinfo["bias_through_current"] = True
        if np.ndim(du) or np.ndim(dv):  # per-neuron time constants: one compartment profile per distinct pair
            qinfo["du_neuron"] = np.broadcast_to(du, g.shape).reshape(-1).astype(np.int64).tolist()
            qinfo["dv_neuron"] = np.broadcast_to(dv, g.shape).reshape(-1).astype(np.int64).tolist()
        qinfo.update({k: v for k, v in extra.items() if not k.startswith("_")})
        # ---- fake-quant write-back: weights
        n_weights = n_clipped = 0
        for p in chip:
            if p.weighted in extra_w:
                q, e, clipped, s_rows = extra_w[p.weighted]
            else:
                q, e = fp.quantize_weights(p.weight, s, weight_bits)
                clipped = fp.quantize_rows(p.weight, s, e, weight_bits)[1]
                s_rows = s
            n_weights += int(np.count_nonzero(p.weight))
            n_clipped += clipped
            wn = graph.nodes[p.weighted]
            if np.ndim(s_rows):
                deq = q.astype(np.float64) * 2 ** (fp["act_shift"] + e) / \
                    np.asarray(s_rows, np.float64).reshape((-1,) + (1,) * (q.ndim - 1))
            else:
                deq = q.astype(np.float64) * 2 ** (fp["act_shift"] + e) / s
            wn.weight = (deq / p.factor).astype(np.float32)
            wmeta = dict(QuantFormat(tgt.name, int(e), int(weight_bits), q).to_metadata(), group=g.name, scale=s,
                         clipped=int(np.sum(np.abs(p.weight * s / 2 ** (fp["act_shift"] + e)) > qmax + 1)))
            if advanced:
                wmeta.update(clipped=int(clipped), scales=scales, per_channel=bool(np.ndim(s_rows)),
                             weights=int(np.count_nonzero(p.weight)))
            wn.metadata = dict(wn.metadata or {}, **{"snnc.quant": wmeta})
            if isinstance(wn, (nir.Affine, nir.Conv2d)) and hasattr(node, "v_leak"):
                wn.bias = np.zeros_like(wn.bias)  # moved into the neuron's v_leak below
        for p in g.projections:
            if p.host:
                wn = graph.nodes[p.weighted]
                wn.metadata = dict(wn.metadata or {}, **{"snnc.quant": {"target": tgt.name, "host": True,
                                                                        "group": g.name, "scale": s}})
        # ---- decays, threshold, bias
        dt = g.dt
        a_q = 1 - (np.asarray(du, np.float64) + fp["ds_offset"]) / 2 ** fp["decay_bits"]
        b_q = 1 - (np.asarray(dv, np.float64) + fp["dm_offset"]) / 2 ** fp["decay_bits"]
        bias_deq = (b_mant.astype(np.float64) * 2 ** b_exp / s_n).reshape(g.shape)

        def _tau(q):  # dt / (1 - q), inf without decay (scalar or per neuron)
            with np.errstate(divide="ignore"):
                t = np.where(q < 1, dt / np.maximum(1 - q, 1e-300), math.inf)
            return float(t) if np.ndim(t) == 0 else t
        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            ts_new = _tau(a_q)
            tm_new = _tau(b_q)
            node.w_in = (np.asarray(node.w_in, np.float64) * ts_new / np.asarray(node.tau_syn, np.float64)).astype(np.float32)
            r_fac = tm_new / np.asarray(node.tau_mem, np.float64)
            node.r = (np.asarray(node.r, np.float64) * r_fac).astype(np.float32)
            node.tau_syn = np.full(g.shape, ts_new, np.float32)
            node.tau_mem = np.full(g.shape, tm_new, np.float32)
            node.v_leak = (bias_deq * tm_new / dt).astype(np.float32)
        elif isinstance(node, (nir.LIF, nir.LI)):
            t_new = _tau(b_q)
            node.r = (np.asarray(node.r, np.float64) * t_new / np.asarray(node.tau, np.float64)).astype(np.float32)
            node.tau = np.full(g.shape, t_new, np.float32)
            node.v_leak = (bias_deq * t_new / dt).astype(np.float32)
        elif np.any(b_mant):
            biased = [p for p in chip if p.bias is not None]
            if len(biased) != 1 or np.any(g.v_bias):
                raise SnncError(f"group {g.name!r} ({g.nir_type}) has biases from several nodes and no v_leak "
                                 "to hold their quantized sum")
            wn = graph.nodes[biased[0].weighted]
            per = (bias_deq / g.bias_gain).reshape(len(wn.bias), -1)  # conv: one value per channel
            wn.bias = per[:, 0].astype(np.float32)
        if g.kind == "spiking" and "vth_mant_channel" not in extra:
            node.v_threshold = np.full(g.shape, (vth_mant * 2 ** fp["vth_shift"] + (1 if ge else 0)) / s, np.float32)
        # per-channel: s_c * v_th = vth_mant_c << vth_shift exactly (module docstring): v_threshold stays
        for key, val in vars(node).items():
            if isinstance(val, np.ndarray) and val.dtype.kind == "f" and not np.all(np.isfinite(val)):
                raise SnncError(f"group {g.name!r}: quantized {key} is not finite; time constants out of range?")
        qinfo["bias_mant"] = b_mant.reshape(-1).astype(np.int32)
        node.metadata = dict(node.metadata or {}, **{"snnc.quant": qinfo})
        notes[g.name] = {"scale": round(s, 4), "limited_by": limiter, "vth_mant": vth_mant, "du": qinfo["du"],
                         "dv": qinfo["dv"], "bias_exp": int(b_exp)}
        if "du_neuron" in qinfo:
            notes[g.name]["decay_profiles"] = len(set(zip(qinfo["du_neuron"], qinfo["dv_neuron"])))
        if chip:
            notes[g.name].update(weight_bits=int(weight_bits), weights=n_weights, weights_clipped=n_clipped,
                                 clipped_share=round(n_clipped / max(n_weights, 1), 6))
        if advanced:
            notes[g.name].update({k: v for k, v in extra.get("_notes", {}).items()})
    graph.metadata = dict(graph.metadata or {}, **{"snnc.quantized": tgt.name})
    ctx.note(groups=notes)
    return graph


def _channel_max(a, shape) -> np.ndarray:
    """``[C]`` max of ``|a|`` (broadcast to the group's shape) over each channel (first dimension)."""
    return np.abs(np.broadcast_to(np.asarray(a, np.float64), shape)).reshape(shape[0], -1).max(1)


def _advanced(g: Group, chip, cands: dict, stats, host_vals, const_bias, headroom: float, fp: dict,
              weight_bits: int, scales: str, per_channel: bool, levels: int, moments: dict, T, bias_lim) -> dict:
    """Scales and weights for ``scales="mse"`` and/or ``per_channel`` (see docs/passes.md).

    The dominant projection (most non-zero weights) sets the scale: its clip level ``c`` (the largest
    weight, or the MSE choice) becomes the largest mantissa ``qmax`` exactly, at the largest
    weight exponent that keeps the scale within every other limit. Other projections of the group
    get their exponent from their largest weight (``max``) or the smallest output error (``mse``).
    """
    qmax = fp.qmax(weight_bits)
    shift = fp["act_shift"]
    C = int(g.shape[0])
    p0 = max(chip, key=lambda p: int(np.count_nonzero(p.weight)))
    rows0 = _rows(p0.weight)
    if scales == "mse":
        clip = mse_clip(p0.weight, moments[p0.weighted], weight_bits, per_row=per_channel, fp=fp)
    else:
        clip = np.abs(rows0).max(1)
    meta, notes = {"scales": scales, "per_channel": bool(per_channel)}, {"scales": scales}
    if not per_channel or p0.weight.shape[0] != C:
        others = {k: v for k, v in cands.items() if k != "weights"}
        name = min(others, key=others.get)
        s_lim = float(others[name])
        c = float(clip.max()) if clip.size else 0.0
        if c > 0:
            e0 = math.floor(math.log2(s_lim * c / (qmax * 2 ** shift)) + 1e-12)
            e0 = int(min(max(e0, fp["weight_exp_min"]), fp["weight_exp_max"]))
            s = min(qmax * 2 ** (shift + e0) / c, s_lim)
        else:
            e0, s = 0, s_lim
        notes.update(clip_ratio=round(c / max(float(np.abs(rows0).max()), 1e-300), 4),
                     mantissa_fill=round(c * s / 2 ** (shift + e0) / qmax, 4))
        if per_channel:
            notes["per_channel"] = {"applied": False, "exact": False,
                                    "why": "the dominant projection's rows are not the group's channels"}
        weights = {}
        for p in chip:
            e = e0 if p is p0 else (_mse_exp(p.weight, np.full(p.weight.shape[0], s), fp, weight_bits,
                                             moments[p.weighted]) if scales == "mse"
                                    else fp.fit_exp(_rows(p.weight), np.full(p.weight.shape[0], s), qmax))
            q, clipped = fp.quantize_rows(p.weight, s, e, weight_bits)
            weights[p.weighted] = (q, e, clipped, s)
        return {"s": s, "limited_by": name, "meta": dict(meta, _notes=notes), "weights": weights}
    # ---- per channel: per-channel limits (the same candidates, channel by channel)
    shape = g.shape
    lim: dict[str, np.ndarray] = {}
    hb_n = None
    if any(p.host for p in g.projections):
        if host_vals is not None:
            hb_n = headroom * np.abs(host_vals + const_bias).max(0)
        else:
            hb_n = _per_step_bound(g, host=True).reshape(shape) + np.abs(const_bias)
    else:
        hb_n = np.abs(const_bias)
    hb_c = _channel_max(hb_n, shape)
    with np.errstate(divide="ignore"):
        lim["bias"] = np.where(hb_c > 0, bias_lim / np.maximum(hb_c, 1e-300), np.inf)
    if g.kind == "spiking":
        lim["threshold"] = np.full(C, cands["threshold"])
    else:
        if stats is not None and stats[g.name]["v"] > 0:
            vmax_c = np.maximum(stats[g.name]["v_ch"], 1e-12)
        else:
            per_step = (_per_step_bound(g, host=False) + _per_step_bound(g, host=True)).reshape(shape)
            vmax_c = np.maximum(_channel_max(T * per_step + np.abs(g.v_bias), shape), 1e-12)
        lim["voltage"] = fp["vth_mant_max"] * 2 ** fp["vth_shift"] / (headroom * vmax_c)
    if stats is not None:
        u_c, a_c = stats[g.name]["u_ch"], stats[g.name]["a_ch"]
    else:
        per_step = _per_step_bound(g, host=False, biases=False).reshape(shape)
        u_c = _channel_max(per_step / max(1.0 - float(np.max(g.alpha)), 1e-9), shape)
        a_c = _channel_max(per_step, shape)
    with np.errstate(divide="ignore"):
        lim["current"] = np.where(u_c > 0, 2 ** (fp["uv_bits"] - 1) / (headroom * np.maximum(u_c, 1e-300)), np.inf)
        lim["synaptic_input"] = np.where(a_c > 0, (2 ** (fp["syn_input_bits"] - 1) - 1) * 2 ** shift /
                                         (headroom * np.maximum(a_c, 1e-300)), np.inf)
    names = list(lim)
    stack = np.stack([lim[k] for k in names])
    s_lim = stack.min(0)
    limited_by = [names[i] for i in stack.argmin(0)]
    valid = clip > 0
    if valid.any():
        e0 = math.floor(float(np.min(np.log2(s_lim[valid] * clip[valid] / (qmax * 2 ** shift)))) + 1e-12)
        e0 = int(min(max(e0, fp["weight_exp_min"]), fp["weight_exp_max"]))
    else:
        e0 = 0
    s_star = np.where(valid, qmax * 2.0 ** (shift + e0) / np.where(valid, clip, 1.0), s_lim)
    s_star = np.minimum(s_star, s_lim)
    if valid.any() and not valid.all():  # channels without weights in the dominant projection: no finer
        s_star[~valid] = np.minimum(s_star[~valid], s_star[valid].max())
    n_levels = C
    if g.kind == "spiking":
        th = float(g.threshold.reshape(-1)[0])
        lev = cluster_levels(s_star, levels)
        vth_c = np.floor(lev * th / 2 ** fp["vth_shift"])
        if vth_c.min() < 1:
            raise SnncError(f"group {g.name!r}: its threshold {th:g} rounds to 0 at the per-channel scale "
                             f"{float(lev.min()):.3g} (retrain or rescale the layer)")
        vth_c = np.minimum(vth_c, fp["vth_mant_max"]).astype(np.int64)
        s_c = vth_c * 2.0 ** fp["vth_shift"] / th        # s_c * v_th = vth_mant_c << vth_shift exactly
        n_levels = int(len(np.unique(vth_c)))
        meta["vth_mant_channel"] = vth_c.astype(np.int32)
        why = (f"channel scales folded into {n_levels} per-channel vThMant values (<= {levels}: the target's "
               "threshold profiles per core) and the bias mantissas; decays and spikes do not depend on the scale")
        exact = True
        if len(np.unique(s_star)) > levels:
            why += f"; {C} channels share {n_levels} scales (rounded down to the level of their run)"
    else:
        s_c = s_star
        exact = True
        why = ("readout: per-neuron scales; the host divides each read voltage by its neuron's scale "
               "before the argmax (scores = v_int / s_c)")
    meta["channel_scale"] = s_c.astype(np.float64)
    reps = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    s_neuron = np.repeat(s_c, reps).reshape(shape)
    weights = {}
    for p in chip:
        if p is p0:
            e = e0
        elif scales == "mse":
            e = _mse_exp(p.weight, s_c, fp, weight_bits, moments[p.weighted])
        else:
            e = fp.fit_exp(_rows(p.weight), s_c, qmax)
        q, clipped = fp.quantize_rows(p.weight, s_c, e, weight_bits)
        weights[p.weighted] = (q, e, clipped, s_c)
    notes.update(per_channel={"applied": True, "exact": exact, "levels": n_levels, "channels": C, "why": why},
                 scale_min=round(float(s_c.min()), 4), scale_max=round(float(s_c.max()), 4),
                 limited_by_channels={k: limited_by.count(k) for k in sorted(set(limited_by))},
                 clip_ratio_mean=round(float(np.mean(clip[valid] / np.abs(rows0).max(1)[valid])) if valid.any()
                                       else 1.0, 4))
    s_group = float(s_c.max())
    meta.update(_s_neuron=s_neuron, _hb_neuron=hb_n if any(p.host for p in g.projections) else None,
                _notes=notes)
    if meta["_hb_neuron"] is None:
        del meta["_hb_neuron"]
    top = max(set(limited_by), key=limited_by.count)
    return {"s": s_group, "limited_by": top, "meta": meta, "weights": weights}


def apply_cli_options(passes: list[tuple[str, dict]], weight_bits: int | None = None, per_channel: bool = False,
                      calibrate: int | None = None, timesteps: int | None = None) -> list[tuple[str, dict]]:
    """The pipeline with ``snnc compile``'s quantization options applied (a new list):
    ``--weight-bits B`` -> ``quantize:weight_bits=B``, ``--per-channel`` -> ``quantize:per_channel=true``,
    ``--calibrate N`` -> ``quantize:scales=mse`` (the caller calibrates on N images), ``--timesteps T'``
    -> ``fold_timesteps:steps=T'`` (an existing entry's ``steps`` is set; else the pass is inserted
    after ``fold_bn``, or first, so that pruning and quantize see the folded model).

    Raises:
        ValueError: a quantize option without ``quantize`` in the pipeline.
    """
    out = [(n, dict(o)) for n, o in passes]
    names = [n for n, _ in out]
    if (weight_bits is not None or per_channel or calibrate is not None) and "quantize" not in names:
        raise SnncError("--weight-bits, --per-channel and --calibrate set options of the quantize pass: keep "
                         "quantize in --passes")
    if "quantize" in names:
        o = out[names.index("quantize")][1]
        if weight_bits is not None:
            o["weight_bits"] = int(weight_bits)
        if per_channel:
            o["per_channel"] = True
        if calibrate is not None:
            o["scales"] = "mse"
    if timesteps is not None:
        if "fold_timesteps" in names:
            out[names.index("fold_timesteps")][1]["steps"] = int(timesteps)
        else:
            at = names.index("fold_bn") + 1 if "fold_bn" in names else 0
            out.insert(at, ("fold_timesteps", {"steps": int(timesteps)}))
    return out


def weight_grids(graph: nir.NIRGraph, quantized: nir.NIRGraph, target=None) -> dict:
    """The weight grids ``quantize`` chose for ``graph`` (``quantized`` = its output), in the units of
    ``graph``'s weighted nodes, for quantization-aware training.

    Returns ``{weighted node: (unit [O], step, qmax)}`` for every on-chip projection: the node weight
    ``W`` (``[O, ...]``) is represented as ``unit_o * q`` with ``q`` a multiple of ``step`` in
    ``[-wmax, qmax]`` (``unit_o = 2^(act_shift + weight_exp) / (s_o * gain_o)``: ``s_o`` the scale of the
    row's channel, ``gain_o`` the pooling and neuron gain of the row). Host-computed layers have no grid.
    ``target``: the one quantize used (default loihi-sim).
    """
    fp = (target if target is not None else load_target("loihi-sim")).fixed_point
    out = {}
    for g in lower(graph).groups.values():
        qn = (quantized.nodes[g.name].metadata or {}).get("snnc.quant", {})
        for p in g.projections:
            if p.host:
                continue
            wq = quantized.nodes[p.weighted].metadata["snnc.quant"]
            rows = p.weight.shape[0]
            s = np.asarray(qn["channel_scale"], np.float64) if "channel_scale" in qn else \
                np.full(rows, float(qn["scale"]))
            gain = np.broadcast_to(np.asarray(p.factor, np.float64), p.weight.shape).reshape(rows, -1)[:, 0]
            unit = 2.0 ** (fp["act_shift"] + int(wq["weight_exp"])) / (s * gain)
            step = fp.weight_step(int(wq["weight_bits"]))
            out[p.weighted] = (unit, step, fp.qmax(int(wq["weight_bits"])))
    return out
