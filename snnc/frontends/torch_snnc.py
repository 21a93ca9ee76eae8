"""PyTorch layers and snnc's own neurons -> NIR nodes, and the tracer every torch frontend uses.

Node maps (module -> NIR node; NIR shapes have no batch/time dims):

==========================  ================================================
``nn.Conv2d``               ``nir.Conv2d`` (``input_shape`` = (H, W), filled in after tracing)
``nn.Linear``               ``nir.Affine`` (bias kept) / ``nir.Linear``
``nn.Flatten``              ``nir.Flatten`` with ``start_dim`` shifted for the missing batch dim
``nn.AvgPool2d``            ``nir.AvgPool2d``
``nn.LPPool2d(p=1)``        ``nir.SumPool2d`` (sum pooling)
``nn.MaxPool2d``            ``nir.SumPool2d`` tagged ``snnc.op = "maxpool2d"`` (NIR has no max
                            pooling; snnc's executor and lowering read the tag)
``nn.BatchNorm2d``          diagonal 1x1 ``nir.Conv2d`` tagged ``snnc.op = "batchnorm2d"`` (eval
                            statistics), folded exactly by the ``fold_bn`` pass
``snnc.neurons.CubaLIF``    ``nir.CubaLIF`` (w_in = tau_syn/dt, r = tau_mem/dt, v_leak = bias*tau_mem/dt)
``snnc.neurons.Integrator`` ``nir.I`` (r = 1/dt), ``snnc.readout = True``
==========================  ================================================

snnc's ``CubaLIF``: ``i = (1 - dt/tau_syn) i + x``, ``v = (1 - dt/tau_mem) v + i + bias``,
spike on ``v > v_th`` (strict), reset to 0 or subtract v_th right after the spike. Framework
neurons come from :mod:`snnc.frontends.snntorch`, ``norse``, ``spikingjelly`` and ``sinabs``.

Tracing (:func:`trace`) takes a module whose ``forward`` is one time step. It tries
nirtorch (torch.fx) first. When fx cannot trace the module (a ``forward`` that loops over
time, Python control flow, state handling in ``forward``) or when fx unrolled a time loop
(a module called more than once), it *runs* the module once with forward hooks, finds the
per-step chain of mapped modules from the tensors that pass between them, and checks that
the chain reproduces every recorded layer output of that run for all its time steps, and that
on :data:`PROBES` random probe inputs the module follows the same data flow (a branch on the
data that the first run did not take is refused, naming the layer), before using it. Parameter arrays of neuron nodes are broadcast to the node's inferred shape.
"""
from __future__ import annotations

import inspect
from typing import Callable

import nir
import numpy as np
import torch
from torch import nn

from snnc.frontends.base import make_neuron, ModelLoadError, TraceContext, first_tensor, neuron_meta, np32, reset_module_states
from snnc.frontends.registry import FRAMEWORKS
from snnc.ir import NEURON_TYPES, UnsupportedNodeError, infer_shapes, set_types, topological_order
from snnc.ir.reference import GraphExecutor
from snnc.ir.semantics import NeuronSemantics
from snnc.neurons import CubaLIF, Integrator

SKIPPED = (nn.Identity, nn.Dropout)


