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

import math
import numbers
from dataclasses import dataclass, fields, replace

import nir
import numpy as np

from snnc.errors import SnncError
from snnc.ir import SPIKING_TYPES, topological_order


#: reset modes, reset timings, threshold comparisons and spike modes snnc's reference executor runs
RESET_MODES = ("zero", "subtract", "to_v_reset", "none")
RESET_TIMINGS = ("immediate", "next_step", "immediate_recheck")
THRESHOLD_OPS = (">", ">=")
SPIKE_MODES = ("single", "multi")


@dataclass(frozen=True)
class NeuronSemantics:
    """What a neuron node means beyond NIR: the only code that reads or writes a neuron node's
    ``snnc.*`` semantics keys (frontends write it, the reference executor, lowering, the semantics
    check, the trainable graph and the exports read it; checkpoints and ``nir.write`` keep it).

    ==================  ==============================  ===========================================
    field               metadata key                    meaning (default)
    ==================  ==============================  ===========================================
    ``dt``              ``snnc.dt``                     time step in s (None: not recorded)
    ``reset``           ``snnc.reset``                  ``"zero"`` (default), ``"subtract"``,
                                                        ``"to_v_reset"``, ``"none"``
    ``reset_timing``    ``snnc.reset_timing``           ``"immediate"`` (default; NIR, Loihi),
                                                        ``"next_step"`` (snnTorch ``reset_delay``) or
                                                        ``"immediate_recheck"`` (snnTorch
                                                        ``reset_delay=False`` with subtract reset)
    ``threshold_op``    ``snnc.threshold_op``           ``">"`` (default; NIR, Loihi, snnTorch, Norse)
                                                        or ``">="`` (SpikingJelly, Sinabs)
    ``spikes``          ``snnc.spikes``                 ``"single"`` (default) or ``"multi"``
                                                        (Sinabs MultiSpike: ``floor(v / v_th)``)
    ``v_min``           ``snnc.v_min``                  voltage floor (None: none; Sinabs ``min_v_mem``)
    ``readout``         ``snnc.readout``                a non-spiking readout node (False)
    ``source``          ``snnc.source``                 the framework class it came from ("")
    ``adapted_from``    ``snnc.adapted_from``           what ``adapt_semantics`` converted ("")
    ==================  ==============================  ===========================================

    Raises (``from_metadata``):
        SnncError: a value outside the allowed ones (names the key, the value and what is allowed).
    """
    dt: float | None = None
    reset: str = "zero"
    reset_timing: str = "immediate"
    threshold_op: str = ">"
    spikes: str = "single"
    v_min: float | None = None
    readout: bool = False
    source: str = ""
    adapted_from: str = ""

    #: field -> metadata key
    KEYS = {"dt": "snnc.dt", "reset": "snnc.reset", "reset_timing": "snnc.reset_timing",
            "threshold_op": "snnc.threshold_op", "spikes": "snnc.spikes", "v_min": "snnc.v_min",
            "readout": "snnc.readout", "source": "snnc.source", "adapted_from": "snnc.adapted_from"}

    def __post_init__(self):
        for f, allowed in (("reset", RESET_MODES), ("reset_timing", RESET_TIMINGS),
                           ("threshold_op", THRESHOLD_OPS), ("spikes", SPIKE_MODES)):
            if getattr(self, f) not in allowed:
                raise SnncError(f"metadata {self.KEYS[f]!r} is {getattr(self, f)!r}; allowed: {', '.join(allowed)}")
        for f in ("dt", "v_min"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
                                  or (f == "dt" and v <= 0)):
                raise SnncError(f"metadata {self.KEYS[f]!r} must be a {'positive time in s' if f == 'dt' else 'finite number'}"
                                f", got {v!r}")

    @classmethod
    def from_metadata(cls, md: dict | None) -> "NeuronSemantics":
        """Read the ``snnc.*`` semantics keys of a node's metadata (absent keys: the defaults)."""
        md = md or {}
        kw = {}
        for f, key in cls.KEYS.items():
            if key in md:
                v = md[key]
                v = v.item() if isinstance(v, np.generic) else v
                kw[f] = float(v) if f in ("dt", "v_min") and isinstance(v, numbers.Real) and not isinstance(v, bool) \
                    else (bool(v) if f == "readout" else v)
        return cls(**kw)

    @classmethod
    def of(cls, node) -> "NeuronSemantics":
        """The semantics of a NIR node (from its ``metadata``)."""
        return cls.from_metadata(getattr(node, "metadata", None))

    def to_metadata(self) -> dict:
        """The ``snnc.*`` keys: ``snnc.dt`` (when known) and ``snnc.reset`` (except on a non-spiking readout,
        which has no reset) always, the others only where they differ from the defaults (so graphs written
        before a field existed read back the same)."""
        md = {}
        for f, key in self.KEYS.items():
            v = getattr(self, f)
            if (f == "reset" and not self.readout) or (f == "dt" and v is not None) or \
                    (f not in ("dt", "reset") and v != _DEFAULTS[f]):
                md[key] = v
        return md

    def write(self, node) -> None:
        """Replace the semantics keys of ``node.metadata`` with this (other keys are kept)."""
        md = {k: v for k, v in (node.metadata or {}).items() if k not in self.KEYS.values()}
        node.metadata = dict(md, **self.to_metadata())

    def require_dt(self, node_name: str) -> float:
        """``dt`` in s, or an :class:`SnncError` naming the node (a graph that does not say its dt is
        refused, never given a default)."""
        if self.dt is None:
            raise SnncError(f"node {node_name!r}: no time step recorded (metadata 'snnc.dt'); pass --dt")
        return self.dt


