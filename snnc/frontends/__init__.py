"""Frontends: models people already have -> ``nir.NIRGraph`` with the source's exact semantics.

One module per source:

==================  ==============================================================
``torch_snnc``      plain ``torch.nn`` layers, snnc's own neurons, the tracer
``snntorch``        snnTorch ``Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``
``norse``           Norse ``LIFCell``, ``LIFBoxCell``, ``IAFCell``, ``LICell``, ``LIBoxCell``
``spikingjelly``    SpikingJelly ``LIFNode``, ``IFNode``, ``ParametricLIFNode``, ``layer.*``
``sinabs``          Sinabs ``IAF``, ``LIF`` (and ``*Squeeze``), ``SumPool2d``
``nir_file``        ``.nir`` files and in-memory NIR graphs of other tools (repairs, metadata)
==================  ==============================================================

Each framework module documents that library's semantics (dt convention, reset order,
threshold comparison, multi-spike, voltage floor) and writes them into the neuron nodes'
``snnc.*`` metadata (:mod:`snnc.frontends.base`). What can be loaded (:func:`load_model`):

- an snnc checkpoint ``.pt`` (``torch.load(weights_only=True)``);
- a ``.nir`` file;
- ``path/to/file.py:factory`` (a trusted Python file: it is imported and ``factory()`` called)
  with an optional ``weights`` state dict read with ``torch.load(weights_only=True)`` -- the route
  for snnTorch models, which cannot be pickled (their surrogate gradient is a closure);
- an ``nn.Module`` or ``nir.NIRGraph`` object (Python API, :func:`snnc.compile`);
- a fully pickled ``nn.Module`` only with ``trust_pickle=True``.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import nir
import torch
from torch import nn

from snnc import models
from snnc.io.trusted import call_again, call_factory
from snnc.frontends import norse, sinabs, snntorch, spikingjelly
from snnc.frontends.checkpoint import build_checked, check_checkpoint_config, check_state_dict
from snnc.frontends.base import ModelLoadError, TraceContext, reset_module_states
from snnc.frontends.nir_file import DEFAULT_DT as NIR_DEFAULT_DT
from snnc.frontends.registry import FRAMEWORKS
from snnc.frontends.nir_file import load_nir, normalize_nir, read_graph, repair_graph
from snnc.frontends.torch_snnc import run_steps, supported_list, trace
from snnc.ir import UnsupportedNodeError, set_types
from snnc.models import ARCHITECTURES

DEFAULT_DT = {"snntorch": snntorch.DEFAULT_DT, "norse": norse.DEFAULT_DT, "spikingjelly": spikingjelly.DEFAULT_DT,
              "sinabs": sinabs.DEFAULT_DT, "nir": NIR_DEFAULT_DT}

__all__ = ["FRAMEWORKS", "ModelLoadError", "load_model", "load_checkpoint", "check_zip_integrity", "resolve_model_path", "load_factory", "trace", "trace_module",
           "normalize_nir", "repair_graph", "set_types", "run_steps", "supported_list"]


def framework_of(model: nn.Module) -> str:
    """The framework whose neurons a module uses (``"snnc"`` for none of the known ones)."""
    for m in model.modules():
        root = type(m).__module__.split(".")[0]
        if root in FRAMEWORKS:
            return root
    return "snnc"


def trace_module(model: nn.Module, input_shape, dt: float | None = None, num_steps: int | None = None,
                 input_encoding: str | None = None, notes: list | None = None) -> nir.NIRGraph:
    """:func:`trace` after the framework's own preparation (SpikingJelly multi-step -> single-step)."""
    tc = TraceContext(dt=dt)
    multi = spikingjelly.available() and spikingjelly.is_multi_step(model)
    for fw in FRAMEWORKS.values():
        if hasattr(fw, "prepare") and fw.available():
            model = fw.prepare(model, tc)
    try:
        g = trace(model, input_shape, dt=dt, num_steps=num_steps, input_encoding=input_encoding, notes=notes)
    except ModelLoadError as e:
        inner = spikingjelly.layers_module(model) if multi else None
        if inner is None:
            raise
        name, sub = inner
        try:
            g = trace(sub, input_shape, dt=dt, num_steps=num_steps, input_encoding=input_encoding, notes=notes)
        except ModelLoadError:
            raise ModelLoadError(f"{e}; the model is a SpikingJelly multi-step module whose forward() builds the "
                                 f"time dimension itself: give snnc its layers (model.{name}), which run one step "
                                 "at a time") from None
        tc.notes.append(f"SpikingJelly multi-step model whose forward() builds the time dimension itself (e.g. "
                        f"x.repeat(T)): traced its submodule {name!r}, which holds every layer, one step at a time "
                        "on the same input each step (a firing-rate output has the spike counts' argmax)")
    if notes is not None:
        notes[:0] = tc.notes
    return g


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Load an snnc checkpoint (see :mod:`snnc.models`) with ``torch.load(weights_only=True)``, after
    checking the zip's CRCs, and validate it (:mod:`snnc.ir.validate`: config types and signs, finite
    tensors, BatchNorm variances, shapes against the config on the ``meta`` device).

    Returns:
        ``(module in eval mode, checkpoint dict without the state_dict)``; its ``config`` is the full one.

    Raises:
        ModelLoadError: unreadable or corrupt file, not an snnc checkpoint, unknown architecture.
        ValidationError: values snnc refuses.
    """
    check_zip_integrity(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt file, or a pickled module (needs --trust-pickle)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Unsupported global" in str(e):  # a pickled object (not a plain checkpoint dict)
            raise ModelLoadError(f"{path}: holds pickled Python objects, not an snnc checkpoint; "
                                 "load it only if you trust it, with --trust-pickle (or give the model as "
                                 "file.py:factory with --weights state_dict.pt)") from None
        detail = "unreadable pickle stream" if "Unsupported operand" in str(e) else msg
        raise ModelLoadError(f"{path}: cannot be read as a checkpoint ({detail})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "snnc-checkpoint":
        raise ModelLoadError(f"{path}: not an snnc checkpoint (expected a dict with format='snnc-checkpoint'; "
                             "a plain state dict goes with its model as file.py:factory --weights FILE)")
    if ckpt.get("version", 1) != 1:
        raise ModelLoadError(f"{path}: snnc checkpoint version {ckpt.get('version')!r}; this snnc reads version 1")
    arch = ckpt.get("arch")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ModelLoadError(f"{path}: unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    config = check_checkpoint_config(path, arch, ckpt.get("config"))
    check_state_dict(path, ckpt.get("state_dict"))
    model = build_checked(path, arch, config, ckpt["state_dict"])
    model.eval()
    info = {k: v for k, v in ckpt.items() if k != "state_dict"}
    info["config"] = config
    if not isinstance(info.get("meta"), dict):
        info["meta"] = {}
    return model, info


def check_zip_integrity(path) -> None:
    """A zip-format torch file whose members fail their CRC is corrupt (``torch.load`` does not
    check CRCs, so a flipped bit in a tensor would load silently).

    Raises:
        ModelLoadError: a member with a bad CRC or an unreadable zip directory.
    """
    try:
        if not zipfile.is_zipfile(path):  # (a legacy torch file; torch.load checks it)
            return
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{path}: corrupt file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if bad is not None:
        raise ModelLoadError(f"{path}: corrupt file (member {bad!r} fails its CRC check)")


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A model file path, or the name of a shipped checkpoint (``fmnist_cnn``: see
    :func:`snnc.models.path`) when no such file exists.

    Raises:
        ModelLoadError: neither a file nor a shipped model's name.
    """
    p = Path(path)
    if p.is_file():
        return p
    if str(path) in models.BUNDLED:
        try:
            return models.path(str(path))
        except FileNotFoundError as e:
            raise ModelLoadError(str(e)) from None
    if p.exists():
        raise ModelLoadError(f"{p}: not a file")
    raise ModelLoadError(f"{p}: no such file (nor a shipped model: {', '.join(sorted(models.BUNDLED))})")


