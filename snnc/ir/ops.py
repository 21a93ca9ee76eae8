"""Synapse chains: run a projection's ops (sum-pool, flatten, conv2d/dense) on a batch.

The same code runs (a) the host's float computation of a direct analog input,
(b) the chip's integer synaptic accumulation (integers carried exactly in
float64: every partial sum stays far below 2^53), and (c) synapse counting
(weights replaced by 0/1, autograd gives per-source counts).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def apply_ops(x: torch.Tensor, ops: list, weight: torch.Tensor) -> torch.Tensor:
    """``x``: ``[B, *source_shape]``; ``weight``: the one weighted op's weight. Returns ``[B, *target_shape]``."""
    for op in ops:
        kind = op["op"]
        if kind == "sum_pool2d":
            k = tuple(op["kernel"])
            x = F.avg_pool2d(x, k, k, divisor_override=1)
        elif kind == "max_pool2d":  # host-computed (direct input) projections only
            x = F.max_pool2d(x, tuple(op["kernel"]), tuple(op["stride"]), tuple(op["padding"]))
        elif kind == "flatten":
            nd = x.dim() - 1
            x = x.flatten(op["start_dim"] % nd + 1, op["end_dim"] % nd + 1)
        elif kind == "conv2d":
            x = F.conv2d(x, weight, None, tuple(op["stride"]), tuple(op["padding"]), tuple(op["dilation"]),
                         op["groups"])
        elif kind == "dense":
            x = x @ weight.T
        else:  # pragma: no cover - config written by snnc
            raise ValueError(f"unknown synapse op {kind!r}")
    return x


def host_weight(p, g) -> np.ndarray:
    """Weights the host applies to a direct input: composite weight x (bias_gain / weight_gain)."""
    ratio = (g.bias_gain / g.weight_gain).reshape(p.weight.shape[0], -1)[:, 0] if p.weight.ndim == 4 else \
        (g.bias_gain / g.weight_gain).reshape(-1)
    return p.weight * ratio.reshape((-1,) + (1,) * (p.weight.ndim - 1))


def input_bound(weight, ops: list) -> np.ndarray:
    """Largest |per-step input| each output channel (conv) or row (dense) can receive when every
    source is at most 1 in magnitude (spikes, or a direct input in [-1, 1]): sum|w| x the area of
    the sum-pooling before the weighted op. Shape ``[weight.shape[0]]``."""
    w = np.abs(np.asarray(weight, np.float64))
    k = 1
    for op in ops:
        if op["op"] == "sum_pool2d":
            k *= int(np.prod(op["kernel"]))
    return w.reshape(w.shape[0], -1).sum(1) * k


def host_current(x: torch.Tensor, items, shape) -> torch.Tensor:
    """What the host computes for a direct input: ``sum(ops(x; weight) + bias)`` over ``items``
    ``[(ops, weight tensor, bias tensor or None)]``; float64 ``[N, *shape]`` for ``x`` ``[N, *input_shape]``."""
    out = torch.zeros((x.shape[0],) + tuple(shape), dtype=torch.float64)
    with torch.no_grad():
        for ops, weight, bias in items:
            out += apply_ops(x, ops, weight).reshape(out.shape)
            if bias is not None:
                out += bias
    return out


def host_bias_float(projections, g, x: np.ndarray) -> np.ndarray:
    """Float voltage bias per step that a constant input ``x`` (``[N, *input_shape]``) gives group ``g``."""
    items = [(p.ops, torch.as_tensor(host_weight(p, g)), None if p.bias is None else torch.as_tensor(p.bias))
             for p in projections]
    return host_current(torch.as_tensor(np.asarray(x, np.float64)), items, g.shape).numpy()


def synapse_counts(ops: list, mask_weight: torch.Tensor, source_shape, target_shape,
                   slice_masks: torch.Tensor) -> torch.Tensor:
    """Synapses from each source neuron into each target slice.

    Args:
        mask_weight: the weighted op's weight as 0/1 (non-zero synapse) float32.
        slice_masks: ``[K, *target_shape]`` 0/1 indicator of the K target slices.

    Returns:
        ``[K, prod(source_shape)]`` float32 counts (exact below 2^24).
    """
    K = slice_masks.shape[0]
    x = torch.zeros((K,) + tuple(source_shape), dtype=torch.float32, requires_grad=True)
    y = apply_ops(x, ops, mask_weight)
    (y.reshape(K, -1) * slice_masks.reshape(K, -1)).sum().backward()
    return x.grad.reshape(K, -1).detach()