def torch_maps(tc: TraceContext) -> dict[type, Callable]:
    """Maps for plain ``torch.nn`` layers and snnc's neurons."""
    def conv2d(m: nn.Conv2d):
        if m.padding_mode != "zeros":
            raise UnsupportedNodeError(tc.name(m), "Conv2d", f"padding_mode={m.padding_mode!r} (only 'zeros')",
                                       supported_list())
        pad = m.padding if not isinstance(m.padding, str) else m._reversed_padding_repeated_twice[::2][::-1]
        bias = np32(m.bias) if m.bias is not None else np.zeros(m.out_channels, np.float32)
        return nir.Conv2d(input_shape=None, weight=np32(m.weight), stride=tuple(m.stride),
                          padding=tuple(int(p) for p in pad), dilation=tuple(m.dilation), groups=m.groups, bias=bias)

    def linear(m: nn.Linear):
        if m.bias is None:
            return nir.Linear(weight=np32(m.weight))
        return nir.Affine(weight=np32(m.weight), bias=np32(m.bias))

    def flatten(m: nn.Flatten):
        if m.start_dim == 0 or (m.start_dim < 0 and m.end_dim < 0 and m.start_dim < m.end_dim - 8):
            raise UnsupportedNodeError(tc.name(m), "Flatten", "flattening the batch dimension (start_dim=0); "
                                       "snnc runs one time step of [B, ...] tensors", supported_list())
        start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
        end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
        return nir.Flatten(input_type=None, start_dim=start, end_dim=end)

    def pool_args(m, kind):
        k = nn.modules.utils._pair(m.kernel_size)
        s = nn.modules.utils._pair(m.stride if m.stride is not None else m.kernel_size)
        p = nn.modules.utils._pair(getattr(m, "padding", 0))
        if getattr(m, "ceil_mode", False):
            raise UnsupportedNodeError(tc.name(m), kind, "ceil_mode=True", supported_list())
        return np.array(k), np.array(s), np.array(p)

    def avgpool(m: nn.AvgPool2d):
        k, s, p = pool_args(m, "AvgPool2d")
        if (p.any() and not m.count_include_pad) or m.divisor_override is not None:
            raise UnsupportedNodeError(tc.name(m), "AvgPool2d", "count_include_pad=False or divisor_override",
                                       supported_list())
        return nir.AvgPool2d(kernel_size=k, stride=s, padding=p)

    def lppool(m: nn.LPPool2d):
        if float(m.norm_type) != 1.0:
            raise UnsupportedNodeError(tc.name(m), "LPPool2d", "only norm_type=1 (sum pooling)", supported_list())
        k, s, _ = pool_args(m, "LPPool2d")
        return nir.SumPool2d(kernel_size=k, stride=s, padding=np.array([0, 0]))

    def maxpool(m: nn.MaxPool2d):
        k, s, p = pool_args(m, "MaxPool2d")
        if np.any(np.asarray(nn.modules.utils._pair(m.dilation)) != 1) or m.return_indices:
            raise UnsupportedNodeError(tc.name(m), "MaxPool2d", "dilation != 1 or return_indices", supported_list())
        return nir.SumPool2d(kernel_size=k, stride=s, padding=p, metadata={"snnc.op": "maxpool2d"})

    def batchnorm(m: nn.BatchNorm2d):
        if not m.track_running_stats:
            raise UnsupportedNodeError(tc.name(m), "BatchNorm2d", "track_running_stats=False", supported_list())
        scale = np32(m.weight if m.affine else torch.ones(m.num_features)) / np.sqrt(np32(m.running_var) + m.eps)
        shift = (np32(m.bias) if m.affine else 0.0) - np32(m.running_mean) * scale
        # A diagonal 1x1 conv (groups=1: NIR 1.0.8's type inference ignores conv groups).
        weight = np.diag(scale).reshape(m.num_features, m.num_features, 1, 1).astype(np.float32)
        return nir.Conv2d(input_shape=None, weight=weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                          bias=shift.astype(np.float32), metadata={"snnc.op": "batchnorm2d", "snnc.eps": float(m.eps)})

    def cubalif(m: CubaLIF):
        tau_syn, tau_mem, bias = np32(m.tau_syn), np32(m.tau_mem), np32(m.bias)
        return make_neuron(nir.CubaLIF, 
            tau_syn=tau_syn, tau_mem=tau_mem, r=(tau_mem / m.dt).astype(np.float32),
            v_leak=(bias * tau_mem / m.dt).astype(np.float32), v_threshold=np32(m.threshold),
            v_reset=np.zeros((), np.float32), w_in=(tau_syn / m.dt).astype(np.float32),
            metadata=NeuronSemantics(dt=m.dt, reset=m.reset).to_metadata())

    def integrator(m: Integrator):
        return make_neuron(nir.I, r=np.array(1.0 / m.dt, np.float32), metadata=NeuronSemantics(dt=m.dt, readout=True).to_metadata())

    return {nn.Conv2d: conv2d, nn.Linear: linear, nn.Flatten: flatten, nn.AvgPool2d: avgpool, nn.LPPool2d: lppool,
            nn.MaxPool2d: maxpool, nn.BatchNorm2d: batchnorm, CubaLIF: cubalif, Integrator: integrator}


