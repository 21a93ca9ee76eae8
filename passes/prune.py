"""``prune_channels``: structured channel pruning of a NIR graph.

Removes whole output channels of Conv2d (output features of Affine/Linear) together with
everything tied to them, so the graph stays valid and smaller:

- the per-neuron parameters of the neuron nodes those channels feed (LIF, CubaLIF, IF, LI,
  CubaLI, I) and of Scale nodes on the way;
- the input channels (Conv) or input columns (Affine/Linear) of every consumer, through
  SumPool2d/AvgPool2d and Scale, and through a Flatten (channel ``c`` of a ``C x H x W``
  tensor owns the ``H*W`` columns ``c*H*W .. (c+1)*H*W - 1`` of the next Affine);
- residual sums: every branch summed into one node shares that node's channels, so all
  weighted nodes feeding it are pruned with the same kept indices (a recurrent projection
  into a neuron node likewise loses the same rows and columns).

**Channel groups.** The graph's tensors are partitioned into *channel spaces* with a
union-find over nodes (:func:`channel_groups`; networkx gives the order): a channel-preserving
node (neuron, pooling, Scale, Output) shares the space of its inputs, a node with several
inputs unifies them, and a weighted node starts a new space. A space is prunable when its
producers are weighted nodes with ungrouped weights and it reaches neither the network input
nor an Output (the readout is never pruned). Otherwise its channels are kept and the pass log
says why (``kept_whole``).

**Criteria** (:data:`CRITERIA`; each a scorer ``(group, graph, activity, rng) -> score per
channel``, higher = more important, ties broken by the lower channel index):

``l1``
    weight magnitude: ``s_c = sum_p ||W_p[c]||_1 / mean_c' ||W_p[c']||_1`` over the group's
    producers p (each producer normalised, so residual branches count alike).
``activity``
    spiking channel activity on calibration data, a one-shot score *inspired by* Li et al.,
    "Towards Efficient Deep Spiking Neural Networks Construction with Spiking Activity based
    Pruning", ICML 2024: ``s_c = mean_{n,t,x} |V_c| / v_th + mean_{n,t,x} S_c`` over samples n,
    time steps t and positions x of the group's neuron nodes, with V the membrane potential
    before the spike/reset and S the spikes (firing rate per neuron and step). The difference:
    Li et al. prune *during training* toward a sparsity schedule and regenerate channels; that
    method is ``snnc finetune --method sca --keep F`` (:mod:`snnc.driver.methods`). The name ``sca`` is
    kept for it and refused here with that pointer.
``attention``
    activation-attention on calibration data, a one-shot score *inspired by* Kundu et al., "Spike-Thrift: Towards
    Energy-Efficient Deep Spiking Neural Networks by Limiting Spiking Activity via
    Attention-Guided Compression", WACV 2021, whose attention maps are those of Zagoruyko &
    Komodakis (ICLR 2017): with spike counts ``a_{n,c}(x)`` over the T steps,
    ``A_n(x) = sum_c a_{n,c}(x)^2`` normalised to unit L2 norm per sample, the channel's
    score is its share of the attended activity ``s_c = mean_n sum_x A_n(x) a_{n,c}(x)^2``
    (a fully connected layer has one position: ``s_c = mean_n a_{n,c}^2``). The difference:
    Spike-Thrift uses these maps to distil the uncompressed model into the compressed one during
    training (``snnc finetune --method spike-thrift``), not to rank channels.
``random``
    a seeded random permutation (the control).

Options: ``criterion``; ``ratio`` — the fraction of each prunable group's channels to KEEP
(1.0 prunes nothing); ``ratios`` — per-group keep fractions ``"lif1=0.5 lif2=0.25"`` (groups are
named after their first neuron node; overrides ``ratio``); ``min_channels``; ``samples`` —
calibration samples for ``activity``/``attention``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import networkx as nx
import nir
import numpy as np
import torch

from snnc.errors import SnncError
from snnc.ir import NEURON_TYPES, SPIKING_TYPES, predecessors, topological_order
from snnc.ir import set_types
from snnc.ir.reference import run_graph
from snnc.passes.manager import PassContext, graph_num_steps, register
from snnc.passes.repair import repair_best as refit_consumers

WEIGHTED = (nir.Conv2d, nir.Conv1d, nir.Affine, nir.Linear)
CHANNEL_PRESERVING = NEURON_TYPES + (nir.AvgPool2d, nir.SumPool2d, nir.Scale)


@dataclass
class ChannelGroup:
    """Channels that must be pruned together.

    ``producers``: weighted nodes whose output channels these are (axis 0 of their weight);
    ``members``: neuron and Scale nodes whose per-neuron parameters are indexed along axis 0;
    ``neurons``: the neuron nodes (for activity criteria); ``consumers``: ``(node, block)`` —
    a weighted node whose input channel c is its input columns ``c*block .. (c+1)*block-1``
    (block 1: channel c is input channel/column c)."""
    name: str
    channels: int
    producers: list = field(default_factory=list)
    members: list = field(default_factory=list)
    neurons: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    prunable: bool = True
    reason: str = ""


def _is_bn(node) -> bool:
    return (getattr(node, "metadata", None) or {}).get("snnc.op") == "batchnorm2d"


def channel_groups(graph: nir.NIRGraph) -> list[ChannelGroup]:
    """The graph's channel groups in topological order (prunable or not, with the reason)."""
    order = topological_order(graph)
    pos = {n: i for i, n in enumerate(order)}
    nodes = graph.nodes
    uf = nx.utils.UnionFind(order)
    blocked: dict[str, str] = {}      # space member -> reason
    fixed: dict[str, str] = {}
    consumers: dict[str, list] = {}   # pred node -> weighted consumers
    preds = {n: predecessors(graph, n) for n in order}
    for v in order:
        node = nodes[v]
        ps = preds[v]
        if len(ps) > 1:  # summed inputs share channels
            uf.union(*ps)
        if isinstance(node, WEIGHTED):
            for u in ps:
                consumers.setdefault(u, []).append(v)
        elif isinstance(node, (nir.Output,) + CHANNEL_PRESERVING):
            for u in ps:
                uf.union(u, v)
        elif isinstance(node, (nir.Input, nir.Flatten)):
            pass
        else:
            for u in ps:
                blocked[u] = f"it reaches node {v!r} of type {type(node).__name__}, which prune_channels cannot follow"
            blocked[v] = f"it comes from node {v!r} of type {type(node).__name__}"
        if isinstance(node, nir.Input):
            fixed[v] = "it is the network input"
        if isinstance(node, nir.Output):
            fixed[v] = "it feeds an Output (the readout is never pruned)"
    spaces: dict[str, list[str]] = {}
    for n in order:
        spaces.setdefault(uf[n], []).append(n)

    def space_consumers(root: str) -> tuple[list, str]:
        """Weighted consumers of a space with their column block; a reason if one cannot be followed."""
        out = []
        for m in spaces[root]:
            for c in consumers.get(m, []):
                out.append((c, 1))
        for m in spaces[root]:
            for f in [d for s, d in graph.edges if s == m and isinstance(nodes[d], nir.Flatten)]:
                fnode = nodes[f]
                fspace = spaces[uf[f]]
                shp = _node_in_shape(fnode)
                if shp is None:
                    return out, f"Flatten {f!r} has no input shape"
                nd = len(shp)
                if nd > 1 and (fnode.start_dim % nd != 0 or fnode.end_dim % nd != nd - 1):
                    return out, f"Flatten {f!r} does not flatten a whole channel-first tensor"
                others = [x for x in fspace if x != f]
                if others:
                    return out, f"the output of Flatten {f!r} goes on into {others[0]!r} unweighted"
                block = int(np.prod(shp[1:])) if nd > 1 else 1
                for c in consumers.get(f, []):
                    out.append((c, block))
                if not consumers.get(f):
                    return out, f"Flatten {f!r} feeds no weighted node"
        return out, ""

    groups = []
    for root, members in spaces.items():
        producers = [m for m in members if isinstance(nodes[m], WEIGHTED)]
        if not producers:
            continue
        # a weighted node's own space is its output; consumers of the space take its channels as input
        producers = [m for m in producers if uf[m] == root]
        neurons = [m for m in members if isinstance(nodes[m], NEURON_TYPES)]
        label = (neurons or producers)[0]
        cons, why = space_consumers(root)
        chans = {int(np.shape(nodes[p].weight)[0]) for p in producers}
        g = ChannelGroup(name=label, channels=max(chans), producers=producers,
                         members=[m for m in members if isinstance(nodes[m], NEURON_TYPES + (nir.Scale,))],
                         neurons=neurons, consumers=cons)
        reasons = [fixed[m] for m in members if m in fixed] + [blocked[m] for m in members if m in blocked]
        if why:
            reasons.append(why)
        if len(chans) != 1:
            reasons.append(f"its producers have different channel counts {sorted(chans)}")
        for p in producers:
            pn = nodes[p]
            if _is_bn(pn):
                reasons.append(f"BatchNorm {p!r} is not folded (run fold_bn first)")
            if getattr(pn, "groups", 1) != 1:
                reasons.append(f"{p!r} is a grouped convolution")
        for c, _ in cons:
            if getattr(nodes[c], "groups", 1) != 1:
                reasons.append(f"consumer {c!r} is a grouped convolution")
            if _is_bn(nodes[c]):
                reasons.append(f"consumer BatchNorm {c!r} is not folded (run fold_bn first)")
        for m in g.members:
            shp = np.shape(_first_param(nodes[m]))
            if shp and shp[0] != g.channels:
                reasons.append(f"node {m!r} has {shp[0]} channels, its producers {g.channels}")
        if reasons:
            g.prunable, g.reason = False, "; ".join(dict.fromkeys(reasons))
        groups.append(g)
    groups.sort(key=lambda g: min(pos[p] for p in g.producers))
    return groups


