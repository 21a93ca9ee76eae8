"""SpikingJelly (``pip install spikingjelly --no-deps`` + loguru; checked with 2.0.0) -> NIR, exact semantics.

SpikingJelly's single-step update (``spikingjelly/activation_based/neuron/{lif,integrate_and_fire,
plif}.py`` and ``base_node.py``; tau in time steps, no dt)::

    LIFNode (decay_input=True)   v = v + (v_reset - v + x) / tau       (v_reset None: v_reset -> 0)
            (decay_input=False)  v = v - (v - v_reset) / tau + x
    ParametricLIFNode            as LIFNode with 1/tau = sigmoid(w)
    IFNode                       v = v + x
    spike                        s = H(v - v_th) with H(x) = (x >= 0)   (">=": surrogate.heaviside)
    reset                        v_reset None: soft, v = v - v_th s; else hard, v = v_reset where s

In NIR terms (what SpikingJelly's own ``nir_exchange.export_to_nir`` writes, dt = 1e-4 s by
default): ``LIFNode`` -> ``nir.LIF(tau = tau dt, r = 1 (decay_input) or tau, v_leak = v_reset)``,
``IFNode`` -> ``nir.IF(r = 1/dt)``, threshold ``">="``, reset "subtract" (soft) or "zero" /
"to_v_reset" (hard), immediate. The discrete update does not depend on dt.
Multi-step modules (``step_mode="m"``) are traced through a single-step copy
(``functional.set_step_mode(copy, "s")``: the same per-step equations). A hard reset to
v_reset != 0 is refused (SpikingJelly starts v at v_reset, NIR at 0).

loihi-sim keeps ``">="`` exactly (the quantizer puts v_th one LSB above a multiple of 64, so
integer v >= v_th equals v > vThMant << 6) and hard reset to 0; soft reset is a semantic change.
"""
from __future__ import annotations

import copy

import nir
import numpy as np
from torch import nn

from snnc.frontends.base import make_neuron, TraceContext, neuron_meta, np32
from snnc.ir import UnsupportedNodeError

DEFAULT_DT = 1e-4
SUPPORTED = ["spikingjelly LIFNode", "spikingjelly IFNode", "spikingjelly ParametricLIFNode",
             "spikingjelly layer.* (Conv2d, Linear, Flatten, AvgPool2d, MaxPool2d, BatchNorm2d)"]


def _lib():
    try:
        from spikingjelly.activation_based import layer, neuron
        return neuron, layer
    except Exception:  # noqa: BLE001 - optional dependency
        return None


def available() -> bool:
    return _lib() is not None


def stateful_types() -> set:
    return set()


def is_multi_step(model: nn.Module) -> bool:
    """Whether any submodule of ``model`` runs in SpikingJelly's multi-step mode (``step_mode == 'm'``)."""
    return any(getattr(m, "step_mode", "s") == "m" for m in model.modules())


def layers_module(model: nn.Module):
    """``(name, submodule)``: the smallest proper submodule of ``model`` that holds every one of its layers with
    parameters or neuron state (e.g. the tutorial CSNN's ``conv_fc``), or None when ``model`` itself is that."""
    leaves = {id(m) for m in model.modules()  # neurons have a surrogate child: not "no children"
              if list(m.parameters(recurse=False)) or hasattr(m, "v_threshold")}
    if not leaves:
        return None
    best = None
    for name, sub in model.named_modules():
        if not name:
            continue
        held = {id(m) for m in sub.modules()}
        if leaves <= held and (best is None or len(held) < len({id(m) for m in best[1].modules()})):
            best = (name, sub)
    return best


def prepare(model: nn.Module, tc: TraceContext) -> nn.Module:
    """A single-step copy of a multi-step model (step_mode 'm'), else the model itself."""
    if _lib() is None or not any(getattr(m, "step_mode", "s") == "m" for m in model.modules()):
        return model
    from spikingjelly.activation_based import functional
    m2 = copy.deepcopy(model)
    functional.set_step_mode(m2, "s")
    tc.notes.append("SpikingJelly model in multi-step mode: traced a single-step copy (same per-step equations)")
    return m2


def node_maps(tc: TraceContext, base_maps: dict) -> dict:
    lib = _lib()
    if lib is None:
        return {}
    neuron, layer = lib
    dt = tc.dt or DEFAULT_DT

    def reset_of(m, kind):
        if m.v_reset is None:
            return "subtract", 0.0
        if float(m.v_reset) != 0.0:
            raise UnsupportedNodeError(tc.name(m), kind, f"v_reset = {m.v_reset} (SpikingJelly starts v at v_reset, "
                                       "NIR at 0): use v_reset = 0 or None", SUPPORTED)
        return "zero", 0.0

    def lif_like(m, tau, kind):
        reset, vr = reset_of(m, kind)
        tau = float(tau)
        if tau < 1.0:
            raise UnsupportedNodeError(tc.name(m), kind, f"tau = {tau} < 1 step", SUPPORTED)
        r = 1.0 if m.decay_input else tau
        return make_neuron(nir.LIF, tau=np.array(tau * dt, np.float32), r=np.array(r, np.float32), v_leak=np.array(vr, np.float32),
                       v_threshold=np.array(float(m.v_threshold), np.float32), v_reset=np.array(vr, np.float32),
                       metadata=neuron_meta(dt, reset, threshold_op=">=", source=f"spikingjelly.{kind}"))

    def lif(m):
        return lif_like(m, m.tau, "LIFNode")

    def plif(m):
        return lif_like(m, 1.0 / float(m.w.sigmoid()), "ParametricLIFNode")

    def if_(m):
        reset, vr = reset_of(m, "IFNode")
        return make_neuron(nir.IF, r=np.array(1.0 / dt, np.float32), v_threshold=np.array(float(m.v_threshold), np.float32),
                      v_reset=np.array(vr, np.float32),
                      metadata=neuron_meta(dt, reset, threshold_op=">=", source="spikingjelly.IFNode"))

    maps = {neuron.LIFNode: lif, neuron.IFNode: if_, neuron.ParametricLIFNode: plif}
    for cls_name in ("Conv2d", "Linear", "Flatten", "AvgPool2d", "MaxPool2d", "BatchNorm2d"):
        cls = getattr(layer, cls_name, None)
        if cls is None:
            continue
        for base, fn in base_maps.items():
            if issubclass(cls, base) and base.__module__.startswith("torch"):
                maps[cls] = fn
                break
    return maps
