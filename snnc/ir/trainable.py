"""A NIR graph as a trainable PyTorch module, and its snnc checkpoint form (architecture ``nir_graph``).

:class:`GraphSNN` runs a graph with the semantics of snnc's reference executor
(:class:`snnc.ir.reference.GraphExecutor`: forward Euler with each neuron node's ``snnc.dt``,
spikes on ``v > v_threshold``, reset to ``v_reset`` or by subtraction, back edges carry the
previous step's output), one time step per ``forward`` call like :mod:`snnc.neurons`, with
two differences for training:

- the weights and biases of Conv2d/Conv1d/Affine/Linear nodes are ``nn.Parameter``\\ s; neuron
  parameters (time constants, thresholds, ``r``, ``v_leak``) are fixed buffers;
- a spike's gradient is the fast-sigmoid surrogate of :func:`snnc.neurons.spike`
  (Zenke & Ganguli 2018, slope 10), so the graph trains with backpropagation through time.

Tensors: ``forward(x)`` takes ``[B, *input_shape]`` (one step) and returns the Output node's
``[B, *output_shape]``; call :func:`snnc.neurons.reset_states` between samples.

A trained module becomes an snnc checkpoint with :func:`checkpoint` (``arch = "nir_graph"``):
``config`` holds the graph's structure (node types, their non-array attributes, the shapes of
their arrays, the ``snnc.*`` metadata that has a meaning, the edges) and ``state_dict`` every
array, so ``torch.load(weights_only=True)`` reads it and ``snnc compile`` takes it like any
checkpoint (the graph comes back with :meth:`GraphSNN.to_nir`, no tracing).
"""
from __future__ import annotations

import copy
import numbers

import nir
import numpy as np
import torch
from torch import nn

from snnc.errors import SnncError
from snnc.ir import NEURON_TYPES
from snnc.ir.reference import GraphExecutor
from snnc.ir.semantics import metadata_keys

#: Node types a ``nir_graph`` checkpoint can hold, and their non-array attributes.
NODE_TYPES = {
    "Input": (nir.Input, ()), "Output": (nir.Output, ()),
    "Affine": (nir.Affine, ()), "Linear": (nir.Linear, ()),
    "Conv2d": (nir.Conv2d, ("input_shape", "stride", "padding", "dilation", "groups")),
    "Conv1d": (nir.Conv1d, ("input_shape", "stride", "padding", "dilation", "groups")),
    "Flatten": (nir.Flatten, ("start_dim", "end_dim")),
    "AvgPool2d": (nir.AvgPool2d, ()), "SumPool2d": (nir.SumPool2d, ()), "Scale": (nir.Scale, ()),
    "CubaLIF": (nir.CubaLIF, ()), "LIF": (nir.LIF, ()), "IF": (nir.IF, ()), "LI": (nir.LI, ()),
    "CubaLI": (nir.CubaLI, ()), "I": (nir.I, ()),
}
TRAINED = ("weight", "bias")
#: ``snnc.*`` node metadata kept in a checkpoint: every neuron-semantics key
#: (:class:`snnc.ir.semantics.NeuronSemantics`: dt, reset mode and timing, threshold comparison, spikes per
#: step, voltage floor, readout, source, adaptation) and the op tag of a traced layer (``snnc.op``: a
#: BatchNorm as a 1x1 conv, max pooling); the rest (quantization formats, pruning records) is derived again.
KEPT_METADATA = metadata_keys() + ("snnc.op",)
MAX_ELEMENTS = 2 ** 31


def _key(node: str, attr: str) -> str:
    return f"{node.replace('.', '__')}.{attr}"


def param_key(node: str, attr: str) -> str:
    """The key of node ``node``'s array ``attr`` in :attr:`GraphSNN.weights` (trained) or its buffers."""
    return _key(node, attr).replace(".", "::")


def _arrays(node) -> dict[str, np.ndarray]:
    out = {}
    for k, v in vars(node).items():
        if k in ("metadata", "input_type", "output_type"):
            continue
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size:
            out[k] = v
    return out


