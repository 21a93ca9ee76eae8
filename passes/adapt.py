"""``adapt_semantics``: convert a model to the neuron semantics the target keeps, optionally fine-tune.

What it changes (each change is a note in the pipeline log; see :mod:`snnc.ir.semantics`):

- every spiking neuron to reset-to-zero right after its spike, one spike per step, no voltage
  floor (the threshold comparison ``>``/``>=`` is kept: the target keeps both);
- with ``maxpool=avg``: every max pooling the chip cannot do exactly (max of membrane currents:
  not directly after a single-spike neuron or a spike input, and not on the host-computed first
  layer) becomes an ``AvgPool2d`` with the same kernel, stride and padding.

With ``finetune_epochs > 0`` and labelled training data (``ctx.train_data``: the compiler loads
``finetune_samples`` training samples of ``--data``), the converted graph's weights and biases
are fine-tuned with surrogate gradients (snnc's reference executor made differentiable: spikes
``v > v_th`` forward, fast-sigmoid derivative backward, Zenke & Ganguli 2018), Adam, toward the
*source model* (the user's model, not a new one): the labels are the source's own predictions and
its scores are distilled (:data:`AGREEMENT_DISTILL`), so what rises is the converted model's
agreement with the source. The last quarter of the samples is held out: the notes give the accuracy
of the source, converted and fine-tuned models on it (``accuracy_source``, ``accuracy_converted``,
``accuracy_finetuned``) and the prediction agreement with the source (``agreement_converted``,
``agreement_finetuned``).
"""
from __future__ import annotations

import copy

import nir
import numpy as np
import torch

from snnc.errors import SnncError
from snnc.ir import NEURON_TYPES, WEIGHTED_TYPES, predecessors, topological_order
from snnc.ir import readout as R
from snnc.ir.lowering import _binary_source
from snnc.ir.semantics import to_target
from snnc.passes.manager import PassContext, graph_num_steps, register


def _predictions(graph, x, T, spikes) -> np.ndarray:
    return R.scores(graph, x, T, spikes=spikes, dtype=torch.float32).argmax(1)


def _pool_source_kind(graph, name) -> str:
    """'binary' (max of spikes: exact OR), 'host' (on the host-computed first layer) or 'currents'."""
    preds = predecessors(graph, name)
    if len(preds) == 1 and _binary_source(graph, preds[0]):
        return "binary"
    node = preds[0] if preds else None
    seen = set()
    while node is not None and node not in seen:
        seen.add(node)
        n = graph.nodes[node]
        if isinstance(n, nir.Input):
            return "host" if (graph.metadata or {}).get("snnc.input_encoding", "direct") == "direct" else "currents"
        if isinstance(n, NEURON_TYPES):
            return "currents"
        ps = predecessors(graph, node)
        node = ps[0] if len(ps) == 1 else None
    return "currents"


def replace_maxpool(graph: nir.NIRGraph) -> list[str]:
    notes = []
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not (isinstance(node, nir.SumPool2d) and (node.metadata or {}).get("snnc.op") == "maxpool2d"):
            continue
        if _pool_source_kind(graph, name) != "currents":
            continue
        graph.nodes[name] = nir.AvgPool2d(kernel_size=np.asarray(node.kernel_size), stride=np.asarray(node.stride),
                                          padding=np.asarray(node.padding),
                                          metadata={"snnc.adapted_from": "MaxPool2d of membrane currents"})
        notes.append(f"{name}: MaxPool2d of membrane currents -> AvgPool2d (same kernel/stride)")
    return notes


#: weight of the soft (KL) term when fine-tuning toward the source model; the rest is cross-entropy on the
#: source's own predictions (Hinton et al. 2015's mix, with the source as the only teacher)
AGREEMENT_DISTILL = 0.5


