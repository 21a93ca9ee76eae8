"""``budget``: compress to fit -- prune channels until the mapped model meets a resource budget.

The pass (``snnc compile --budget cores=K`` puts it before ``quantize``) measures each candidate
with the pass context's ``measure`` callable, which the compile driver fills with
:func:`snnc.driver.budget.chip_figures` (the remaining passes, the real loihi-sim mapper and, for
SynOps, the bit-accurate simulator): a pass never imports the driver or a backend. The held-out
images and labels come from ``ctx.held_out``.

:func:`search_budget` finds per-group channel counts for ``prune_channels`` that meet a budget
(``cores``, ``synapses`` (mapped), ``synops`` or ``memory_bits``) at the least accuracy loss on
held-out validation samples (``snnc compile`` passes the first 512 by the sampling rule of
:mod:`snnc.data.sampling`; never test samples), in the spirit of Chen et al., "Resource Constrained Model
Compression via Minimax Optimization for Spiking Neural Networks" (ACM MM 2023), whose
minimax problem maximises accuracy subject to a resource constraint. snnc solves it greedily
over *measured* sensitivities rather than by their gradient-based minimax, because the
resources that matter on a chip (cores, memory words) are step functions of the channel
counts that gradients cannot see:

1. rank each group's channels once by the pruning criterion (:func:`snnc.passes.prune.group_scores`);
2. at each step, for every group, try removing a block of its lowest-ranked channels
   (10 % of its current count, at least one); refit the candidate's readout-feeding layer in closed
   form (:class:`snnc.passes.repair.ReadoutRefit`, on the first 2,048 fitting samples; a cut model's
   readout is what breaks, so an unrepaired candidate's accuracy ranks the wrong thing), measure its
   held-out float accuracy and, with ``ctx.measure`` (the real mapper; the simulator for SynOps), the
   budgeted resource it saves: for cores the placed count, or the mapper's lower bound before rounding
   up where the step does not change the count. Take the group with the least accuracy lost per unit
   saved;
3. when that step meets the budget, shrink it: the largest channel count of that group that still
   meets it (bisection), so the search does not overshoot; stop when it fits the target and the budget.

The keep set found is cut and given the full repair (every consumer, ``prune_channels``' repair).

A budget the greedy cannot reach even with one channel left in every group raises
:class:`BudgetError` naming the smallest reachable value.
"""
from __future__ import annotations

import copy
import math

import nir
import numpy as np

from snnc.errors import SnncError
from snnc.ir import set_types
from snnc.ir import readout as R
from snnc.passes.manager import PassContext, graph_num_steps, register
from snnc.passes.prune import channel_groups, check_criterion, group_scores, plain_repair, prune, repair_cut
from snnc.passes.repair import ReadoutRefit

#: Fitting samples the quick readout refit of each candidate reads (the final keep set gets the full repair).
RANK_SAMPLES = 2048

RESOURCES = ("cores", "synapses", "synops", "memory_bits")


class BudgetError(SnncError):
    """The budget cannot be met (the message names the smallest reachable value)."""


def parse_budget(text: str) -> tuple[str, float]:
    """``"cores=24"`` -> ``("cores", 24.0)``.

    Raises:
        SnncError: not ``RESOURCE=VALUE`` with a known resource and a positive number.
    """
    kind, sep, val = str(text).partition("=")
    kind = kind.strip()
    try:
        v = float(val)
    except ValueError:
        v = float("nan")
    if not sep or kind not in RESOURCES or not math.isfinite(v) or v <= 0:
        raise SnncError(f"budget {text!r}: expected RESOURCE=VALUE with RESOURCE one of {', '.join(RESOURCES)} "
                        "and a positive VALUE (e.g. cores=24)")
    return kind, v


def _check_options(o: dict) -> None:
    parse_budget(f"{o['resource']}={o['value']}")
    if o["criterion"]:
        check_criterion(o["criterion"], "pass 'budget', option criterion")


