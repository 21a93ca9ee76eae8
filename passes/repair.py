"""Repair after a channel cut: closed-form reconstruction of every layer that reads pruned channels.

A channel cut removes inputs of the next weighted layer (its *consumer*); what breaks is that layer's
output, most of all the readout's (issue 18: fmnist_cnn at keep 0.5 drops to 36-39%, refitting the
readout alone recovers 86.5-88.6%). :func:`repair` refits each consumer so that, fed by the pruned
network, it reproduces the unpruned network's output of that layer — the reconstruction step of
channel-pruning methods for ANNs (He, Zhang & Sun, "Channel Pruning for Accelerating Very Deep Neural
Networks", ICCV 2017, eq. 1 with the channel selection fixed: a least-squares refit of the remaining
weights; Luo, Wu & Lin, ThiNet, ICCV 2017, sec. 3.3), applied per time step to spikes:

- consumers are visited in topological order from the input, so each fit sees the already repaired
  layers before it (the readout comes last);
- for consumer ``c`` with pruned-network input ``x_{n,t}`` (its predecessors' values summed; a
  convolution's input patches, ``torch.nn.functional.unfold``) and unpruned-network output ``y_{n,t}``
  (only the output channels ``c`` still has, when its own outputs were pruned too), over calibration
  samples n and time steps t:

      [W' b'] = argmin ||[X 1] [W' b']^T - Y||^2 + lam ||W'||^2,   lam = ridge * trace(X^T X) / d

  solved once for all output channels from the Gram matrix ``[X 1]^T [X 1]`` (d = fan-in + 1),
  accumulated in float64 over batches; no labels and no gradient training;
- a convolution's fit reads only the first samples that give :data:`CONV_ROWS` rows (one per output
  position, step and sample), a dense layer's all of them;
- a layer that feeds a non-spiking readout (an integrator or LI, whose voltage sums its input over the
  T steps) is fitted on the per-sample sums over the steps (``window="auto"``; the bias counts T times),
  a layer that feeds spiking neurons on every step;
- not repaired (kept as cut, and the log says so): grouped/depthwise convolutions (snnc's OR-pool of
  spikes: fixed structure), and consumers fed through a recurrent (back) edge;
- :func:`repair_best` fits two candidates and keeps the one whose readout input (the last consumer,
  the one feeding the non-spiking readout) is reproduced better on the fit data: every consumer refit,
  or only the readout's consumer refit with the layers into spiking neurons kept as cut. A per-step
  least-squares refit of a layer into spiking neurons matches currents, not spikes, and can lose more
  than it mends: at keep 0.5 (l1, 20,000 fitting samples, float on the 10,000 test images) it lowers
  fmnist_cnn from 87.84% (readout only) to 87.53% and raises fmnist_wide from 89.65% to 91.13%; the
  readout input error picks the better one in both (cnn 0.151 vs 0.154, wide 0.065 vs 0.103).

The log gives, per repaired layer, the relative output error ``||XW^T - Y|| / ||Y||`` on the fit
data before and after (the cut layer with its remaining weights vs the refit).
"""
from __future__ import annotations

import copy

import nir
import numpy as np
import torch
import torch.nn.functional as F

from snnc.ir import NEURON_TYPES, SPIKING_TYPES, back_edges, predecessors, topological_order
from snnc.ir.reference import GraphExecutor

#: Ridge strength relative to the mean diagonal of the Gram matrix (scale-free). 1e-4 measured best of
#: {1e-2, 1e-3, 1e-4} on fmnist_cnn keep 0.5 (l1, readout refit, 20,000 fitting samples: 87.44 / 87.77 / 87.84%).
RIDGE = 1e-4
#: A convolution's fit reads the first samples that give at least this many rows (positions x steps x
#: samples; at least :data:`MIN_SAMPLES` samples): each sample gives a row per output position.
CONV_ROWS = 400_000
MIN_SAMPLES = 256


def _conv_args(node):
    nd = 2 if isinstance(node, nir.Conv2d) else 1
    pad = node.padding
    if isinstance(pad, str):
        raise ValueError("string padding")
    pad = tuple(int(v) for v in np.broadcast_to(np.asarray(pad).reshape(-1), (nd,)))
    stride = tuple(int(v) for v in np.broadcast_to(np.asarray(node.stride).reshape(-1), (nd,)))
    dil = tuple(int(v) for v in np.broadcast_to(np.asarray(node.dilation).reshape(-1), (nd,)))
    return nd, pad, stride, dil