def _first_param(node):
    for attr in ("v_threshold", "tau_mem", "tau", "r", "scale"):
        if getattr(node, attr, None) is not None:
            return getattr(node, attr)
    return np.zeros(0)


def _node_in_shape(node):
    types = node.input_type or {}
    arr = next(iter(types.values()), None) if types else None
    if arr is None:
        return None
    arr = np.asarray(arr).reshape(-1)
    return tuple(int(v) for v in arr) if arr.size and arr.dtype.kind in "iuf" else None


# --------------------------------------------------------------------------- applying a keep set

def apply_keep(graph: nir.NIRGraph, group: ChannelGroup, keep: np.ndarray, criterion: str = "") -> None:
    """Keep channels ``keep`` (sorted indices) of ``group`` in ``graph`` (in place)."""
    keep = np.asarray(keep, np.int64)
    C = group.channels
    for p in group.producers:
        n = graph.nodes[p]
        n.weight = np.ascontiguousarray(np.asarray(n.weight)[keep])
        if getattr(n, "bias", None) is not None and np.ndim(n.bias) >= 1:
            n.bias = np.ascontiguousarray(np.asarray(n.bias)[keep])
        n.metadata = dict(n.metadata or {}, **{"snnc.pruned": {"kept": int(len(keep)), "total": int(C),
                                                               "criterion": criterion,
                                                               "indices": np.asarray(keep, np.int64)}})
    for m in group.members:
        n = graph.nodes[m]
        for key, val in list(vars(n).items()):
            if key in ("metadata", "input_type", "output_type") or not isinstance(val, np.ndarray):
                continue
            if val.ndim >= 1 and val.shape[0] == C:
                setattr(n, key, np.ascontiguousarray(val[keep]))
    for c, block in group.consumers:
        n = graph.nodes[c]
        w = np.asarray(n.weight)
        cols = keep if block == 1 else (keep[:, None] * block + np.arange(block)[None, :]).reshape(-1)
        n.weight = np.ascontiguousarray(w[:, cols])
    for f in [d for s, d in graph.edges if s in group.members + group.producers
              and isinstance(graph.nodes[d], nir.Flatten)]:
        fn = graph.nodes[f]
        shp = _node_in_shape(fn)
        if shp is not None:
            fn.input_type = {"input": np.array((len(keep),) + shp[1:])}