@register("budget", "prune channels until the mapped model fits the target within a resource budget "
          "(resource=cores|synapses|synops|memory_bits, value; greedy over measured layer sensitivities, in the "
          "spirit of Chen et al., ACM MM 2023); needs the driver's measure and held-out data (snnc compile --budget)",
          check=_check_options, resource="cores", value=0.0, criterion="", repair=True)
def budget_pass(graph: nir.NIRGraph, ctx: PassContext, resource: str = "cores", value: float = 0.0,
                criterion: str = "", repair: bool = True) -> nir.NIRGraph:
    """The search (:func:`search_budget`) ranks unrepaired candidates; the keep set it returns is cut and
    then repaired (``prune_channels``' closed-form refit, on by default) before the rest of the pipeline."""
    if ctx.measure is None or ctx.held_out is None:
        raise SnncError("pass 'budget' needs a measure of the mapped model and held-out images in the pass context "
                        "(snnc compile --budget RESOURCE=VALUE --data ... fills both)")
    crit = criterion or ("activity" if ctx.calibration is not None else "l1")
    refit = None
    if repair:
        x_fit = ctx.fit_samples(RANK_SAMPLES) if ctx.fit_samples is not None else ctx.calibration
        if x_fit is not None:
            refit = ReadoutRefit(graph, np.asarray(x_fit, np.float32), graph_num_steps(graph, ctx),
                                 (graph.metadata or {}).get("snnc.input_encoding") == "spikes")
    keep, search = search_budget(graph, ctx, ctx.measure, (resource, float(value)), crit, *ctx.held_out,
                                 x_sim=ctx.calibration, log=ctx.say, refit=refit)
    original = copy.deepcopy(graph)
    pruned, plog = prune(graph, ctx, crit, keep)
    rlog = plain_repair(repair_cut(pruned, original, ctx) if repair else {"not_run": "repair=false"})
    if "layers" in rlog:
        set_types(pruned)
        if ctx.say:
            ctx.say(f"repaired the budget's cut on {rlog['samples']:,} {rlog['data']}: " + ", ".join(
                f"{k} output error {v['output_error_before']:.2f} -> {v['output_error_after']:.2f}"
                for k, v in rlog["layers"].items() if "output_error_after" in v))
    layers = {k: {"kept": v["kept"], "total": v["total"]} for k, v in plog["groups"].items()}
    pruned.metadata = dict(pruned.metadata or {}, **{"snnc.pruning": {"criterion": crit, "layers": layers,
                                                                       "repair": rlog}})
    ctx.note(criterion=crit, budget=f"{resource}={float(value):g}",
             groups={k: f"{v['kept']}/{v['total']}" for k, v in plog["groups"].items()},
             kept_whole=plog["kept_whole"], search=search, repair=rlog)
    return pruned