def load_factory(spec: str, weights: str | os.PathLike | None = None) -> tuple[nn.Module, dict]:
    """``path/to/file.py:factory`` -> ``factory()``, with a state dict from ``weights`` loaded into it.

    The Python file is imported (its code runs: give only files you trust, as with any script).
    ``weights`` is read with ``torch.load(weights_only=True)``: a state dict, or a dict holding one
    under ``"state_dict"``. The module's (or factory's) ``input_shape`` / ``num_steps`` attributes,
    when present, are used as defaults.

    Raises:
        ModelLoadError: a missing file or factory, a factory that fails or returns no nn.Module,
            weights that cannot be read or do not match.
    """
    model, factory = call_factory(spec, ModelLoadError)
    func = factory.__name__
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec}: {func}() returned a {type(model).__name__}, not a torch.nn.Module")
    info = {"kind": "factory", "factory": str(spec)}
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"{weights}: cannot be read as a state dict with weights_only=True "
                                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ModelLoadError(f"{weights}: holds a {type(state).__name__}, not a state dict")
        skipped = sorted(k for k in sinabs.state_keys(model) if k in state)
        if skipped:  # e.g. IAFSqueeze trained with BPTT saves v_mem of the last batch's shape
            state = {k: v for k, v in state.items() if k not in skipped}
            info.setdefault("notes", []).append(
                f"{weights}: {len(skipped)} Sinabs neuron state buffer(s) ({', '.join(skipped[:3])}"
                f"{', ...' if len(skipped) > 3 else ''}) not loaded: they hold the state after the last batch the "
                "model ran, not weights; snnc starts every sample at rest")
        try:
            if skipped:
                _load_without(model, state, skipped)
            else:
                model.load_state_dict(state)
        except Exception as e:  # noqa: BLE001
            text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())  # every key, not the heading
            raise ModelLoadError(f"{weights}: does not match {func}()'s model: "
                                 f"{text if len(text) <= 600 else text[:600] + ' ...'}") from None
        info["weights"] = str(weights)
    else:
        info["factory_weights"] = _factory_weights(factory, spec, model)
    model.eval()
    for key in ("input_shape", "num_steps"):
        val = getattr(model, key, getattr(factory, key, None))
        if val is not None:
            info[key] = val
    return model, info