# --------------------------------------------------------------------------- activity on calibration data

def record_activity(graph: nir.NIRGraph, groups: list[ChannelGroup], ctx: PassContext,
                    samples: int) -> dict[str, dict[str, torch.Tensor]]:
    """Per neuron node of ``groups``: ``{"s": spikes, "v": membrane potential before reset}``,
    each ``[T, N, *shape]`` float32, from a reference run on up to ``samples`` calibration inputs."""

    if ctx.calibration is None:
        raise SnncError("prune_channels: criteria 'activity' and 'attention' need calibration data "
                         "(compile with --data, or pass PassContext(calibration=...))")
    names = sorted({n for g in groups for n in g.neurons})
    record = tuple(names) + tuple(f"{n}#vpre" for n in names)
    spikes = (graph.metadata or {}).get("snnc.input_encoding") == "spikes"
    x = np.asarray(ctx.calibration, np.float32)
    if spikes:
        _, rec = run_graph(graph, x[:, :samples], None, record=record, dtype=torch.float32)
    else:
        T = graph_num_steps(graph, ctx)
        if not T:
            raise SnncError("prune_channels: T (num_steps) is needed to run the calibration data")
        _, rec = run_graph(graph, x[:samples], T, record=record, dtype=torch.float32)
    return {n: {"s": rec[n].float(), "v": rec[f"{n}#vpre"].float()} for n in names}


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """``[T, N, C, ...]`` -> ``[T, N, C, P]``."""
    return t.reshape(t.shape[0], t.shape[1], t.shape[2], -1)


