"""``fold_timesteps``: run the network on T' = T / k coarser time steps (dt' = k dt).

One folded step stands for k original steps. Per neuron group (a NIR neuron node), with the
per-step decays alpha (current) and beta (voltage) *as the target holds them* (quantized to
``decay_bits``: alpha_q = 1 - (du + ds_offset) / 2^12, beta_q = 1 - (dv + dm_offset) / 2^12,
lava-nc ``AbstractPyLifModelFixed``)::

    dt'       = k dt                               (node metadata snnc.dt)
    decays    alpha' = alpha_q^k,  beta' = beta_q^k  (tau' = dt' / (1 - decay'))
    gains     w_in' = w_in (1 - alpha) / (1 - alpha_q),   r' = r (1 - beta) / (1 - beta_q),
              v_leak' = v_leak (1 - beta) / (1 - beta_q)     (CubaLIF, CubaLI; LIF/LI: r, v_leak)
              IF: r' = k r;   I: none (dt' = k dt already multiplies its input by k)
    spikes    weights of projections whose source spikes (a neuron group) x 1/k

*Constant input is accumulated exactly.* Over k steps a constant per-step input ``a`` (a direct
analog input, which the host injects as a bias, a layer bias, ``v_leak``) moves the voltage from
``v`` to ``beta_q^k v + a (1 - beta_q^k) / (1 - beta_q)``; the folded step does exactly that (the
gains above), so with no spike inside the window the folded voltage equals the original's every k
steps, and the host computes one bias per folded step (one rounding to the 13-bit mantissa, as
before). Without current memory (alpha = 0, du = 4095) this is exact; with current memory the
steady state of a constant input is kept and the transient is not.

*Spikes are accumulated by count.* A neuron fires at most once per step, so a folded spike stands
for the spikes of a window; the weights of spike projections are divided by k (a folded spike
carries the mean contribution over the window's positions), and the thresholds are then
**recalibrated** (``recalibrate=true``, needs calibration images): group by group in topological
order, the threshold is scaled by the factor (bisection on its log) at which the group's total
spike count over the T' folded steps on the calibration images equals the original model's over
T steps, i.e. the firing rate per second stays the same. A group that cannot reach the original
count (at most one spike per folded step) is reported ``saturated``.

*Decays in fixed point.* ``decay' = decay_q^k`` is computed exactly (float64) and rounded to the
nearest 12-bit field by ``quantize`` (``dv' = round(4096 (1 - beta_q^k))``): exact where
``4096 beta_q^k`` is an integer (e.g. beta_q = 1/2, k = 2: 1024/4096; no leak: dv = 0; no current
memory: du = 4095), nearest otherwise (the bundled model: dv 819 -> 1474 for k = 2, where
4096 (3277/4096)^2 = 2621.7 rounds to 2622). Note that k chip steps with dv also truncate
(``x (4096 - dv) >> 12``) at every step, so the chip's k-step decay and its folded decay agree
exactly only for powers of two.

k = 1 returns the graph unchanged. Spike input (graph metadata ``snnc.input_encoding =
"spikes"``) is refused: k input frames summed are counts, not spikes.

The pass sets graph metadata ``snnc.num_steps = T'`` and ``snnc.fold_timesteps`` (``k``,
``from_steps``, ``dt`` before and after; the passes after it read T' from there), and
notes the decays, the threshold factors, the spike counts and, with calibration labels
(``ctx.calibration_labels``), the float accuracy on the calibration images at T and at T' before
and after recalibration.
"""
from __future__ import annotations

import copy
import math

import nir
import numpy as np
import torch

from snnc.errors import SnncError
from snnc.ir.lowering import lower
from snnc.ir import SPIKING_TYPES, topological_order
from snnc.ir import readout as R
from snnc.ir.reference import GraphExecutor
from snnc.passes.manager import PassContext, graph_num_steps, register
from snnc.targets import load_target

