""".nir files and in-memory NIR graphs from other tools -> a graph snnc can run and compile.

What is repaired, each with a note (``info["notes"]``, shown by the CLI and in report.json):

- nested subgraphs (snnTorch's ``RLeaky``/``RSynaptic`` export, Norse's ``to_nir``) are inlined
  as ``<parent>.<node>``, also through named ports (edges to ``g.bi``); a graph without an Input (Output)
  node whose one source (sink) is certain gets one;
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
- several Input nodes become one input vector, concatenated in name order, where each is 1-D and feeds
  ``Affine``/``Linear`` layers alone (their weights widened with zeros; :func:`_merge_inputs`);
- neurons without ``v_reset`` (older NIR) reset to 0; nir 0.x files load through ``nir.read``.

NIR has no dt, reset mode or input encoding: :func:`normalize_nir` fills the ``snnc.*`` metadata
(see :mod:`snnc.frontends.base`).

Whose reading (``--semantics``, :data:`SEMANTICS`). NIR cannot state a subtractive reset, several
spikes per step, a voltage floor, the ``>=`` comparison or dt, and exporters mean them anyway. A file
is read by NIR's specification unless the user declares whose conventions it follows; each declared
reading is what that framework means by the file: its importer's reading (snnTorch, SpikingJelly) or,
where the importer does not invert the exporter, what the exporter wrote for its default layers (Norse,
Sinabs); the source file each was read from is named per entry:

==============  ======  ==================================================================================
semantics       dt (s)  neurons
==============  ======  ==================================================================================
``nir``         1e-4*   NIR's spec: reset to v_reset right after the spike, one spike per step, v > v_th
``snntorch``    1e-4    as ``nir`` (``snntorch/import_nir.py``: Leaky/Synaptic with ``reset_mechanism=
                        "zero"``, ``reset_delay=False``, ``dt = 1e-4``)
``spikingjelly`` 1e-4   as ``nir`` with v >= v_th (``spikingjelly/activation_based/nir_exchange/
                        from_nir.py``: ``dt=1e-4``, IFNode/LIFNode with hard reset to v_reset)
``norse``       1e-3    as ``nir``, taus in Norse's ``to_nir`` convention (``tau = dt/tau_inv``, above) and
                        ``IF`` ``r = 1`` as ``v += x`` (``norse/torch/utils/export_nir.py``, 1.1.0; Norse's
                        own ``from_nir`` reads taus as seconds and does not invert its export)
``sinabs``      1e-3**  what ``sinabs.to_nir`` (3.1.3, ``sinabs/nir.py``) writes for Sinabs' default layers:
                        ``IF`` = IAF (v += x), ``LIF`` = LIF with tau in steps (v = a v + (1 - a) r x,
                        a = exp(-1/tau), norm_input=True), ``LI`` = ExpLeak (v = a v + x, norm_input=False),
                        MultiSpike (floor(v / v_th) spikes), MembraneSubtract, v >= v_th, no voltage floor;
                        no ``CubaLIF``. (Sinabs' own ``from_nir`` reads the same file with norm_input=False
                        for LIF and a floor min_v_mem = -v_th for IF: it does not invert its exporter.)
==============  ======  ==================================================================================

* assumed with a note when the file carries no ``snnc.dt`` (``--dt`` overrides every reading's dt).
** Sinabs is discrete in time; any dt gives the same steps (its tau counts steps).
"""
from __future__ import annotations

import os
from pathlib import Path

import nir
import numpy as np

from snnc.frontends.base import ModelLoadError
from snnc.frontends.torch_snnc import broadcast_params, flatten_subgraphs
from snnc.io.files import read_nir as bounded_read
from snnc.ir import NEURON_TYPES, UnsupportedNodeError, fresh_name, set_types, topological_order