def search_budget(graph, ctx, measure, budget: tuple[str, float], criterion: str, x_val: np.ndarray,
                  y_val: np.ndarray, x_sim: np.ndarray | None = None, step: float = 0.1,
                  log=None, refit=None) -> tuple[dict, dict]:
    """Channel counts per prunable group that meet ``budget`` (see module docstring).

    Args:
        graph: the graph before pruning and quantization (e.g. after fold_bn).
        ctx: the PassContext (calibration data, T, seed) of the compile.
        measure: ``measure(graph, x_sim) -> figures`` of a candidate compiled the rest of the way (the
            driver's :func:`snnc.driver.budget.chip_figures`: quantize, the real mapper, the simulator):
            ``fits``, ``violations`` and the resource figures.
        budget: ``(resource, value)`` from :func:`parse_budget`.
        x_val, y_val: held-out images and labels for the accuracy (not the calibration images).
        x_sim: inputs for the simulator (SynOps budgets; also the SynOps/energy figures).
        refit: a :class:`snnc.passes.repair.ReadoutRefit` that repairs each candidate's readout before its
            accuracy is measured, or None (candidates ranked as cut).

    Returns:
        ``(keep {group: channels}, search log)``; the log has the measured figures at the end and per step.

    Raises:
        BudgetError: unreachable (names the smallest reachable value).
    """

    kind, value = budget
    say = log or (lambda s: None)
    T = ctx.num_steps
    rule = R.readout_rule(graph)["rule"]
    groups = [g for g in channel_groups(graph) if g.prunable]
    if not groups:
        raise BudgetError("the model has no prunable channel group (see prune_channels' kept_whole reasons)")
    scores = group_scores(graph, ctx, criterion, groups)
    keep = {g.name: g.channels for g in groups}
    sim_in = x_sim if kind == "synops" else None

    def pruned(k):
        return prune(copy.deepcopy(graph), ctx, criterion, k, scores=scores)[0]

    def candidate(k):
        g = pruned(k)
        if refit is not None:
            refit.apply(g)
        return g

    def meets(f):
        return f["fits"] and f[kind] <= value

    def saved(before, after):
        """The budgeted resource a step saves, as the mapper measures it; for cores the placed count, or
        the unrounded lower bound where the step does not change the count."""
        d = before[kind] - after[kind]
        if kind == "cores" and d <= 0:
            d = before["cores_bound"] - after["cores_bound"]
        return d

    def accuracy(g):
        return R.accuracy(g, x_val, y_val, T, rule, batch_size=max(len(y_val), 1))

    figs = measure(candidate(keep) if kind == "synops" else pruned(keep), sim_in)
    steps = [{"keep": dict(keep), kind: figs[kind], "fits": figs["fits"]}]
    say(f"budget {kind}={value:g}: unpruned {figs[kind]:,.0f} {kind}, fits the target: {figs['fits']}"
        + ("" if figs["fits"] else f" (breaks {', '.join(figs['violations'])})"))
    base_acc = accuracy(graph)
    while not meets(figs):
        best = None
        for g in groups:
            if keep[g.name] <= 1:
                continue
            k = dict(keep)
            k[g.name] = max(1, keep[g.name] - max(1, int(math.ceil(step * keep[g.name]))))
            gp = candidate(k)
            f = measure(gp, sim_in)
            loss = base_acc - accuracy(gp)
            cost = (max(loss, 0.0) + 1e-4) / max(saved(figs, f), 1e-9)
            if best is None or cost < best[0]:
                best = (cost, k, loss, f, g.name)
        if best is None:
            floor = measure(pruned({g.name: 1 for g in groups}), sim_in)
            reach = f"{floor[kind]:,.0f} {kind}" + ("" if floor["fits"] else
                                                   f" (and it still breaks {', '.join(floor['violations'])})")
            raise BudgetError(f"budget {kind}={value:g} cannot be met by pruning channels: the smallest reachable is "
                              f"{reach}, with one channel left in every prunable layer")
        _, k, loss, f, name = best
        if meets(f) and keep[name] - k[name] > 1:  # near the budget: remove no more channels than it needs
            lo, hi = k[name], keep[name] - 1       # k[name] meets; find the largest count that still meets
            while lo < hi:
                mid = (lo + hi + 1) // 2
                km = dict(k, **{name: mid})
                gm = candidate(km)
                fm = measure(gm, sim_in)
                if meets(fm):
                    lo, k, f, loss = mid, km, fm, base_acc - accuracy(gm)
                else:
                    hi = mid - 1
        keep, figs = k, f
        steps.append({"keep": dict(keep), "group": name, kind: figs[kind], "fits": figs["fits"],
                      "val_accuracy_loss": loss})
        say(f"  keep {keep}: {figs[kind]:,.0f} {kind}, fits: {figs['fits']}, held-out accuracy "
            f"{100 * (base_acc - loss):.2f}%" + (" (readout refitted)" if refit is not None else ""))
    return keep, {"budget": {"resource": kind, "value": value}, "criterion": criterion, "reached": figs[kind],
                  "held_out_samples": int(len(y_val)), "held_out_accuracy_before": base_acc, "steps": steps,
                  "method": "greedy over measured per-layer sensitivities (snnc.passes.budget): each candidate's "
                            "readout refitted before its held-out accuracy is measured" + ("" if refit is not None
                                                                                             else " (no: no data)")
                            + f"; cost = accuracy lost per {kind} saved as the mapper measures it"}
