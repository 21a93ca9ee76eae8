"""``fold_bn``: fold BatchNorm into the preceding weights; two weighted nodes in a row into one; make
thresholds uniform (exact).

BatchNorm (traced as a diagonal 1x1 ``nir.Conv2d`` with ``snnc.op =
"batchnorm2d"``, eval statistics) computes ``y = scale * x + shift`` per
channel. Behind a Conv2d/Affine ``x = W a + b`` whose only consumer it is,
it folds exactly into ``W' = scale * W``, ``b' = scale * b + shift``.

Threshold folding: Loihi has one vth per neuron group. A spiking neuron node
whose ``v_threshold`` differs across neurons (a per-channel threshold, e.g.
learned) is made uniform: every input of the node is scaled per neuron by
``k = v_th_ref / v_th`` (weights and biases of its weighted predecessors, and
``v_leak``), which scales v by k and leaves every spike unchanged (LIF
dynamics are linear below threshold; reset to zero/subtract scale with v).
``v_th_ref`` is the largest threshold. Done only where every predecessor is a
Conv2d/Affine/Linear feeding this node alone (per channel for Conv2d).
"""
from __future__ import annotations

import nir
import numpy as np

from snnc.ir import (SPIKING_TYPES, back_edges, fresh_name, own_copy, predecessors, set_types, successors,
                     topological_order)
from snnc.passes.manager import PassContext, register


def _is_bn(node) -> bool:
    return isinstance(node, nir.Conv2d) and (node.metadata or {}).get("snnc.op") == "batchnorm2d"


