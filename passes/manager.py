"""Pass manager: named, configurable, pure graph -> graph passes and pipelines.

A pass is a function ``fn(graph, ctx, **options) -> graph`` registered under a
name with its options and their defaults. It must not mutate its input graph
(the manager hands it a deep copy) and must be deterministic for a given
``ctx.seed``. A :class:`Pipeline` runs passes in order and logs, per pass, the
figures before and after (neurons, synapses, parameters; see
:func:`snnc.ir.graph_figures`), the wall time in s, and what the pass noted
via ``ctx.note(...)``.

From the CLI: ``--passes fold_bn,quantize`` or with options
``--passes "fold_bn,quantize:weight_bits=8"`` (``name:key=value;key=value``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import nir
import numpy as np

from snnc.ir import copy_graph, graph_figures


@dataclass
class PassContext:
    """What passes may read besides the graph.

    Attributes:
        target: target description (:class:`snnc.targets.Target`) or None.
        calibration: calibration inputs, ``[N, *input_shape]`` for direct (analog) input or
            ``[T, N, *input_shape]`` for spike input; float32, or None.
        num_steps: T, time steps per sample.
        seed: seed for anything random.
        train_data: ``(x, y)`` labelled training samples (same layouts as ``calibration``) for passes
            that fine-tune (``adapt_semantics``), or None.
        log: filled by the pipeline, one dict per pass.
    """
    target: Any = None
    calibration: np.ndarray | None = None
    num_steps: int | None = None
    seed: int = 0
    train_data: tuple | None = None
    log: list = field(default_factory=list)
    _notes: dict = field(default_factory=dict)

    def note(self, **kv) -> None:
        """Record facts about the running pass (shown in the pipeline log)."""
        self._notes.update(kv)


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable
    description: str
    options: dict

    def __call__(self, graph: nir.NIRGraph, ctx: PassContext, **opts) -> nir.NIRGraph:
        unknown = set(opts) - set(self.options)
        if unknown:
            raise ValueError(f"pass {self.name!r}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(self.options) or 'none'}")
        merged = {**self.options, **opts}
        return self.fn(copy_graph(graph), ctx, **merged)


REGISTRY: dict[str, Pass] = {}


def register(name: str, description: str, **options):
    """Decorator: register ``fn(graph, ctx, **options)`` as pass ``name`` with option defaults."""
    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"pass {name!r} registered twice")
        REGISTRY[name] = Pass(name, fn, description, dict(options))
        return fn
    return deco


def get_pass(name: str) -> Pass:
    from snnc import passes as _  # noqa: F401  (registers the built-in passes)
    if name not in REGISTRY:
        raise ValueError(f"unknown pass {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _parse_value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_pipeline(spec: str) -> list[tuple[str, dict]]:
    """``"fold_bn,quantize:weight_bits=8;per_channel=false"`` -> ``[("fold_bn", {}), ("quantize", {...})]``.

    Raises:
        ValueError: unknown pass name or malformed option.
    """
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, rest = item.partition(":")
        opts = {}
        for kv in [s for s in rest.split(";") if s.strip()]:
            if "=" not in kv:
                raise ValueError(f"pass option {kv!r} in {item!r} is not key=value")
            k, v = kv.split("=", 1)
            opts[k.strip()] = _parse_value(v.strip())
        p = get_pass(name.strip())
        unknown = set(opts) - set(p.options)
        if unknown:
            raise ValueError(f"pass {p.name!r}: unknown option(s) {sorted(unknown)}; known: {sorted(p.options) or 'none'}")
        out.append((p.name, opts))
    return out


class Pipeline:
    """An ordered list of (pass name, options)."""

    def __init__(self, passes: list[tuple[str, dict]] | str):
        self.passes = parse_pipeline(passes) if isinstance(passes, str) else [(n, dict(o)) for n, o in passes]
        for n, _ in self.passes:
            get_pass(n)

    def run(self, graph: nir.NIRGraph, ctx: PassContext, progress: Callable[[str], None] | None = None) -> nir.NIRGraph:
        for name, opts in self.passes:
            p = get_pass(name)
            if progress:
                progress(name)
            before = graph_figures(graph)
            ctx._notes = {}
            t0 = time.perf_counter()
            graph = p(graph, ctx, **opts)
            dt = time.perf_counter() - t0
            ctx.log.append({"pass": name, "options": {**p.options, **opts}, "before": before,
                            "after": graph_figures(graph), "time_s": round(dt, 4), "notes": dict(ctx._notes)})
        return graph

    def __repr__(self):
        return "Pipeline(" + ", ".join(n for n, _ in self.passes) + ")"