_ = neuron_meta  # re-exported for framework modules

TORCH_SUPPORTED = ["Conv2d", "Linear", "Flatten", "AvgPool2d", "MaxPool2d", "LPPool2d(norm_type=1)", "BatchNorm2d",
                   "snnc CubaLIF", "snnc Integrator"]


def supported_list() -> list[str]:
    out = list(TORCH_SUPPORTED)
    for fw in FRAMEWORKS.values():
        out += fw.SUPPORTED
    return out


def all_maps(tc: TraceContext) -> dict[type, Callable]:
    maps = torch_maps(tc)
    for fw in FRAMEWORKS.values():
        maps.update(fw.node_maps(tc, maps))
    return maps


def _leaves(model: nn.Module, maps: dict) -> list[tuple[str, nn.Module]]:
    """Outermost mapped modules and unmapped leaf modules, in registration order."""
    out = []

    def walk(prefix, m):
        for name, child in m.named_children():
            q = f"{prefix}.{name}" if prefix else name
            if type(child) in maps or isinstance(child, SKIPPED) or not list(child.children()):
                out.append((q, child))
            else:
                walk(q, child)
    if type(model) in maps:
        return [("", model)]
    walk("", model)
    return out


def _check_supported(model: nn.Module, maps: dict) -> None:
    for name, m in _leaves(model, maps):
        if type(m) not in maps and not isinstance(m, SKIPPED):
            raise UnsupportedNodeError(name, type(m).__module__ + "." + type(m).__name__, supported=supported_list())


# --------------------------------------------------------------------------- nirtorch (torch.fx)

def _trace_fx(model: nn.Module, maps: dict, stateful: set) -> nir.NIRGraph:
    import nirtorch

    tracer = nirtorch.torch_tracer.NIRTorchTracer(tuple(maps))
    fxg = tracer.trace(model)
    calls = [n.target for n in fxg.nodes if n.op == "call_module"]
    repeated = sorted({c for c in calls if calls.count(c) > 1})
    if repeated:
        raise _Repeated(f"module(s) {', '.join(repeated)} called more than once per forward (a loop over time?)")
    return nirtorch.torch_to_nir(model, maps, default_dict={}, type_check=False, stateful_modules=stateful)


class _Repeated(ValueError):
    pass


#: random probe inputs on which a trace by running must reproduce every layer output (besides the first input)
PROBES = 6
#: largest relative difference (float32 framework vs float64 executor) a reproduced layer output may show
REPRODUCE_TOL = 1e-4


# --------------------------------------------------------------------------- run with hooks

def _example_inputs(input_shape, num_steps):
    g = torch.Generator().manual_seed(0)
    shape = tuple(input_shape)
    yield torch.rand((2,) + shape, generator=g)  # [B, *shape]: a step, or a forward looping over a constant input
    T = int(num_steps or 4)
    yield (torch.rand((T, 2) + shape, generator=g) < 0.5).float()  # [T, B, *shape]: a time-major spike input


def _accepts_state(model) -> bool:
    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return False
    return len(params) >= 2 and params[1] in ("state", "s", "states")


def run_steps(model: nn.Module, xs) -> torch.Tensor:
    """Run a single-step module over ``xs`` (``[T, B, *shape]``); returns ``[T, B, *out]`` (first
    tensor of tuple outputs). Modules with a ``forward(x, state)`` signature (Norse
    ``SequentialState``) get their returned state back each step."""
    reset_module_states(model)
    outs, state = [], None
    with_state = _accepts_state(model)
    try:
        with torch.no_grad():
            for xt in xs:
                if with_state:
                    out = model(xt, state)
                    state = out[1] if isinstance(out, tuple) and len(out) > 1 else None
                else:
                    out = model(xt)
                outs.append(first_tensor(out))
        return torch.stack(outs)
    finally:
        reset_module_states(model)


