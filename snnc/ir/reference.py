"""Float reference execution of a NIR graph (torch, batched, one step at a time).

This is the meaning snnc gives a NIR graph, and the yardstick the compiled
fixed-point simulation is compared against. Forward-Euler with each neuron
node's ``snnc.dt`` (s; a neuron node without one is refused, never given a default); tensors are ``[B, *shape]`` per step.

Neuron updates (i: synaptic current, v: voltage; x: summed input)::

    CubaLIF  i += dt/tau_syn (w_in x - i);  v += dt/tau_mem (v_leak - v + r i)
    LIF      v += dt/tau (v_leak - v + r x)
    IF       v += dt r x                       (NIR: dv/dt = R I)
    CubaLI / LI / I   as above without spikes; the output is v

and for spiking nodes, with the node's ``snnc.*`` metadata (:mod:`snnc.frontends.base`)::

    reset_timing "next_step":  v -= v_th s[t-1] (subtract) | v *= 1 - s[t-1] (zero) |
                               v = v_reset where s[t-1] (to_v_reset)         (snnTorch)
    spike        s = v > v_th  (threshold_op ">", default: NIR, Loihi)  |  v >= v_th  (">=")
                 spikes "multi": s = floor(v / v_th) where v > 0  (Sinabs MultiSpike, counts)
    reset_timing "immediate" (default):  v <- v_reset where s ("zero", "to_v_reset"),
                               v <- v - v_th s ("subtract"), nothing ("none")
    reset_timing "immediate_recheck" (snnTorch reset_delay=False, subtract): r = H(v[t-1] - v_th) on
                 the previous step's final v;  v' = v - r v_th;  s = H(v' - v_th);  v <- v' - (s - r) v_th
                 (snnTorch's own order: do_reset = spk - reset)
    v_min        v <- max(v, v_min)

Edges that close a cycle carry the previous step's output; at step 0 a stateless node on such
an edge sees zeros (so a recurrent Affine contributes its bias from the first step, as in
snnTorch's ``RLeaky``). ``Delay`` outputs its input of ``snnc.delay_steps`` steps before (per value;
zeros before the first), :func:`snnc.ir.delay_steps`. ``SumPool2d`` tagged ``snnc.op = "maxpool2d"`` is max pooling.
"""
from __future__ import annotations

import nir
import numpy as np
import torch
import torch.nn.functional as F

from snnc.ir import (NEURON_TYPES, delay_steps, infer_shapes, UnsupportedNodeError, _pair, back_edges, conv_padding,
                     predecessors, topological_order)
from snnc.ir.semantics import NeuronSemantics
from snnc.neurons import spike


