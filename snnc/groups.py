"""Lower a NIR graph to neuron groups and the projections between them.

A *neuron group* is one NIR neuron node (CubaLIF, LIF, IF, LI, CubaLI, I). A
*projection* carries the spikes of one source (a group, or a graph Input) to a
group through a chain of stateless nodes. snnc lowers chains of the form::

    [AvgPool2d | SumPool2d (kernel == stride, no padding)]*  [Flatten]*  (Conv2d | Affine | Linear)

i.e. pooling and flattening *before* exactly one weighted node. Average
pooling becomes sum pooling with 1/k^2 folded into the weights, so every
synapse keeps one integer weight and each input reaches each output by at most
one path (synapse counts are exact). Anything else raises
:class:`~snnc.ir.UnsupportedNodeError` naming the node.

Gains (forward Euler, see :mod:`snnc.reference`): the per-step current that a
unit input adds to the neuron's ``u`` (already multiplied into v's scale) is

    CubaLIF / CubaLI:  (dt/tau_syn * w_in) * (dt/tau_mem * r)
    LIF / LI:          dt/tau * r            (no current memory: du = 4095)
    IF:                r                     I: dt * r      (no leak: dv = 0)

and a constant input ``b`` (a node bias, or a direct analog input) maps to a
constant voltage bias ``b * bias_gain`` with ``bias_gain = (dt/tau_mem * r) * w_in``
(CubaLIF) or ``dt/tau * r`` (LIF) — exact when tau_syn == dt (no current memory),
the steady-state value otherwise (``exact_bias = False``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np

from snnc.ir import (NEURON_TYPES, SPIKING_TYPES, UnsupportedNodeError, _pair, back_edges, conv_padding,
                     infer_shapes, predecessors, topological_order)

CHAIN_SUPPORTED = ["AvgPool2d/SumPool2d (kernel == stride, no padding)", "Flatten",
                   "then one of Conv2d, Affine, Linear", "into a neuron node (CubaLIF, LIF, IF, LI, CubaLI, I)"]


@dataclass
class Projection:
    """Synapses from ``source`` into a group.

    ``ops`` (applied to the source's ``[B, *source_shape]`` output)::

        {"op": "sum_pool2d", "kernel": [kh, kw]}
        {"op": "flatten", "start_dim": s, "end_dim": e}        # dims without batch
        {"op": "conv2d", "node": name, "stride": [..], "padding": [..], "dilation": [..], "groups": g}
        {"op": "dense", "node": name}

    ``weight`` is the float composite weight (node weight x pool gain x neuron
    gain), shaped like the weighted node's weight; ``bias`` the float constant
    voltage bias per group neuron from the node's bias (or None).
    """
    source: str
    source_shape: tuple
    ops: list
    weighted: str
    weight: np.ndarray
    bias: np.ndarray | None
    factor: np.ndarray = None    # weight / node weight (pool gain x neuron gain), broadcastable
    recurrent: bool = False
    host: bool = False           # computed on the host (direct analog input), injected as bias


@dataclass
class Group:
    """One neuron group (a NIR neuron node) with its lowered parameters (float)."""
    name: str
    kind: str                    # "spiking" | "readout"
    nir_type: str
    shape: tuple
    dt: float
    reset: str
    threshold: np.ndarray        # per neuron (float)
    alpha: np.ndarray            # current decay per step (1 - dt/tau_syn); 0 = no current memory
    beta: np.ndarray             # voltage decay per step (1 - dt/tau_mem); 1 = no leak
    v_bias: np.ndarray           # constant voltage bias per neuron and step (float), from v_leak
    weight_gain: np.ndarray      # per neuron
    bias_gain: np.ndarray        # per neuron
    exact_bias: bool
    projections: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Lowered:
    groups: dict                  # name -> Group, topological order
    inputs: dict                  # input node -> shape
    outputs: dict                 # output node -> group name
    encoding: str                 # "direct" | "spikes"
    num_steps: int | None


def _decay_factor(dt: float, tau: np.ndarray) -> np.ndarray:
    """``1 - dt/tau`` per step; a tau equal to dt up to float32 rounding (how NIR files store it) gives 0,
    not a tiny negative factor."""
    f = 1 - dt / tau
    return np.where((f < 0) & (f > -1e-6), 0.0, f)


def _neuron_params(name: str, node) -> dict:
    shape = tuple(np.shape(node.v_threshold if hasattr(node, "v_threshold") else node.r))
    md = node.metadata or {}
    if "snnc.dt" not in md:
        raise UnsupportedNodeError(name, type(node).__name__, "no dt recorded (metadata 'snnc.dt'); pass --dt")
    dt = float(md["snnc.dt"])
    ones = np.ones(shape, np.float64)

    def arr(v):
        return np.broadcast_to(np.asarray(v, np.float64), shape).astype(np.float64)

    alpha = np.zeros(shape)
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        ts, tm = arr(node.tau_syn), arr(node.tau_mem)
        alpha = _decay_factor(dt, ts)
        beta = _decay_factor(dt, tm)
        w_in = arr(node.w_in) if getattr(node, "w_in", None) is not None else ones
        g_v = dt / tm * arr(node.r)
        weight_gain = dt / ts * w_in * g_v
        bias_gain = g_v * w_in
        v_bias = dt / tm * arr(node.v_leak)
    elif isinstance(node, (nir.LIF, nir.LI)):
        tau = arr(node.tau)
        beta = _decay_factor(dt, tau)
        weight_gain = bias_gain = dt / tau * arr(node.r)
        v_bias = dt / tau * arr(node.v_leak)
    elif isinstance(node, nir.IF):
        beta = ones
        weight_gain = bias_gain = arr(node.r)
        v_bias = np.zeros(shape)
    elif isinstance(node, nir.I):
        beta = ones
        weight_gain = bias_gain = dt * arr(node.r)
        v_bias = np.zeros(shape)
    else:
        raise UnsupportedNodeError(name, type(node).__name__)
    spiking = isinstance(node, SPIKING_TYPES)
    if spiking:
        reset = md.get("snnc.reset", "zero")
        if reset == "to_v_reset" and np.any(np.asarray(node.v_reset)):
            reset = "to_v_reset"
        thr = arr(node.v_threshold)
    else:
        reset, thr = "none", np.full(shape, np.inf)
    if np.any(alpha < 0) or np.any(beta < 0) or np.any(beta > 1):
        raise UnsupportedNodeError(name, type(node).__name__, "tau < dt (forward Euler unstable)")
    return dict(kind="spiking" if spiking else "readout", shape=shape, dt=dt, reset=str(reset), threshold=thr,
                alpha=alpha, beta=beta, v_bias=v_bias, weight_gain=weight_gain, bias_gain=bias_gain,
                exact_bias=bool(np.all(alpha == 0)))


def _chains(graph, target: str, back: set) -> list[tuple[str, list[str], bool]]:
    """All paths into neuron node ``target``: (source, [linear nodes source->target], recurrent)."""
    out = []

    def walk(node: str, path: list[str], recurrent: bool):
        for p in predecessors(graph, node):
            rec = recurrent or (p, node) in back
            pn = graph.nodes[p]
            if isinstance(pn, NEURON_TYPES + (nir.Input,)):
                out.append((p, list(reversed(path)), rec))
            elif isinstance(pn, nir.Output):
                raise UnsupportedNodeError(p, "Output", "an Output node feeds a neuron node")
            else:
                if p in path:
                    raise UnsupportedNodeError(p, type(pn).__name__, "a cycle without a neuron node in it")
                walk(p, path + [p], rec)

    walk(target, [], False)
    return out


def lower(graph: nir.NIRGraph) -> Lowered:
    """Lower ``graph`` (BatchNorm already folded) to groups and projections.

    Raises:
        UnsupportedNodeError: node types or chains snnc cannot map (names the node).
    """
    shapes = infer_shapes(graph)
    back = back_edges(graph)
    order = topological_order(graph)
    meta = graph.metadata or {}
    encoding = str(meta.get("snnc.input_encoding", "direct"))
    groups: dict[str, Group] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, (nir.Input, nir.Output) + NEURON_TYPES):
            continue
        if isinstance(node, nir.Conv2d) and (node.metadata or {}).get("snnc.op") == "batchnorm2d":
            continue  # checked in its chain (must be folded first)
        if not isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear, nir.Flatten, nir.AvgPool2d, nir.SumPool2d)):
            raise UnsupportedNodeError(name, type(node).__name__, "no loihi-sim lowering for this node",
                                       CHAIN_SUPPORTED)
    for name in order:
        node = graph.nodes[name]
        if not isinstance(node, NEURON_TYPES):
            continue
        g = Group(name=name, nir_type=type(node).__name__, **_neuron_params(name, node))
        if g.shape != shapes[name][1]:
            raise UnsupportedNodeError(name, g.nir_type, f"parameter shape {g.shape} != input shape {shapes[name][1]}")
        for src, path, rec in _chains(graph, name, back):
            g.projections.append(_projection(graph, shapes, g, src, path, rec, encoding))
        if not g.projections:
            raise UnsupportedNodeError(name, g.nir_type, "neuron node without input")
        groups[name] = g
    outputs = {}
    for name in order:
        if isinstance(graph.nodes[name], nir.Output):
            srcs = predecessors(graph, name)
            if len(srcs) != 1 or srcs[0] not in groups:
                raise UnsupportedNodeError(name, "Output", "an Output must be fed directly by one neuron node")
            outputs[name] = srcs[0]
    inputs = {n: shapes[n][1] for n in order if isinstance(graph.nodes[n], nir.Input)}
    return Lowered(groups=groups, inputs=inputs, outputs=outputs, encoding=encoding,
                   num_steps=int(meta["snnc.num_steps"]) if "snnc.num_steps" in meta else None)


def _projection(graph, shapes, g: Group, src: str, path: list[str], rec: bool, encoding: str) -> Projection:
    ops: list = []
    gain = 1.0
    weighted = None
    host = isinstance(graph.nodes[src], nir.Input) and encoding == "direct"
    for p in path:
        node = graph.nodes[p]
        if isinstance(node, nir.Conv2d) and (node.metadata or {}).get("snnc.op") == "batchnorm2d":
            raise UnsupportedNodeError(p, "BatchNorm2d", "not folded: run the fold_bn pass first; it folds a "
                                       "BatchNorm only when it directly follows a Conv2d/Affine that feeds it alone",
                                       CHAIN_SUPPORTED)
        if weighted is not None:
            raise UnsupportedNodeError(p, type(node).__name__,
                                       f"follows weighted node {weighted!r} on the way into neuron group {g.name!r}; "
                                       "loihi-sim lowers pooling/flatten only before the one weighted node",
                                       CHAIN_SUPPORTED)
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            k, s, pad = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            if k != s or any(pad):
                raise UnsupportedNodeError(p, type(node).__name__, f"kernel {k} != stride {s} or padding {pad}",
                                           CHAIN_SUPPORTED)
            ish = shapes[p][0]
            if ish[1] % k[0] or ish[2] % k[1]:
                raise UnsupportedNodeError(p, type(node).__name__, f"input {ish} not divisible by kernel {k}",
                                           CHAIN_SUPPORTED)
            ops.append({"op": "sum_pool2d", "kernel": list(k)})
            if isinstance(node, nir.AvgPool2d):
                gain /= k[0] * k[1]
        elif isinstance(node, nir.Flatten):
            ops.append({"op": "flatten", "start_dim": int(node.start_dim), "end_dim": int(node.end_dim)})
        elif isinstance(node, nir.Conv2d):
            weighted = p
            ops.append({"op": "conv2d", "node": p, "stride": list(_pair(node.stride)),
                        "padding": list(conv_padding(node)), "dilation": list(_pair(node.dilation)),
                        "groups": int(node.groups)})
        elif isinstance(node, (nir.Affine, nir.Linear)):
            if len(shapes[p][0]) != 1:
                raise UnsupportedNodeError(p, type(node).__name__, f"applied to a {len(shapes[p][0])}-D input "
                                           f"{shapes[p][0]} (flatten it completely first)", CHAIN_SUPPORTED)
            weighted = p
            ops.append({"op": "dense", "node": p})
        else:
            raise UnsupportedNodeError(p, type(node).__name__, "", CHAIN_SUPPORTED)
    if weighted is None:
        raise UnsupportedNodeError(g.name, g.nir_type, f"input from {src!r} reaches it without a weighted node",
                                   CHAIN_SUPPORTED)
    wnode = graph.nodes[weighted]
    w = np.asarray(wnode.weight, np.float64) * gain
    b = np.asarray(wnode.bias, np.float64) if isinstance(wnode, (nir.Affine, nir.Conv2d)) else None
    if isinstance(wnode, nir.Conv2d):
        cg = g.weight_gain.reshape(g.shape[0], -1)
        cb = g.bias_gain.reshape(g.shape[0], -1)
        if np.ptp(cg, axis=1).max() > 1e-12 * max(1.0, np.abs(cg).max()) or np.ptp(cb, axis=1).max() > 1e-12 * max(1.0, np.abs(cb).max()):
            raise UnsupportedNodeError(g.name, g.nir_type, f"neuron parameters vary within a channel behind conv {weighted!r}")
        factor = gain * cg[:, 0].reshape(-1, 1, 1, 1)
        w = w * cg[:, 0].reshape(-1, 1, 1, 1)
        bias = None if b is None or not np.any(b) else np.repeat(b * cb[:, 0], np.prod(g.shape[1:])).reshape(g.shape)
    else:
        factor = gain * g.weight_gain.reshape(-1, 1)
        w = w * g.weight_gain.reshape(-1, 1)
        bias = None if b is None or not np.any(b) else (b * g.bias_gain.reshape(-1)).reshape(g.shape)
    return Projection(source=src, source_shape=tuple(shapes[src][1]), ops=ops, weighted=weighted, weight=w,
                      bias=bias, factor=factor, recurrent=rec, host=host)


def group_offsets(lowered: Lowered) -> dict[str, int]:
    """Time offset of each group on a chip with a 1-step synaptic delay per hop.

    A group fed only by host-encoded (bias) input starts at offset 0; otherwise
    offset = max over its feed-forward projections of source offset + 1 (graph
    inputs as spikes have offset 0). Its value at chip step ``t + offset``
    equals the float graph's value at step ``t``.
    """
    off: dict[str, int] = {}
    for name, g in lowered.groups.items():
        o = 0
        for p in g.projections:
            if p.recurrent or p.host:
                continue
            o = max(o, off.get(p.source, 0) + 1)
        off[name] = o
    return off
