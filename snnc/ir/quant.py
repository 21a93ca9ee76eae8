"""Quantized formats in a NIR graph: what the ``quantize`` pass decided, read by backends.

The ``quantize`` pass records, per neuron node, ``metadata["snnc.quant"]`` (the fixed-point fields
of the group: threshold mantissa, decays, bias mantissa and exponent, per-projection weight
exponents) and, on the graph, ``metadata["snnc.quantized"] = <target name>``. Backends read these
instead of re-deriving them; this module is the one place that says whether a graph carries them.
"""
from __future__ import annotations

import nir

from snnc.ir import NEURON_TYPES

#: graph metadata key: the name of the target the graph was quantized for.
QUANTIZED_KEY = "snnc.quantized"
#: node metadata key: the fixed-point fields the quantize pass chose for that node.
QUANT_KEY = "snnc.quant"


def is_quantized(graph: nir.NIRGraph, target: str = "loihi-sim") -> bool:
    """True when ``graph`` was quantized for ``target`` and every neuron node carries its fields."""
    return (graph.metadata or {}).get(QUANTIZED_KEY) == target and all(
        QUANT_KEY in (n.metadata or {}) for n in graph.nodes.values() if isinstance(n, NEURON_TYPES))
