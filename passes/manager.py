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

from snnc.errors import SnncError
from snnc.ir import copy_graph, graph_figures


@dataclass
class PassContext:
    """What passes may read besides the graph.

    Attributes:
        target: target description (:class:`snnc.targets.Target`) or None.
        calibration: calibration inputs, ``[N, *input_shape]`` for direct (analog) input or
            ``[T, N, *input_shape]`` for spike input; float32, or None.
        num_steps: T, time steps per sample of the model the driver loaded (passes read the current T
            with :func:`graph_num_steps`: a pass that changes T records it in the graph's metadata).
        seed: seed for anything random.
        train_data: ``(x, y)`` labelled training samples (same layouts as ``calibration``) for passes
            that fine-tune (``adapt_semantics``), or None.
        calibration_labels: ``[N]`` int labels of the calibration inputs, or None (passes may report
            accuracy on them, e.g. ``fold_timesteps``).
        trainer: surrogate-gradient training, filled by the driver (passes never import the driver):
            ``trainer(graph, x, y, num_steps, *, epochs, lr, batch_size, seed, flip, spikes, log) ->
            (module with to_nir(), history)``, i.e. :func:`snnc.driver.finetune.finetune`; or None.
        measure: figures of a graph compiled the rest of the way, filled by the driver for the ``budget``
            pass: ``measure(graph, x_sim) -> {"fits", "violations", "cores", "synapses", ...}`` (the
            driver's :func:`snnc.driver.budget.chip_figures`: remaining passes, mapper, simulator); or None.
        held_out: ``(x, y)`` labelled samples that no pass calibrates on (``budget`` measures the accuracy
            of each candidate on them), or None.
        fit_samples: ``fit_samples(n) -> x``, the first ``n`` fitting samples of the training split by the
            sampling rule (same layouts as ``calibration``; never validation or test samples), for passes
            that fit on more data than the calibration samples (``prune_channels``' repair); or None.
        say: callable(str) for one-line progress messages of long passes, or None.
        log: filled by the pipeline, one dict per pass (``time_s``: the pass's wall time in s; ``times_s``:
            the parts a pass timed itself, e.g. quantize's ``calibration``; neither goes into report.json).
    """
    target: Any = None
    calibration: np.ndarray | None = None
    num_steps: int | None = None
    seed: int = 0
    train_data: tuple | None = None
    calibration_labels: np.ndarray | None = None
    trainer: Callable | None = None
    measure: Callable | None = None
    held_out: tuple | None = None
    fit_samples: Callable | None = None
    say: Callable | None = None
    log: list = field(default_factory=list)
    _notes: dict = field(default_factory=dict)
    _times: dict = field(default_factory=dict)

    def note(self, **kv) -> None:
        """Record facts about the running pass (shown in the pipeline log)."""
        self._notes.update(kv)

    def time(self, **seconds) -> None:
        """Record the wall time (s) of parts of the running pass (the log's ``times_s``)."""
        self._times.update({k: round(float(v), 4) for k, v in seconds.items()})


def graph_num_steps(graph: nir.NIRGraph, ctx: PassContext) -> int | None:
    """T of ``graph`` as it is now: its metadata ``snnc.num_steps`` (a pass that changes T, such as
    ``fold_timesteps``, writes it there), else the context's ``num_steps`` (T of the model the driver
    loaded), else None. Passes read T through this, never from a side channel."""
    t = (graph.metadata or {}).get("snnc.num_steps")
    return int(t) if t is not None else ctx.num_steps


OPTION_TYPES = (bool, int, float, str)


def coerce_option(pass_name: str, key: str, value, default):
    """Convert an option value to the type of its declared default.

    Strings (from the CLI) are parsed: ``int`` takes whole numbers only, ``float`` finite
    numbers only, ``bool`` one of true/false/yes/no/on/off/1/0. Python values must already have
    the type (an ``int`` is accepted for a ``float`` option; a ``bool`` never for a number).

    Raises:
        ValueError: a value that is not of the option's type, naming the pass and option.
    """
    want = type(default)
    where = f"pass {pass_name!r}, option {key}"
    if isinstance(value, str) and want is not str:
        text = value.strip()
        if want is bool:
            low = text.lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise SnncError(f"{where}: {value!r} is not a boolean (true or false)")
        if want is int:
            try:
                return int(text)
            except ValueError:
                raise SnncError(f"{where}: {value!r} is not a whole number") from None
        try:
            f = float(text)
        except ValueError:
            raise SnncError(f"{where}: {value!r} is not a number") from None
        value = f
    if want is bool:
        if not isinstance(value, bool):
            raise SnncError(f"{where}: {value!r} is not a boolean (true or false)")
        return value
    if want is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SnncError(f"{where}: {value!r} is not a whole number")
        return int(value)
    if want is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SnncError(f"{where}: {value!r} is not a number")
        if not np.isfinite(value):
            raise SnncError(f"{where}: {value!r} is not a finite number")
        return float(value)
    if not isinstance(value, str):
        raise SnncError(f"{where}: {value!r} is not a string")
    return value


