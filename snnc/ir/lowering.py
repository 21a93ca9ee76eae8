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

Gains (forward Euler, see :mod:`snnc.ir.reference`): the per-step current that a
unit input adds to the neuron's ``u`` (already multiplied into v's scale) is

    CubaLIF / CubaLI:  (dt/tau_syn * w_in) * (dt/tau_mem * r)
    LIF / LI:          dt/tau * r            (no current memory: du = 4095)
    IF:                dt * r                I: dt * r      (no leak: dv = 0)

and a constant input ``b`` (a node bias, or a direct analog input) maps to a
constant voltage bias ``b * bias_gain`` with ``bias_gain = (dt/tau_mem * r) * w_in``
(CubaLIF) or ``dt/tau * r`` (LIF) — exact when tau_syn == dt (no current memory),
the steady-state value otherwise (``exact_bias = False``).

Layers the chip can do exactly, prepared by :func:`prepare_graph` (run by the ``quantize``
pass before it lowers; the float graph keeps the source layers):

- pooling *after* a weighted layer (``Conv2d -> AvgPool2d/SumPool2d -> neuron``) is one strided
  linear map: the conv and the pooling are composed into one ``Conv2d`` (kernel
  ``d (K - 1) + 1 + (k - 1) s``, stride ``s t``, the pooling's 1/k^2 in the weights);
- ``Flatten`` after a weighted layer (``Conv2d -> Flatten -> neuron``) is kept as a reshape of
  the projection's output;
- max pooling of *binary spikes* (after a single-spike neuron node, or of a spike-encoded input)
  is an OR: it becomes an extra neuron group ``<pool>.or`` (a depthwise all-ones Conv2d into a LIF
  with tau = dt, r = 1, v_th = 0.5: fires iff any spike arrived in its window), which adds one
  step of latency (the time offsets absorb it) and is exact;
- max pooling on the host-computed first layer (direct analog input) is computed by the host
  exactly (``max_pool2d`` in the host's ops; max commutes with the positive per-channel gains);
- max pooling of membrane currents on the chip (``Conv2d -> MaxPool2d -> neuron`` fed by spikes)
  has no exact form: a one-line error names the layer and the fixes (move the MaxPool2d behind
  the neuron, where it pools spikes; or replace it by AvgPool2d and fine-tune, which
  ``adapt_semantics:maxpool=avg`` does).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np

from snnc.ir.semantics import NeuronSemantics
from snnc.ir import (NEURON_TYPES, delay_steps, own_copy, set_types, SPIKING_TYPES, UnsupportedNodeError, _pair, back_edges, conv_padding,
                     infer_shapes, predecessors, successors, topological_order)

CHAIN_SUPPORTED = ["AvgPool2d/SumPool2d (kernel == stride, no padding)", "Flatten",
                   "then one of Conv2d, Affine, Linear", "then Flatten (or pooling composed into a Conv2d)",
                   "into a neuron node (CubaLIF, LIF, IF, LI, CubaLI, I)",
                   "MaxPool2d of binary spikes (an OR group) or on the host-computed first layer",
                   "Delay of one whole number of steps per projection (a synaptic delay)"]
MAXPOOL_FIX = ("move the MaxPool2d behind the neuron (it then pools binary spikes: an exact OR on the chip), or "
               "replace it by AvgPool2d and fine-tune (--passes adapt_semantics:maxpool=avg;finetune_epochs=N,...)")


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
    delay: int = 0               # whole steps from NIR Delay nodes on the path (added to the synaptic delay)


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
    sem = NeuronSemantics.of(node)
    if sem.dt is None:
        raise UnsupportedNodeError(name, type(node).__name__, "no dt recorded (metadata 'snnc.dt'); pass --dt")
    dt = sem.dt
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
        weight_gain = bias_gain = dt * arr(node.r)   # NIR: dv/dt = R I
        v_bias = np.zeros(shape)
    elif isinstance(node, nir.I):
        beta = ones
        weight_gain = bias_gain = dt * arr(node.r)
        v_bias = np.zeros(shape)
    else:
        raise UnsupportedNodeError(name, type(node).__name__)
    spiking = isinstance(node, SPIKING_TYPES)
    if spiking:
        reset = sem.reset
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
        if not isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear, nir.Flatten, nir.AvgPool2d, nir.SumPool2d,
                                 nir.Delay)):
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
            snode = graph.nodes[src]
            if isinstance(snode, NEURON_TYPES) and not isinstance(snode, SPIKING_TYPES):
                raise UnsupportedNodeError(src, type(snode).__name__, f"a non-spiking neuron (its output is a voltage) "
                                           f"feeds neuron group {name!r}; a Loihi compartment sends only spikes, so "
                                           "only spiking neurons may drive synapses (a non-spiking node can only be "
                                           "a readout: an Output)", CHAIN_SUPPORTED)
            g.projections.append(_projection(graph, shapes, g, src, path, rec, encoding))
        biased = set()  # NIR adds a weighted node's bias once to the sum of its inputs: keep it on one projection
        for p in g.projections:
            if p.weighted in biased:
                p.bias = None
            elif p.bias is not None:
                biased.add(p.weighted)
        if not g.projections:
            raise UnsupportedNodeError(name, g.nir_type, "neuron node without input")
        groups[name] = g
    outputs = {}  # by name: the first is the readout (snnc.ir.readout)
    for name in sorted(order):
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
    delay = 0
    for p in path:
        node = graph.nodes[p]
        if isinstance(node, nir.Delay):  # a delay commutes with the linear ops: one synaptic delay of the projection
            k = delay_steps(node, p)
            if k.size and np.any(k != k.reshape(-1)[0]):
                raise UnsupportedNodeError(p, "Delay", f"per-value delays differ ({int(k.min())}..{int(k.max())} "
                                           f"steps); loihi-sim holds one synaptic delay per projection (here into "
                                           f"{g.name!r})", CHAIN_SUPPORTED)
            if host and k.size and k.reshape(-1)[0]:
                raise UnsupportedNodeError(p, "Delay", "delays the host-computed direct input, which the host injects "
                                           "as a bias every step (no synaptic delay there)", CHAIN_SUPPORTED)
            delay += int(k.reshape(-1)[0]) if k.size else 0
            continue
        if isinstance(node, nir.Conv2d) and (node.metadata or {}).get("snnc.op") == "batchnorm2d":
            raise UnsupportedNodeError(p, "BatchNorm2d", "not folded: run the fold_bn pass first; it folds a "
                                       "BatchNorm only when it directly follows a Conv2d/Affine that feeds it alone",
                                       CHAIN_SUPPORTED)
        if _is_maxpool(node) and host:  # the host computes it exactly, before or after the weights
            k, s_, pad = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            ops.append({"op": "max_pool2d", "kernel": list(k), "stride": list(s_), "padding": list(pad)})
            continue
        if weighted is not None:
            if isinstance(node, nir.Flatten):
                ops.append({"op": "flatten", "start_dim": int(node.start_dim), "end_dim": int(node.end_dim)})
                continue
            if _is_maxpool(node):
                raise UnsupportedNodeError(p, "MaxPool2d", f"max-pools the membrane currents of {weighted!r} on the "
                                           f"chip (into neuron group {g.name!r}), which no chip operation does "
                                           f"exactly; {MAXPOOL_FIX}", CHAIN_SUPPORTED)
            raise UnsupportedNodeError(p, type(node).__name__,
                                       f"follows weighted node {weighted!r} on the way into neuron group {g.name!r}; "
                                       "loihi-sim lowers pooling only before the weighted node or composed into a "
                                       "Conv2d (kernel/stride/no padding), and Flatten after it", CHAIN_SUPPORTED)
        if _is_maxpool(node):
            raise UnsupportedNodeError(p, "MaxPool2d", f"max-pools a non-binary source on the way into {g.name!r}; "
                                       f"{MAXPOOL_FIX}", CHAIN_SUPPORTED)
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
        cg = g.weight_gain.reshape(w.shape[0], -1)   # per conv output channel (C order, also when flattened after)
        cb = g.bias_gain.reshape(w.shape[0], -1)
        if np.ptp(cg, axis=1).max() > 1e-12 * max(1.0, np.abs(cg).max()) or np.ptp(cb, axis=1).max() > 1e-12 * max(1.0, np.abs(cb).max()):
            raise UnsupportedNodeError(g.name, g.nir_type, f"neuron parameters vary within a channel behind conv {weighted!r}")
        factor = gain * cg[:, 0].reshape(-1, 1, 1, 1)
        w = w * cg[:, 0].reshape(-1, 1, 1, 1)
        bias = None if b is None or not np.any(b) else np.repeat(b * cb[:, 0], g.size // w.shape[0]).reshape(g.shape)
    else:
        factor = gain * g.weight_gain.reshape(-1, 1)
        w = w * g.weight_gain.reshape(-1, 1)
        bias = None if b is None or not np.any(b) else (b * g.bias_gain.reshape(-1)).reshape(g.shape)
    return Projection(source=src, source_shape=tuple(shapes[src][1]), ops=ops, weighted=weighted, weight=w,
                      bias=bias, factor=factor, recurrent=rec, host=host, delay=delay)


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


# --------------------------------------------------------------------------- exact rewrites

def _is_maxpool(node) -> bool:
    return isinstance(node, nir.SumPool2d) and (node.metadata or {}).get("snnc.op") == "maxpool2d"


def _binary_source(graph, name: str) -> bool:
    """Does node ``name`` emit 0/1 values every step (a single-spike neuron, or a spike input)?"""
    node = graph.nodes[name]
    if isinstance(node, nir.Input):
        return (graph.metadata or {}).get("snnc.input_encoding") == "spikes"
    if isinstance(node, SPIKING_TYPES):
        return NeuronSemantics.of(node).spikes == "single"
    return False


def compose_conv_pool(conv: nir.Conv2d, pool, in_shape) -> nir.Conv2d:
    """One Conv2d equal to ``pool(conv(x))`` for AvgPool2d/SumPool2d without padding (exact up to
    float rounding). Kernel ``d (K - 1) + 1 + (k - 1) s``, stride ``s t``, dilation 1."""
    w = np.asarray(conv.weight, np.float64)
    co, ci, kh, kw = w.shape
    s, d = _pair(conv.stride), _pair(conv.dilation)
    k, t = _pair(pool.kernel_size), _pair(pool.stride)
    gain = 1.0 / (k[0] * k[1]) if isinstance(pool, nir.AvgPool2d) and not _is_maxpool(pool) else 1.0
    KH = d[0] * (kh - 1) + 1 + (k[0] - 1) * s[0]
    KW = d[1] * (kw - 1) + 1 + (k[1] - 1) * s[1]
    out = np.zeros((co, ci, KH, KW))
    for a in range(k[0]):
        for b in range(k[1]):
            for u in range(kh):
                for v in range(kw):
                    out[:, :, a * s[0] + u * d[0], b * s[1] + v * d[1]] += w[:, :, u, v] * gain
    bias = np.asarray(conv.bias, np.float64) * (gain * k[0] * k[1])
    return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=out.astype(np.float32),
                      stride=(s[0] * t[0], s[1] * t[1]), padding=conv_padding(conv), dilation=(1, 1),
                      groups=int(conv.groups), bias=bias.astype(np.float32),
                      metadata=dict(conv.metadata or {}, **{"snnc.composed_pool": True}))


