"""Validation of what snnc reads: NIR graphs, T and input shapes (checkpoints: :mod:`snnc.frontends.checkpoint`).

Every function raises on the first *kind* of problem with a one-line message that
names the file or node, the field, the value found and what is allowed, so the CLI
can print it as ``snnc: error: ...`` (exit 1). Nothing here changes its input.

- checkpoints are checked by :mod:`snnc.frontends.checkpoint` (they need the model zoo's
  architectures, a layer above the IR core).
- :func:`check_graph`: a NIR graph before compilation: finite parameters, positive time
  constants, ``r`` and thresholds, known ``snnc.*`` metadata values, positive input shape,
  T a positive whole number. Cycles and fan-in are target questions and are checked by the
  backend (lowering: recurrence only through a neuron node; mapper: design rule
  ``GROUP_FAN_IN``).
"""
from __future__ import annotations

import numbers

import nir
import numpy as np

from snnc.errors import SnncError
from snnc.ir.semantics import NeuronSemantics

#: Largest T snnc simulates: the loihi-sim simulator counts events per batch in int16 (< 2^15 steps).
MAX_NUM_STEPS = 2 ** 15 - 1
INPUT_ENCODINGS = ("direct", "spikes")


class ValidationError(SnncError):
    """Input that snnc refuses: the message says where, what was found and what is allowed."""


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_num_steps(value, where: str) -> int:
    """T: a whole number in 1..:data:`MAX_NUM_STEPS`. Returns it as int."""
    if isinstance(value, np.generic):
        value = value.item()
    if not _is_int(value) or not 1 <= int(value) <= MAX_NUM_STEPS:
        raise ValidationError(f"{where}: the number of time steps T must be a whole number in 1..{MAX_NUM_STEPS}, "
                              f"got {value!r}")
    return int(value)


def check_input_shape(shape, where: str) -> tuple[int, ...]:
    """An input shape without batch/time dims: 1 to 4 whole numbers, each in 1..65536."""
    if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 4 or \
            not all(_is_int(v) and 1 <= int(v) <= 65536 for v in shape):
        raise ValidationError(f"{where}: an input shape is 1 to 4 whole numbers in 1..65536 (e.g. 1,28,28), "
                              f"got {shape!r}")
    return tuple(int(v) for v in shape)


# --------------------------------------------------------------------------- NIR graphs

_POSITIVE = {  # parameters that must be > 0, per node type
    nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_threshold"),
    nir.CubaLI: ("tau_syn", "tau_mem", "r"),
    nir.LIF: ("tau", "r", "v_threshold"),
    nir.LI: ("tau", "r"),
    nir.IF: ("r", "v_threshold"),
    nir.I: ("r",),
}


def _first_bad(a: np.ndarray, bad: np.ndarray):
    return a.reshape(-1)[int(np.flatnonzero(bad.reshape(-1))[0])]


def check_graph(graph: nir.NIRGraph) -> None:
    """Refuse a NIR graph that no backend could compile faithfully.

    Raises:
        ValidationError: non-finite parameters, time constants / ``r`` / thresholds <= 0,
            an unknown ``snnc.reset`` / ``snnc.input_encoding``, a ``snnc.dt`` or ``snnc.num_steps``
            out of range, an Input without a positive shape, edges naming missing nodes.
    """
    if not isinstance(graph, nir.NIRGraph) or not isinstance(graph.nodes, dict) or not graph.nodes:
        raise ValidationError("the model is not a NIR graph with nodes")
    for src, dst in graph.edges:
        for n in (src, dst):
            if n not in graph.nodes:
                raise ValidationError(f"edge ({src!r}, {dst!r}) names node {n!r}, which the graph does not have")
    meta = graph.metadata or {}
    if "snnc.num_steps" in meta:
        check_num_steps(meta["snnc.num_steps"], "graph metadata 'snnc.num_steps'")
    enc = meta.get("snnc.input_encoding")
    if enc is not None and enc not in INPUT_ENCODINGS:
        raise ValidationError(f"graph metadata 'snnc.input_encoding' is {enc!r}; allowed: {', '.join(INPUT_ENCODINGS)}")
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if isinstance(node, nir.Input):
            types = node.input_type or {}
            shp = next(iter(types.values()), None) if types else None
            arr = np.asarray(shp) if shp is not None else np.zeros(0)
            if arr.size == 0 or arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or \
                    not np.all(arr >= 1) or not np.all(arr == np.rint(arr)):
                raise ValidationError(f"input node {name!r}: needs a shape of positive whole numbers, got "
                                      f"{None if shp is None else arr.tolist()}")
            continue
        for key, val in vars(node).items():
            if key in ("metadata", "input_type", "output_type") or not isinstance(val, np.ndarray):
                continue
            if val.dtype.kind in "fc" and not np.all(np.isfinite(val)):
                bad = ~np.isfinite(val)
                raise ValidationError(f"node {name!r} ({kind}): {key} holds {int(bad.sum())} NaN or infinite "
                                      f"value(s) (e.g. {_first_bad(val, bad)})")
        for key in _POSITIVE.get(type(node), ()):
            val = getattr(node, key, None)
            if val is None:
                continue
            a = np.asarray(val, np.float64)
            if a.size and not np.all(a > 0):
                raise ValidationError(f"node {name!r} ({kind}): {key} must be > 0, got {_first_bad(a, ~(a > 0)):g}")
        try:
            NeuronSemantics.of(node)  # every snnc.* semantics key of known type and value
        except SnncError as e:
            raise ValidationError(f"node {name!r} ({kind}): {e}") from None