@dataclass(frozen=True)
class Pass:
    """A registered pass: ``fn(graph, ctx, **options)``, option defaults (whose types are the
    options' types) and an optional ``check(options)`` that raises ValueError on values out of range."""
    name: str
    fn: Callable
    description: str
    options: dict
    check: Callable | None = None

    def resolve(self, opts: dict) -> dict:
        """Defaults merged with ``opts``, each converted to its declared type and range-checked.

        Raises:
            ValueError: unknown option, wrong type or value out of range (names the pass and option).
        """
        unknown = set(opts) - set(self.options)
        if unknown:
            raise SnncError(f"pass {self.name!r}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(self.options) or 'none'}")
        merged = {k: coerce_option(self.name, k, opts.get(k, d), d) for k, d in self.options.items()}
        if self.check is not None:
            self.check(merged)
        return merged

    def __call__(self, graph: nir.NIRGraph, ctx: PassContext, **opts) -> nir.NIRGraph:
        return self.fn(copy_graph(graph), ctx, **self.resolve(opts))


REGISTRY: dict[str, Pass] = {}


def register(name: str, description: str, check: Callable | None = None, **options):
    """Decorator: register ``fn(graph, ctx, **options)`` as pass ``name`` with option defaults.

    Each default's type (bool, int, float, str) is the option's type; ``check(options)`` may
    raise ValueError for values out of range.
    """
    for k, v in options.items():
        if type(v) not in OPTION_TYPES:
            raise TypeError(f"pass {name!r}: option {k} default {v!r} must be one of bool, int, float, str")

    def deco(fn):
        if name in REGISTRY:
            raise SnncError(f"pass {name!r} registered twice")
        REGISTRY[name] = Pass(name, fn, description, dict(options), check)
        return fn
    return deco


def get_pass(name: str) -> Pass:
    from snnc import passes as _  # noqa: F401  (registers the built-in passes)
    if name not in REGISTRY:
        raise SnncError(f"unknown pass {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def parse_pipeline(spec: str) -> list[tuple[str, dict]]:
    """``"fold_bn,quantize:weight_bits=8;headroom=2"`` -> ``[("fold_bn", {}), ("quantize", {...})]``.

    Option values are converted to the types of the pass's declared defaults and range-checked.

    Raises:
        ValueError: unknown pass name, malformed, unknown, mistyped or out-of-range option.
    """
    if not isinstance(spec, str):
        raise SnncError(f"a pass pipeline is a string like 'fold_bn,quantize', got {type(spec).__name__}")
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        name, _, rest = item.partition(":")
        opts = {}
        for kv in [s for s in rest.split(";") if s.strip()]:
            if "=" not in kv:
                raise SnncError(f"pass option {kv!r} in {item!r} is not key=value")
            k, v = kv.split("=", 1)
            opts[k.strip()] = v.strip()
        p = get_pass(name.strip())
        resolved = p.resolve(opts)
        out.append((p.name, {k: resolved[k] for k in opts}))
    if not out:
        raise SnncError(f"empty pass pipeline {spec!r}; e.g. 'fold_bn,quantize'")
    return out


class Pipeline:
    """An ordered list of (pass name, options)."""

    def __init__(self, passes: list[tuple[str, dict]] | str):
        if isinstance(passes, str):
            self.passes = parse_pipeline(passes)
        else:
            self.passes = [(n, dict(o)) for n, o in passes]
            for n, o in self.passes:
                get_pass(n).resolve(o)

    def run(self, graph: nir.NIRGraph, ctx: PassContext, progress: Callable[[str], None] | None = None) -> nir.NIRGraph:
        for name, opts in self.passes:
            p = get_pass(name)
            if progress:
                progress(name)
            before = graph_figures(graph)
            ctx._notes, ctx._times = {}, {}
            t0 = time.perf_counter()
            graph = p(graph, ctx, **opts)
            dt = time.perf_counter() - t0
            ctx.log.append({"pass": name, "options": p.resolve(opts), "before": before,
                            "after": graph_figures(graph), "time_s": round(dt, 4), "times_s": dict(ctx._times),
                            "notes": dict(ctx._notes)})
        return graph

    def __repr__(self):
        return "Pipeline(" + ", ".join(n for n, _ in self.passes) + ")"
