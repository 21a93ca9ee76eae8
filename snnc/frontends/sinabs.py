"""Sinabs (``pip install sinabs --no-deps`` + pbr; checked with 3.1.3) -> NIR, with Sinabs' exact semantics.

Sinabs' update (``sinabs/layers/functional/lif.py`` ``lif_forward_single``, ``sinabs/activation``;
tau in time steps, exponential decay)::

    i   = alpha_syn (i + x)   if tau_syn, else  i = x          alpha = exp(-1/tau)
    v   = alpha_mem v + (1 - alpha_mem) i   (LIF, norm_input=True)  |  v = alpha_mem v + i
    IAF: alpha_mem = 1 (tau_mem = inf), v = v + i
    spikes: MultiSpike (default)  n = floor(v / v_th) where v > 0   (so n >= 1 iff v >= v_th)
            SingleSpike           s = (v - v_th >= 0)
    reset:  MembraneSubtract (default)  v = v - n v_th;   MembraneReset  v = reset_value where n > 0
    floor:  v = max(v, min_v_mem)  when min_v_mem is set (``from_nir`` sets -v_th)

In NIR terms: ``IAF`` -> ``nir.IF(r = 1/dt)``, ``LIF`` -> ``nir.LIF(tau = dt/(1 - alpha_mem),
r = 1 (norm_input) or tau/dt)``, with tau_syn ``nir.CubaLIF(tau_syn = dt/(1 - alpha_syn),
w_in = alpha_syn tau_syn/dt)``; metadata ``threshold_op ">="``, ``spikes "multi"`` (MultiSpike),
``reset "subtract"`` (MembraneSubtract) or ``"zero"``, ``v_min`` = min_v_mem. dt 1e-3 s unless
given (Sinabs has none; the discrete update does not depend on it). The ``*Squeeze`` variants
(time folded into the batch) have the same per-step equations.

loihi-sim keeps ">=" exactly (see :mod:`snnc.frontends.spikingjelly`) and nothing else of the
default neuron: several spikes per step, subtractive reset and the voltage floor are semantic
changes the compiler measures (Loihi 1's compartments do have a lower voltage limit,
vmin = -2^vMinExp + 1 (nengo-loihi ``CxGroup.discretize``); it cannot sit at -v_th exactly while
v_th is a multiple of 64, and lava-nc's bit-accurate LIF has no configurable floor).
"""
from __future__ import annotations

import nir
import numpy as np

from snnc.frontends.base import make_neuron, TraceContext, neuron_meta, np32
from snnc.ir import UnsupportedNodeError

DEFAULT_DT = 1e-3
SUPPORTED = ["sinabs IAF/IAFSqueeze", "sinabs LIF/LIFSqueeze", "sinabs SumPool2d"]


def _lib():
    try:
        import sinabs.layers as sl
        return sl
    except Exception:  # noqa: BLE001 - optional dependency
        return None


def available() -> bool:
    return _lib() is not None


def prepare(model, tc: TraceContext):
    """The spiking half of a ``sinabs.from_torch.from_model`` network (a ``sinabs.network.Network`` holding the
    ANN as ``analog_model`` and its converted copy as ``spiking_model``), with a note; else the model itself."""
    lib = _lib()
    if lib is None:
        return model
    try:
        from sinabs.network import Network
    except ImportError:  # another sinabs layout: nothing to prepare
        return model
    if isinstance(model, Network) and getattr(model, "spiking_model", None) is not None:
        tc.notes.append("Sinabs Network (from_model): traced its spiking_model (its analog_model is the ANN it "
                        "was converted from)")
        return model.spiking_model
    return model


def state_keys(model) -> set:
    """State-dict keys of Sinabs neuron states (every buffer of a ``StatefulLayer``: ``v_mem``, ``i_syn``, ...):
    the state after the last batch a model ran, batch-shaped, not weights (snnc starts every sample at rest)."""
    keys = set()
    for name, mod in model.named_modules():
        if any(c.__name__ == "StatefulLayer" and c.__module__.startswith("sinabs") for c in type(mod).__mro__):
            keys |= {f"{name}.{b}" if name else b for b, _ in mod.named_buffers(recurse=False)}
    return keys


def stateful_types() -> set:
    return set()


def node_maps(tc: TraceContext, base_maps: dict) -> dict:
    sl = _lib()
    if sl is None:
        return {}
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike
    dt = tc.dt or DEFAULT_DT

    def semantics(m, kind):
        name = tc.name(m)
        if m.spike_fn is MultiSpike:
            spikes = "multi"
        elif m.spike_fn is SingleSpike:
            spikes = "single"
        else:
            raise UnsupportedNodeError(name, kind, f"spike_fn {getattr(m.spike_fn, '__name__', m.spike_fn)}", SUPPORTED)
        if isinstance(m.reset_fn, MembraneSubtract):
            if m.reset_fn.subtract_value is not None:
                raise UnsupportedNodeError(name, kind, "MembraneSubtract(subtract_value) != v_th", SUPPORTED)
            reset = "subtract"
        elif isinstance(m.reset_fn, MembraneReset):
            if float(m.reset_fn.reset_value) != 0.0:
                raise UnsupportedNodeError(name, kind, "MembraneReset(reset_value != 0)", SUPPORTED)
            reset = "zero"
        else:
            raise UnsupportedNodeError(name, kind, f"reset_fn {m.reset_fn!r}", SUPPORTED)
        if getattr(m, "train_alphas", False):
            raise UnsupportedNodeError(name, kind, "train_alphas=True", SUPPORTED)
        vmin = None if m.min_v_mem is None else float(np32(m.min_v_mem).reshape(-1)[0])
        return neuron_meta(dt, reset, threshold_op=">=", spikes=spikes, v_min=vmin, source=f"sinabs.{kind}")

    def lif(m):
        kind = type(m).__name__
        md = semantics(m, kind)
        thr = np32(m.spike_threshold)
        a_m = np32(m.alpha_mem_calculated)
        a_s = None if m.tau_syn is None else np32(m.alpha_syn_calculated)
        if np.all(a_m == 1.0):  # IAF
            if a_s is not None:
                raise UnsupportedNodeError(tc.name(m), kind, "tau_syn on an IAF (no leak); snnc maps IAF to nir.IF",
                                           SUPPORTED)
            return make_neuron(nir.IF, r=np.array(1.0 / dt, np.float32), v_threshold=thr, v_reset=np.zeros((), np.float32),
                          metadata=md)
        tm = (dt / (1.0 - a_m)).astype(np.float32)
        r = np.ones_like(tm) if m.norm_input else (tm / dt).astype(np.float32)
        if a_s is None:
            return make_neuron(nir.LIF, tau=tm, r=r, v_leak=np.zeros((), np.float32), v_threshold=thr,
                           v_reset=np.zeros((), np.float32), metadata=md)
        ts = (dt / (1.0 - a_s)).astype(np.float32)
        return make_neuron(nir.CubaLIF, tau_syn=ts, tau_mem=tm, r=r, v_leak=np.zeros((), np.float32), v_threshold=thr,
                           v_reset=np.zeros((), np.float32), w_in=(a_s * ts / dt).astype(np.float32), metadata=md)

    maps = {cls: lif for cls in (sl.IAF, sl.IAFSqueeze, sl.LIF, sl.LIFSqueeze)}
    maps[sl.SumPool2d] = base_maps[__import__("torch").nn.LPPool2d]
    return maps
