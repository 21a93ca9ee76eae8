""".nir files and in-memory NIR graphs from other tools -> a graph snnc can run and compile.

What is repaired, each with a note (``info["notes"]``, shown by the CLI and in report.json):

- nested subgraphs (snnTorch's ``RLeaky``/``RSynaptic`` export, Norse's ``to_nir``) are inlined
  as ``<parent>.<node>``;
- missing shapes (NIR written by Norse's or Sinabs' ``to_nir``: ``Conv2d.input_shape`` and
  ``Flatten.input_type`` None, scalar neuron parameters, an Input without a shape) are inferred
  from the Input node forward (an Input without a shape gets it from its first layer's weight:
  ``Affine``/``Linear`` in_features, ``Conv2d`` with ``input_shape``);
- Norse's time-constant convention: ``norse.torch.to_nir`` (1.1.0) writes ``tau = dt / tau_inv``
  (e.g. tau_syn = 5e-6 s for 5 ms at dt = 1e-3 s) and ``w_in = 1``; such a file has taus below any
  usable dt. When every tau of a neuron node is below dt and ``tau / dt >= dt`` the node is
  repaired to ``tau = tau_file / dt`` and, for CubaLIF with w_in = 1, ``w_in = tau_syn / dt``
  (Norse's current jumps by its input); otherwise a one-line error names the node and the fix;
- ``IF`` with ``r = 1`` (Norse's and Sinabs' ``to_nir``: their IAF adds its input once per step)
  is read as ``v += x`` per step (r set to 1/dt), where NIR's ``dv/dt = R I`` would add dt x;
  SpikingJelly writes ``r = 1/dt`` and is left as it is;
- neurons without ``v_reset`` (older NIR) reset to 0; nir 0.x files load through ``nir.read``.

NIR has no dt, reset mode or input encoding: :func:`normalize_nir` fills the ``snnc.*`` metadata
(see :mod:`snnc.frontends.base`).
"""
from __future__ import annotations

import os
from pathlib import Path

import nir
import numpy as np

from snnc.frontends.base import ModelLoadError
from snnc.frontends.torch_snnc import broadcast_params, flatten_subgraphs
from snnc.io.files import read_nir as bounded_read
from snnc.ir import NEURON_TYPES, UnsupportedNodeError, set_types, topological_order

#: dt convention of snnTorch's NIR export (ARCHITECTURE.md): the default for files that record no dt.
DEFAULT_DT = 1e-4
NORSE_DT = 1e-3


def read_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """``nir.read`` in a child process with a time bound (:func:`snnc.io.files.read_nir`: a corrupt HDF5
    file can hang the HDF5 library), with a one-line error naming the file."""
    try:
        return bounded_read(path)
    except ValueError as e:
        raise ModelLoadError(str(e)) from None


def _input_shape_from_consumer(graph, name) -> tuple | None:
    for s, d in graph.edges:
        if s != name:
            continue
        node = graph.nodes[d]
        if isinstance(node, (nir.Affine, nir.Linear)):
            return (int(np.asarray(node.weight).shape[1]),)
        if isinstance(node, nir.Conv2d) and node.input_shape is not None:
            hw = tuple(int(v) for v in np.asarray(node.input_shape).reshape(-1))
            return (int(np.asarray(node.weight).shape[1]) * int(node.groups),) + hw
    return None


def _taus(node) -> list[str]:
    return [k for k in ("tau", "tau_syn", "tau_mem") if getattr(node, k, None) is not None]


def repair_norse_taus(graph: nir.NIRGraph, dt: float | None, notes: list, where: str = "graph") -> None:
    """Recognise Norse's ``tau = dt/tau_inv`` export and repair it in place (see module docstring).

    Raises:
        ModelLoadError: a node with tau < dt that is not Norse's convention either.
    """
    d = dt or NORSE_DT
    d_run = dt or float(min((n.metadata or {}).get("snnc.dt", DEFAULT_DT) for n in graph.nodes.values()
                            if isinstance(n, NEURON_TYPES)) if any(isinstance(n, NEURON_TYPES)
                                                                   for n in graph.nodes.values()) else DEFAULT_DT)
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, NEURON_TYPES) or not _taus(node):
            continue
        vals = {k: np.asarray(getattr(node, k), np.float64) for k in _taus(node)}
        if all(np.all(v >= d_run * (1 - 1e-6)) for v in vals.values()):
            continue
        if all(np.all(v < d) and np.all(v / d >= d * (1 - 1e-6)) for v in vals.values()):
            for k, v in vals.items():
                setattr(node, k, (v / d).astype(np.float32))
            if isinstance(node, (nir.CubaLIF, nir.CubaLI)) and np.all(np.asarray(node.w_in) == 1.0):
                node.w_in = (np.asarray(node.tau_syn, np.float64) / d).astype(np.float32)
            node.metadata = dict(node.metadata or {}, **{"snnc.dt": float(d)})
            notes.append(f"{where}: node {name!r} has tau = dt/tau_inv (Norse's to_nir convention, dt = {d} s); "
                         f"repaired to tau = {', '.join(f'{k} {float(np.asarray(getattr(node, k)).reshape(-1)[0]):.4g} s' for k in vals)}"
                         + (" and w_in = tau_syn/dt" if isinstance(node, (nir.CubaLIF, nir.CubaLI)) else ""))
            continue
        small = {k: float(v.min()) for k, v in vals.items()}
        raise ModelLoadError(f"{where}: node {name!r} ({type(node).__name__}) has {', '.join(f'{k} = {v:.3g} s' for k, v in small.items())} "
                             f"< dt = {d_run} s; pass the dt the file was made for with --dt")