def _trace_by_running(model: nn.Module, maps: dict, tc: TraceContext, input_shape, num_steps):
    """Find the per-step chain by running the model with forward hooks (see module docstring), then check
    it: the chain's graph (snnc's reference executor) reproduces every recorded layer output of that run,
    and on :data:`PROBES` random probe inputs the model calls the same layers, each fed exactly the output
    of the layer the chain connects to it (else forward() computes something between the layers, e.g. a
    data-dependent branch, that the first run did not take).

    Returns:
        the NIR graph of one time step.

    Raises:
        ModelLoadError: no per-step chain, or one that the model does not follow (names the layer).
    """
    leaves = [(n, m) for n, m in _leaves(model, maps) if not isinstance(m, SKIPPED)]
    if not leaves:
        raise ModelLoadError("no layers found")
    name_of = {id(m): (n or type(m).__name__) for n, m in leaves}
    rec: list = []
    hooks = []

    def hook(mod, args, out):
        x = args[0] if args else None
        rec.append((name_of[id(mod)], mod, x if isinstance(x, torch.Tensor) else None, first_tensor(out)))

    for _, m in leaves:
        hooks.append(m.register_forward_hook(hook))
    errors, used = [], None
    try:
        for example in _example_inputs(input_shape, num_steps):
            try:
                loops = _run_recorded(model, example, num_steps, rec)
                used = example
                break
            except Exception as e:  # noqa: BLE001 - reported below in one line
                errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if used is None:
            raise ModelLoadError(f"running it on an input of shape [B, {', '.join(map(str, input_shape))}] failed "
                                 f"({errors[0]})")
        graph, chain, steps, in_idx, in_shape, src_of = _chain_graph(rec, used, maps)
        worst, where = _chain_error(graph, chain, steps, in_idx, in_shape, 0)
        if worst > REPRODUCE_TOL:
            raise ModelLoadError(f"the per-step chain {' -> '.join(n for n, *_ in chain)} found by running forward() "
                                 f"does not reproduce it (largest difference {worst:.3g} at {where}); give snnc a "
                                 "single-step module")
        # ---- probes: forward() may take another path on other inputs (data-dependent control flow, code
        # between the layers): the same layers must run, each fed exactly what the chain says
        for k, probe in enumerate(_probe_inputs(used)):
            try:
                _run_recorded(model, probe, num_steps, rec)
            except Exception as e:  # noqa: BLE001 - the model fails on a probe: say so in one line
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                raise ModelLoadError(f"forward() fails on probe input {k + 1} of {PROBES} ({reason}); give snnc a "
                                     "single-step module") from None
            where = _dataflow_break(chain, _split_steps(rec, chain), probe, src_of)
            if where:
                raise ModelLoadError(
                    f"forward() computes something the traced per-step chain {' -> '.join(n for n, *_ in chain)} "
                    f"does not: on probe input {k + 1} of {PROBES} the input of layer {where} is not what the chain "
                    "feeds it (code between the layers, e.g. data-dependent control flow, that the first run did not "
                    "take); give snnc a single-step module")
    finally:
        for h in hooks:
            h.remove()
    if loops and num_steps is None and graph.metadata.get("snnc.input_encoding") == "direct":
        # forward() looped over a constant input a fixed number of times: that is the model's T
        graph.metadata["snnc.num_steps"] = len(steps)
        tc.notes.append(f"T = {len(steps)} time steps taken from forward()'s own time loop")
    tc.notes.append(f"forward() is not a single traceable step; snnc ran it and traced the per-step chain "
                    f"{' -> '.join(n for n, *_ in chain)} ({len(steps)} steps recorded; every layer output "
                    f"reproduced; the same data flow on {PROBES} random probe inputs)")
    return graph