#: Threshold factors the recalibration searches: 2^-LOG2_RANGE .. 2^LOG2_RANGE, on a grid of
#: GRID_POINTS values of log2 (including 0: the unchanged threshold), refined REFINE_STEPS times by
#: halving the step around the best, one group after the other, at most SWEEPS times over the groups.
LOG2_RANGE = 2.0
GRID_POINTS = 9
REFINE_STEPS = 2
SWEEPS = 2
#: Calibration images used for the recalibration (the first ones).
RECALIBRATION_SAMPLES = 256


def _check(o: dict) -> None:
    if not 0 <= o["steps"] <= 2 ** 15 - 1:
        raise SnncError(f"pass 'fold_timesteps', option steps: {o['steps']} is outside 1..32767")


def folded_decay(d: int, k: int, offset: int, bits: int) -> tuple[float, bool]:
    """The k-th power of a fixed-point decay field: ``(decay_q^k, exact)`` with ``decay_q = 1 - (d +
    offset) / 2^bits``; ``exact`` when ``2^bits decay_q^k`` is a whole number (the folded field then
    holds it exactly)."""
    one = 2 ** bits
    keep = one - (d + offset)                     # decay_q * 2^bits, a whole number
    num = keep ** k                               # exact (Python integers)
    den = one ** (k - 1)
    return (num / den) / one, num % den == 0


def _runs(graph, x: np.ndarray, T: int, names, rule: str | None, batch: int = 128, per_neuron: bool = False):
    """Float32 reference run: spikes of ``names`` (totals over samples and steps, or with
    ``per_neuron`` ``[N, neurons]`` counts over the steps), and class scores by the readout ``rule``
    (None: no scores)."""
    counts = {n: ([] if per_neuron else 0.0) for n in names}
    scores = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.as_tensor(x[i:i + batch])
            ex = GraphExecutor(graph, torch.float32)
            acc = None
            per = {n: None for n in names}
            for _ in range(T):
                out = next(iter(ex.step(xb).values()))
                for n in names:
                    v = ex.values[n]
                    if per_neuron:
                        v = v.reshape(v.shape[0], -1)
                        per[n] = v.clone() if per[n] is None else per[n].add_(v)
                    else:
                        counts[n] += float(v.sum())
                if rule is not None:
                    acc = R.accumulate(acc, out.double(), rule)
            if per_neuron:
                for n in names:
                    counts[n].append(per[n])
            if rule is not None:
                scores.append(acc.numpy())
    if per_neuron:
        counts = {n: torch.cat(v) for n, v in counts.items()}
    return counts, (np.concatenate(scores) if scores else None)


@register("fold_timesteps", "run on T' = T/k coarser steps: dt x k, decays to their k-th power (fixed point), "
          "constant input accumulated exactly, spike weights / k, thresholds recalibrated on calibration data so "
          "that firing rates stay the same", check=_check, steps=0, recalibrate=True, target="")
