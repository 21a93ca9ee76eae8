"""Spiking neuron modules used by snnc's own models.

All modules here are *single-time-step* modules that keep their state inside
(like snnTorch's ``init_hidden=True``): call ``forward`` once per time step and
``reset_state`` (or :func:`snnc.neurons.reset_states`) between samples. Tensors
carry a leading batch dimension ``[B, *shape]``; there is no time dimension
inside a module, the caller loops over the T time steps.

Discrete-time CUBA/LIF, in the same order of operations as Loihi
(lava-nc ``src/lava/proc/lif/models.py``, ``AbstractPyLifModelFloat``)::

    i[t] = alpha * i[t-1] + x[t]                  alpha = 1 - dt / tau_syn
    v[t] = beta  * v[t-1] + i[t] + bias           beta  = 1 - dt / tau_mem
    s[t] = v[t] > v_th                            (strict, as on Loihi)
    v[t] = 0 where s[t]   (reset "zero")   or   v[t] - v_th * s[t]   (reset "subtract")

This is the forward-Euler form of NIR's ``CubaLIF`` with ``w_in = tau_syn/dt``,
``r = tau_mem/dt`` and ``v_leak = bias * tau_mem / dt``; the frontend writes
those values so the NIR graph means exactly what the module computes.
"""
from __future__ import annotations

import torch
from torch import nn

from snnc.errors import SnncError

RESET_MODES = ("zero", "subtract")


class _SpikeFn(torch.autograd.Function):
    """Heaviside step ``v > 0`` with a fast-sigmoid surrogate gradient.

    Surrogate ``d s / d v = 1 / (1 + slope * |v|)^2`` (Zenke & Ganguli,
    SuperSpike, Neural Computation 2018); slope 10 as in snnTorch's default
    ``fast_sigmoid``.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.slope = slope
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * v.abs()) ** 2, None


def spike(v_minus_th: torch.Tensor, slope: float = 10.0) -> torch.Tensor:
    """Spike where ``v - v_th > 0``; differentiable through a surrogate."""
    return _SpikeFn.apply(v_minus_th, slope)


class CubaLIF(nn.Module):
    """Current-based leaky integrate-and-fire neurons (one neuron group).

    Args:
        shape: neuron shape without batch/time dims, e.g. ``(16, 28, 28)``;
            needed only for per-neuron parameters (``None`` = broadcast).
        tau_syn: synaptic current time constant in s (scalar, or per neuron).
            ``tau_syn == dt`` means no current memory (plain LIF).
        tau_mem: membrane time constant in s (scalar, or per neuron).
        threshold: firing threshold v_th (scalar, or per neuron; unitless).
        bias: constant input added to v each step (scalar, or per neuron).
        reset: ``"zero"`` (v <- 0 after a spike, Loihi's only mode) or
            ``"subtract"`` (v <- v - v_th).
        dt: simulation time step in s, recorded in the NIR metadata.

    Raises:
        ValueError: unknown reset mode, non-positive dt/tau, or tau < dt.
    """

    def __init__(self, shape=None, tau_syn=1e-3, tau_mem=5e-3, threshold=1.0,
                 bias=0.0, reset: str = "zero", dt: float = 1e-3,
                 surrogate_slope: float = 10.0):
        super().__init__()
        if reset not in RESET_MODES:
            raise SnncError(f"reset must be one of {RESET_MODES}, got {reset!r}")
        if dt <= 0:
            raise SnncError(f"dt must be > 0 s, got {dt}")
        for name, tau in (("tau_syn", tau_syn), ("tau_mem", tau_mem)):
            t = torch.as_tensor(tau, dtype=torch.float32, device="cpu")  # also when built on the meta device
            if bool((t < dt * (1 - 1e-6)).any()):
                raise SnncError(f"{name} must be >= dt = {dt} s (forward Euler is unstable below), got {tau}")
        self.shape = tuple(shape) if shape is not None else None
        self.reset = reset
        self.dt = float(dt)
        self.surrogate_slope = float(surrogate_slope)
        self.register_buffer("tau_syn", torch.as_tensor(tau_syn, dtype=torch.float32).clone())
        self.register_buffer("tau_mem", torch.as_tensor(tau_mem, dtype=torch.float32).clone())
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32).clone())
        self.i: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def alpha(self) -> torch.Tensor:
        """Current decay factor per step, ``1 - dt/tau_syn``."""
        return 1.0 - self.dt / self.tau_syn

    @property
    def beta(self) -> torch.Tensor:
        """Voltage decay factor per step, ``1 - dt/tau_mem``."""
        return 1.0 - self.dt / self.tau_mem

    def reset_state(self) -> None:
        self.i = None
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One time step. ``x``: ``[B, *shape]`` input current; returns spikes, same shape."""
        if self.i is None or self.i.shape != x.shape:
            self.i = torch.zeros_like(x)
            self.v = torch.zeros_like(x)
        i = self.alpha * self.i + x
        v = self.beta * self.v + i + self.bias
        s = spike(v - self.threshold, self.surrogate_slope)
        if self.reset == "zero":
            v = v * (1.0 - s.detach()) if self.training else v * (1.0 - s)
        else:
            v = v - self.threshold * s
        self.i, self.v = i, v
        return s

    def extra_repr(self) -> str:
        return f"shape={self.shape}, reset={self.reset!r}, dt={self.dt}"


class Integrator(nn.Module):
    """Non-spiking readout: ``v[t] = v[t-1] + x[t]``; returns v (``[B, *shape]``).

    The class scores after T steps are the summed input currents, i.e. a linear
    readout of the previous layer's spike counts. NIR: ``nir.I`` with
    ``r = 1/dt`` (forward Euler ``v += dt * r * x``). On Loihi this is a
    compartment with dv = 0, du = 4095 (no current memory) whose voltage is
    probed at the end of the sample and that never spikes.
    """

    def __init__(self, shape=None, dt: float = 1e-3):
        super().__init__()
        self.shape = tuple(shape) if shape is not None else None
        self.dt = float(dt)
        self.v: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None or self.v.shape != x.shape:
            self.v = torch.zeros_like(x)
        self.v = self.v + x
        return self.v


def reset_states(model: nn.Module) -> None:
    """Reset every stateful submodule (snnc neurons and snnTorch neurons)."""
    for m in model.modules():
        if hasattr(m, "reset_state"):
            m.reset_state()
        elif hasattr(m, "reset_mem") and m is not model:  # snnTorch
            m.reset_mem()


def run_float(model: nn.Module, x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Run a single-step SNN for T = ``num_steps`` steps on direct (constant) input.

    Args:
        model: single-time-step module (see module docstring).
        x: ``[B, *input_shape]`` analog input, presented unchanged at every step.
        num_steps: T.

    Returns:
        ``[T, B, *output_shape]`` outputs of every step.
    """
    return run_float_sequence(model, [x] * num_steps)


def run_float_sequence(model: nn.Module, xs) -> torch.Tensor:
    """Run a single-step SNN over a time-varying input ``xs`` (``[T, B, *input_shape]``
    tensor or a sequence of T ``[B, *input_shape]`` tensors); returns ``[T, B, *output_shape]``."""
    reset_states(model)
    try:
        return torch.stack([model(xt) for xt in xs])
    finally:
        reset_states(model)
