"""Frontends: PyTorch SNN -> ``nir.NIRGraph``, and model files -> graph.

Tracing uses nirtorch (``nirtorch.torch_to_nir``) with snnc's own node maps
(nirtorch 2.6's default ``Linear`` map and a batch-unaware ``Flatten`` are not
used). The module must be a *single-time-step* module (see :mod:`snnc.neurons`).

Supported torch modules and their NIR nodes:

==========================  ================================================
``nn.Conv2d``               ``nir.Conv2d`` (``input_shape`` = (H, W))
``nn.Linear``               ``nir.Affine`` (bias kept) / ``nir.Linear``
``nn.Flatten``              ``nir.Flatten`` with ``start_dim`` shifted for the
                            missing batch dim
``nn.AvgPool2d``            ``nir.AvgPool2d``
``nn.LPPool2d(p=1)``        ``nir.SumPool2d`` (sum pooling)
``nn.BatchNorm2d``          diagonal 1x1 ``nir.Conv2d`` tagged
                            ``snnc.op = "batchnorm2d"`` (eval statistics), folded
                            exactly by the ``fold_bn`` pass, or at tracing with
                            ``fold_bn=True``
``snnc.neurons.CubaLIF``    ``nir.CubaLIF`` (w_in = tau_syn/dt, r = tau_mem/dt,
                            v_leak = bias*tau_mem/dt)
``snnc.neurons.Integrator`` ``nir.I`` (r = 1/dt), ``snnc.readout = True``
``snntorch.Leaky``          ``nir.LIF`` (tau = dt/(1-beta), r = tau/dt), as snnTorch's own
                            NIR export. With reset_mechanism="subtract" snnTorch subtracts
                            v_th after the decay (m = beta m + x - s v_th), NIR before it,
                            so spike trains can differ slightly; reset "zero" is identical
==========================  ================================================

Reset mode (``snnc.reset``) and dt (``snnc.dt``, s) are written into every
neuron node's metadata; T and the input encoding into the graph metadata.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import nir
import numpy as np
import torch
from torch import nn

from snnc.ir import UnsupportedNodeError, topological_order
from snnc.neurons import CubaLIF, Integrator

#: dt convention of snnTorch's NIR export (ARCHITECTURE.md), used for snnTorch modules
#: and for .nir files that record no dt (Norse exports assume 1e-3 s: pass --dt).
DEFAULT_DT = {"snntorch": 1e-4}
SUPPORTED_MODULES = ["Conv2d", "Linear", "Flatten", "AvgPool2d", "LPPool2d(norm_type=1)",
                     "BatchNorm2d", "snnc CubaLIF", "snnc Integrator", "snntorch Leaky"]


class ModelLoadError(ValueError):
    """A model file that cannot be read, or that asks for something not allowed."""


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _full(value, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(_np(torch.as_tensor(value)), dtype=np.float32), shape).copy()


def _record_shapes(model: nn.Module, example: torch.Tensor) -> dict[int, tuple]:
    """Run one step with forward hooks; return {id(module): (in_shape, out_shape)} without batch dim."""
    shapes: dict[int, tuple] = {}
    hooks = []

    def hook(mod, inp, out):
        x = inp[0] if isinstance(inp, tuple) else inp
        y = out[0] if isinstance(out, tuple) else out
        shapes[id(mod)] = (tuple(x.shape[1:]), tuple(y.shape[1:]))

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        from snnc.neurons import reset_states
        reset_states(model)
    return shapes


def _snntorch_leaky():
    try:
        import snntorch
        return snntorch.Leaky
    except Exception:  # snntorch is optional
        return None


def _node_maps(shapes: dict[int, tuple], dt: float) -> dict[type, Callable]:
    def in_shape(m):
        return shapes[id(m)][0]

    def out_shape(m):
        return shapes[id(m)][1]

    def conv2d(m: nn.Conv2d):
        if m.padding_mode != "zeros":
            raise UnsupportedNodeError(type(m).__name__, "Conv2d", f"padding_mode={m.padding_mode!r} (only 'zeros')",
                                       SUPPORTED_MODULES)
        pad = m.padding if not isinstance(m.padding, str) else m._reversed_padding_repeated_twice[::2][::-1]
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, np.float32)
        return nir.Conv2d(input_shape=tuple(in_shape(m)[1:]), weight=_np(m.weight), stride=tuple(m.stride),
                          padding=tuple(int(p) for p in pad), dilation=tuple(m.dilation), groups=m.groups, bias=bias)

    def linear(m: nn.Linear):
        if m.bias is None:
            return nir.Linear(weight=_np(m.weight))
        return nir.Affine(weight=_np(m.weight), bias=_np(m.bias))

    def flatten(m: nn.Flatten):
        ish = in_shape(m)
        start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim + len(ish) + 1 - 1
        end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
        if start < 0:
            raise UnsupportedNodeError("flatten", "Flatten", "flattening the batch dimension", SUPPORTED_MODULES)
        return nir.Flatten(input_type={"input": np.array(ish)}, start_dim=start, end_dim=end)

    def avgpool(m: nn.AvgPool2d):
        k = nn.modules.utils._pair(m.kernel_size)
        s = nn.modules.utils._pair(m.stride if m.stride is not None else m.kernel_size)
        p = nn.modules.utils._pair(m.padding)
        if m.ceil_mode or (any(p) and not m.count_include_pad):
            raise UnsupportedNodeError("avgpool", "AvgPool2d", "ceil_mode / count_include_pad=False", SUPPORTED_MODULES)
        return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p))

    def lppool(m: nn.LPPool2d):
        if float(m.norm_type) != 1.0:
            raise UnsupportedNodeError("lppool", "LPPool2d", "only norm_type=1 (sum pooling)", SUPPORTED_MODULES)
        k = nn.modules.utils._pair(m.kernel_size)
        s = nn.modules.utils._pair(m.stride if m.stride is not None else m.kernel_size)
        return nir.SumPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array([0, 0]))

    def batchnorm(m: nn.BatchNorm2d):
        if not m.track_running_stats:
            raise UnsupportedNodeError("batchnorm", "BatchNorm2d", "track_running_stats=False", SUPPORTED_MODULES)
        scale = _np(m.weight if m.affine else torch.ones(m.num_features)) / np.sqrt(_np(m.running_var) + m.eps)
        shift = (_np(m.bias) if m.affine else 0.0) - _np(m.running_mean) * scale
        # A diagonal 1x1 conv (groups=1: NIR 1.0.8's type inference ignores conv groups).
        weight = np.diag(scale).reshape(m.num_features, m.num_features, 1, 1).astype(np.float32)
        return nir.Conv2d(input_shape=tuple(in_shape(m)[1:]), weight=weight,
                          stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                          bias=shift.astype(np.float32), metadata={"snnc.op": "batchnorm2d", "snnc.eps": float(m.eps)})

    def cubalif(m: CubaLIF):
        shape = out_shape(m)
        tau_syn, tau_mem = _full(m.tau_syn, shape), _full(m.tau_mem, shape)
        bias = _full(m.bias, shape)
        return nir.CubaLIF(
            tau_syn=tau_syn, tau_mem=tau_mem, r=(tau_mem / m.dt).astype(np.float32),
            v_leak=(bias * tau_mem / m.dt).astype(np.float32), v_threshold=_full(m.threshold, shape),
            v_reset=np.zeros(shape, np.float32), w_in=(tau_syn / m.dt).astype(np.float32),
            metadata={"snnc.dt": m.dt, "snnc.reset": m.reset})

    def integrator(m: Integrator):
        shape = out_shape(m)
        return nir.I(r=np.full(shape, 1.0 / m.dt, np.float32), metadata={"snnc.dt": m.dt, "snnc.readout": True})

    maps = {nn.Conv2d: conv2d, nn.Linear: linear, nn.Flatten: flatten, nn.AvgPool2d: avgpool,
            nn.LPPool2d: lppool, nn.BatchNorm2d: batchnorm, CubaLIF: cubalif, Integrator: integrator}

    leaky = _snntorch_leaky()
    if leaky is not None:
        def snn_leaky(m):
            shape = out_shape(m)
            beta = _full(m.beta, shape)
            if np.any(beta >= 1) or np.any(beta < 0):
                raise UnsupportedNodeError("leaky", "snntorch.Leaky", "beta must be in [0, 1)", SUPPORTED_MODULES)
            mech = {0: "subtract", 1: "zero"}.get(int(m.reset_mechanism_val))
            if mech is None:
                raise UnsupportedNodeError("leaky", "snntorch.Leaky", "reset_mechanism='none'", SUPPORTED_MODULES)
            tau = (dt / (1.0 - beta)).astype(np.float32)
            return nir.LIF(tau=tau, r=(tau / dt).astype(np.float32), v_leak=np.zeros(shape, np.float32),
                           v_threshold=_full(m.threshold, shape), v_reset=np.zeros(shape, np.float32),
                           metadata={"snnc.dt": dt, "snnc.reset": mech,
                                     "snnc.source": "snntorch.Leaky (reset applied from the previous step's spike)"})
        maps[leaky] = snn_leaky
    return maps


def _check_supported(model: nn.Module, maps: dict) -> None:
    ok = tuple(maps) + (nn.Identity, nn.Dropout)
    for name, m in model.named_modules():
        if m is not model and not list(m.children()) and not isinstance(m, ok):  # an unmapped leaf
            raise UnsupportedNodeError(name, type(m).__module__ + "." + type(m).__name__,
                                       supported=SUPPORTED_MODULES)


def trace(model: nn.Module, input_shape, dt: float | None = None, num_steps: int | None = None,
          input_encoding: str = "direct", fold_bn: bool = False) -> nir.NIRGraph:
    """Trace a single-time-step PyTorch SNN into a NIR graph.

    Args:
        model: the module (put in eval mode for tracing; BatchNorm uses running stats).
        input_shape: input shape without batch/time dims, e.g. ``(1, 28, 28)``.
        dt: time step in s for framework neurons that do not carry one
            (snnTorch: default 1e-4 s, its NIR export convention).
        num_steps: T, recorded as graph metadata ``snnc.num_steps``.
        input_encoding: ``"direct"`` (analog input, the same every step) or ``"spikes"``.
        fold_bn: fold BatchNorm at tracing (same as running the ``fold_bn`` pass).

    Returns:
        ``nir.NIRGraph`` with an ``input`` Input node and an ``output`` Output node.

    Raises:
        UnsupportedNodeError: a module type with no mapping (names the module and lists the supported ones).
    """
    import nirtorch

    was_training = model.training
    model.eval()
    dt_frameworks = DEFAULT_DT["snntorch"] if dt is None else dt
    example = torch.zeros((1, *input_shape))
    try:
        shapes = _record_shapes(model, example)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise ModelLoadError(f"the model does not run one time step on an input of shape {tuple(input_shape)} "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); give the model's input "
                             "shape (C,H,W without batch) with --input-shape") from None
    maps = _node_maps(shapes, dt_frameworks)
    _check_supported(model, maps)
    leaky = _snntorch_leaky()
    graph = nirtorch.torch_to_nir(model, maps, default_dict={}, type_check=False,
                                  stateful_modules={leaky} if leaky is not None else None)
    model.train(was_training)
    graph = _finalize(graph, input_shape, num_steps, input_encoding)
    if fold_bn:
        from snnc.passes.fold_bn import fold_batchnorm
        graph = fold_batchnorm(graph)[0]
    return graph


def _finalize(graph: nir.NIRGraph, input_shape, num_steps, input_encoding) -> nir.NIRGraph:
    """Rename the input/output nodes to ``input``/``output``, set their types, infer types."""
    rename = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            rename[name] = "input"
        elif isinstance(node, nir.Output):
            rename[name] = "output"
    # nirtorch names nodes by module path with "." -> "_" (e.g. "net_conv1" for model.net.conv1);
    # drop a prefix that every other node shares, so names read like the layers ("conv1").
    inner = [k for k in graph.nodes if k not in rename]
    prefix = inner[0].split("_")[0] + "_" if inner and "_" in inner[0] else ""
    if prefix and len(inner) > 1 and all(k.startswith(prefix) and len(k) > len(prefix) for k in inner) and \
            not any(k[len(prefix):] in ("input", "output") for k in inner):
        rename.update({k: k[len(prefix):] for k in inner})
    nodes = {rename.get(k, k): v for k, v in graph.nodes.items()}
    edges = [(rename.get(a, a), rename.get(b, b)) for a, b in graph.edges]
    nodes["input"] = nir.Input(input_type={"input": np.array(input_shape)})
    meta = {"snnc.input_encoding": input_encoding}
    if num_steps is not None:
        meta["snnc.num_steps"] = int(num_steps)
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    set_types(g)
    return g


def set_types(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Write every node's ``input_type``/``output_type`` from :func:`snnc.ir.infer_shapes` (in place)."""
    from snnc.ir import infer_shapes

    for name, (ish, osh) in infer_shapes(graph).items():
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            graph.nodes[name] = nir.Output(output_type={"output": np.array(osh)})
            continue
        node.input_type = {k: np.array(ish) for k in (node.input_type or {"input": None})}
        node.output_type = {k: np.array(osh) for k in (node.output_type or {"output": None})}
    return graph


