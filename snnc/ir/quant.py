"""Quantized formats in a NIR graph: what the ``quantize`` pass decided, read by backends.

The ``quantize`` pass records, per neuron node, ``metadata["snnc.quant"]`` (the fixed-point fields
of the group: threshold mantissa, decays, bias mantissa and exponent, per-projection weight
exponents) and, on the graph, ``metadata["snnc.quantized"] = <target name>``. Backends read these
instead of re-deriving them; this module is the one place that says whether a graph carries them.
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from snnc.errors import SnncError
from snnc.ir import NEURON_TYPES

#: graph metadata key: the name of the target the graph was quantized for.
QUANTIZED_KEY = "snnc.quantized"
#: node metadata key: the fixed-point fields the quantize pass chose for that node.
QUANT_KEY = "snnc.quant"


@dataclass(frozen=True)
class QuantFormat:
    """What ``quantize`` chose for one on-chip projection's weights, read from its weighted node's
    ``metadata["snnc.quant"]``: the integer weight mantissas (``mantissa``: int16, the shape of the weighted
    node's weight; the projection's composite weight, node weight x pooling and neuron gains, is
    ``mantissa * 2^(act_shift + weight_exp) / scale``), the power-of-two ``weight_exp`` and the mantissa
    ``weight_bits``. Backends take the mantissas from here; they never round float weights again.
    """
    target: str
    weight_exp: int
    weight_bits: int
    mantissa: np.ndarray

    @classmethod
    def of(cls, name: str, node) -> "QuantFormat":
        """The format of weighted node ``name``.

        Raises:
            SnncError: the node carries no quantized weights (run ``quantize`` last before the backend).
        """
        q = (getattr(node, "metadata", None) or {}).get(QUANT_KEY) or {}
        if "mantissa" not in q or "weight_exp" not in q:
            raise SnncError(f"node {name!r}: no quantized weights recorded (metadata 'snnc.quant'); run the "
                            "quantize pass last before the backend")
        return cls(str(q.get("target", "")), int(q["weight_exp"]), int(q.get("weight_bits", 8)),
                   np.asarray(q["mantissa"]))

    def to_metadata(self) -> dict:
        return {"target": self.target, "weight_exp": int(self.weight_exp), "weight_bits": int(self.weight_bits),
                "mantissa": np.asarray(self.mantissa, np.int16)}


def is_quantized(graph: nir.NIRGraph, target: str = "loihi-sim") -> bool:
    """True when ``graph`` was quantized for ``target`` and every neuron node carries its fields."""
    return (graph.metadata or {}).get(QUANTIZED_KEY) == target and all(
        QUANT_KEY in (n.metadata or {}) for n in graph.nodes.values() if isinstance(n, NEURON_TYPES))