def finetune(train, graph, x, y, num_steps, spikes, epochs, lr, batch_size, seed, say=None, source=None) -> None:
    """Fine-tune ``graph``'s weights and biases in place on ``x`` with ``train`` (the pass context's
    ``trainer``, which the compile driver fills with :func:`snnc.driver.finetune.finetune`: surrogate
    gradients through snnc's executor, Adam). With ``source`` (the graph before the conversion, run with its
    own semantics) the objective is agreement with the source, not accuracy: the labels are the source's own
    predictions on ``x`` and its scores are distilled (:data:`AGREEMENT_DISTILL`); ``y`` is then unused.
    Without ``source``: cross-entropy on ``y``."""
    kw = {}
    if source is not None:
        y = _predictions(source, x, num_steps, spikes)
        kw = dict(teacher=source, distill=AGREEMENT_DISTILL)
    model, _ = train(graph, x, y, num_steps, epochs=int(epochs), lr=lr, batch_size=batch_size, seed=seed,
                     flip=False, spikes=spikes, log=say, **kw)
    trained = model.to_nir()
    for name, node in trained.nodes.items():
        if isinstance(node, WEIGHTED_TYPES):
            for attr in ("weight", "bias"):
                if getattr(node, attr, None) is not None:
                    setattr(graph.nodes[name], attr, getattr(node, attr))


@register("adapt_semantics", "convert neurons to what the target keeps (reset to zero, one spike per step, no "
          "floor; maxpool=avg: max pooling of currents -> average pooling) and optionally fine-tune on the "
          "user's data (finetune_epochs > 0); notes accuracy before/after",
          maxpool="keep", finetune_epochs=0, lr=1e-3, batch_size=64)
def adapt_semantics_pass(graph: nir.NIRGraph, ctx: PassContext, maxpool: str = "keep", finetune_epochs: int = 0,
                         lr: float = 1e-3, batch_size: int = 64) -> nir.NIRGraph:
    if maxpool not in ("keep", "avg"):
        raise SnncError(f"adapt_semantics: maxpool must be 'keep' or 'avg', got {maxpool!r}")
    source = None
    data = getattr(ctx, "train_data", None)
    if data is not None:
        source = copy.deepcopy(graph)
    notes = to_target(graph)
    if maxpool == "avg":
        notes += replace_maxpool(graph)
    ctx.note(changed=notes)
    spikes = (graph.metadata or {}).get("snnc.input_encoding") == "spikes"
    T = graph_num_steps(graph, ctx)
    if data is None:
        if finetune_epochs:
            raise SnncError("adapt_semantics: finetune_epochs > 0 needs labelled training data "
                             "(snnc compile --data ...)")
        return graph
    if finetune_epochs and ctx.trainer is None:
        raise SnncError("adapt_semantics: finetune_epochs > 0 needs a trainer in the pass context "
                         "(snnc compile fills it; Python: PassContext(trainer=snnc.driver.finetune.finetune))")
    x, y = data
    n = len(y)
    cut = max(1, (3 * n) // 4)
    xtr, ytr = (x[:, :cut], y[:cut]) if spikes else (x[:cut], y[:cut])
    xva, yva = (x[:, cut:], y[cut:]) if spikes else (x[cut:], y[cut:])
    src_pred = _predictions(source, xva, T, spikes)
    conv_pred = _predictions(graph, xva, T, spikes)
    acc = {"samples_held_out": int(len(yva)),
           "accuracy_source": float((src_pred == yva).mean()),
           "accuracy_converted": float((conv_pred == yva).mean()),
           "agreement_converted": float((conv_pred == src_pred).mean())}
    if finetune_epochs:
        finetune(ctx.trainer, graph, xtr, ytr, T, spikes, finetune_epochs, lr, batch_size, ctx.seed, ctx.say,
                 source=source)
        ft_pred = _predictions(graph, xva, T, spikes)
        acc["accuracy_finetuned"] = float((ft_pred == yva).mean())
        acc["agreement_finetuned"] = float((ft_pred == src_pred).mean())
        acc["finetune_samples"] = int(len(ytr))
        acc["finetune_objective"] = ("agreement with the source model (its predictions as labels, its scores "
                                     f"distilled with weight {AGREEMENT_DISTILL})")
    ctx.note(**acc)
    return graph