def _rows(node, x: torch.Tensor) -> torch.Tensor:
    """The consumer's input as regression rows ``[M, fan-in]`` (float64): one row per sample (dense), or
    per sample and output position (convolution: its input patch, ``F.unfold``)."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return x.reshape(x.shape[0], -1).double()
    nd, pad, stride, dil = _conv_args(node)
    k = tuple(np.asarray(node.weight).shape[2:])
    if nd == 1:
        x, k, pad, stride, dil = x.unsqueeze(2), (1,) + k, (0,) + pad, (1,) + stride, (1,) + dil
    cols = F.unfold(x.double(), k, dilation=dil, padding=pad, stride=stride)  # [B, fan-in, L]
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _targets(node, y: torch.Tensor) -> torch.Tensor:
    """The unpruned layer output ``[B, C_out, ...]`` as rows ``[M, C_out]``, in :func:`_rows`' order."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return y.reshape(y.shape[0], -1).double()
    return y.double().reshape(y.shape[0], y.shape[1], -1).transpose(1, 2).reshape(-1, y.shape[1])


def _ridge_solve(G: torch.Tensor, XY: torch.Tensor, ridge: float) -> torch.Tensor:
    """``[W' b']^T`` ``[d, C_out]`` from the Gram matrix ``G`` of the rows with a last bias column and ``XY``:
    ``(G + lam I') s = XY``, ``lam = ridge * mean diagonal`` on the weights only (the bias is not shrunk)."""
    d = G.shape[0]
    reg = torch.eye(d, dtype=torch.float64) * (ridge * float(torch.diagonal(G)[:-1].mean()) if d > 1 else 0.0)
    reg[-1, -1] = 0.0
    return torch.linalg.solve(G + reg + torch.eye(d, dtype=torch.float64) * 1e-12, XY)


def _set_weights(graph: nir.NIRGraph, name: str, sol: torch.Tensor):
    """Write a solution of :func:`_ridge_solve` into node ``name`` (a ``Linear`` becomes an ``Affine``: it gains
    the fitted bias); returns the node."""
    node = graph.nodes[name]
    w = np.asarray(node.weight)
    node.weight = sol[:-1].T.numpy().reshape(w.shape).astype(w.dtype)
    bias = sol[-1].numpy().astype(w.dtype)
    if isinstance(node, nir.Linear):
        new = nir.Affine(weight=node.weight, bias=bias)
        new.input_type, new.output_type, new.metadata = node.input_type, node.output_type, dict(node.metadata or {})
        graph.nodes[name] = node = new
    else:
        node.bias = bias
    return node


def _feeds_readout(graph, name: str) -> bool:
    """Whether ``name``'s output reaches only non-spiking neurons (an integrator/LI readout), through
    channel-preserving nodes: their voltage integrates the input over the T steps."""
    succ = [d for s, d in graph.edges if s == name]
    return bool(succ) and all(isinstance(graph.nodes[d], NEURON_TYPES) and not isinstance(graph.nodes[d], SPIKING_TYPES)
                              for d in succ)


def _input_of(ex: GraphExecutor, graph, name: str) -> torch.Tensor:
    preds = predecessors(graph, name)
    x = ex.values[preds[0]]
    for p in preds[1:]:
        x = x + ex.values[p]
    return x