def _run_recorded(model: nn.Module, example: torch.Tensor, num_steps, rec: list) -> bool:
    """Run ``model`` on ``example`` (a step module: T steps; a forward that loops: once) with the hooks
    filling ``rec``; the model's states are reset before and after, its training mode kept. Returns whether
    ``forward`` looped over time itself (its first layer ran more than once in one call)."""
    loops = False
    rec.clear()
    was_training = model.training
    model.eval()
    reset_module_states(model)
    try:
        with torch.no_grad():
            if _accepts_state(model):
                state = None
                for _ in range(int(num_steps or 4)):
                    out = model(example, state)
                    state = out[1] if isinstance(out, tuple) and len(out) > 1 else None
            else:
                model(example)
                first = rec[0][1] if rec else None
                loops = first is not None and sum(1 for r in rec if r[1] is first) > 1
                if first is not None and not loops:
                    for _ in range(int(num_steps or 4) - 1):  # a step module: run T steps
                        model(example)
    finally:
        reset_module_states(model)
        model.train(was_training)
    return loops


def _split_steps(rec: list, chain: list) -> list:
    """The recorded calls cut into time steps at each call of the chain's first layer."""
    first_mod = chain[0][1]
    starts = [i for i, r in enumerate(rec) if r[1] is first_mod]
    if not starts:
        raise ModelLoadError(f"forward() did not call the first layer {chain[0][0]!r} on a probe input (code between "
                             "the layers chooses the path); give snnc a single-step module")
    return [rec[a:b] for a, b in zip(starts, starts[1:] + [len(rec)])]


def _storage(t):
    try:
        return t.untyped_storage().data_ptr()
    except Exception:  # noqa: BLE001 - a tensor without storage (meta, sparse): never the same as another
        return None


def _dataflow_break(chain: list, steps: list, probe: torch.Tensor, src_of: dict) -> str:
    """Where a recorded run leaves the chain's data flow: the first layer whose input is not exactly its
    source layer's output (or a view of the model input), as ``"'name' at step t"``; "" when none."""
    names = [n for n, *_ in chain]
    for t, step in enumerate(steps):
        if [n for n, *_ in step] != names:
            return f"{step[0][0]!r} at step {t} (the layers called differ: {' -> '.join(n for n, *_ in step)})"
        out = {}
        for name, _, x, y in step:
            src = src_of[name]
            if src == "input":
                ok = x is not None and (x is probe or x._base is probe or _storage(x) == _storage(probe))
            else:
                ref = out[src]
                ok = x is ref or (x is not None and x.numel() == ref.numel() and torch.equal(x.reshape(ref.shape), ref))
            if not ok:
                return f"{name!r} at step {t}"
            out[name] = y
    return ""


def _probe_inputs(used: torch.Tensor):
    """:data:`PROBES` inputs of ``used``'s form (same shape): Gaussian at two scales and both signs, and
    for a time-major 0/1 input, spikes at other rates."""
    g = torch.Generator().manual_seed(1)
    binary = bool(((used == 0) | (used == 1)).all())
    for k in range(PROBES):
        if binary:
            yield (torch.rand(used.shape, generator=g) < (0.1, 0.9, 0.5)[k % 3]).float()
        else:
            yield torch.randn(used.shape, generator=g) * (1.0, 4.0, 0.25)[k % 3] + (0.0, 0.0, -1.0)[k % 3]


