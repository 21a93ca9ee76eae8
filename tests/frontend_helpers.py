"""Helpers for the framework tests: brief training on scikit-learn's 8x8 digits with each
framework's own forward, and each framework's own simulation of a batch (time-major in/out)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from snnc.frontends.base import first_tensor, reset_module_states


def own_run(model: nn.Module, xs: torch.Tensor, kind: str = "step") -> torch.Tensor:
    """The framework's own simulation: ``xs`` ``[T, B, ...]`` -> ``[T, B, out]`` (grad kept).

    kind: ``"step"`` (call once per step: snnTorch init_hidden, SpikingJelly single-step, snnc),
    ``"state"`` (Norse SequentialState: ``out, s = model(x, s)``), ``"sinabs"`` (one call on
    ``[B, T, ...]``), ``"sinabs-squeeze"`` (one call on ``[B*T, ...]``), ``"loop"`` (forward loops over time on a direct
    input: one call on ``xs[0]``), ``"sj-multi"`` (SpikingJelly multi-step: one call on ``[T, B, ...]``),
    ``"snntorch-reset"`` (as ``"step"``, the states reset with ``snntorch.utils.reset`` as snnTorch's tutorials do),
    ``"rate"`` (forward repeats a direct input over T steps itself and returns the firing rate ``[B, out]``, as
    SpikingJelly's conv tutorial: one call on ``xs[0]``; the rate x T, the spike count, as one step ``[1, B, out]``),
    ``"ann"`` (a plain ANN, e.g. before Sinabs' ``from_model``: one call on ``xs[0]``, its output as one step).
    """
    if kind == "snntorch-reset":
        from snntorch import utils
        utils.reset(model)
        return torch.stack([first_tensor(model(xt)) for xt in xs])
    reset_module_states(model)
    if kind == "rate":
        return (model(xs[0]) * xs.shape[0]).unsqueeze(0)
    if kind == "ann":
        return model(xs[0]).unsqueeze(0)
    if kind == "sinabs":
        out = model(xs.transpose(0, 1).contiguous())
        return out.transpose(0, 1)
    if kind == "sinabs-squeeze":  # *Squeeze layers: time folded into the batch, [B*T, ...]
        T, B = xs.shape[:2]
        out = model(xs.transpose(0, 1).reshape((B * T,) + tuple(xs.shape[2:])))
        return out.reshape((B, T) + tuple(out.shape[1:])).transpose(0, 1)
    if kind == "sj-multi":
        return model(xs)
    if kind == "loop":  # forward() loops over T steps of a direct input itself and returns [T, B, out]
        return first_tensor(model(xs[0]))
    outs, state = [], None
    for xt in xs:
        if kind == "state":
            o, state = model(xt, state)
        else:
            o = model(xt)
        outs.append(first_tensor(o))
    return torch.stack(outs)


def train_digits(model: nn.Module, T: int, kind: str = "step", epochs: int = 8, lr: float = 2e-3,
                 encode: str | None = None, flatten: bool = True, seed: int = 0) -> nn.Module:
    """A few epochs on digits (1,500 training images), cross-entropy on summed outputs."""
    from snnc.data import load_digits
    from snnc.data.events import encode_rate
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is many times faster on a busy 2-core machine
    try:
        return _train(model, T, kind, epochs, lr, encode, flatten, seed, load_digits, encode_rate)
    finally:
        torch.set_num_threads(threads)


def _train(model, T, kind, epochs, lr, encode, flatten, seed, load_digits, encode_rate):
    x, y = load_digits("train")
    x = x.reshape(len(x), -1) if flatten else x
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    model.train()
    for ep in range(epochs):
        perm = rng.permutation(len(y))
        for i in range(0, len(y), 100):
            idx = perm[i:i + 100]
            xb = x[idx]
            xs = torch.from_numpy(encode_rate(xb, T, seed + ep * 100 + i)) if encode else \
                torch.from_numpy(np.repeat(xb[None], T, 0))
            out = own_run(model, xs, kind).sum(0)
            loss = nn.functional.cross_entropy(out, torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    reset_module_states(model)
    return model


def digits_inputs(T: int, n: int = 297, encode: str | None = None, flatten: bool = True):
    """Digits test images as ``[T, N, ...]`` (direct: repeated) and labels."""
    from snnc.data import load_digits
    from snnc.data.events import encode_rate
    x, y = load_digits("test", limit=n)
    x = x.reshape(len(x), -1) if flatten else x
    xs = encode_rate(x, T, 1) if encode else np.repeat(x[None], T, 0)
    return x, torch.from_numpy(xs), y