class GraphSNN(nn.Module):
    """A NIR graph as a trainable single-step module (see module docstring).

    Raises:
        UnsupportedNodeError: node types the reference executor cannot run.
    """

    def __init__(self, graph: nir.NIRGraph):
        super().__init__()
        self.graph = copy.deepcopy(graph)
        self.ex = GraphExecutor(self.graph, dtype=torch.float32, surrogate=True)
        self.weights = nn.ParameterDict()
        for name, node in self.graph.nodes.items():
            for attr, arr in _arrays(node).items():
                t = torch.as_tensor(np.asarray(arr, np.float32))
                key = _key(name, attr)
                if attr in TRAINED and isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d, nir.Conv1d)):
                    self.weights[key.replace(".", "::")] = nn.Parameter(t.clone())
                    self.ex._p[name][attr] = self.weights[key.replace(".", "::")]
                else:
                    self.register_buffer(key.replace(".", "::"), t.clone())
                    self.ex._p[name][attr] = getattr(self, key.replace(".", "::"))
        inp = next(n for n in self.graph.nodes.values() if isinstance(n, nir.Input))
        self.input_shape = tuple(int(v) for v in next(iter(inp.input_type.values())))
        self.num_steps = (self.graph.metadata or {}).get("snnc.num_steps")

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        for name, node in self.graph.nodes.items():  # keep the executor on the moved tensors
            for attr in _arrays(node):
                k = _key(name, attr).replace(".", "::")
                self.ex._p[name][attr] = self.weights[k] if k in self.weights else getattr(self, k)
        return out

    def reset_state(self) -> None:
        self.ex.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One time step: ``[B, *input_shape]`` -> the Output node's ``[B, *output_shape]``."""
        return next(iter(self.ex.step(x).values()))

    def to_nir(self) -> nir.NIRGraph:
        """The graph with the current weights and biases (float32 arrays)."""
        g = copy.deepcopy(self.graph)
        for name, node in g.nodes.items():
            for attr in _arrays(node):
                setattr(node, attr, self.ex._p[name][attr].detach().cpu().numpy().astype(np.float32).copy())
        return g


# --------------------------------------------------------------------------- checkpoints