def _chain_error(graph, chain, steps, in_idx: int, in_shape, probe: int) -> tuple[float, str]:
    """Largest relative difference between the graph's value of every chain node and the recorded layer
    output, over all steps (float32 framework vs float64 executor), and where it is."""
    ex = GraphExecutor(graph)
    worst, where = 0.0, ""
    # a layer mapped to a nested graph (a recurrent neuron: '<name>.lif' with '<name>.w_rec') gives its output
    # from the neuron node inside
    out_node = {}
    for name, *_ in chain:
        if name not in graph.nodes:
            inner = [k for k, node in graph.nodes.items() if k.startswith(name + ".") and isinstance(node, NEURON_TYPES)]
            if len(inner) == 1:
                out_node[name] = inner[0]
    for t, step in enumerate(steps):
        if len(step) != len(chain) or [n for n, *_ in step] != [n for n, *_ in chain]:
            got = " -> ".join(n for n, *_ in step)
            raise ModelLoadError(f"time step {t}{f' of probe input {probe}' if probe else ''} calls the layers "
                                 f"{got or '(none)'}, step 0 called {' -> '.join(n for n, *_ in chain)}; give snnc a "
                                 "single-step module")
        x0 = step[in_idx][2]
        ex.step(x0.reshape((x0.shape[0],) + tuple(in_shape)).double())
        for name, _, _, y in step:
            yd = y.double()
            got = ex.values.get(out_node.get(name, name))
            diff = float(((got - yd).abs() / (1.0 + yd.abs())).max()) \
                if got is not None and got.shape == y.shape else np.inf
            if diff > worst:
                worst, where = diff, f"{name!r} at step {t}"
    return worst, where


def _chain_graph(rec: list, used: torch.Tensor, maps: dict):
    """The NIR graph of the first recorded step's data flow: ``(graph, chain, steps, in_idx, in_shape, src_of)``
    (``src_of``: layer -> the layer, or ``"input"``, whose output feeds it)."""
    src_of = {}
    chain = _split_steps(rec, [rec[0]])[0]
    steps = _split_steps(rec, chain)
    if len({id(r[1]) for r in chain}) != len(chain):
        raise ModelLoadError("a module is called twice within one time step (weight sharing); snnc needs one "
                             "call per layer and step")
    # ---- data flow of the first step: who produced each layer's input tensor?
    produced: dict[int, str] = {}
    example_ids = {id(used)}
    nodes: dict = {}
    edges: list = []
    out_shape: dict[str, tuple] = {}
    in_shape = None
    encoding = "direct"

    for name, mod, x, y in chain:
        if x is None:
            raise ModelLoadError(f"layer {name!r} is called without a tensor input")
        src = produced.get(id(x))
        if src is None and x._base is not None:
            src = produced.get(id(x._base))
        from_input_flat = False
        if src is None and (id(x) in example_ids or (x._base is not None and id(x._base) in example_ids)
                            or _storage(x) == _storage(used)):
            src = "input"
            if x.dim() == used.dim() - 1 and tuple(x.shape) == tuple(used.shape[1:]):
                encoding = "spikes"  # x[t] of a time-major input: events arrive per step
                shape_here = tuple(x.shape[1:])
            elif x.shape != used.shape and x.shape[0] == used.shape[0] and x[0].numel() == used[0].numel():
                from_input_flat = x.dim() == 2  # x.flatten(1) / x.view(B, -1) of the model input
                shape_here = tuple(used.shape[1:]) if from_input_flat else tuple(x.shape[1:])
            else:
                shape_here = tuple(x.shape[1:])
            if in_shape is None:
                in_shape = shape_here
        if src is None:
            raise ModelLoadError(f"cannot follow the data into layer {name!r}: its input is computed by code in "
                                 "forward(), not by a layer; give snnc a single-step module instead (e.g. an "
                                 "nn.Sequential of the layers of one time step)")
        src_of[name] = src
        node = maps[type(mod)](mod)
        nodes[name] = node
        shape_in = out_shape.get(src, in_shape)
        if from_input_flat or (src != "input" and tuple(x.shape[1:]) != shape_in):  # x.view(B, -1) between layers
            if int(np.prod(x.shape[1:])) != int(np.prod(shape_in)) or x.dim() != 2:
                raise ModelLoadError(f"layer {name!r} receives {src!r}'s output reshaped from {shape_in} to "
                                     f"{tuple(x.shape[1:])}; only flattening to [B, features] is understood")
            fl = f"{name}_flatten"
            nodes[fl] = nir.Flatten(input_type=None, start_dim=0, end_dim=-1)
            edges += [(src, fl), (fl, name)]
        else:
            edges.append((src, name))
        produced[id(y)] = name
        out_shape[name] = tuple(y.shape[1:])
    consumed = {a for a, _ in edges}
    last = [n for n, *_ in chain if n not in consumed]
    if len(last) != 1:
        raise ModelLoadError(f"the per-step chain has {len(last)} ends ({', '.join(last)}); snnc needs one output layer")
    edges.append((last[0], "output"))
    nodes["input"] = nir.Input(input_type={"input": np.array(in_shape)})
    nodes["output"] = nir.Output(output_type=None)
    graph = _finalize(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), in_shape, None, encoding)
    in_idx = next(i for i, (n, *_) in enumerate(chain) if ("input", n) in edges or ("input", f"{n}_flatten") in edges)
    return graph, chain, steps, in_idx, in_shape, src_of


