"""Helpers on ``nir.NIRGraph``: node kinds, order, shapes, figures, canonical summaries.

NIR shapes carry no batch or time dimension. snnc keeps what NIR cannot say in
each node's ``metadata`` under ``snnc.*`` keys:

=====================  =====================================================
``snnc.dt``            simulation time step in s (neuron nodes)
``snnc.reset``         ``"zero"`` or ``"subtract"`` (spiking neuron nodes)
``snnc.op``            ``"batchnorm2d"`` for a BatchNorm traced as a diagonal 1x1 Conv2d
``snnc.readout``       ``True`` on a non-spiking readout (``nir.I`` / ``nir.LI``)
``snnc.quant``         fixed-point fields written by the ``quantize`` pass
``snnc.num_steps``     (graph metadata) T, the time steps per sample
``snnc.input_encoding``(graph metadata) ``"direct"`` (analog, constant) or ``"spikes"``
=====================  =====================================================
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import networkx as nx
import nir
import numpy as np

from snnc.errors import SnncError

#: NIR node types that hold neuron state (a "neuron group" each).
NEURON_TYPES = (nir.CubaLIF, nir.LIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
#: Spiking neuron types.
SPIKING_TYPES = (nir.CubaLIF, nir.LIF, nir.IF)
#: Stateless linear node types that can stand between neuron groups.
LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.Conv1d, nir.Flatten,
                nir.AvgPool2d, nir.SumPool2d, nir.Scale)
WEIGHTED_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.Conv1d)
IO_TYPES = (nir.Input, nir.Output)
#: NIR ``Delay``: its input ``delay`` s later, run as ``snnc.delay_steps`` whole steps (metadata written when a
#: graph is read, :func:`delay_steps`); on loihi-sim a synaptic delay of the projection it stands on
DELAY_TYPES = (nir.Delay,)
SUPPORTED_TYPES = NEURON_TYPES + LINEAR_TYPES + IO_TYPES + DELAY_TYPES


def delay_steps(node, name: str = "?") -> np.ndarray:
    """The whole time steps of a ``nir.Delay`` node (``metadata["snnc.delay_steps"]``, one per value).

    Raises:
        SnncError: the node was never given its steps (a graph not read through snnc's NIR reader).
    """
    steps = (node.metadata or {}).get("snnc.delay_steps")
    if steps is None:
        raise SnncError(f"node {name!r} (Delay): no whole-step delay recorded (metadata 'snnc.delay_steps'); read the "
                        "graph through snnc (load_model), which rounds delay / dt to whole steps and says so")
    return np.asarray(steps, np.int64)


class UnsupportedNodeError(SnncError):
    """A node whose type (or configuration) snnc cannot handle."""

    def __init__(self, node: str, kind: str, reason: str = "", supported=None):
        supported = supported or [t.__name__ for t in SUPPORTED_TYPES]
        msg = f"unsupported node {node!r} of type {kind}"
        if reason:
            msg += f": {reason}"
        msg += f". Supported: {', '.join(supported)}"
        super().__init__(msg)
        self.node, self.kind = node, kind


def copy_graph(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Deep copy (passes are pure: they copy, then change the copy)."""
    return copy.deepcopy(graph)


def to_networkx(graph: nir.NIRGraph) -> nx.DiGraph:
    g = nx.DiGraph()
    for name, node in graph.nodes.items():
        g.add_node(name, node=node)
    g.add_edges_from(graph.edges)
    return g


def back_edges(graph: nir.NIRGraph) -> set[tuple[str, str]]:
    """Edges that close a cycle (recurrence): read the previous step's output.

    Found by a depth-first search from the input nodes in sorted order, so the
    result is deterministic.
    """
    g = to_networkx(graph)
    inputs = sorted(n for n, d in graph.nodes.items() if isinstance(d, nir.Input))
    roots = inputs + sorted(n for n in g.nodes if n not in inputs)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}
    for root in roots:
        if root in state:
            continue
        stack = [(root, iter(sorted(g.successors(root))))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(g.successors(nxt)))))
    return back


def topological_order(graph: nir.NIRGraph) -> list[str]:
    """Node names in a deterministic topological order of the graph without its back edges."""
    g = to_networkx(graph)
    g.remove_edges_from(back_edges(graph))
    return list(nx.lexicographical_topological_sort(g))


def predecessors(graph: nir.NIRGraph, name: str) -> list[str]:
    return sorted(src for src, dst in graph.edges if dst == name)


def successors(graph: nir.NIRGraph, name: str) -> list[str]:
    return sorted(dst for src, dst in graph.edges if src == name)


