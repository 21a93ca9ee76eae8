"""Validation of what snnc reads: snnc checkpoints and NIR graphs (one place each).

Every function raises on the first *kind* of problem with a one-line message that
names the file or node, the field, the value found and what is allowed, so the CLI
can print it as ``snnc: error: ...`` (exit 1). Nothing here changes its input.

- :func:`check_checkpoint`: an snnc checkpoint dict (``models/__init__.py``): its
  ``config`` against the architecture's defaults (types, signs, finiteness) and its
  ``state_dict`` (finite floating-point tensors, BatchNorm ``running_var >= 0``).
- :func:`check_graph`: a NIR graph before compilation: finite parameters, positive time
  constants, ``r`` and thresholds, known ``snnc.*`` metadata values, positive input shape,
  T a positive whole number. Cycles and fan-in are target questions and are checked by the
  backend (lowering: recurrence only through a neuron node; mapper: design rule
  ``GROUP_FAN_IN``).
"""
from __future__ import annotations

import math
import numbers

import nir
import numpy as np
import torch

#: Largest T snnc simulates: the loihi-sim simulator counts events per batch in int16 (< 2^15 steps).
MAX_NUM_STEPS = 2 ** 15 - 1
INPUT_ENCODINGS = ("direct", "spikes")
RESET_MODES = ("zero", "subtract", "to_v_reset")


class ValidationError(ValueError):
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


# --------------------------------------------------------------------------- checkpoints

def _check_config_value(path, key, value, default):
    where = f"{path}: config {key!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValidationError(f"{where} must be true or false, got {value!r}")
    elif isinstance(default, numbers.Integral):
        if not _is_int(value) or value < 1:
            raise ValidationError(f"{where} must be a positive whole number, got {value!r}")
    elif isinstance(default, numbers.Real):
        if not _is_real(value) or not math.isfinite(value) or value <= 0:
            raise ValidationError(f"{where} must be a positive finite number, got {value!r}")
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(default) or \
                not all(_is_int(v) and v >= 1 for v in value):
            raise ValidationError(f"{where} must be a list of {len(default)} positive whole numbers, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ValidationError(f"{where} must be a string, got {value!r}")


def check_checkpoint_config(path, arch: str, config) -> dict:
    """The checkpoint's ``config`` against architecture ``arch``'s defaults; returns the full config.

    Each key must be one the architecture knows, of its default's type: positive whole numbers
    (channels, T, classes), positive finite numbers (dt, time constants in s, threshold).
    ``dt`` must not exceed a time constant (forward Euler).
    """
    from snnc.models import DEFAULT_CONFIGS

    if arch == "nir_graph":
        return _check_graph_config(path, config)
    defaults = DEFAULT_CONFIGS[arch]
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValidationError(f"{path}: config must be a dict, got {type(config).__name__}")
    unknown = sorted(str(k) for k in config if k not in defaults)
    if unknown:
        raise ValidationError(f"{path}: config has unknown key(s) {unknown} for architecture {arch!r}; "
                              f"known: {sorted(defaults)}")
    for key, value in config.items():
        _check_config_value(path, key, value, defaults[key])
    full = dict(defaults, **config)
    if "num_steps" in full:
        check_num_steps(full["num_steps"], f"{path}: config 'num_steps'")
    if "input_shape" in full:
        check_input_shape(full["input_shape"], f"{path}: config 'input_shape'")
    dt = full.get("dt")
    for key in ("tau_syn", "tau_mem"):
        if dt is not None and key in full and full[key] < dt * (1 - 1e-6):
            raise ValidationError(f"{path}: config {key!r} = {full[key]} s is shorter than dt = {dt} s "
                                  "(forward Euler is unstable there)")
    return full


def _check_graph_config(path, config) -> dict:
    """A ``nir_graph`` checkpoint's config: a graph structure :func:`snnc.trainable.graph_from_config`
    rebuilds, whose metadata passes :func:`check_graph`'s checks (the arrays come with the state dict)."""
    from snnc.trainable import graph_from_config

    try:
        g = graph_from_config(config)
    except ValueError as e:
        raise ValidationError(f"{path}: config: {e}") from None
    meta = g.metadata or {}
    if "snnc.num_steps" in meta:
        check_num_steps(meta["snnc.num_steps"], f"{path}: config metadata 'snnc.num_steps'")
    if meta.get("snnc.input_encoding", "direct") not in INPUT_ENCODINGS:
        raise ValidationError(f"{path}: config metadata 'snnc.input_encoding' is {meta['snnc.input_encoding']!r}")
    return config


def check_state_dict(path, state_dict) -> None:
    """Tensors only, floating-point ones finite, BatchNorm ``running_var >= 0``."""
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValidationError(f"{path}: state_dict must be a non-empty dict of tensors")
    for key, t in state_dict.items():
        if not isinstance(key, str) or not isinstance(t, torch.Tensor):
            raise ValidationError(f"{path}: state_dict entry {key!r} is not a tensor")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValidationError(f"{path}: state_dict {key!r} holds NaN or infinite values")
        if key.endswith("running_var") and bool((t < 0).any()):
            raise ValidationError(f"{path}: state_dict {key!r} (a BatchNorm variance) has negative values "
                                  f"(min {float(t.min()):.4g})")


def build_checked(path, arch: str, config: dict, state_dict: dict) -> torch.nn.Module:
    """Build architecture ``arch`` and load ``state_dict``, comparing shapes first on the ``meta``
    device so that a config asking for a huge model fails with a message, not an allocation error."""
    from snnc.models import ARCHITECTURES

    build = ARCHITECTURES[arch]
    try:
        with torch.device("meta"):
            skeleton = build(config)
    except (ValueError, TypeError) as e:
        raise ValidationError(f"{path}: config does not build architecture {arch!r}: {str(e).splitlines()[0]}") from None
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        raise ValidationError(f"{path}: state_dict does not match architecture {arch!r} with this config "
                              f"(missing {missing[:4]}, unexpected {extra[:4]})")
    wrong = [k for k in want if want[k] != have[k]]
    if wrong:
        k = wrong[0]
        raise ValidationError(f"{path}: state_dict {k!r} has shape {list(have[k])}, the config's architecture "
                              f"needs {list(want[k])} ({len(wrong)} tensor(s) differ)")
    model = build(config)
    model.load_state_dict(state_dict)
    return model


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
        md = node.metadata or {}
        if "snnc.dt" in md:
            dt = md["snnc.dt"]
            if not _is_real(dt) or not math.isfinite(dt) or dt <= 0:
                raise ValidationError(f"node {name!r} ({kind}): metadata 'snnc.dt' must be a positive time in s, "
                                      f"got {dt!r}")
        if "snnc.reset" in md and md["snnc.reset"] not in RESET_MODES:
            raise ValidationError(f"node {name!r} ({kind}): metadata 'snnc.reset' is {md['snnc.reset']!r}; "
                                  f"allowed: {', '.join(RESET_MODES)}")