# --------------------------------------------------------------------------- trace

def trace(model: nn.Module, input_shape, dt: float | None = None, num_steps: int | None = None,
          input_encoding: str | None = None, notes: list | None = None) -> nir.NIRGraph:
    """Trace a PyTorch SNN (snnc, snnTorch, Norse, SpikingJelly or Sinabs layers) into a NIR graph.

    Args:
        model: the module; ``forward`` should be one time step on ``[B, *input_shape]`` (a
            ``forward`` that loops over time is run once to find its per-step chain, see the
            module docstring). Put in eval mode while tracing.
        input_shape: input shape without batch/time dims, e.g. ``(1, 28, 28)``.
        dt: time step in s for framework neurons that do not carry one (snnTorch: 1e-4 s,
            its NIR export convention; the discrete update does not depend on it).
        num_steps: T, recorded as graph metadata ``snnc.num_steps``.
        input_encoding: ``"direct"`` (analog input, the same every step) or ``"spikes"``; default
            direct (or spikes when a time-loop ``forward`` indexes a time-major input).
        notes: a list that receives one-line notes (how the model was traced).

    Returns:
        ``nir.NIRGraph`` with an ``input`` Input node and an ``output`` Output node.

    Raises:
        UnsupportedNodeError: a module type with no mapping (names the module and lists the supported ones).
        ModelLoadError: a model whose per-step structure cannot be found (one line: what to do).
    """
    tc = TraceContext(dt=dt, names={id(m): (n or type(m).__name__) for n, m in model.named_modules()})
    maps = all_maps(tc)
    _check_supported(model, maps)
    stateful = set()
    for fw in FRAMEWORKS.values():
        stateful |= set(fw.stateful_types())
    was_training = model.training
    model.eval()
    try:
        try:
            graph = _trace_fx(model, maps, stateful)
            if not isinstance(graph, nir.NIRGraph):  # the model is one mapped layer
                graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=None), "layer": graph,
                                            "output": nir.Output(output_type=None)},
                                     edges=[("input", "layer"), ("layer", "output")], type_check=False)
            graph = _finalize(graph, input_shape, num_steps, input_encoding or "direct")
        except (UnsupportedNodeError, ModelLoadError):
            raise
        except Exception as fx_error:  # noqa: BLE001 - torch.fx / nirtorch: try running it instead
            reason = str(fx_error).splitlines()[0] if str(fx_error) else type(fx_error).__name__
            try:
                graph = _trace_by_running(model, maps, tc, input_shape, num_steps)
            except UnsupportedNodeError:
                raise
            except ModelLoadError as run_error:
                raise ModelLoadError(
                    f"model {type(model).__name__}: torch.fx cannot trace forward() ({reason}), and running it "
                    f"did not reveal a per-step chain: {run_error}") from None
            graph.metadata["snnc.input_encoding"] = input_encoding or graph.metadata["snnc.input_encoding"]
            if num_steps is not None:
                graph.metadata["snnc.num_steps"] = int(num_steps)
    finally:
        model.train(was_training)
        reset_module_states(model)
    if notes is not None:
        notes.extend(tc.notes)
    return graph