def _plain(v):
    """``v`` as plain Python data (lists, dicts, int, float, bool, str) that ``torch.load(...,
    weights_only=True)`` reads back: numpy arrays and every numpy scalar (integer, floating, bool)
    converted, recursively through lists, tuples and dicts (a graph read back with ``nir.read``
    holds numpy scalars in its metadata)."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {_plain(k): _plain(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v


def graph_config(graph: nir.NIRGraph) -> dict:
    """The structure of ``graph`` as plain data (what a ``nir_graph`` checkpoint's ``config`` holds)."""
    nodes = {}
    for name, node in graph.nodes.items():
        tname = type(node).__name__
        if tname not in NODE_TYPES:
            raise SnncError(f"node {name!r} of type {tname} cannot be stored in a nir_graph checkpoint")
        entry = {"type": tname, "attrs": {a: _plain(getattr(node, a)) for a in NODE_TYPES[tname][1]},
                 "arrays": {k: list(v.shape) for k, v in _arrays(node).items()},
                 "metadata": {k: _plain(v) for k, v in (node.metadata or {}).items() if k in KEPT_METADATA}}
        if isinstance(node, (nir.Input, nir.Output, nir.Flatten)):
            types = node.input_type if not isinstance(node, nir.Output) else node.output_type
            entry["attrs"]["shape"] = _plain(np.asarray(next(iter(types.values()))).reshape(-1))
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            entry["attrs"].update(kernel_size=_plain(node.kernel_size), stride=_plain(node.stride),
                                  padding=_plain(node.padding))
        nodes[name] = entry
    meta = {k: _plain(v) for k, v in (graph.metadata or {}).items()
            if k in ("snnc.num_steps", "snnc.input_encoding")}
    return {"nodes": nodes, "edges": [list(e) for e in graph.edges], "metadata": meta}


def graph_from_config(config: dict) -> nir.NIRGraph:
    """Rebuild the graph of a ``nir_graph`` checkpoint with zero arrays of the stored shapes
    (``load_state_dict`` fills them).

    Raises:
        ValueError: a malformed structure (unknown node type, bad shapes, edges to missing nodes).
    """
    if not isinstance(config, dict) or not isinstance(config.get("nodes"), dict) or not config["nodes"] or \
            not isinstance(config.get("edges"), list):
        raise SnncError("config of a nir_graph checkpoint needs 'nodes' (a dict) and 'edges' (a list)")
    total = 0
    nodes = {}
    for name, e in config["nodes"].items():
        if not isinstance(e, dict) or e.get("type") not in NODE_TYPES or not isinstance(e.get("arrays", {}), dict) \
                or not isinstance(e.get("attrs", {}), dict):
            raise SnncError(f"node {name!r}: not a known node entry (types: {', '.join(NODE_TYPES)})")
        cls, _ = NODE_TYPES[e["type"]]
        arrays = {}
        for k, shp in e.get("arrays", {}).items():
            if not isinstance(shp, list) or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and
                                                    0 < d < MAX_ELEMENTS for d in shp):
                raise SnncError(f"node {name!r}: array {k!r} has shape {shp!r}")
            total += int(np.prod(shp, dtype=np.float64))
            if total > MAX_ELEMENTS:
                raise SnncError("the checkpoint's graph holds more than 2^31 parameters")
            arrays[k] = np.zeros(shp, np.float32)
        attrs = dict(e.get("attrs", {}))
        meta = {k: v for k, v in dict(e.get("metadata", {})).items() if k in KEPT_METADATA}
        try:
            if cls is nir.Input:
                node = nir.Input(input_type={"input": np.array(attrs["shape"])})
            elif cls is nir.Output:
                node = nir.Output(output_type={"output": np.array(attrs["shape"])})
            elif cls is nir.Flatten:
                node = nir.Flatten(input_type={"input": np.array(attrs["shape"])}, start_dim=int(attrs["start_dim"]),
                                   end_dim=int(attrs["end_dim"]))
            elif cls in (nir.AvgPool2d, nir.SumPool2d):
                node = cls(kernel_size=np.array(attrs["kernel_size"]), stride=np.array(attrs["stride"]),
                           padding=np.array(attrs["padding"]))
            elif cls in (nir.Conv2d, nir.Conv1d):
                shape = attrs.get("input_shape")
                node = cls(input_shape=tuple(shape) if isinstance(shape, list) else shape,
                           stride=_tuple(attrs["stride"]), padding=_tuple(attrs["padding"]),
                           dilation=_tuple(attrs["dilation"]), groups=int(attrs["groups"]), **arrays)
            else:
                node = cls(**arrays)
        except (KeyError, TypeError, ValueError) as err:
            raise SnncError(f"node {name!r} ({e['type']}): cannot be rebuilt ({err})") from None
        node.metadata = meta
        nodes[name] = node
    edges = []
    for ed in config["edges"]:
        if not isinstance(ed, list) or len(ed) != 2 or not all(isinstance(n, str) and n in nodes for n in ed):
            raise SnncError(f"edge {ed!r} does not join two of the graph's nodes")
        edges.append(tuple(ed))
    meta = dict(config.get("metadata") or {})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def build_nir_graph(config: dict) -> GraphSNN:
    """The ``nir_graph`` entry of :data:`snnc.models.ARCHITECTURES`."""
    return GraphSNN(graph_from_config(config))


def checkpoint(module: GraphSNN, meta: dict | None = None) -> dict:
    """An snnc checkpoint dict for ``module`` (save with ``torch.save``)."""
    g = module.to_nir()
    return {"format": "snnc-checkpoint", "version": 1, "arch": "nir_graph", "config": graph_config(g),
            "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
            "meta": _plain(meta or {})}


def neuron_nodes(graph: nir.NIRGraph) -> list[str]:
    return [n for n, node in graph.nodes.items() if isinstance(node, NEURON_TYPES)]