def prepare_graph(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
    """Rewrite (in place) what the chip can do exactly (see module docstring); returns the graph and
    one note per rewrite. Max pooling that has no exact form is left for :func:`lower` to refuse."""
    notes = []
    if not any(isinstance(n, NEURON_TYPES) for n in graph.nodes.values()):
        out = next((n for n, v in graph.nodes.items() if isinstance(v, nir.Output)), "graph")
        raise UnsupportedNodeError(out, "Output", "the graph has no neuron node: a linear map of its input, which "
                                   "no neuron group computes (snnc compiles spiking networks; their linear layers "
                                   "become synapses between neuron groups)")
    shapes = infer_shapes(graph)
    for name in list(topological_order(graph)):
        node = graph.nodes.get(name)
        if not isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            continue
        preds = predecessors(graph, name)
        if len(preds) != 1:
            continue
        src = preds[0]
        pn = graph.nodes[src]
        k, st, pad = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        if _is_maxpool(node):
            if not _binary_source(graph, src):
                continue
            C = shapes[name][0][0]
            or_conv, or_lif = f"{name}.sum", f"{name}.or"
            # the OR group runs at its source's dt (a spike input: any neuron's); with tau = dt its update
            # replaces v every step, so the OR is exact whatever dt is
            dt = NeuronSemantics.of(pn).dt if isinstance(pn, NEURON_TYPES) else None
            dt = dt or next((NeuronSemantics.of(n).dt for n in graph.nodes.values()
                             if isinstance(n, NEURON_TYPES) and NeuronSemantics.of(n).dt), None)
            if dt is None:
                raise UnsupportedNodeError(name, "MaxPool2d", "no neuron node of the graph records its time step "
                                           "(metadata 'snnc.dt'); pass --dt")
            oshape = shapes[name][1]
            graph.nodes[or_conv] = nir.Conv2d(input_shape=tuple(shapes[name][0][1:]),
                                              weight=np.ones((C, 1, k[0], k[1]), np.float32), stride=tuple(st),
                                              padding=tuple(pad), dilation=(1, 1), groups=int(C),
                                              bias=np.zeros(C, np.float32))
            graph.nodes[or_lif] = nir.LIF(tau=np.full(oshape, dt, np.float32), r=np.ones(oshape, np.float32),
                                          v_leak=np.zeros(oshape, np.float32), v_threshold=np.full(oshape, 0.5, np.float32),
                                          v_reset=np.zeros(oshape, np.float32),
                                          metadata=dict(NeuronSemantics(
                                              dt=dt, source=f"MaxPool2d {name!r} of binary spikes").to_metadata(),
                                              **{"snnc.op": "or_pool"}))
            succ = successors(graph, name)
            graph.edges = [e for e in graph.edges if name not in e] + [(src, or_conv), (or_conv, or_lif)] + \
                [(or_lif, d) for d in succ]
            del graph.nodes[name]
            notes.append(f"{name}: max pooling of binary spikes -> OR neuron group {or_lif!r} (exact, +1 step latency)")
            continue
        if isinstance(pn, nir.Conv2d) and not any(pad) and successors(graph, src) == [name] and \
                (pn.metadata or {}).get("snnc.op") != "batchnorm2d":
            graph.nodes[src] = compose_conv_pool(pn, node, shapes[src][0])
            succ = successors(graph, name)
            graph.edges = [e for e in graph.edges if name not in e] + [(src, d) for d in succ]
            del graph.nodes[name]
            notes.append(f"{name}: pooling after conv {src!r} composed into one strided conv (exact)")
    back = back_edges(graph)
    for name in list(topological_order(graph)):  # one weighted node per neuron group: copies for the others
        node = graph.nodes[name]
        succ = successors(graph, name)
        if not isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)) or len(succ) < 2 or \
                any((name, d) in back or (p, name) in back for d in succ for p in predecessors(graph, name)):
            continue
        for d in succ[1:]:
            own_copy(graph, name, d)
        notes.append(f"{name}: feeds {len(succ)} nodes; copied once per consumer ({', '.join(succ[1:])}) so that each "
                     "projection has its own weights (exact)")
    if notes:
        set_types(graph)
        shapes = infer_shapes(graph)
    for out in [n for n in topological_order(graph) if isinstance(graph.nodes[n], nir.Output)]:
        preds = predecessors(graph, out)
        if not preds or (len(preds) == 1 and isinstance(graph.nodes[preds[0]], NEURON_TYPES + (nir.Input,))):
            continue
        src = preds[0]  # a non-spiking tail (e.g. an Affine after the last spiking group, or the several Affines
        # fold_bn made of a chain): the sum of its inputs over the T steps
        dt = next((NeuronSemantics.of(n).dt for n in graph.nodes.values()  # is the readout (snnc.ir.readout)
                   if isinstance(n, NEURON_TYPES) and NeuronSemantics.of(n).dt), None)
        if dt is None:
            continue  # lower() refuses the Output, naming it
        shape = tuple(int(v) for v in shapes[src][1])
        acc = f"{out}.sum"
        graph.nodes[acc] = nir.I(r=np.full(shape, 1.0 / dt, np.float32), metadata=NeuronSemantics(
            dt=dt, readout=True, source=f"sum over the steps of {src!r} (the Output's non-spiking tail)").to_metadata())
        graph.edges = [e for e in graph.edges if e[1] != out] + [(p, acc) for p in preds] + [(acc, out)]
        notes.append(f"{out}: fed by {', '.join(repr(p) for p in preds)}, not one neuron: its sum over the T steps (the "
                     f"readout) is computed on the chip by an added integrator {acc!r} (v += x each step: exact)")
        set_types(graph)
        shapes = infer_shapes(graph)
    return graph, notes