#: dt convention of snnTorch's NIR export (ARCHITECTURE.md): the default for files that record no dt.
DEFAULT_DT = 1e-4
NORSE_DT = 1e-3
SINABS_DT = 1e-3
#: ``--semantics`` choices, each the reading of one framework's NIR importer (module docstring)
SEMANTICS = ("nir", "snntorch", "spikingjelly", "norse", "sinabs")
#: dt of each reading when neither --dt nor the file gives one
SEMANTICS_DT = {"nir": DEFAULT_DT, "snntorch": 1e-4, "spikingjelly": 1e-4, "norse": NORSE_DT, "sinabs": SINABS_DT}
#: one line per reading, for reports and checks
SEMANTICS_SUMMARY = {
    "nir": "NIR's specification (reset to v_reset right after the spike, one spike per step, v > v_th)",
    "snntorch": "snnTorch's import_nir (as NIR's, dt 1e-4 s)",
    "spikingjelly": "SpikingJelly's from_nir (as NIR's with v >= v_th, dt 1e-4 s)",
    "norse": "Norse's to_nir conventions (tau = dt/tau_inv, dt 1e-3 s; otherwise NIR's)",
    "sinabs": "Sinabs' to_nir conventions (subtractive reset, floor(v / v_th) spikes per step, v >= v_th, taus in "
              "steps)",
}


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


def _add_missing_io(graph: nir.NIRGraph, notes: list, where: str) -> None:
    """A graph without an Input (or Output) node whose one source (sink) is certain gets one, with a note (NIR's
    ``NIRGraph.from_list`` adds them; hand-built graphs, e.g. NIR's own architecture tests, may not)."""
    has_in = any(isinstance(n, nir.Input) for n in graph.nodes.values())
    has_out = any(isinstance(n, nir.Output) for n in graph.nodes.values())
    sources = [n for n in graph.nodes if not any(d == n for _, d in graph.edges)]
    sinks = [n for n in graph.nodes if not any(s == n for s, _ in graph.edges)]
    if not has_in and len(sources) == 1 and "input" not in graph.nodes:
        node = graph.nodes[sources[0]]
        w = getattr(node, "weight", None)
        if isinstance(node, (nir.Affine, nir.Linear)) and w is not None:
            graph.nodes["input"] = nir.Input(input_type={"input": np.array([np.asarray(w).shape[1]])})
            graph.edges = [("input", sources[0])] + list(graph.edges)
            notes.append(f"{where}: no Input node; one added before {sources[0]!r} (its only source)")
    if not has_out and len(sinks) == 1 and "output" not in graph.nodes:
        graph.nodes["output"] = nir.Output(output_type={"output": None})
        graph.edges = list(graph.edges) + [(sinks[0], "output")]
        notes.append(f"{where}: no Output node; one added after {sinks[0]!r} (its only sink)")