def score_l1(group, graph, activity, rng) -> np.ndarray:
    s = np.zeros(group.channels)
    for p in group.producers:
        w = np.abs(np.asarray(graph.nodes[p].weight, np.float64)).reshape(group.channels, -1).sum(1)
        s += w / max(w.mean(), 1e-30)
    return s


def score_activity(group, graph, activity, rng) -> np.ndarray:
    s = np.zeros(group.channels)
    for n in group.neurons:
        node = graph.nodes[n]
        v = _per_channel(activity[n]["v"]).abs()
        if isinstance(node, SPIKING_TYPES):
            thr = torch.as_tensor(np.abs(np.asarray(node.v_threshold, np.float32))).reshape(group.channels, -1)
            v = v / thr.clamp_min(1e-12)
            s += _per_channel(activity[n]["s"]).mean(dim=(0, 1, 3)).double().numpy()
        s += v.mean(dim=(0, 1, 3)).double().numpy()
    return s


def score_attention(group, graph, activity, rng) -> np.ndarray:
    s = np.zeros(group.channels)
    for n in group.neurons:
        node = graph.nodes[n]
        act = activity[n]["s"] if isinstance(node, SPIKING_TYPES) else activity[n]["v"].abs()
        a2 = _per_channel(act).sum(0).double() ** 2                  # [N, C, P] squared spike counts
        A = a2.sum(1, keepdim=True)                                   # [N, 1, P] attention map
        A = A / A.norm(dim=2, keepdim=True).clamp_min(1e-12)
        s += (A * a2).sum(2).mean(0).numpy()
    return s


def score_random(group, graph, activity, rng) -> np.ndarray:
    return rng.permutation(group.channels).astype(np.float64)


CRITERIA = {"l1": score_l1, "activity": score_activity, "attention": score_attention, "random": score_random}
NEEDS_DATA = ("activity", "attention")
#: Criterion names that belong to a during-training method, with where that method is.
TRAINING_ONLY = {"sca": "Li et al.'s spiking-channel-activity pruning prunes and regenerates channels during "
                        "training: snnc finetune --method sca --keep F; the one-shot activity score is criterion "
                        "'activity'"}


def check_criterion(criterion: str, where: str) -> None:
    """Refuse an unknown criterion in one line, pointing ``sca`` to its during-training method.

    Raises:
        ValueError: ``criterion`` is not in :data:`CRITERIA`.
    """
    if criterion in TRAINING_ONLY:
        raise SnncError(f"{where}: criterion {criterion!r} is not a one-shot score. {TRAINING_ONLY[criterion]}")
    if criterion not in CRITERIA:
        raise SnncError(f"{where}: {criterion!r} is not one of {', '.join(CRITERIA)}")


def choose_keep(scores: np.ndarray, n_keep: int) -> np.ndarray:
    """Indices of the ``n_keep`` highest scores (ties: lower index first), sorted."""
    order = sorted(range(len(scores)), key=lambda c: (-float(scores[c]), c))
    return np.array(sorted(order[:n_keep]), np.int64)


def parse_ratios(text: str) -> dict[str, float]:
    """``"lif1=0.5 lif2=0.25"`` -> ``{"lif1": 0.5, "lif2": 0.25}``.

    Raises:
        ValueError: a malformed entry or a fraction outside (0, 1].
    """
    out = {}
    for item in text.replace(",", " ").split():
        name, sep, val = item.partition("=")
        try:
            f = float(val)
        except ValueError:
            f = float("nan")
        if not sep or not name or not 0 < f <= 1:
            raise SnncError(f"pass 'prune_channels', option ratios: {item!r} is not NAME=FRACTION with a "
                             "fraction in (0, 1]")
        out[name] = f
    return out