def fold_batchnorm(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Fold every foldable BatchNorm node in place; returns ``(graph, folded names, not foldable names)``."""
    folded, kept = [], []
    for name in topological_order(graph):
        node = graph.nodes.get(name)
        if node is None or not _is_bn(node):
            continue
        preds = predecessors(graph, name)
        prev = graph.nodes[preds[0]] if len(preds) == 1 else None
        if prev is None or not isinstance(prev, (nir.Conv2d, nir.Affine)) or _is_bn(prev) or \
                successors(graph, preds[0]) != [name]:
            kept.append(name)
            continue
        scale = np.diagonal(node.weight[:, :, 0, 0]).astype(np.float64)
        shift = np.asarray(node.bias, np.float64)
        w = np.asarray(prev.weight, np.float64)
        prev.weight = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        prev.bias = (np.asarray(prev.bias, np.float64) * scale + shift).astype(np.float32)
        prev.metadata = dict(prev.metadata or {}, **{"snnc.folded_bn": name})
        succ = successors(graph, name)
        graph.edges = [e for e in graph.edges if name not in e] + [(preds[0], s) for s in succ]
        del graph.nodes[name]
        folded.append(name)
    return graph, folded, kept


def _wb(node) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(node.weight, np.float64)
    return w, (np.asarray(node.bias, np.float64) if isinstance(node, nir.Affine) else np.zeros(w.shape[0]))


def fold_linear_chains(graph: nir.NIRGraph) -> list[str]:
    """Fold Affine/Linear nodes that feed another Affine/Linear into it, in place, exactly (in float64, one rounding
    to float32): two weighted nodes in a row cannot be lowered (one projection holds one weight matrix).

    A node ``N`` (``W2``, ``b2``) reads the sum of its predecessors; for each predecessor ``p`` that is an
    Affine/Linear (``W1``, ``b1``) ``N``'s part through ``p`` is ``W2 W1 y + W2 b1`` on ``p``'s own input ``y``:

    - ``p`` feeds only ``N`` and is ``N``'s only input: ``p`` and ``N`` become one node (``W = W2 W1``,
      ``b = W2 b1 + b2``; it keeps ``N``'s name);
    - otherwise (``N`` also reads other nodes, or ``p`` also feeds others, e.g. a residual skip): a new node
      ``<N>.<p>`` (``W2 W1``, ``W2 b1``) reads ``p``'s inputs and feeds ``N``'s successors, ``N`` keeps its other
      inputs (and ``b2``; when it has none left, ``b2`` moves to the first new node and ``N`` is removed), and
      ``p`` stays for its other successors (removed when it has none). NIR sums every node's inputs, so the
      successors see the same sum.

    Not across a recurrent (back) edge. Returns ``["p+N", ...]``.
    """
    folded = []
    changed = True
    while changed:
        changed = False
        back = back_edges(graph)
        cyclic = {n for e in back for n in e}
        for name in topological_order(graph):
            node = graph.nodes.get(name)
            if not isinstance(node, (nir.Affine, nir.Linear)):
                continue
            preds = predecessors(graph, name)
            lin = [p for p in preds if p not in cyclic and (p, name) not in back
                   and isinstance(graph.nodes[p], (nir.Affine, nir.Linear))
                   and np.asarray(graph.nodes[p].weight).ndim == 2 and np.asarray(node.weight).ndim == 2
                   and np.asarray(node.weight).shape[1] == np.asarray(graph.nodes[p].weight).shape[0]]
            if not lin:
                continue
            w2, b2 = _wb(node)
            succ = successors(graph, name)
            md = dict(node.metadata or {})
            if len(preds) == 1 and successors(graph, lin[0]) == [name] and name not in cyclic:
                p = lin[0]
                w1, b1 = _wb(graph.nodes[p])
                affine = isinstance(graph.nodes[p], nir.Affine) or isinstance(node, nir.Affine)
                md["snnc.folded_affine"] = p
                graph.nodes[name] = nir.Affine(weight=(w2 @ w1).astype(np.float32), bias=(w2 @ b1 + b2).astype(
                    np.float32), metadata=md) if affine else nir.Linear(weight=(w2 @ w1).astype(np.float32), metadata=md)
                graph.edges = [e for e in graph.edges if p not in e] + [(q, name) for q in predecessors(graph, p)]
                del graph.nodes[p]
                folded.append(f"{p}+{name}")
                changed = True
                break
            if any((name, d) in back for d in succ):
                continue  # name's output closes a cycle: a split node would feed it a step early
            rest = [q for q in preds if q not in lin]
            new_names = []
            for p in lin:
                w1, b1 = _wb(graph.nodes[p])
                new = fresh_name(graph, f"{name}.{p}")
                bias = w2 @ b1 + (b2 if not rest and not new_names else 0.0)
                graph.nodes[new] = nir.Affine(weight=(w2 @ w1).astype(np.float32), bias=bias.astype(np.float32),
                                              metadata=dict(md, **{"snnc.folded_affine": p}))
                graph.edges = [e for e in graph.edges if e != (p, name)] + \
                    [(q, new) for q in predecessors(graph, p)] + [(new, d) for d in succ]
                if not successors(graph, p):
                    graph.edges = [e for e in graph.edges if e[1] != p]
                    del graph.nodes[p]
                new_names.append(new)
                folded.append(f"{p}+{name}")
            if not rest:
                graph.edges = [e for e in graph.edges if name not in e]
                del graph.nodes[name]
            changed = True
            break
    if folded:
        set_types(graph)
    return folded


def fold_thresholds(graph: nir.NIRGraph) -> tuple[list[str], list[str]]:
    folded, skipped = [], []
    back = back_edges(graph)
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, SPIKING_TYPES):
            continue
        th = np.asarray(node.v_threshold, np.float64)
        if th.size == 0 or np.all(th == th.reshape(-1)[0]):
            continue
        preds = []
        for p in predecessors(graph, name):  # through NIR Delays (a per-neuron scale commutes with a delay)
            chain = name
            while isinstance(graph.nodes[p], nir.Delay) and successors(graph, p) == [chain] and \
                    len(predecessors(graph, p)) == 1:
                chain, p = p, predecessors(graph, p)[0]
            preds.append((p, chain))
        ok = all(isinstance(graph.nodes[p], (nir.Conv2d, nir.Affine, nir.Linear)) and
                 (successors(graph, p) == [c] or (p, c) not in back) for p, c in preds) and np.all(th > 0)
        if ok and any(isinstance(graph.nodes[p], nir.Conv2d) for p, _ in preds):
            per_c = th.reshape(th.shape[0], -1)
            ok = bool(np.all(per_c == per_c[:, :1]))
        if ok:  # a weighted node that also feeds other nodes: this neuron node's chain gets its own copy to scale
            own = {}
            for p, c in dict.fromkeys(preds):  # one copy per (node, chain), each scaled once
                own[own_copy(graph, p, c) if successors(graph, p) != [c] else p] = None
            preds = list(own)
        if not ok:
            skipped.append(name)
            continue
        ref = float(th.max())
        k = ref / th
        for p in preds:
            pn = graph.nodes[p]
            kk = k.reshape(k.shape[0], -1)[:, 0] if isinstance(pn, nir.Conv2d) else k.reshape(-1)
            w = np.asarray(pn.weight, np.float64)
            pn.weight = (w * kk.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
            if isinstance(pn, (nir.Conv2d, nir.Affine)):
                pn.bias = (np.asarray(pn.bias, np.float64) * kk).astype(np.float32)
        if hasattr(node, "v_leak"):
            node.v_leak = (np.asarray(node.v_leak, np.float64) * k).astype(np.float32)
        if getattr(node, "v_reset", None) is not None:
            node.v_reset = (np.asarray(node.v_reset, np.float64) * k).astype(np.float32)
        node.v_threshold = np.full(th.shape, ref, np.float32)
        folded.append(name)
    return folded, skipped


@register("fold_bn", "fold BatchNorm into conv/affine weights and bias; fold Affine/Linear -> Affine/Linear into "
          "one product; fold per-neuron thresholds into the incoming weights so each neuron group has one "
          "threshold (exact)", thresholds=True)
def fold_bn_pass(graph: nir.NIRGraph, ctx: PassContext, thresholds: bool = True) -> nir.NIRGraph:
    graph, folded, kept = fold_batchnorm(graph)
    ctx.note(batchnorm_folded=folded, batchnorm_not_foldable=kept)
    chains = fold_linear_chains(graph)
    if chains:
        ctx.note(affine_chains_folded=chains)
    if thresholds:
        tf, ts = fold_thresholds(graph)
        ctx.note(thresholds_folded=tf, thresholds_not_foldable=ts)
    return graph