def _merge_inputs(graph: nir.NIRGraph, notes: list, where: str) -> None:
    """Several Input nodes (NIR's ``two_independent_branches`` tests; a graph of independent subgraphs) become one
    Input ``input`` of their values concatenated, the Inputs in name order (the host sends one input vector per
    step). Exact: each consumer ``Affine``/``Linear`` of Input *i* gets its weight placed in the columns of *i*'s
    values (zeros elsewhere), so it computes what it did. A note states the order and the offsets.

    Raises:
        UnsupportedNodeError: an Input of more than one dimension, one that feeds anything but an
            ``Affine``/``Linear``, or such a layer that also has another source (its columns could not be split).
    """
    names = sorted(n for n, v in graph.nodes.items() if isinstance(v, nir.Input))
    if len(names) < 2:
        return
    sizes, parts = [], []
    for name in names:
        shape = tuple(int(v) for v in np.asarray(graph.nodes[name].input_type["input"]).reshape(-1))
        consumers = [d for s, d in graph.edges if s == name]
        bad = next((d for d in consumers if not isinstance(graph.nodes[d], (nir.Affine, nir.Linear))
                    or sum(1 for _, dd in graph.edges if dd == d) != 1), None)
        if len(shape) != 1 or bad is not None:
            if len(shape) != 1:
                why = f"its shape is {shape}"
            else:
                kind = type(graph.nodes[bad]).__name__
                other = isinstance(graph.nodes[bad], (nir.Affine, nir.Linear))
                why = f"it feeds {bad!r} ({kind}{', which has other sources' if other else ''})"
            raise UnsupportedNodeError(
                name, "Input", f"{len(names)} Input nodes ({', '.join(map(repr, names))}) are fed as one "
                f"concatenated input vector only where each is one-dimensional and feeds Affine/Linear nodes alone; "
                f"{why}")
        sizes.append(shape[0])
        parts.append((name, consumers))
    total, offset = sum(sizes), 0
    for (name, consumers), n in zip(parts, sizes):
        for d in consumers:
            node = graph.nodes[d]
            w = np.asarray(node.weight, np.float32)
            if w.ndim != 2 or w.shape[1] != n:
                raise ModelLoadError(f"{where}: {d!r} ({type(node).__name__}) has weight {w.shape}, and its Input "
                                     f"{name!r} gives {n} values")
            wide = np.zeros((w.shape[0], total), np.float32)
            wide[:, offset:offset + n] = w
            node.weight = wide
            if hasattr(node, "input_type"):
                node.input_type = {"input": np.array([total])}
        offset += n
        del graph.nodes[name]
    new = fresh_name(graph, "input")
    graph.nodes[new] = nir.Input(input_type={"input": np.array([total])})
    graph.edges = [(new if s in names else s, d) for s, d in graph.edges]
    spans, offset = [], 0
    for name, n in zip(names, sizes):
        spans.append(f"{name!r} = values {offset}..{offset + n - 1}")
        offset += n
    notes.append(f"{where}: {len(names)} Input nodes fed as one input {new!r} of {total} values, concatenated in "
                 f"name order ({'; '.join(spans)}); their first layers' weights widened with zeros (exact)")


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
    _add_missing_io(graph, notes, where)
    n_inputs = sum(isinstance(v, nir.Input) for v in graph.nodes.values())
    if n_inputs > 1 and input_shape is not None:
        raise ModelLoadError(f"{where}: --input-shape gives one input's shape, and this graph has {n_inputs} Input "
                             "nodes (their shapes come from the file): leave it out")
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
    _merge_inputs(graph, notes, where)
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


def check_semantics_name(semantics: str) -> str:
    """``semantics`` if it is one of :data:`SEMANTICS`, else a :class:`ModelLoadError` listing them."""
    if semantics not in SEMANTICS:
        raise ModelLoadError(f"unknown NIR semantics {semantics!r}; known: {', '.join(SEMANTICS)}")
    return semantics


def declares_semantics(graph: nir.NIRGraph) -> bool:
    """True when every spiking neuron node of ``graph`` carries its own ``snnc.reset`` (a file snnc wrote, or a
    graph read with a declared reading): nothing about its neurons is left to a convention."""
    spiking = [n for n in graph.nodes.values() if isinstance(n, (nir.LIF, nir.CubaLIF, nir.IF))]
    return bool(spiking) and all("snnc.reset" in (n.metadata or {}) for n in spiking)