def node_shape(node: nir.NIRNode, port: str = "output") -> tuple[int, ...] | None:
    types = node.output_type if port == "output" else node.input_type
    if not types:
        return None
    arr = next(iter(types.values()))
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.size == 0 or arr.dtype == object:
        return None
    return tuple(int(v) for v in arr.reshape(-1))


def neuron_shape(node: nir.NIRNode) -> tuple[int, ...]:
    """Shape of a neuron node's state (its parameter arrays' shape)."""
    for attr in ("v_threshold", "tau_mem", "tau", "r"):
        if hasattr(node, attr):
            return tuple(np.shape(getattr(node, attr)))
    raise TypeError(f"not a neuron node: {type(node).__name__}")


def count_params(node: nir.NIRNode) -> int:
    n = 0
    for key, val in vars(node).items():
        if key in ("metadata", "input_type", "output_type"):
            continue
        if isinstance(val, np.ndarray) and val.dtype.kind in "fiu" and key not in (
                "stride", "padding", "dilation", "kernel_size", "input_shape"):
            n += int(val.size)
    return n


def graph_figures(graph: nir.NIRGraph) -> dict[str, int]:
    """Neurons, synapses (connections incl. conv weight reuse), parameters.

    Synapses of a conv are counted per output position (what a core must store
    without weight sharing): ``out_positions * nonzero(kernel per output channel)``.
    """
    neurons = sum(int(np.prod(neuron_shape(n))) for n in graph.nodes.values()
                  if isinstance(n, NEURON_TYPES))
    params = sum(count_params(n) for n in graph.nodes.values())
    synapses = 0
    for n in graph.nodes.values():
        if isinstance(n, (nir.Affine, nir.Linear)):
            synapses += int(np.count_nonzero(n.weight))
        elif isinstance(n, nir.Conv2d):
            out = node_shape(n)
            positions = int(np.prod(out[1:])) if out else 0
            synapses += positions * int(np.count_nonzero(n.weight))
    return {"neurons": neurons, "synapses": synapses, "parameters": params}


def _array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def _jsonable(v: Any, digests: bool):
    if isinstance(v, np.ndarray):
        if v.size <= 4 and v.dtype.kind in "fiub":
            return [_round(x) for x in v.reshape(-1).tolist()]
        out = {"shape": list(v.shape), "dtype": str(v.dtype)}
        if v.dtype.kind in "fiub" and v.size:
            out.update({"min": _round(float(v.min())), "max": _round(float(v.max())),
                        "mean": _round(float(v.mean()))})
            if digests:
                out["sha256_16"] = _array_digest(v)
        return out
    if isinstance(v, dict):
        return {str(k): _jsonable(v[k], digests) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, digests) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _round(float(v))
    return v


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x


def summarize(graph: nir.NIRGraph, digests: bool = True) -> dict:
    """Canonical, readable summary of a NIR graph (for golden files and ``snnc inspect``).

    Arrays are reduced to shape/dtype/min/max/mean (6 significant digits) and,
    with ``digests``, a SHA-256 prefix of their bytes; keys are sorted, nodes
    listed in topological order.
    """
    nodes = {}
    for name in topological_order(graph):
        node = graph.nodes[name]
        entry = {"type": type(node).__name__}
        for key, val in sorted(vars(node).items()):
            if key in ("input_type", "output_type"):
                continue
            entry[key] = _jsonable(val, digests)
        shp = node_shape(node)
        if shp is not None:
            entry["output_shape"] = list(shp)
        nodes[name] = entry
    return {
        "nodes": nodes,
        "edges": sorted([list(e) for e in graph.edges]),
        "metadata": _jsonable(dict(graph.metadata or {}), digests),
        "figures": graph_figures(graph),
    }