def flatten_subgraphs(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Inline nested ``nir.NIRGraph`` nodes (names ``<parent>.<node>``); recursive. A parent edge names the subgraph
    (``"g"``: its one Input or Output) or one of its ports (``"g.bi"``: the subgraph's Input or Output node
    ``bi``, NIR's form for a subgraph with several inputs or outputs); each port is replaced by the nodes it
    connects to inside.

    Raises:
        UnsupportedNodeError: a plain edge to a subgraph with several inputs (or from one with several outputs):
            which port is meant is not said.
    """
    while any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        nodes, edges = {}, []
        sub_in, sub_out = {}, {}   # "g" / "g.port" -> inlined nodes
        for name, node in graph.nodes.items():
            if not isinstance(node, nir.NIRGraph):
                nodes[name] = node
                continue
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            ports = set(ins) | set(outs)
            for k, v in node.nodes.items():
                if k not in ports:
                    nodes[f"{name}.{k}"] = v
            for i in ins:
                sub_in[f"{name}.{i}"] = [f"{name}.{d}" for s, d in node.edges if s == i]
            for o in outs:
                sub_out[f"{name}.{o}"] = [f"{name}.{s}" for s, d in node.edges if d == o]
            if len(ins) == 1:
                sub_in[name] = sub_in[f"{name}.{ins[0]}"]
            if len(outs) == 1:
                sub_out[name] = sub_out[f"{name}.{outs[0]}"]
            edges += [(f"{name}.{s}", f"{name}.{d}") for s, d in node.edges if s not in ports and d not in ports]
        for s, d in graph.edges:
            for end, table, what in ((s, sub_out, "outputs"), (d, sub_in, "inputs")):
                if isinstance(graph.nodes.get(end), nir.NIRGraph) and end not in table:
                    raise UnsupportedNodeError(end, "NIRGraph", f"a subgraph with several {what} reached by an edge "
                                               f"that names no port (use '{end}.<port>')")
            for a in sub_out.get(s, [s]):
                for b in sub_in.get(d, [d]):
                    edges.append((a, b))
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False)
    return graph


def _finalize(graph: nir.NIRGraph, input_shape, num_steps, input_encoding) -> nir.NIRGraph:
    """Inline subgraphs, rename the input/output nodes to ``input``/``output``, shorten node names,
    set shapes (Conv2d ``input_shape``, neuron parameter arrays broadcast to their shape), infer types."""
    graph = flatten_subgraphs(graph)
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
    meta = dict(graph.metadata or {})
    meta["snnc.input_encoding"] = input_encoding
    if num_steps is not None:
        meta["snnc.num_steps"] = int(num_steps)
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    broadcast_params(g)
    set_types(g)
    return g


def broadcast_params(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Fill shapes that mapping left open (in place): neuron parameter arrays broadcast to the
    node's input shape, Conv2d ``input_shape`` = (H, W) of its input, Flatten ``input_type``.

    Raises:
        UnsupportedNodeError: a parameter array that does not broadcast to its neuron's shape.
    """
    shapes = infer_shapes(graph)
    for name in topological_order(graph):
        node = graph.nodes[name]
        ish = shapes[name][0]
        if isinstance(node, NEURON_TYPES):
            for key, val in list(vars(node).items()):
                if key in ("metadata", "input_type", "output_type") or val is None:
                    continue
                if isinstance(val, (np.ndarray, float, int, np.floating)) or torch.is_tensor(val):
                    arr = np32(val)
                    try:
                        setattr(node, key, np.broadcast_to(arr, ish).astype(np.float32).copy())
                    except ValueError:
                        raise UnsupportedNodeError(name, type(node).__name__, f"parameter {key} of shape "
                                                   f"{arr.shape} does not broadcast to the neuron shape {ish}") from None
        elif isinstance(node, nir.Conv2d):
            node.input_shape = tuple(int(v) for v in ish[1:])
        elif isinstance(node, nir.Flatten):
            node.input_type = {"input": np.array(ish)}
    return graph
