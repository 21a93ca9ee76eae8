"""Semantics a target cannot keep: find them, convert them on purpose, measure what it costs.

A source model's neuron semantics live in its NIR nodes' ``snnc.*`` metadata
(:mod:`snnc.frontends.base`). loihi-sim (Loihi 1, lava-nc ``PyLifModelBitAcc``) keeps exactly:
reset to 0 right after the spike, the strict ``v > v_th`` comparison and ``v >= v_th`` (the
``quantize`` pass puts the integer threshold one LSB above a multiple of 64, so
``v >= s v_th`` equals ``v > vThMant << 6``), one spike per step, no voltage floor, and max
pooling of binary spikes (an OR group, :mod:`snnc.ir.lowering`).

Not kept (:func:`differences` lists them per node):

- reset "subtract" (snnTorch's default, SpikingJelly's soft reset, Sinabs' MembraneSubtract),
  "to_v_reset" with v_reset != 0, "none";
- snnTorch's next-step reset timing (zero reset of Synaptic/RLeaky/RSynaptic: the membrane is
  held at 0 for the step after a spike);
- several spikes per step (Sinabs' MultiSpike);
- a voltage floor (Sinabs' ``min_v_mem``; Loihi 1's per-core vmin = -2^vMinExp + 1, nengo-loihi
  ``CxGroup.discretize``, cannot sit at -v_th while v_th is a multiple of 64; lava-nc's
  bit-accurate LIF clips only at -(2^23 - 1)).

The compiler never changes these silently: it converts them with the ``adapt_semantics`` pass,
measures the agreement between the source semantics (float, snnc's reference executor) and the
compiled model (bit-accurate simulation) on the calibration inputs, reports it in
``report.json`` ``checks`` (``SEMANTIC_CHANGE``), and refuses unless ``allow_semantic_change``.
"""
from __future__ import annotations

import nir
import numpy as np

from snnc.ir import SPIKING_TYPES, topological_order


class SemanticChangeError(ValueError):
    """The target cannot keep the source's neuron semantics and the change was not allowed."""


def differences(graph: nir.NIRGraph) -> list[dict]:
    """Per spiking neuron node, what the target cannot keep: ``[{node, source, what, source_semantics,
    target_semantics}]`` (empty when everything is kept)."""
    out = []
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, SPIKING_TYPES):
            continue
        md = node.metadata or {}
        src = md.get("snnc.source", type(node).__name__)
        reset = md.get("snnc.reset", "zero")
        timing = md.get("snnc.reset_timing", "immediate")

        def add(what, s, t):
            out.append({"node": name, "source": src, "what": what, "source_semantics": s, "target_semantics": t})

        if reset == "to_v_reset" and not np.any(np.asarray(getattr(node, "v_reset", 0.0))):
            reset = "zero"
        if reset != "zero":
            add("reset", f"reset {reset!r}" + (" after the next update" if timing == "next_step" else ""),
                "reset to 0 right after the spike")
        elif timing == "next_step":
            add("reset", "reset to 0 of the next step's updated membrane (held at 0 one step)",
                "reset to 0 right after the spike")
        if md.get("snnc.spikes", "single") == "multi":
            add("spikes", "several spikes per step (floor(v / v_th))", "one spike per step")
        if "snnc.v_min" in md:
            add("v_min", f"voltage floor v_min = {md['snnc.v_min']:g}", "no floor")
    return out


def describe(diffs: list[dict]) -> str:
    """One line: ``lif1 (snntorch.Leaky): reset 'subtract' -> ...; ...``."""
    parts = []
    for d in diffs:
        parts.append(f"{d['node']} ({d['source']}): {d['source_semantics']} -> {d['target_semantics']}")
    return "; ".join(parts)


def to_target(graph: nir.NIRGraph) -> list[str]:
    """Convert (in place) every spiking node to what loihi-sim keeps: reset to 0 immediately, one
    spike per step, no floor (the threshold comparison is kept). Returns one note per node changed."""
    notes = []
    for d in differences(graph):
        node = graph.nodes[d["node"]]
        md = dict(node.metadata or {})
        md["snnc.reset"] = "zero"
        md.pop("snnc.reset_timing", None)
        md.pop("snnc.spikes", None)
        md.pop("snnc.v_min", None)
        md["snnc.adapted_from"] = d["source_semantics"] if "snnc.adapted_from" not in md else \
            md["snnc.adapted_from"] + "; " + d["source_semantics"]
        if getattr(node, "v_reset", None) is not None:
            node.v_reset = np.zeros_like(np.asarray(node.v_reset, np.float32))
        node.metadata = md
        notes.append(f"{d['node']}: {d['source_semantics']} -> {d['target_semantics']}")
    return notes
