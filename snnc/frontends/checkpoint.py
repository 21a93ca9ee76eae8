"""Validation of snnc checkpoints (one place): the ``config`` against the architecture's defaults
(types, signs, finiteness), the ``state_dict`` (finite floating-point tensors, BatchNorm
``running_var >= 0``) and the shapes the architecture needs, compared on the ``meta`` device.

Every function raises :class:`snnc.ir.validate.ValidationError` on the first kind of problem with
a one-line message naming the file, the field, the value found and what is allowed.
"""
from __future__ import annotations

import math
import numbers

import torch

from snnc.ir.trainable import graph_from_config
from snnc.ir.validate import INPUT_ENCODINGS, ValidationError, _is_int, _is_real, check_input_shape, check_num_steps
from snnc.models import ARCHITECTURES, DEFAULT_CONFIGS

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
    """A ``nir_graph`` checkpoint's config: a graph structure :func:`snnc.ir.trainable.graph_from_config`
    rebuilds, whose metadata passes :func:`check_graph`'s checks (the arrays come with the state dict)."""
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