_DEFAULTS = {f.name: f.default for f in fields(NeuronSemantics)}


def metadata_keys() -> tuple[str, ...]:
    """Every ``snnc.*`` key :class:`NeuronSemantics` owns."""
    return tuple(NeuronSemantics.KEYS.values())


class SemanticChangeError(SnncError):
    """The target cannot keep the source's neuron semantics and the change was not allowed."""


def differences(graph: nir.NIRGraph) -> list[dict]:
    """Per spiking neuron node, what the target cannot keep: ``[{node, source, what, source_semantics,
    target_semantics}]`` (empty when everything is kept)."""
    out = []
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, SPIKING_TYPES):
            continue
        sem = NeuronSemantics.of(node)
        src = sem.source or type(node).__name__
        reset, timing = sem.reset, sem.reset_timing

        def add(what, s, t):
            out.append({"node": name, "source": src, "what": what, "source_semantics": s, "target_semantics": t})

        if reset == "to_v_reset" and not np.any(np.asarray(getattr(node, "v_reset", 0.0))):
            reset = "zero"
        if reset != "zero":
            add("reset", f"reset {reset!r}" + {"next_step": " after the next update",
                                                "immediate_recheck": " right after the spike, the threshold doubled in "
                                                "a step after one that ended above it (snnTorch reset_delay=False)"}
                .get(timing, ""), "reset to 0 right after the spike")
        elif timing == "next_step":
            add("reset", "reset to 0 of the next step's updated membrane (held at 0 one step)",
                "reset to 0 right after the spike")
        if sem.spikes == "multi":
            add("spikes", "several spikes per step (floor(v / v_th))", "one spike per step")
        if sem.v_min is not None:
            add("v_min", f"voltage floor v_min = {sem.v_min:g}", "no floor")
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
        sem = NeuronSemantics.of(node)
        adapted = d["source_semantics"] if not sem.adapted_from else sem.adapted_from + "; " + d["source_semantics"]
        replace(sem, reset="zero", reset_timing="immediate", spikes="single", v_min=None,
                adapted_from=adapted).write(node)
        if getattr(node, "v_reset", None) is not None:
            node.v_reset = np.zeros_like(np.asarray(node.v_reset, np.float32))
        notes.append(f"{d['node']}: {d['source_semantics']} -> {d['target_semantics']}")
    return notes