def fold_timesteps_pass(graph: nir.NIRGraph, ctx: PassContext, steps: int = 0, recalibrate: bool = True,
                        target: str = "") -> nir.NIRGraph:
    """``steps``: T' (must divide T); ``recalibrate``: threshold recalibration (needs calibration
    images); ``target``: whose decay fields (empty: the context's, else loihi-sim).

    Raises:
        ValueError: no ``steps``, T unknown or not a multiple of it, spike input, recalibration without
            calibration images.
    """
    T = graph_num_steps(graph, ctx)
    if not steps:
        raise SnncError("pass 'fold_timesteps': give the new number of steps, e.g. fold_timesteps:steps=4 "
                         "(snnc compile --timesteps 4)")
    if not T:
        raise SnncError("pass 'fold_timesteps': the number of time steps T is unknown; pass --num-steps")
    T = int(T)
    if steps > T or T % steps:
        raise SnncError(f"pass 'fold_timesteps': T' = {steps} must divide T = {T} (k = T / T' steps are folded "
                         "into one)")
    k = T // steps
    if k == 1:
        ctx.note(k=1, steps=T, from_steps=T, changed=False)
        return graph
    if (graph.metadata or {}).get("snnc.input_encoding") == "spikes":
        raise SnncError("pass 'fold_timesteps': spike input cannot be folded (k input frames summed are counts, "
                         "not spikes); it folds direct (analog) input, which the host injects as a bias")
    if recalibrate and ctx.calibration is None:
        raise SnncError("pass 'fold_timesteps': recalibrating the thresholds needs calibration images "
                         "(snnc compile --data ...), or fold_timesteps:recalibrate=false")
    if target:
        tgt = ctx.target if ctx.target is not None and target in (ctx.target.name, str(ctx.target.path)) \
            else load_target(target)
    else:
        tgt = ctx.target if ctx.target is not None else load_target("loihi-sim")
    fp = tgt.fixed_point  # the backend's fixed-point rules
    original = graph
    graph = copy.deepcopy(graph)
    lowered = lower(graph)
    bits = fp["decay_bits"]
    dec_notes = {}
    dt_before = None
    for name, g in lowered.groups.items():
        node = graph.nodes[name]
        du, dv = fp.decays(g.name, g.alpha, g.beta)
        a_q = 1 - (du + fp["ds_offset"]) / 2 ** bits
        b_q = 1 - (dv + fp["dm_offset"]) / 2 ** bits
        a_k, a_exact = folded_decay(du, k, fp["ds_offset"], bits)
        b_k, b_exact = folded_decay(dv, k, fp["dm_offset"], bits)
        dt = float(g.dt)
        dt_before = dt if dt_before is None else dt_before
        dt_new = k * dt
        alpha = float(np.max(g.alpha))
        beta = float(np.max(g.beta))
        rho_v = (1 - beta) / (1 - b_q) if b_q < 1 and beta < 1 else 1.0
        rho_i = (1 - alpha) / (1 - a_q) if a_q < 1 else 1.0

        def tau(decay):
            return np.full(g.shape, dt_new / (1 - decay) if decay < 1 else math.inf, np.float32)

        def scaled(v, f):
            return (np.asarray(v, np.float64) * f).astype(np.float32)

        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            node.tau_syn, node.tau_mem = tau(a_k), tau(b_k)
            node.w_in = scaled(node.w_in, rho_i)
            node.r = scaled(node.r, rho_v)
            node.v_leak = scaled(node.v_leak, rho_v)
        elif isinstance(node, (nir.LIF, nir.LI)):
            node.tau = tau(b_k)
            node.r = scaled(node.r, rho_v)
            node.v_leak = scaled(node.v_leak, rho_v)
        elif isinstance(node, nir.IF):
            node.r = scaled(node.r, k)
        node.metadata = dict(node.metadata or {}, **{"snnc.dt": dt_new})
        dec_notes[name] = {"du": [du, int(round(2 ** bits * (1 - a_k))) - fp["ds_offset"]],
                           "dv": [dv, int(round(2 ** bits * (1 - b_k))) - fp["dm_offset"]],
                           "exact": bool(a_exact and b_exact)}
        for p in g.projections:
            if p.host or p.source in lowered.inputs:
                continue  # constant (direct) input: accumulated exactly by the gains above
            wn = graph.nodes[p.weighted]
            wn.weight = scaled(wn.weight, 1.0 / k)
    graph.metadata = dict(graph.metadata or {}, **{
        "snnc.num_steps": int(steps),
        "snnc.fold_timesteps": {"k": int(k), "from_steps": int(T), "dt_from": dt_before,
                                "dt": None if dt_before is None else k * dt_before}})
    notes = {"k": int(k), "steps": int(steps), "from_steps": int(T), "decays": dec_notes,
             "recalibrated": bool(recalibrate)}
    if ctx.calibration is not None:
        notes.update(_recalibrate(original, graph, ctx, T, steps, recalibrate))
    ctx.note(**notes)
    return graph


def _fit(scores: np.ndarray, ref_pred: np.ndarray, ref_unit: np.ndarray) -> tuple[float, float]:
    """(agreement of predictions with the T-step model, mean cosine similarity of the centred score
    vectors): the recalibration's objective, compared in that order."""
    agree = float((scores.argmax(1) == ref_pred).mean())
    c = scores - scores.mean(1, keepdims=True)
    n = np.linalg.norm(c, axis=1, keepdims=True)
    cos = float(np.mean(np.sum(np.where(n > 0, c / np.where(n > 0, n, 1), 0) * ref_unit, 1)))
    return agree, cos