def group_scores(graph: nir.NIRGraph, ctx: PassContext, criterion: str, groups: list[ChannelGroup],
                 samples: int = 256) -> dict[str, np.ndarray]:
    """``{group name: score per channel}`` by ``criterion`` for ``groups`` of ``graph``.

    Raises:
        ValueError: unknown criterion; activity/attention without calibration data.
    """
    check_criterion(criterion, "pass 'prune_channels', option criterion")
    activity = record_activity(graph, groups, ctx, samples) if groups and criterion in NEEDS_DATA else {}
    rng = np.random.default_rng(ctx.seed)
    return {g.name: CRITERIA[criterion](g, graph, activity, rng) for g in groups}


def prune(graph: nir.NIRGraph, ctx: PassContext, criterion: str, keep: dict[str, int] | float,
          samples: int = 256, min_channels: int = 1, scores: dict | None = None) -> tuple[nir.NIRGraph, dict]:
    """Prune ``graph`` in place: ``keep`` is a keep fraction for every prunable group or
    ``{group name: channels to keep}``; ``scores`` (from :func:`group_scores`) skips scoring.
    Returns ``(graph, log)`` with per-group kept/total and the reasons groups were kept whole.

    Raises:
        ValueError: unknown criterion, a quantized graph, missing calibration data for activity/attention,
            unknown group names.
    """

    check_criterion(criterion, "pass 'prune_channels', option criterion")
    if (graph.metadata or {}).get("snnc.quantized"):
        raise SnncError("prune_channels must run before quantize (the graph is already quantized)")
    groups = channel_groups(graph)
    prunable = [g for g in groups if g.prunable]
    if isinstance(keep, dict):
        unknown = sorted(set(keep) - {g.name for g in prunable})
        if unknown:
            raise SnncError(f"prune_channels: no prunable group named {unknown}; prunable: "
                             f"{[g.name for g in prunable]}")
        counts = {g.name: int(np.clip(keep.get(g.name, g.channels), 1, g.channels)) for g in prunable}
    else:
        counts = {g.name: int(np.clip(round(keep * g.channels), min(min_channels, g.channels), g.channels))
                  for g in prunable}
    todo = [g for g in prunable if counts[g.name] < g.channels]
    if scores is None:
        scores = group_scores(graph, ctx, criterion, todo, samples)
    log = {"criterion": criterion, "groups": {}, "kept_whole": {g.name: g.reason for g in groups if not g.prunable}}
    for g in prunable:
        n_keep = counts[g.name]
        log["groups"][g.name] = {"kept": n_keep, "total": g.channels, "producers": g.producers}
        if n_keep < g.channels:
            apply_keep(graph, g, choose_keep(scores[g.name], n_keep), criterion)
    set_types(graph)
    return graph, log


#: fitting samples the repair reads by default (more help: fmnist_cnn keep 0.5 l1, readout refit: 8,192 -> 87.35%,
#: 20,000 -> 87.77% float on the 10,000 test images; fmnist_wide, every layer refit: 90.71% -> 91.13%)
REPAIR_SAMPLES = 20000


def repair_cut(pruned: nir.NIRGraph, original: nir.NIRGraph, ctx, samples: int = REPAIR_SAMPLES) -> dict:
    """Repair every consumer of the channels cut from ``original`` to give ``pruned`` (same node names),
    on the first ``samples`` fitting samples of the training split (``ctx.fit_samples``), else on the
    calibration samples (``ctx.calibration``). Returns the log: ``{"samples", "data", "layers": {...}}``
    (:func:`snnc.passes.repair.repair_best`; ``"choice"``: which candidate was kept and the readout input error of
    each), or ``{"not_run": reason}`` when there is no data or nothing was cut."""
    groups = [g for g in channel_groups(original) if g.prunable]
    cut = [g for g in groups if any((pruned.nodes[p].metadata or {}).get("snnc.pruned") for p in g.producers)]
    if not cut:
        return {"not_run": "no channel was cut"}
    spikes = (original.metadata or {}).get("snnc.input_encoding") == "spikes"
    if ctx.fit_samples is not None:
        x, where = np.asarray(ctx.fit_samples(samples), np.float32), "training split (fitting samples)"
    elif ctx.calibration is not None:
        x, where = np.asarray(ctx.calibration, np.float32), "calibration samples"
    else:
        return {"not_run": "no data (compile with --data, or PassContext(calibration=...))"}
    T = graph_num_steps(original, ctx)
    consumers = sorted({c for g in cut for c, _ in g.consumers})
    out_rows = {}
    for g in groups:
        for p in g.producers:
            md = (pruned.nodes[p].metadata or {}).get("snnc.pruned")
            if md is not None and p in consumers:
                out_rows[p] = np.asarray(md["indices"], np.int64)
    layers = refit_consumers(pruned, original, consumers, x, int(T), spikes=spikes, seed=ctx.seed, out_rows=out_rows)
    choice = layers.pop("_choice", None)
    n = x.shape[1] if spikes else x.shape[0]
    return {"samples": int(n), "data": where, "layers": layers, **({"choice": choice} if choice else {})}