def _t(a, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


class GraphExecutor:
    """Run a NIR graph step by step. ``dtype`` float64 by default (reference precision).

    Raises:
        UnsupportedNodeError: at construction, for node types it cannot run.
    """

    def __init__(self, graph: nir.NIRGraph, dtype=torch.float64, surrogate: bool = False, device=None):
        self.graph = graph
        self.device = None if device is None else torch.device(device)  # None: where tensors are made
        self.dtype = dtype
        self.surrogate = surrogate  # spikes with a surrogate gradient (fine-tuning); same forward values
        self.order = topological_order(graph)
        self.back = back_edges(graph)
        self.preds = {n: predecessors(graph, n) for n in self.order}
        self.inputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Input)]
        self.outputs = sorted(n for n in self.order if isinstance(graph.nodes[n], nir.Output))  # the first: readout
        for n in self.order:
            node = graph.nodes[n]
            if not isinstance(node, (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.Conv1d,
                                     nir.Flatten, nir.AvgPool2d, nir.SumPool2d, nir.Scale, nir.Delay)
                              + NEURON_TYPES):
                raise UnsupportedNodeError(n, type(node).__name__)
        self._delay_k = {n: torch.as_tensor(delay_steps(graph.nodes[n], n), dtype=torch.int64)
                         for n in self.order if isinstance(graph.nodes[n], nir.Delay)}
        self._p = {n: self._params(graph.nodes[n]) for n in self.order}
        self._sem = {n: NeuronSemantics.of(graph.nodes[n]) for n in self.order
                     if isinstance(graph.nodes[n], NEURON_TYPES)}
        self._zero_in = {}
        if self.back:
            shapes = infer_shapes(graph)
            self._zero_in = {s: tuple(shapes[s][0]) for s, _ in self.back
                             if not isinstance(graph.nodes[s], NEURON_TYPES + (nir.Input,))}
        self.reset()

    def _params(self, node):
        d = self.dtype
        p = {}
        for k, v in vars(node).items():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                p[k] = _t(v, d) if self.device is None else _t(v, d).to(self.device)
        return p

    def reset(self):
        self._coefs: dict = {}
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.prev: dict[str, torch.Tensor] = {}

    def _coef(self, name, key, dt):
        """``dt / p[key]`` of a node, computed once (the same expression as evaluating it every step)."""
        ck = (name, key)
        if ck not in self._coefs:
            self._coefs[ck] = dt / self._p[name][key]
        return self._coefs[ck]

    def _neuron(self, name, node, x):
        # The updates below evaluate the module docstring's expressions in their written order; the
        # in-place steps only avoid temporaries (a + b == b + a and a * b == b * a hold exactly).
        p = self._p[name]
        sem = self._sem[name]
        dt = sem.require_dt(name)
        st = self.state.get(name)
        if st is None:
            st = {"i": torch.zeros_like(x), "v": torch.zeros_like(x)}
        i, v = st["i"], st["v"]
        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            t = p.get("w_in", 1.0) * x                     # i + dt/tau_syn * (w_in x - i)
            t.sub_(i).mul_(self._coef(name, "tau_syn", dt)).add_(i)
            i = t
            a = p["v_leak"] - v                             # v + dt/tau_mem * (v_leak - v + r i)
            a.add_(p["r"] * i).mul_(self._coef(name, "tau_mem", dt)).add_(v)
            v = a
        elif isinstance(node, (nir.LIF, nir.LI)):
            a = p["v_leak"] - v                             # v + dt/tau * (v_leak - v + r x)
            a.add_(p["r"] * x).mul_(self._coef(name, "tau", dt)).add_(v)
            v = a
        elif isinstance(node, nir.IF):
            v = v + dt * p["r"] * x
        elif isinstance(node, nir.I):
            v = v + dt * p["r"] * x
        out = vpre = v
        s = None
        if isinstance(node, (nir.CubaLIF, nir.LIF, nir.IF)):
            thr = p["v_threshold"]
            reset = sem.reset
            vr = p.get("v_reset", torch.zeros((), dtype=x.dtype, device=x.device))
            vr = vr.expand_as(v) if vr.dim() else vr
            if sem.reset_timing == "next_step":
                prev = st.get("s")
                if prev is not None:
                    if reset == "subtract":
                        v = v - thr * prev
                    elif reset == "zero":
                        v = v * (1 - prev)
                    elif reset == "to_v_reset":
                        v = torch.where(prev > 0, vr, v)
                immediate = "none"
            elif sem.reset_timing == "immediate_recheck" and reset == "subtract":
                r = (st["v"] > thr).to(x.dtype).detach()  # the previous step's final v (0 at the first)
                v = v - r * thr
                immediate = "recheck"
            else:
                immediate = reset
            if sem.spikes == "multi":
                s = (v > 0).to(x.dtype) * torch.div(v, thr, rounding_mode="trunc")
            elif self.surrogate:
                s = spike(v - thr)
                if sem.threshold_op == ">=":
                    s = s + (v == thr).to(x.dtype).detach()
            elif sem.threshold_op == ">=":
                s = (v >= thr).to(x.dtype)
            else:
                s = (v > thr).to(x.dtype)
            if immediate == "subtract":
                v = v - thr * s
            elif immediate == "recheck":
                v = v - (s - r) * thr
            elif immediate in ("zero", "to_v_reset"):
                v = torch.where(s > 0, vr, v)
            if sem.v_min is not None:
                v = torch.clamp(v, min=sem.v_min)
            out = s
        self.state[name] = {"i": i, "v": v, "x": x, "s": s, "vpre": vpre}
        return out

    def _delay(self, name, x):
        """``x`` of ``k`` steps before, per value (``k = snnc.delay_steps``; zeros before the first step)."""
        k = self._delay_k[name].to(x.device)
        kmax = int(k.max()) if k.numel() else 0
        hist = self.state.get(name, {}).get("hist", [])
        hist = (hist + [x])[-(kmax + 1):]
        self.state[name] = {"hist": hist}
        if kmax == 0:
            return x
        past = [hist[-1 - j] if j < len(hist) else torch.zeros_like(x) for j in range(kmax + 1)]
        idx = k.reshape((1, 1) + tuple(x.shape[1:])).expand((1,) + tuple(x.shape))
        return torch.gather(torch.stack(past), 0, idx)[0]

    def _linear(self, name, node, x):
        p = self._p[name]
        if isinstance(node, nir.Affine):
            return x @ p["weight"].T + p["bias"]
        if isinstance(node, nir.Linear):
            return x @ p["weight"].T
        if isinstance(node, nir.Conv2d):
            return F.conv2d(x, p["weight"], p["bias"], _pair(node.stride), conv_padding(node),
                            _pair(node.dilation), node.groups)
        if isinstance(node, nir.Conv1d):
            return F.conv1d(x, p["weight"], p["bias"], _pair(node.stride, 1), conv_padding(node),
                            _pair(node.dilation, 1), node.groups)
        if isinstance(node, nir.Flatten):
            nd = x.dim() - 1
            return x.flatten(node.start_dim % nd + 1, node.end_dim % nd + 1)
        if isinstance(node, nir.SumPool2d) and (node.metadata or {}).get("snnc.op") == "maxpool2d":
            return F.max_pool2d(x, _pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            k, s, pd = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            y = F.avg_pool2d(x, k, s, pd, count_include_pad=True)
            return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y
        if isinstance(node, nir.Scale):
            return x * p["scale"]
        raise UnsupportedNodeError(name, type(node).__name__)

    def step(self, inputs: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        """One time step. ``inputs``: ``{input node: [B, *shape]}`` (or one tensor for one input).

        Returns ``{output node: [B, *shape]}``; every node's value is in ``self.values``.
        """
        if not isinstance(inputs, dict):
            inputs = {self.inputs[0]: inputs}
        vals: dict[str, torch.Tensor] = {}
        for n in self.order:
            node = self.graph.nodes[n]
            if isinstance(node, nir.Input):
                vals[n] = inputs[n].to(self.dtype)
                continue
            xs = []
            for s in self.preds[n]:
                if (s, n) in self.back:
                    if s in self.prev:
                        xs.append(self.prev[s])
                    elif s in self._zero_in:  # step 0: a stateless node on the cycle sees zeros
                        first = next(iter(vals.values()))
                        z = torch.zeros((first.shape[0],) + self._zero_in[s], dtype=self.dtype, device=first.device)
                        xs.append(z if s in self._delay_k else self._linear(s, self.graph.nodes[s], z))
                else:
                    xs.append(vals[s])
            x = xs[0]
            for extra in xs[1:]:
                x = x + extra
            if isinstance(node, nir.Output):
                vals[n] = x
            elif isinstance(node, NEURON_TYPES):
                vals[n] = self._neuron(n, node, x)
            elif n in self._delay_k:
                vals[n] = self._delay(n, x)
            else:
                vals[n] = self._linear(n, node, x)
        self.prev = {s: vals[s] for s, _ in self.back}
        self.values = vals
        return {o: vals[o] for o in self.outputs}


def run_graph(graph: nir.NIRGraph, x: torch.Tensor | np.ndarray, num_steps: int | None = None,
              record: tuple[str, ...] = (), dtype=torch.float64, device=None):
    """Run ``graph`` on a batch.

    Args:
        x: ``[B, *input_shape]`` direct input repeated for ``num_steps`` steps, or,
            with ``num_steps=None``, a time-major ``[T, B, *input_shape]`` sequence.
        device: torch device to run on (default CPU); ``x`` is moved there, results stay there.
        record: node names whose per-step values to return as well; ``"name#i"``,
            ``"name#v"``, ``"name#vpre"``, ``"name#x"`` record a neuron node's current, voltage
            (after reset), voltage before the spike/reset, or summed input instead.

    Returns:
        ``(out [T, B, *output_shape] of the first Output node by name (the readout), {name: [T, B, ...]} for
        record)``.
    """
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    ex = GraphExecutor(graph, dtype, device=device)
    if device is not None:
        x = x.to(device)
    steps = [x] * num_steps if num_steps is not None else list(x)
    outs, rec = [], {r: [] for r in record}
    with torch.no_grad():
        for xt in steps:
            o = ex.step(xt)
            outs.append(next(iter(o.values())))
            for r in record:
                node, _, var = r.partition("#")
                rec[r].append(ex.state[node][var] if var else ex.values[r])
    return torch.stack(outs), {r: torch.stack(v) for r, v in rec.items()}