def dumps_canonical(obj) -> str:
    """JSON with sorted keys and 2-space indent, newline-terminated (byte-stable)."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _pair(v, n=2) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        return tuple(int(a[0]) for _ in range(n))
    return tuple(int(x) for x in a)


def conv_padding(node) -> tuple[int, ...]:
    """Explicit integer padding of a Conv1d/Conv2d node ('valid'/'same' resolved)."""
    nd = 2 if isinstance(node, nir.Conv2d) else 1
    pad = node.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * nd
        if pad == "same":
            k = node.weight.shape[2:]
            d = _pair(node.dilation, nd)
            return tuple((d[i] * (k[i] - 1)) // 2 for i in range(nd))
        raise SnncError(f"unknown padding {pad!r}")
    return _pair(pad, nd)


def output_shape(node: nir.NIRNode, in_shape: tuple[int, ...], name: str = "?") -> tuple[int, ...]:
    """Output shape of ``node`` for input shape ``in_shape`` (no batch/time dims).

    Raises:
        UnsupportedNodeError: a node type snnc does not handle.
        ValueError: shapes that do not fit the node's parameters.
    """
    if isinstance(node, (nir.Input, nir.Output, nir.Scale, nir.Delay) + NEURON_TYPES):
        return tuple(in_shape)
    if isinstance(node, (nir.Affine, nir.Linear)):
        if in_shape[-1] != node.weight.shape[1]:
            raise SnncError(f"node {name!r}: input has {in_shape[-1]} features, weight expects {node.weight.shape[1]}")
        return tuple(in_shape[:-1]) + (node.weight.shape[0],)
    if isinstance(node, (nir.Conv2d, nir.Conv1d)):
        nd = 2 if isinstance(node, nir.Conv2d) else 1
        k = node.weight.shape[2:]
        s, d, p = _pair(node.stride, nd), _pair(node.dilation, nd), conv_padding(node)
        if in_shape[0] != node.weight.shape[1] * node.groups:
            raise SnncError(f"node {name!r}: input has {in_shape[0]} channels, weight expects "
                             f"{node.weight.shape[1] * node.groups}")
        sp = tuple((in_shape[1 + i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(nd))
        return (node.weight.shape[0],) + sp
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        sp = tuple((in_shape[1 + i] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(2))
        return (in_shape[0],) + sp
    if isinstance(node, nir.Flatten):
        nd = len(in_shape)
        start = node.start_dim % nd
        end = node.end_dim % nd
        return tuple(in_shape[:start]) + (int(np.prod(in_shape[start:end + 1])),) + tuple(in_shape[end + 1:])
    raise UnsupportedNodeError(name, type(node).__name__)


def infer_shapes(graph: nir.NIRGraph) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``{node: (input_shape, output_shape)}`` from the Input nodes' shapes, in topological order.

    Raises:
        ValueError: an Input without a shape, or inputs of different shapes summed into one node.
    """
    shapes: dict[str, tuple] = {}
    back = back_edges(graph)
    for name in topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            shp = node_shape(node, "input")
            if shp is None:
                raise SnncError(f"input node {name!r} has no shape")
            shapes[name] = (shp, shp)
            continue
        ins = [shapes[s][1] for s in predecessors(graph, name) if (s, name) not in back and s in shapes]
        if not ins:
            raise SnncError(f"node {name!r} has no input")
        if len(set(ins)) > 1:
            raise SnncError(f"node {name!r} sums inputs of different shapes {sorted(set(ins))}")
        shapes[name] = (ins[0], output_shape(node, ins[0], name))
    return shapes


def set_types(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Write every node's ``input_type``/``output_type`` from :func:`snnc.ir.infer_shapes` (in place)."""
    for name, (ish, osh) in infer_shapes(graph).items():
        node = graph.nodes[name]
        if isinstance(node, nir.Output):
            graph.nodes[name] = nir.Output(output_type={"output": np.array(osh)})
            continue
        node.input_type = {k: np.array(ish) for k in (node.input_type or {"input": None})}
        node.output_type = {k: np.array(osh) for k in (node.output_type or {"output": None})}
    return graph


def fresh_name(graph: nir.NIRGraph, base: str) -> str:
    """``base``, or ``base#2``, ``base#3``... : a node name not yet in ``graph``."""
    name, k = base, 2
    while name in graph.nodes:
        name, k = f"{base}#{k}", k + 1
    return name


def own_copy(graph: nir.NIRGraph, node: str, consumer: str) -> str:
    """Give ``consumer`` its own copy of weighted node ``node`` (same inputs, same parameters), in place; every
    edge ``node -> consumer`` moves to the copy. Returns the copy's name (exact: NIR sends a node's output to
    each successor unchanged)."""
    q = fresh_name(graph, f"{node}.{consumer}")
    graph.nodes[q] = copy.deepcopy(graph.nodes[node])
    graph.edges = [e for e in graph.edges if e != (node, consumer)] + \
        [(s, q) for s in predecessors(graph, node)] + [(q, consumer)]
    return q


def output_classes(graph: nir.NIRGraph) -> int:
    """How many classes the model scores: the number of values of its (first) Output node (no batch/time
    dims), e.g. 10 for a ``[10]`` readout."""
    outs = sorted(n for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    shapes = infer_shapes(graph)
    return int(np.prod(shapes[outs[0]][1])) if outs else 0