def apply_semantics(graph: nir.NIRGraph, semantics: str, dt: float, notes: list, where: str = "graph") -> None:
    """Read ``graph``'s neurons (in place, after :func:`repair_graph`) with the declared framework's conventions
    (module docstring table): write the ``snnc.*`` semantics keys and, for ``sinabs``, turn its step-counted taus
    into snnc's forward-Euler parameters at ``dt`` (s).

    Sinabs' LIF ``v = a v + (1 - a) r x`` and ExpLeak ``v = a v + x`` with ``a = exp(-1/tau)``: ``tau' = dt/(1 - a)``
    with ``r' = r`` (LIF) or ``r' = 1/(1 - a)`` (LI) give snnc's ``v += dt/tau' (-v + r' x)`` the same step.

    Raises:
        ModelLoadError: a node Sinabs' exporter never writes (``CubaLIF``, ``v_leak != 0``, an ``LI`` with
            ``r != 1``).
    """
    check_semantics_name(semantics)
    if semantics in ("nir", "snntorch", "norse"):
        notes.append(f"{where}: read with {SEMANTICS_SUMMARY[semantics]} (--semantics {semantics})")
        return
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, NEURON_TYPES):
            continue
        md = dict(node.metadata or {})
        spiking = isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF))
        if semantics == "spikingjelly":
            if spiking:
                md["snnc.threshold_op"] = ">="
            node.metadata = md
            continue
        # sinabs
        if not isinstance(node, (nir.IF, nir.LIF, nir.LI)):
            raise ModelLoadError(f"{where}: node {name!r} is a {type(node).__name__}, which Sinabs' to_nir (3.1.3) "
                                 "never writes (it writes IF, LIF and LI): declare another --semantics or leave it out")
        if isinstance(node, (nir.LIF, nir.LI)):
            if np.any(np.asarray(node.v_leak, np.float64)):
                raise ModelLoadError(f"{where}: node {name!r} ({type(node).__name__}) has v_leak != 0, which Sinabs' "
                                     "to_nir never writes")
            r = np.asarray(node.r, np.float64)
            if isinstance(node, nir.LI) and np.any(r != 1):
                raise ModelLoadError(f"{where}: node {name!r} (LI) has r != 1, which Sinabs' to_nir never writes")
            tau_steps = np.asarray(node.tau, np.float64)
            if np.any(tau_steps <= 0):
                raise ModelLoadError(f"{where}: node {name!r} has tau <= 0")
            one_minus_a = -np.expm1(-1.0 / tau_steps)
            shape = np.broadcast_shapes(np.shape(node.v_leak), np.shape(tau_steps), np.shape(r))
            node.tau = np.broadcast_to(dt / one_minus_a, shape).astype(np.float32)
            node.r = np.broadcast_to(r if isinstance(node, nir.LIF) else 1.0 / one_minus_a, shape).astype(np.float32)
        elif isinstance(node, nir.IF):
            if not np.all(np.isclose(np.asarray(node.r, np.float64), 1.0 / dt)):
                raise ModelLoadError(f"{where}: node {name!r} (IF) has r != 1, which Sinabs' to_nir never writes")
            node.r = np.full(np.shape(node.r), 1.0 / dt, np.float32)
        md["snnc.dt"] = float(dt)
        if spiking:
            md.update({"snnc.reset": "subtract", "snnc.threshold_op": ">=", "snnc.spikes": "multi"})
        md["snnc.source"] = "sinabs." + {"IF": "IAF", "LIF": "LIF", "LI": "ExpLeak"}[type(node).__name__]
        node.metadata = md
    notes.append(f"{where}: read with {SEMANTICS_SUMMARY[semantics]} (--semantics {semantics})")