def repair_graph(graph: nir.NIRGraph, dt: float | None = None, notes: list | None = None,
                 where: str = "graph", input_shape=None) -> nir.NIRGraph:
    """Inline subgraphs, fill missing shapes, repair Norse's taus (returns a new graph; see module docstring).

    Raises:
        ModelLoadError: an Input whose shape cannot be inferred (pass --input-shape), bad taus.
    """
    notes = notes if notes is not None else []
    nested = any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values())
    graph = flatten_subgraphs(graph)
    for name, node in graph.nodes.items():  # in-memory graphs of exporters may hold torch tensors (Norse's to_nir)
        if not isinstance(node, nir.NIRNode):
            raise ModelLoadError(f"{where}: node {name!r} is a {type(node).__name__}, not a NIR node (the exporter "
                                 "could not map that layer); trace the module with snnc instead")
        for key, val in list(vars(node).items()):
            if hasattr(val, "detach") and hasattr(val, "numpy"):
                setattr(node, key, val.detach().cpu().numpy().astype(np.float32))
    if nested:
        notes.append(f"{where}: nested subgraphs inlined")
    for name, node in list(graph.nodes.items()):
        if isinstance(node, nir.Input):
            shp = input_shape
            if shp is None:
                arr = next(iter((node.input_type or {}).values()), None)
                arr = None if arr is None else np.asarray(arr)
                if arr is not None and arr.size and arr.dtype != object:
                    shp = tuple(int(v) for v in arr.reshape(-1))
            if shp is None:
                shp = _input_shape_from_consumer(graph, name)
                if shp is None:
                    raise ModelLoadError(f"{where}: input node {name!r} has no shape and none can be inferred; "
                                         "pass --input-shape")
                notes.append(f"{where}: input shape {shp} inferred from the first layer")
            graph.nodes[name] = nir.Input(input_type={"input": np.array(shp)})
        elif isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF)) and getattr(node, "v_reset", None) is None:
            node.v_reset = np.zeros_like(np.asarray(node.v_threshold, np.float32))
    repair_norse_taus(graph, dt, notes, where)
    for name in topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.IF) and "snnc.dt" not in (node.metadata or {}) and np.all(np.asarray(node.r) == 1.0):
            d = dt or DEFAULT_DT
            node.r = np.full(np.shape(node.r), 1.0 / d, np.float32)
            notes.append(f"{where}: IF node {name!r} has r = 1, read as v += x per step (the convention of "
                         f"Norse's and Sinabs' to_nir); NIR's dv/dt = R I would give v += dt x (r set to 1/dt)")
    try:
        broadcast_params(graph)
        set_types(graph)
    except (ValueError, UnsupportedNodeError) as e:
        raise ModelLoadError(f"{where}: shapes do not fit ({str(e).splitlines()[0]})") from None
    return graph


def normalize_nir(graph: nir.NIRGraph, dt: float | None = None, reset: str | None = None) -> nir.NIRGraph:
    """Fill the ``snnc.*`` metadata that a foreign NIR graph lacks (dt, reset mode, input encoding).

    NIR has no dt: a graph without ``snnc.dt`` gets ``dt`` (default 1e-4 s, the snnTorch export
    convention; pass the right one). NIR can only reset to ``v_reset``; a neuron without
    ``snnc.reset`` is recorded as ``"zero"`` when ``v_reset`` is 0, else ``"to_v_reset"``. A
    subtractive reset in the original model is invisible in NIR: give it with ``reset="subtract"``
    (CLI ``--reset``). A graph without ``snnc.input_encoding`` is taken to receive spikes (event
    data), the usual case for NIR exchange; override with ``--input-encoding direct``.
    """
    dt_default = DEFAULT_DT if dt is None else dt
    graph.metadata = dict(graph.metadata or {})
    graph.metadata.setdefault("snnc.input_encoding", "spikes")
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, NEURON_TYPES):
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


def load_nir(path: str | os.PathLike, dt: float | None = None, reset: str | None = None,
             notes: list | None = None, input_shape=None, info: dict | None = None) -> nir.NIRGraph:
    """Read, repair and normalize a ``.nir`` file; ``info["dt_source"]`` says where dt came from (``--dt``,
    the file's ``snnc.dt``, or the stated default), and a default dt adds a line to ``notes``."""
    graph = read_nir(path)
    graph = repair_graph(graph, dt, notes, where=str(Path(path).name), input_shape=input_shape)
    missing = [n for n, node in graph.nodes.items() if isinstance(node, NEURON_TYPES)
               and "snnc.dt" not in (node.metadata or {})]
    if dt is not None:
        source = "--dt"
    elif missing:  # NIR itself has no dt: a decision, stated
        source = f"assumed {DEFAULT_DT:g} s (NIR files carry no dt; the snnTorch export convention)"
        if notes is not None:
            notes.append(f"{Path(path).name}: dt = {DEFAULT_DT:g} s assumed for {len(missing)} neuron node(s) "
                         "(NIR files carry no dt; the snnTorch export convention): pass --dt if the file was made "
                         "for another")
    else:
        source = "the file (snnc.dt metadata)"
    graph = normalize_nir(graph, dt=dt, reset=reset)
    if info is not None:
        info["dt_source"] = source
    return graph