def _recalibrate(original, graph, ctx: PassContext, T: int, steps: int, recalibrate: bool) -> dict:
    """Threshold factors per spiking group (in place on ``graph``) that keep the folded model's outputs
    closest to the T-step model's on the calibration images; returns the notes."""
    x = np.asarray(ctx.calibration[:RECALIBRATION_SAMPLES], np.float32)
    labels = getattr(ctx, "calibration_labels", None)
    y = None if labels is None else np.asarray(labels[:RECALIBRATION_SAMPLES])
    rule = R.readout_rule(original)["rule"]
    spiking = [n for n in topological_order(graph) if isinstance(graph.nodes[n], SPIKING_TYPES)]
    ref, s_ref = _runs(original, x, T, spiking, rule)
    before, s_before = _runs(graph, x, steps, spiking, rule)
    ref_pred = s_ref.argmax(1)
    c = s_ref - s_ref.mean(1, keepdims=True)
    nrm = np.linalg.norm(c, axis=1, keepdims=True)
    ref_unit = np.where(nrm > 0, c / np.where(nrm > 0, nrm, 1), 0)
    factors = {n: 0.0 for n in spiking}                    # log2 of the threshold factor
    th0 = {n: np.asarray(graph.nodes[n].v_threshold, np.float64).copy() for n in spiking}
    memo: dict = {}

    def fit(fs: dict) -> tuple[float, float]:
        key = tuple(round(fs[n], 6) for n in spiking)
        if key not in memo:
            for n in spiking:
                graph.nodes[n].v_threshold = (th0[n] * 2.0 ** fs[n]).astype(np.float32)
            memo[key] = _fit(_runs(graph, x, steps, [], rule)[1], ref_pred, ref_unit)
        return memo[key]

    start = fit(factors)
    if recalibrate:
        for _ in range(SWEEPS):
            changed = False
            for n in spiking:
                cands = [float(v) for v in np.linspace(-LOG2_RANGE, LOG2_RANGE, GRID_POINTS)]
                best = max(cands + [factors[n]], key=lambda v: (fit(dict(factors, **{n: v})), -abs(v)))
                step = 2 * LOG2_RANGE / (GRID_POINTS - 1)
                for _ in range(REFINE_STEPS):
                    step /= 2
                    best = max((best - step, best, best + step),
                               key=lambda v: (fit(dict(factors, **{n: v})), -abs(v)))
                changed |= abs(best - factors[n]) > 1e-9
                factors[n] = best
            if not changed:
                break
    for n in spiking:
        graph.nodes[n].v_threshold = (th0[n] * 2.0 ** factors[n]).astype(np.float32)
    after, s_after = _runs(graph, x, steps, spiking, rule) if recalibrate else (before, s_before)
    n_x = len(x)
    out = {"calibration_images": int(n_x),
           "spikes_per_image": {n: {"T": round(ref[n] / n_x, 3), "folded": round(before[n] / n_x, 3),
                                    **({"recalibrated": round(after[n] / n_x, 3)} if recalibrate else {})}
                                for n in spiking},
           "agreement_with_T": {"folded": round(start[0], 6)}}
    if recalibrate:
        end = fit(factors)
        out["agreement_with_T"]["recalibrated"] = round(end[0], 6)
        out["threshold_factors"] = {n: round(2.0 ** v, 6) for n, v in factors.items()}
        out["model_runs"] = len(memo)
    if y is not None:
        acc = {f"T={T}": float((s_ref.argmax(1) == y).mean()), f"T={steps}": float((s_before.argmax(1) == y).mean())}
        if recalibrate:
            acc[f"T={steps} recalibrated"] = float((s_after.argmax(1) == y).mean())
        out["calibration_accuracy"] = acc
    return out


__all__ = ["fold_timesteps_pass", "folded_decay"]