def normalize_nir(graph: nir.NIRGraph, dt: float | None = None, reset: str | None = None,
                  notes: list | None = None) -> nir.NIRGraph:
    """Fill the ``snnc.*`` metadata that a foreign NIR graph lacks (dt, reset mode, input encoding).

    NIR has no dt: a graph without ``snnc.dt`` gets ``dt`` (default 1e-4 s, the snnTorch export
    convention; pass the right one). NIR can only reset to ``v_reset``; a neuron without
    ``snnc.reset`` is recorded as ``"zero"`` when ``v_reset`` is 0, else ``"to_v_reset"``. A
    subtractive reset in the original model is invisible in NIR: give it with ``reset="subtract"``
    (CLI ``--reset``). A graph without ``snnc.input_encoding`` is taken to receive spikes (event
    data), the usual case for NIR exchange; override with ``--input-encoding direct``.

    A ``Delay`` node (``delay`` in s per value) gets ``snnc.delay_steps``: ``delay / dt`` rounded to whole steps
    (a discrete-time simulation and the chip's synaptic delays count steps); a rounding of more than 1e-6 of
    a step adds a line to ``notes`` with the largest error.

    Raises:
        ModelLoadError: a negative delay.
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
    dts = sorted({float(n.metadata["snnc.dt"]) for n in graph.nodes.values() if isinstance(n, NEURON_TYPES)})
    d = float(dt) if dt is not None else (dts[0] if dts else dt_default)
    for name in topological_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, nir.Delay) or "snnc.delay_steps" in (node.metadata or {}):
            continue
        shape = tuple(int(v) for v in np.asarray(next(iter(node.input_type.values()))).reshape(-1))
        delay = np.broadcast_to(np.asarray(node.delay, np.float64), shape)
        if np.any(delay < 0) or not np.all(np.isfinite(delay)):
            raise ModelLoadError(f"node {name!r} (Delay): delays must be finite and >= 0 s, got min {delay.min():g}")
        exact = delay / d
        steps = np.rint(exact)
        node.metadata = dict(node.metadata or {}, **{"snnc.delay_steps": steps.astype(np.int64).tolist()})
        err = float(np.abs(exact - steps).max()) if exact.size else 0.0
        if err > 1e-6 and notes is not None:
            notes.append(f"node {name!r} (Delay): delays {np.unique(delay).round(6).tolist()[:6]} s at dt = {d:g} s "
                         f"rounded to {np.unique(steps).astype(int).tolist()[:6]} whole steps (largest rounding "
                         f"{err:.3g} of a step)")
    return graph


def load_nir(path: str | os.PathLike, dt: float | None = None, reset: str | None = None,
             notes: list | None = None, input_shape=None, info: dict | None = None,
             semantics: str | None = None) -> nir.NIRGraph:
    """Read, repair and normalize a ``.nir`` file; ``info["dt_source"]`` says where dt came from (``--dt``,
    the file's ``snnc.dt``, the declared reading's, or the stated default), and a default dt adds a line to
    ``notes``. ``semantics``: whose reading (:data:`SEMANTICS`; None = NIR's, undeclared);
    ``info["reading"]`` names the reading used and ``info["semantics_declared"]`` whether it was declared
    (by the argument or by the file's own ``snnc.*`` metadata)."""
    graph = read_nir(path)
    where = str(Path(path).name)
    return _read_graph(graph, where, dt, reset, notes, input_shape, info, semantics)


def _read_graph(graph, where, dt, reset, notes, input_shape, info, semantics):
    notes = notes if notes is not None else []
    info = info if info is not None else {}
    raw_has_dt = any("snnc.dt" in (n.metadata or {}) for n in graph.nodes.values() if isinstance(n, NEURON_TYPES))
    in_file = declares_semantics(flatten_subgraphs(graph)) if semantics is None else False
    d_read = dt
    if dt is None and semantics is not None and not raw_has_dt:
        d_read = SEMANTICS_DT[check_semantics_name(semantics)]
    graph = repair_graph(graph, d_read, notes, where=where, input_shape=input_shape)
    if semantics is not None:
        apply_semantics(graph, semantics, d_read or DEFAULT_DT, notes, where)
    info["reading"] = ("the file's own snnc metadata (written by snnc)" if in_file
                       else SEMANTICS_SUMMARY[semantics or "nir"])
    info["semantics"] = semantics or ("file" if in_file else "nir")
    info["semantics_declared"] = bool(semantics) or in_file
    missing = [n for n, node in graph.nodes.items() if isinstance(node, NEURON_TYPES)
               and "snnc.dt" not in (node.metadata or {})]
    if dt is not None:
        source = "--dt"
    elif d_read is not None:
        source = f"--semantics {semantics} ({d_read:g} s, that reading's dt)"
    elif missing:  # NIR itself has no dt: a decision, stated
        source = f"assumed {DEFAULT_DT:g} s (NIR files carry no dt; the snnTorch export convention)"
        if notes is not None:
            notes.append(f"{where}: dt = {DEFAULT_DT:g} s assumed for {len(missing)} neuron node(s) "
                         "(NIR files carry no dt; the snnTorch export convention): pass --dt if the file was made "
                         "for another")
    else:
        source = "the file (snnc.dt metadata)"
    graph = normalize_nir(graph, dt=d_read, reset=reset, notes=notes)
    info["dt_source"] = source
    return graph


def read_graph(graph: nir.NIRGraph, dt: float | None = None, reset: str | None = None, notes: list | None = None,
               input_shape=None, info: dict | None = None, semantics: str | None = None) -> nir.NIRGraph:
    """:func:`load_nir` for an in-memory graph (an exporter's ``to_nir`` result)."""
    return _read_graph(graph, "NIR graph", dt, reset, notes, input_shape, info, semantics)