def _check_options(o: dict) -> None:
    check_criterion(o["criterion"], "pass 'prune_channels', option criterion")
    if not 0 < o["ratio"] <= 1:
        raise SnncError(f"pass 'prune_channels', option ratio: {o['ratio']} is outside (0, 1] (the fraction of "
                         "channels to keep)")
    if o["ratios"]:
        parse_ratios(o["ratios"])
    if o["min_channels"] < 1 or o["samples"] < 1 or o["repair_samples"] < 1:
        raise SnncError("pass 'prune_channels': min_channels, samples and repair_samples must be >= 1")


@register("prune_channels", "remove whole output channels (conv) / features (dense) and everything tied to them; "
          "criteria l1, activity (spiking channel activity, one-shot), attention, random; ratio = fraction of channels kept; "
          "repair (default on): refit the layers that read cut channels in closed form",
          check=_check_options, criterion="l1", ratio=0.5, ratios="", min_channels=1, samples=256, repair=True,
          repair_samples=REPAIR_SAMPLES)
def prune_channels_pass(graph: nir.NIRGraph, ctx: PassContext, criterion: str = "l1", ratio: float = 0.5,
                        ratios: str = "", min_channels: int = 1, samples: int = 256, repair: bool = True,
                        repair_samples: int = REPAIR_SAMPLES) -> nir.NIRGraph:
    per = parse_ratios(ratios) if ratios else {}
    groups = {g.name: g for g in channel_groups(graph) if g.prunable}
    unknown = sorted(set(per) - set(groups))
    if unknown:
        raise SnncError(f"pass 'prune_channels', option ratios: no prunable group {unknown}; prunable: "
                         f"{sorted(groups)}")
    keep = {name: int(np.clip(round(per.get(name, ratio) * g.channels), min(min_channels, g.channels), g.channels))
            for name, g in groups.items()}
    original = copy.deepcopy(graph) if repair else None
    graph, log = prune(graph, ctx, criterion, keep, samples, min_channels)
    rlog = repair_cut(graph, original, ctx, repair_samples) if repair else {"not_run": "repair=false"}
    if "layers" in rlog:
        set_types(graph)
        if ctx.say:
            ctx.say("repaired " + ", ".join(f"{k} (output error {v['error_before']:.2f} -> {v['error_after']:.2f})"
                                            for k, v in rlog["layers"].items() if "error_after" in v)
                    + f" on {rlog['samples']:,} {rlog['data']}"
                    + (f"; kept the {rlog['choice']['kept']} candidate (readout input error "
                       + ", ".join(f"{k} {v}" for k, v in rlog["choice"]["readout_error"].items()) + ")"
                       if "choice" in rlog else ""))
    graph.metadata = dict(graph.metadata or {}, **{"snnc.pruning": {
        "criterion": criterion, "layers": {k: {"kept": v["kept"], "total": v["total"]} for k, v in log["groups"].items()},
        "repair": plain_repair(rlog)}})
    ctx.note(criterion=criterion, groups={k: f"{v['kept']}/{v['total']}" for k, v in log["groups"].items()},
             kept_whole=log["kept_whole"], repair=plain_repair(rlog))
    return graph


def plain_repair(rlog: dict) -> dict:
    """The repair log as plain data, errors rounded (report.json, graph metadata)."""
    if "layers" not in rlog:
        return dict(rlog)
    return {"samples": rlog["samples"], "data": rlog["data"], **({"choice": rlog["choice"]} if "choice" in rlog else {}),
            "layers": {k: ({"skipped": v["skipped"]} if "skipped" in v else
                           {"output_error_before": round(v["error_before"], 4),
                            "output_error_after": round(v["error_after"], 4), "rows": v["rows"], "fan_in": v["fan_in"]})
                       for k, v in rlog["layers"].items()}}