def _load_without(model: nn.Module, state: dict, skipped: list) -> None:
    """``load_state_dict`` that lets only the ``skipped`` keys be missing (every other mismatch still raises)."""
    res = model.load_state_dict(state, strict=False)
    missing = [k for k in res.missing_keys if k not in skipped]
    if missing or res.unexpected_keys:
        raise RuntimeError(f"Error(s) in loading state_dict: missing keys {missing}, unexpected keys "
                           f"{list(res.unexpected_keys)}")


def _factory_weights(factory, spec: str, model: nn.Module) -> str:
    """Whether ``factory()`` returns the same weights as ``model`` (its first result) when called again under
    another torch seed: ``"fixed"`` (it loads trained weights, or seeds its own initialisation) or ``"random"``
    (its random initial weights: an untrained model). The global RNG state is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch.initial_seed() + 1)
        again = call_again(factory, spec, ModelLoadError)
    if not isinstance(again, nn.Module):
        return "fixed"
    sa, sb = model.state_dict(), again.state_dict()
    for k, v in sa.items():
        w = sb.get(k)
        if torch.is_tensor(v) and v.is_floating_point() and (
                w is None or w.shape != v.shape or not torch.allclose(v, w, rtol=0, atol=0, equal_nan=True)):
            return "random"
    return "fixed"


def _unpickle(path: Path) -> nn.Module:
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)  # explicit opt-in only
    except AttributeError as e:  # a class the pickle names cannot be found
        raise ModelLoadError(f"{path}: cannot be unpickled: {str(e).splitlines()[0]} (import the module that "
                             "defines the model's classes first, or give the model as file.py:factory with "
                             "--weights state_dict.pt)") from None
    except ModuleNotFoundError as e:
        raise ModelLoadError(f"{path}: cannot be unpickled: module {e.name!r} is not installed") from None
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{path}: cannot be unpickled ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); give the model as file.py:factory with "
                             "--weights state_dict.pt") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{path}: the pickle holds a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_model(model, trust_pickle: bool = False, dt: float | None = None, input_shape=None,
               num_steps: int | None = None, reset: str | None = None, weights=None,
               input_encoding: str | None = None, data_shape=None,
               data_name: str = "the dataset", semantics: str | None = None
               ) -> tuple[nir.NIRGraph, nn.Module | None, dict]:
    """Read a model into a NIR graph with its source's semantics.

    Args:
        model: a path (snnc checkpoint ``.pt``/``.pth``, ``.nir``, ``file.py:factory``, or with
            ``trust_pickle`` a pickled module), an ``nn.Module`` or a ``nir.NIRGraph``.
        weights: state dict file for ``file.py:factory`` (``weights_only=True``).
        reset: ``"zero"``/``"subtract"`` for a NIR graph's spiking neurons (NIR cannot say
            subtractive reset); traced modules carry their own.
        semantics: whose reading of a NIR graph's neurons (``nir``, ``snntorch``, ``spikingjelly``, ``norse``,
            ``sinabs``: :data:`snnc.frontends.nir_file.SEMANTICS`); None = NIR's specification, undeclared.
            Refused for a model that is not NIR (a traced module carries its framework's semantics).
        data_shape: the sample shape of the data the model will run on (no batch/time dims); used, with a
            note, only when neither ``input_shape`` nor the model states its input shape.

    Returns:
        ``(graph, torch module or None for NIR input, info dict)``; info has ``kind``,
        ``num_steps``, ``framework`` and ``notes`` (one line each: what was inferred or repaired).

    Raises:
        ModelLoadError: missing, corrupt or untrusted file; missing input shape; untraceable model.
        UnsupportedNodeError: a layer snnc cannot trace.
    """
    notes: list[str] = []
    if isinstance(model, nir.NIRGraph):
        nir_info = {}
        g = read_graph(model, dt, reset, notes, input_shape, nir_info, semantics)
        return g, None, {"kind": "nir-graph", "num_steps": g.metadata.get("snnc.num_steps", num_steps),
                         "framework": "nir", "notes": notes, **nir_info}
    if semantics is not None and not str(model).endswith(".nir"):
        raise ModelLoadError(f"--semantics is for NIR files (whose neurons NIR cannot fully describe); {model} "
                             "carries its framework's semantics")
    if isinstance(model, nn.Module):
        shape = input_shape or getattr(model, "input_shape", None)
        T = num_steps or getattr(model, "num_steps", None)
        info = {"kind": "module"}
        return _trace_loaded(model, shape, T, dt, input_encoding, info, notes, type(model).__name__, data_shape,
                             data_name)
    spec = str(model)
    if spec.rpartition(":")[0].endswith(".py"):
        module, info = load_factory(spec, weights)
        notes.extend(info.pop("notes", []))
        shape = input_shape or info.get("input_shape")
        T = num_steps or info.get("num_steps")
        return _trace_loaded(module, shape, T, dt, input_encoding, info, notes, spec, data_shape, data_name)
    path = resolve_model_path(model)
    if path.suffix == ".nir":
        nir_info = {}
        graph = load_nir(path, dt=dt, reset=reset, notes=notes, input_shape=input_shape, info=nir_info,
                         semantics=semantics)
        info = {"kind": "nir", "num_steps": (graph.metadata or {}).get("snnc.num_steps", num_steps),
                "framework": "nir", "notes": notes, **nir_info}
        return graph, None, info
    if weights is not None:
        raise ModelLoadError(f"--weights goes with a model given as file.py:factory, not with {path}")
    try:
        module, info = load_checkpoint(path)
        info = dict(info, kind="snnc-checkpoint")
        cfg = info.get("config") or {}
        shape = input_shape or cfg.get("input_shape")
        T = num_steps or cfg.get("num_steps") or (info.get("meta") or {}).get("num_steps")
    except ModelLoadError as e:
        if not trust_pickle or "pickled" not in str(e):
            raise
        module = _unpickle(path)
        module.eval()
        shape = input_shape or getattr(module, "input_shape", None)
        T = num_steps or getattr(module, "num_steps", None)
        info = {"kind": "pickled-module"}
    return _trace_loaded(module, shape, T, dt, input_encoding, info, notes, str(path), data_shape, data_name)


def _trace_shape(module, shape, T, dt, input_encoding, notes, where):
    """Trace ``module`` on inputs of ``shape``; a shape the model does not run on is a ModelLoadError."""
    try:
        return trace_module(module, tuple(int(v) for v in shape), dt=dt, num_steps=T, input_encoding=input_encoding,
                            notes=notes)
    except (ModelLoadError, UnsupportedNodeError):
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as e:  # shapes that do not fit the model
        raise ModelLoadError(f"{where}: the model does not run one time step on an input of shape "
                             f"{tuple(int(v) for v in shape)} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                             "give its input shape (C,H,W without batch) with --input-shape") from None


def _trace_loaded(module, shape, T, dt, input_encoding, info, notes, where, data_shape=None, data_name=""):
    if hasattr(module, "to_nir"):  # a graph-backed module (snnc.ir.trainable.GraphSNN): no tracing needed
        graph = module.to_nir()
        graph.metadata = dict(graph.metadata or {})
        T = T or graph.metadata.get("snnc.num_steps")
        if T is not None:
            graph.metadata["snnc.num_steps"] = int(T)
        graph.metadata.setdefault("snnc.input_encoding", input_encoding or "direct")
        return graph, module, dict(info, num_steps=T, framework="snnc", notes=notes)
    if shape is None and data_shape is not None:
        shape = tuple(int(v) for v in data_shape)
        try:
            graph = _trace_shape(module, shape, T, dt, input_encoding, notes, where)
            notes.append(f"input shape {shape} taken from {data_name} (the model does not state one)")
        except ModelLoadError:
            if len(shape) == 1:
                raise
            flat = (math.prod(shape),)  # a model that flattens outside forward() (snnTorch tutorial 5)
            graph = _trace_shape(module, flat, T, dt, input_encoding, notes, where)
            notes.append(f"input shape {flat} (the samples of {data_name}, {shape}, flattened): the model does "
                         f"not state its input shape and does not run on {shape}")
        return graph, module, dict(info, num_steps=T, framework=framework_of(module), notes=notes)
    if shape is None:
        raise ModelLoadError(f"{where}: the input shape is unknown (neither the model nor the data states it); "
                             "pass --input-shape C,H,W (Python: input_shape=...)")
    graph = _trace_shape(module, shape, T, dt, input_encoding, notes, where)
    info = dict(info, num_steps=T, framework=framework_of(module), notes=notes)
    return graph, module, info
