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
    ratio = (g.bias_gain / g.weight_gain).reshape(g.shape[0], -1)[:, 0] if p.weight.ndim == 4 else \
        (g.bias_gain / g.weight_gain).reshape(-1)
    return p.weight * ratio.reshape((-1,) + (1,) * (p.weight.ndim - 1))


def host_bias_float(projections, g, x: np.ndarray) -> np.ndarray:
    """Float voltage bias per step that a constant input ``x`` (``[N, *input_shape]``) gives group ``g``."""
    xt = torch.as_tensor(np.asarray(x, np.float64))
    out = torch.zeros((xt.shape[0],) + tuple(g.shape), dtype=torch.float64)
    with torch.no_grad():
        for p in projections:
            y = apply_ops(xt, p.ops, torch.as_tensor(host_weight(p, g)))
            out += y.reshape(out.shape)
            if p.bias is not None:
                out += torch.as_tensor(p.bias)
    return out.numpy()


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
