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
   (10 % of its current count, at least one), and measure the held-out float accuracy of the
   result and the graph synapses it saves; take the group with the least accuracy lost per
   synapse saved;
3. measure the result with ``ctx.measure`` (the real mapper; the simulator for SynOps);
   stop when it fits the target and the budget.

A budget the greedy cannot reach even with one channel left in every group raises
:class:`BudgetError` naming the smallest reachable value.
"""
from __future__ import annotations

import copy
import math

import nir
import numpy as np

from snnc.errors import SnncError
from snnc.ir import graph_figures, set_types
from snnc.ir import readout as R
from snnc.passes.manager import PassContext, register
from snnc.passes.prune import CRITERIA, channel_groups, group_scores, plain_repair, prune, repair_cut

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
    if o["criterion"] and o["criterion"] not in CRITERIA:
        raise SnncError(f"pass 'budget', option criterion: {o['criterion']!r} is not one of {', '.join(CRITERIA)}")


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
    crit = criterion or ("sca" if ctx.calibration is not None else "l1")
    keep, search = search_budget(graph, ctx, ctx.measure, (resource, float(value)), crit, *ctx.held_out,
                                 x_sim=ctx.calibration, log=ctx.say)
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
                  log=None) -> tuple[dict, dict]:
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

    def figures_of(k):
        return measure(pruned(k), sim_in)

    def meets(f):
        return f["fits"] and f[kind] <= value

    figs = figures_of(keep)
    steps = [{"keep": dict(keep), kind: figs[kind], "fits": figs["fits"]}]
    say(f"budget {kind}={value:g}: unpruned {figs[kind]:,.0f} {kind}, fits the target: {figs['fits']}"
        + ("" if figs["fits"] else f" (breaks {', '.join(figs['violations'])})"))
    base_acc = R.accuracy(graph, x_val, y_val, T, rule, batch_size=max(len(y_val), 1))
    while not meets(figs):
        best = None
        cur_syn = graph_figures(pruned(keep))["synapses"]
        for g in groups:
            if keep[g.name] <= 1:
                continue
            k = dict(keep)
            k[g.name] = max(1, keep[g.name] - max(1, int(math.ceil(step * keep[g.name]))))
            gp = pruned(k)
            saved = cur_syn - graph_figures(gp)["synapses"]
            loss = base_acc - R.accuracy(gp, x_val, y_val, T, rule, batch_size=max(len(y_val), 1))
            cost = (max(loss, 0.0) + 1e-4) / max(saved, 1)
            if best is None or cost < best[0]:
                best = (cost, k, loss)
        if best is None:
            floor = figures_of({g.name: 1 for g in groups})
            reach = f"{floor[kind]:,.0f} {kind}" + ("" if floor["fits"] else
                                                   f" (and it still breaks {', '.join(floor['violations'])})")
            raise BudgetError(f"budget {kind}={value:g} cannot be met by pruning channels: the smallest reachable is "
                              f"{reach}, with one channel left in every prunable layer")
        keep = best[1]
        figs = figures_of(keep)
        steps.append({"keep": dict(keep), kind: figs[kind], "fits": figs["fits"], "val_accuracy_loss": best[2]})
        say(f"  keep {keep}: {figs[kind]:,.0f} {kind}, fits: {figs['fits']}, held-out accuracy "
            f"{100 * (base_acc - best[2]):.2f}%")
    return keep, {"budget": {"resource": kind, "value": value}, "criterion": criterion, "reached": figs[kind],
                  "held_out_samples": int(len(y_val)), "held_out_accuracy_before": base_acc, "steps": steps,
                  "method": "greedy over measured per-layer sensitivities (snnc.passes.budget)"}