def repair(pruned: nir.NIRGraph, original: nir.NIRGraph, consumers: list[str], x: np.ndarray, num_steps: int,
           spikes: bool = False, ridge: float = RIDGE, batch_size: int = 256, seed: int = 0,
           out_rows: dict | None = None, window: str = "auto", refit_spiking: bool = True) -> dict:
    """Refit ``consumers`` (weighted nodes of ``pruned`` that lost input channels) in place, in topological
    order (module docstring). ``original``: the graph before the cut (same node names); ``x``: fit samples
    ``[N, *input_shape]`` (direct input, repeated ``num_steps`` times) or ``[T, N, *input_shape]`` (spikes);
    ``out_rows``: ``{consumer: kept output-channel indices}`` for consumers whose own outputs were cut;
    ``refit_spiking=False`` keeps the consumers that feed spiking neurons as cut (only those feeding the
    non-spiking readout, fitted on the summed window, are refit).

    Returns ``{consumer: {"error_before", "error_after", "rows", "fan_in"} or {"skipped": reason}}``.
    """
    order = topological_order(pruned)
    back = back_edges(pruned)
    todo = [c for c in order if c in set(consumers)]
    n = x.shape[1] if spikes else x.shape[0]
    out_rows = out_rows or {}
    log = {}
    for c in todo:
        node = pruned.nodes[c]
        if getattr(node, "groups", 1) != 1:
            log[c] = {"skipped": "grouped convolution (fixed structure)"}
            continue
        if any((s, c) in back for s in predecessors(pruned, c)):
            log[c] = {"skipped": "fed through a recurrent edge"}
            continue
        w = np.asarray(node.weight, np.float64)
        fan_in = int(np.prod(w.shape[1:]))
        d = fan_in + 1
        n_c = n  # samples this layer's fit reads
        if not isinstance(node, (nir.Affine, nir.Linear)):  # every sample gives many rows (one per position)
            out_shape = np.asarray(next(iter(node.output_type.values()))).reshape(-1)
            positions = int(np.prod(out_shape[1:]))
            n_c = min(n, max(MIN_SAMPLES, -(-CONV_ROWS // max(positions * num_steps, 1))))
        rows_idx = out_rows.get(c)
        G = torch.zeros((d, d), dtype=torch.float64)
        XY = torch.zeros((d, w.shape[0]), dtype=torch.float64)
        yy, err_before, m_rows = 0.0, 0.0, 0
        w_cut = torch.from_numpy(w.reshape(w.shape[0], -1))
        b = getattr(node, "bias", None)
        b_cut = torch.from_numpy(np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64).reshape(-1))
        ex_p = GraphExecutor(pruned, torch.float32)
        ex_o = GraphExecutor(original, torch.float32)
        summed = window == "sum" or (window == "auto" and _feeds_readout(pruned, c))
        if not summed and not refit_spiking:
            log[c] = {"skipped": "kept as cut (feeds spiking neurons; the readout-only candidate)"}
            continue

        def add(xr, yr, ones):
            nonlocal yy, err_before, m_rows
            if rows_idx is not None:
                yr = yr[:, torch.as_tensor(rows_idx)]
            xa = torch.cat([xr, torch.full((xr.shape[0], 1), ones, dtype=torch.float64)], 1)
            G.add_(xa.T @ xa)
            XY.add_(xa.T @ yr)
            yy += float((yr * yr).sum())
            err_before += float(((xr @ w_cut.T + ones * b_cut - yr) ** 2).sum())
            m_rows += xr.shape[0]
        with torch.no_grad():
            for i in range(0, n_c, batch_size):
                j = min(i + batch_size, n_c)
                xb = torch.from_numpy(np.ascontiguousarray(x[:, i:j] if spikes else x[i:j]))
                ex_p.reset()
                ex_o.reset()
                acc_x = acc_y = None
                steps = list(xb) if spikes else [xb] * num_steps
                for xt in steps:
                    ex_p.step(xt)
                    ex_o.step(xt)
                    xr, yr = _rows(node, _input_of(ex_p, pruned, c)), _targets(node, ex_o.values[c])
                    if summed:
                        acc_x = xr if acc_x is None else acc_x + xr
                        acc_y = yr if acc_y is None else acc_y + yr
                        continue
                    add(xr, yr, 1.0)
                if summed:
                    add(acc_x, acc_y, float(len(steps)))
        sol = _ridge_solve(G, XY, ridge)
        # residual of the fit from the Gram matrix: ||X_a s - Y||^2 = s^T G s - 2 s^T XY + ||Y||^2
        err_after = float((sol * (G @ sol)).sum() - 2 * (sol * XY).sum()) + yy
        node = _set_weights(pruned, c, sol)
        node.metadata = dict(node.metadata or {}, **{"snnc.repaired": {
            "rows": int(m_rows), "error_before": float(np.sqrt(err_before / max(yy, 1e-300))),
            "error_after": float(np.sqrt(max(err_after, 0.0) / max(yy, 1e-300)))}})
        log[c] = dict(node.metadata["snnc.repaired"], fan_in=fan_in)
    return log


def readout_error(log: dict, readout: list[str]) -> float | None:
    """The relative fit error of the last refit consumer among ``readout`` (those feeding the readout) in a
    :func:`repair` log; None when none of them was refit."""
    fitted = [log[c] for c in readout if "error_after" in log.get(c, {})]
    return float(fitted[-1]["error_after"]) if fitted else None


def repair_best(pruned: nir.NIRGraph, original: nir.NIRGraph, consumers: list[str], x: np.ndarray,
                num_steps: int, **kw) -> dict:
    """:func:`repair` ``pruned`` in place with the better of two candidates (module docstring): every consumer
    refit, or only the consumers feeding the non-spiking readout. Returns the chosen candidate's log with
    ``"choice"`` ``{"kept": "all layers" | "readout only", "readout_error": {candidate: error}}`` under the
    key ``"_choice"``; one candidate only when no consumer feeds spiking neurons (or none feeds the readout)."""
    back = back_edges(pruned)
    spiking = [c for c in consumers if not _feeds_readout(pruned, c) and getattr(pruned.nodes[c], "groups", 1) == 1
               and not any((s, c) in back for s in predecessors(pruned, c))]  # refittable ones only
    readout = [c for c in topological_order(pruned) if c in set(consumers) and _feeds_readout(pruned, c)]
    if not spiking or not readout:
        return repair(pruned, original, consumers, x, num_steps, **kw)
    cands = {}
    for label, flag in (("all layers", True), ("readout only", False)):
        g = copy.deepcopy(pruned)
        cands[label] = (g, repair(g, original, consumers, x, num_steps, refit_spiking=flag, **kw))
    errs = {k: readout_error(v[1], readout) for k, v in cands.items()}
    best = min(errs, key=lambda k: (errs[k] is None, errs[k] if errs[k] is not None else 0.0))
    g, log = cands[best]
    for c in consumers:
        pruned.nodes[c] = g.nodes[c]
    return dict(log, _choice={"kept": best, "readout_error": {k: round(v, 4) if v is not None else None
                                                                for k, v in errs.items()}})


def repaired_copy(graph: nir.NIRGraph) -> nir.NIRGraph:
    """A deep copy (the unpruned reference must not change while the cut graph is repaired)."""
    return copy.deepcopy(graph)



class ReadoutRefit:
    """A quick repair for ranking candidates (``budget``'s search): only the layer that feeds the readout is
    refitted, on the per-sample sums over T (module docstring), from targets computed once on the unpruned
    ``original``. :meth:`apply` refits a cut copy in place (one run of it on the fit samples)."""

    def __init__(self, original: nir.NIRGraph, x: np.ndarray, num_steps: int, spikes: bool = False,
                 ridge: float = RIDGE, batch_size: int = 256):
        self.x, self.T, self.spikes, self.ridge, self.batch = x, int(num_steps), spikes, ridge, batch_size
        self.layer = next((c for c in reversed(topological_order(original))
                           if isinstance(original.nodes[c], (nir.Affine, nir.Linear)) and _feeds_readout(original, c)),
                          None)
        self.targets = None if self.layer is None else self._sums(original, self.layer, target=True)

    def _sums(self, graph, name, target: bool) -> torch.Tensor:
        ex = GraphExecutor(graph, torch.float32)
        n = self.x.shape[1] if self.spikes else self.x.shape[0]
        out = []
        with torch.no_grad():
            for i in range(0, n, self.batch):
                xb = torch.from_numpy(np.ascontiguousarray(self.x[:, i:i + self.batch] if self.spikes
                                                          else self.x[i:i + self.batch]))
                ex.reset()
                acc = None
                for xt in (list(xb) if self.spikes else [xb] * self.T):
                    ex.step(xt)
                    v = ex.values[name] if target else _input_of(ex, graph, name)
                    v = v.reshape(v.shape[0], -1).double()
                    acc = v if acc is None else acc + v
                out.append(acc)
        return torch.cat(out)

    def apply(self, pruned: nir.NIRGraph) -> bool:
        """Refit ``pruned``'s readout-feeding layer; False when there is none (nothing done)."""
        if self.layer is None or self.layer not in pruned.nodes:
            return False
        xs = self._sums(pruned, self.layer, target=False)
        xa = torch.cat([xs, torch.full((xs.shape[0], 1), float(self.T), dtype=torch.float64)], 1)
        _set_weights(pruned, self.layer, _ridge_solve(xa.T @ xa, xa.T @ self.targets, self.ridge))
        return True
