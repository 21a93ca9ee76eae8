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

from snnc.ir import SPIKING_TYPES, back_edges, predecessors, set_types, successors, topological_order
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


def fold_linear_chains(graph: nir.NIRGraph) -> list[str]:
    """Fold every Affine/Linear that feeds only another Affine/Linear into it, in place: ``W = W2 W1``,
    ``b = W2 b1 + b2`` (in float64, one rounding to float32) — the same map, which the target can hold as one
    projection (two weighted nodes in a row cannot be lowered). Not across a recurrent (back) edge. Returns
    ``["a1+a2", ...]`` (the folded node keeps the second name)."""
    folded = []
    cyclic = {n for e in back_edges(graph) for n in e}
    for name in topological_order(graph):
        node = graph.nodes.get(name)
        if not isinstance(node, (nir.Affine, nir.Linear)) or name in cyclic:
            continue
        preds = predecessors(graph, name)
        if len(preds) != 1 or preds[0] in cyclic:
            continue
        p = preds[0]
        prev = graph.nodes[p]
        if not isinstance(prev, (nir.Affine, nir.Linear)) or successors(graph, p) != [name]:
            continue
        w1, w2 = np.asarray(prev.weight, np.float64), np.asarray(node.weight, np.float64)
        if w1.ndim != 2 or w2.ndim != 2 or w2.shape[1] != w1.shape[0]:
            continue
        b1 = np.asarray(prev.bias, np.float64) if isinstance(prev, nir.Affine) else np.zeros(w1.shape[0])
        b2 = np.asarray(node.bias, np.float64) if isinstance(node, nir.Affine) else np.zeros(w2.shape[0])
        md = dict(node.metadata or {}, **{"snnc.folded_affine": p})
        if isinstance(prev, nir.Affine) or isinstance(node, nir.Affine):
            graph.nodes[name] = nir.Affine(weight=(w2 @ w1).astype(np.float32), bias=(w2 @ b1 + b2).astype(np.float32),
                                           metadata=md)
        else:
            graph.nodes[name] = nir.Linear(weight=(w2 @ w1).astype(np.float32), metadata=md)
        graph.edges = [e for e in graph.edges if p not in e] + [(q, name) for q in predecessors(graph, p)]
        del graph.nodes[p]
        folded.append(f"{p}+{name}")
    if folded:
        set_types(graph)
    return folded


def fold_thresholds(graph: nir.NIRGraph) -> tuple[list[str], list[str]]:
    folded, skipped = [], []
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
                 successors(graph, p) == [c] for p, c in preds) and np.all(th > 0)
        preds = [p for p, _ in preds]
        if ok and any(isinstance(graph.nodes[p], nir.Conv2d) for p in preds):
            per_c = th.reshape(th.shape[0], -1)
            ok = bool(np.all(per_c == per_c[:, :1]))
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
