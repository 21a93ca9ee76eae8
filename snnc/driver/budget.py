"""Compress to fit: per-layer keep counts that meet a resource budget, and chip figures of a graph.

:func:`chip_figures` measures a graph (before quantization) the way ``snnc compile`` would
build it: the remaining passes (``quantize``), the real loihi-sim mapper (cores, mapped
synapses, synaptic memory, every design rule) and, with inputs, the bit-accurate simulator
(SynOps and energy per inference on those inputs). A mapping that breaks limits is still
measured (with ``fits = False`` and the violated rules).

:func:`search_budget` finds per-group channel counts for ``prune_channels`` that meet a budget
(``cores``, ``synapses`` (mapped), ``synops`` or ``memory_bits``) at the least accuracy loss on
held-out calibration images, in the spirit of Chen et al., "Resource Constrained Model
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
3. measure the result with :func:`chip_figures` (the real mapper; the simulator for SynOps);
   stop when it fits the target and the budget.

A budget the greedy cannot reach even with one channel left in every group raises
:class:`BudgetError` naming the smallest reachable value.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from snnc.errors import SnncError
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.energy import measure
from snnc.backends.loihi.sim import Program, slice_counts_for
from snnc.ir import graph_figures
from snnc.ir import readout as R
from snnc.passes import PassContext
from snnc.passes.prune import channel_groups, group_scores, prune

RESOURCES = ("cores", "synapses", "synops", "memory_bits")


class BudgetError(SnncError):
    """The budget cannot be met (the message names the smallest reachable value)."""


def parse_budget(text: str) -> tuple[str, float]:
    """``"cores=24"`` -> ``("cores", 24.0)``.

    Raises:
        ValueError: not ``RESOURCE=VALUE`` with a known resource and a positive number.
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


def chip_figures(graph, post_passes, target, ctx, x_sim: np.ndarray | None = None, batch_size: int = 256,
                 formats: str = "auto", max_cores: int | None = None, max_chips: int | None = None) -> dict:
    """Figures of ``graph`` compiled for ``target`` after ``post_passes`` (a Pipeline, e.g. quantize).

    ``formats``, ``max_cores`` and ``max_chips`` are those of
    :func:`snnc.backends.loihi.compile.compile_graph` (``"discrete"``: one input axon per source
    neuron and a weight per synapse; needing more cores or chips than the limits is a violation).

    Returns ``neurons``, ``graph_synapses`` (as the pipeline log counts them), ``synapses`` (mapped),
    ``memory_bits``, ``cores``, ``chips``, ``fits`` and ``violations`` (rule names), and with
    ``x_sim`` (``[N, *input_shape]`` direct input) ``synops`` and ``energy_pJ`` per inference.
    """

    fig = graph_figures(graph)
    q = post_passes.run(graph, PassContext(target=target, calibration=ctx.calibration, num_steps=ctx.num_steps,
                                           seed=ctx.seed))
    config, arrays, violations = compile_graph(q, target, raise_on_violation=False, formats=formats,
                                               max_cores=max_cores, max_chips=max_chips)
    out = {"neurons": fig["neurons"], "graph_synapses": fig["synapses"], "parameters": fig["parameters"],
           "synapses": int(sum(c["synapses"] for c in config["cores"])),
           "memory_bits": int(sum(c["memory_bits"] for c in config["cores"])),
           "cores": len(config["cores"]), "chips": max(c["chip"] for c in config["cores"]) + 1,
           "fits": not violations, "violations": sorted({v.rule for v in violations})}
    if x_sim is not None:
        prog = Program(config, arrays, target, core_limits=False)
        res = prog.run(x_sim, batch_size=batch_size)
        m = measure(prog, res, slice_counts_for(prog))
        out["synops"] = float(m["per_inference"]["synops"])
        out["energy_pJ"] = float(m["energy"]["per_inference_pJ"])
    return out


def search_budget(graph, ctx, target, post_passes, budget: tuple[str, float], criterion: str,
                  x_val: np.ndarray, y_val: np.ndarray, x_sim: np.ndarray | None = None, step: float = 0.1,
                  log=None, formats: str = "auto", max_cores: int | None = None,
                  max_chips: int | None = None) -> tuple[dict, dict]:
    """Channel counts per prunable group that meet ``budget`` (see module docstring).

    Args:
        graph: the graph before pruning and quantization (e.g. after fold_bn).
        ctx: the PassContext (calibration data, T, seed) of the compile.
        post_passes: what follows pruning (the quantize pass), used to measure.
        budget: ``(resource, value)`` from :func:`parse_budget`.
        x_val, y_val: held-out images and labels for the accuracy (not the calibration images).
        x_sim: inputs for the simulator (SynOps budgets; also the SynOps/energy figures).
        formats, max_cores, max_chips: the mapping the result must fit (see :func:`chip_figures`);
            with ``formats="discrete"`` a readout that listens to more than 4,096 neurons breaks
            ``GROUP_FAN_IN`` until enough of its source channels are pruned.

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
        return chip_figures(pruned(k), post_passes, target, ctx, sim_in, formats=formats, max_cores=max_cores,
                            max_chips=max_chips)

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
                  "formats": formats, "method": "greedy over measured per-layer sensitivities (snnc.driver.budget)"}