# --------------------------------------------------------------------------- files

def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Load an snnc checkpoint (see :mod:`snnc.models`) with ``torch.load(weights_only=True)``.

    Returns:
        ``(module in eval mode, checkpoint dict without the state_dict)``.

    Raises:
        ModelLoadError: unreadable file, not an snnc checkpoint, unknown architecture.
    """
    from snnc.models import ARCHITECTURES
    from snnc.validate import build_checked, check_checkpoint_config, check_state_dict

    check_zip_integrity(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickled module (needs --trust-pickle)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Unsupported global" in str(e):  # a pickled object (not a plain checkpoint dict)
            raise ModelLoadError(f"{path}: holds pickled Python objects, not an snnc checkpoint; "
                                 "load it only if you trust it, with --trust-pickle") from None
        detail = "unreadable pickle stream" if "Unsupported operand" in str(e) else msg
        raise ModelLoadError(f"{path}: cannot be read as a checkpoint ({detail})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "snnc-checkpoint":
        raise ModelLoadError(f"{path}: not an snnc checkpoint (expected a dict with format='snnc-checkpoint')")
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
    import zipfile
    import zlib

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
    from snnc import models

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


def load_model(path: str | os.PathLike, trust_pickle: bool = False, dt: float | None = None,
               input_shape=None, num_steps: int | None = None,
               reset: str | None = None) -> tuple[nir.NIRGraph, nn.Module | None, dict]:
    """Read a model file into a NIR graph.

    Accepts an snnc checkpoint (``.pt``/``.pth``), a ``.nir`` file, or, only with
    ``trust_pickle=True``, a fully pickled ``nn.Module`` (``torch.load(weights_only=False)``:
    it can run arbitrary code, so it is never the default).

    ``reset`` (``"zero"``/``"subtract"``) sets the reset mode of a ``.nir`` file's
    spiking neurons, which NIR cannot express; traced modules carry their own.

    Returns:
        ``(graph, torch module or None for .nir files, info dict)``; info has
        ``kind``, ``num_steps`` and ``dt`` where known.

    Raises:
        ModelLoadError: missing, corrupt or untrusted file; missing input shape.
        UnsupportedNodeError: a layer snnc cannot trace.
    """
    path = resolve_model_path(path)
    if path.suffix == ".nir":
        from snnc.files import read_nir
        try:
            graph = read_nir(path)  # in a child process with a time bound: corrupt HDF5 can hang the reader
        except ValueError as e:
            raise ModelLoadError(str(e)) from None
        graph = normalize_nir(graph, dt=dt, reset=reset)
        info = {"kind": "nir", "num_steps": (graph.metadata or {}).get("snnc.num_steps", num_steps)}
        return graph, None, info
    try:
        model, info = load_checkpoint(path)
        info = dict(info, kind="snnc-checkpoint")
        cfg = info.get("config") or {}
        shape = input_shape or cfg.get("input_shape")
        T = num_steps or cfg.get("num_steps") or (info.get("meta") or {}).get("num_steps")
    except ModelLoadError as e:
        if not trust_pickle or "pickled" not in str(e):
            raise
        try:
            model = torch.load(path, map_location="cpu", weights_only=False)  # explicit opt-in only
        except Exception as e2:
            raise ModelLoadError(f"{path}: cannot be unpickled ({type(e2).__name__})") from None
        if not isinstance(model, nn.Module):
            raise ModelLoadError(f"{path}: the pickle holds a {type(model).__name__}, not a torch.nn.Module")
        model.eval()
        shape = input_shape or getattr(model, "input_shape", None)
        T = num_steps or getattr(model, "num_steps", None)
        info = {"kind": "pickled-module"}
    if hasattr(model, "to_nir"):  # a graph-backed module (snnc.trainable.GraphSNN): no tracing needed
        graph = model.to_nir()
        graph.metadata = dict(graph.metadata or {})
        T = num_steps or graph.metadata.get("snnc.num_steps")
        if T is not None:
            graph.metadata["snnc.num_steps"] = int(T)
        graph.metadata.setdefault("snnc.input_encoding", "direct")
        info["num_steps"] = T
        return graph, model, info
    if shape is None:
        raise ModelLoadError(f"{path}: the input shape is unknown; pass --input-shape C,H,W")
    graph = trace(model, tuple(shape), dt=dt, num_steps=T)
    info["num_steps"] = T
    return graph, model, info


def normalize_nir(graph: nir.NIRGraph, dt: float | None = None, reset: str | None = None) -> nir.NIRGraph:
    """Fill the ``snnc.*`` metadata that a foreign NIR file lacks (dt, reset mode).

    NIR has no dt: a file without ``snnc.dt`` gets ``dt`` (default 1e-4 s, the
    snnTorch export convention; pass the right one). NIR can only reset to
    ``v_reset``; a neuron without ``snnc.reset`` is recorded as ``"zero"`` when
    ``v_reset`` is 0, else ``"to_v_reset"``. Subtractive reset in the original
    model is invisible in NIR: give it with ``reset="subtract"`` (CLI ``--reset``). A graph without
    ``snnc.input_encoding`` is taken to receive spikes (event data), the usual
    case for NIR exchange; override with ``--input-encoding direct``.
    """
    dt_default = DEFAULT_DT["snntorch"] if dt is None else dt
    graph.metadata = dict(graph.metadata or {})
    graph.metadata.setdefault("snnc.input_encoding", "spikes")
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, (nir.CubaLIF, nir.LIF, nir.IF, nir.LI, nir.CubaLI, nir.I)):
            continue
        md = node.metadata
        if dt is not None or "snnc.dt" not in md:
            md["snnc.dt"] = float(dt_default)
        if hasattr(node, "v_threshold") and reset is not None:
            md["snnc.reset"] = reset
        elif hasattr(node, "v_threshold") and "snnc.reset" not in md:
            vr = getattr(node, "v_reset", None)
            md["snnc.reset"] = "zero" if vr is None or not np.any(np.asarray(vr)) else "to_v_reset"
    return graph
