"""Norse (``pip install norse --no-deps``; checked with Norse 1.1.0) -> NIR, with Norse's exact semantics.

Norse's step functions (``norse/torch/functional/{lif,lif_box,iaf,leaky_integrator}.py``;
time constants given as inverses ``tau_*_inv`` in 1/s, ``dt`` in s on the cell, default 1e-3)::

    LIFCell     i' = i + x;  v = v + dt tau_mem_inv (v_leak - v + i');  i = i' (1 - dt tau_syn_inv)
                z = H(v - v_th) (strict: torch.gt);  v = v_reset where z
    LIFBoxCell  v = v + dt tau_mem_inv (v_leak - v + x);  z = H(v - v_th);  reset_value or reset_subtract
    IAFCell     v = v + x;  z = H(v - v_th);  v = v_reset where z
    LICell      as LIFCell without spikes (output v)        LIBoxCell  as LIFBoxCell without spikes

In NIR terms (forward Euler, see :mod:`snnc.ir.reference`), exactly:

- ``LIFCell`` -> ``nir.CubaLIF(tau_syn = 1/tau_syn_inv, tau_mem = 1/tau_mem_inv, r = 1,
  w_in = tau_syn/dt, v_leak, v_threshold = v_th, v_reset)``: the current jumps by x each step
  and decays after it is used, which is NIR's i[t] = (1 - dt/tau_syn) i[t-1] + (dt/tau_syn) w_in x[t].
- ``LIFBoxCell`` -> ``nir.LIF(tau = 1/tau_mem_inv, r = 1, ...)``, reset "subtract" for
  ``reset_subtract`` (immediate: before the next decay, as NIR).
- ``IAFCell`` -> ``nir.IF(r = 1/dt)``; ``LICell`` -> ``nir.CubaLI``; ``LIBoxCell`` -> ``nir.LI``.
- Reset "zero" when v_reset = 0, else "to_v_reset"; threshold strict (">"), single spikes.

Norse's own ``norse.torch.to_nir`` writes ``tau = dt / tau_inv`` (e.g. 5e-6 s for tau_syn = 5 ms at
dt = 1e-3) and no ``w_in``; :mod:`snnc.frontends.nir_file` recognises that convention and repairs it.
Norse cells return ``(z, state)``; ``SequentialState`` passes the state along: snnc runs it step by
step with its state (it is not fx-traceable) and traces the chain it finds.
"""
from __future__ import annotations

import nir
import numpy as np

from snnc.frontends.base import make_neuron, TraceContext, neuron_meta, np32
from snnc.ir.semantics import NeuronSemantics
from snnc.ir import UnsupportedNodeError

DEFAULT_DT = 1e-3
SUPPORTED = ["norse LIFCell", "norse LIFBoxCell", "norse IAFCell", "norse LICell", "norse LIBoxCell"]


def _lib():
    try:
        import norse.torch as nt
        return nt
    except Exception:  # noqa: BLE001 - optional dependency
        return None


def available() -> bool:
    return _lib() is not None


def stateful_types() -> set:
    nt = _lib()
    return set() if nt is None else {nt.LIFCell, nt.LIFBoxCell, nt.IAFCell, nt.LICell, nt.LIBoxCell}


def node_maps(tc: TraceContext, base_maps: dict) -> dict:
    nt = _lib()
    if nt is None:
        return {}

    def reset_of(p):
        return "zero" if not np.any(np32(p.v_reset)) else "to_v_reset"

    def check_dt(m):
        dt = float(m.dt)
        if tc.dt is not None and abs(tc.dt - dt) > 1e-12 * dt:
            tc.notes.append(f"{tc.name(m)}: Norse cell dt = {dt} s used (its own), not the given {tc.dt} s")
        return dt

    def lif(m):
        dt, p = check_dt(m), m.p
        ts, tm = 1.0 / np32(p.tau_syn_inv), 1.0 / np32(p.tau_mem_inv)
        return make_neuron(nir.CubaLIF, tau_syn=ts, tau_mem=tm, r=np.ones_like(tm), v_leak=np32(p.v_leak),
                           v_threshold=np32(p.v_th), v_reset=np32(p.v_reset), w_in=(ts / dt).astype(np.float32),
                           metadata=neuron_meta(dt, reset_of(p), source="norse.LIFCell"))

    def lif_box(m):
        dt, p = check_dt(m), m.p
        name = getattr(p.reset_method, "__name__", "")
        if name not in ("reset_value", "reset_subtract"):
            raise UnsupportedNodeError(tc.name(m), "norse.LIFBoxCell", f"reset_method {name!r}", SUPPORTED)
        tm = 1.0 / np32(p.tau_mem_inv)
        reset = "subtract" if name == "reset_subtract" else reset_of(p)
        return make_neuron(nir.LIF, tau=tm, r=np.ones_like(tm), v_leak=np32(p.v_leak), v_threshold=np32(p.v_th),
                       v_reset=np32(p.v_reset), metadata=neuron_meta(dt, reset, source="norse.LIFBoxCell"))

    def iaf(m):
        dt, p = check_dt(m), m.p
        return make_neuron(nir.IF, r=np.array(1.0 / dt, np.float32), v_threshold=np32(p.v_th), v_reset=np32(p.v_reset),
                      metadata=neuron_meta(dt, reset_of(p), source="norse.IAFCell"))

    def li(m):
        dt, p = check_dt(m), m.p
        ts, tm = 1.0 / np32(p.tau_syn_inv), 1.0 / np32(p.tau_mem_inv)
        return make_neuron(nir.CubaLI, tau_syn=ts, tau_mem=tm, r=np.ones_like(tm), v_leak=np32(p.v_leak),
                          w_in=(ts / dt).astype(np.float32),
                          metadata=NeuronSemantics(dt=dt, readout=True, source="norse.LICell").to_metadata())

    def li_box(m):
        dt, p = check_dt(m), m.p
        tm = 1.0 / np32(p.tau_mem_inv)
        return make_neuron(nir.LI, tau=tm, r=np.ones_like(tm), v_leak=np32(p.v_leak),
                      metadata=NeuronSemantics(dt=dt, readout=True, source="norse.LIBoxCell").to_metadata())

    return {nt.LIFCell: lif, nt.LIFBoxCell: lif_box, nt.IAFCell: iaf, nt.LICell: li, nt.LIBoxCell: li_box}
