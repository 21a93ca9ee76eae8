"""snnTorch (``pip install snntorch``; checked with snnTorch 1.0.0) -> NIR, with snnTorch's exact semantics.

snnTorch's discrete update, read in ``snntorch/_neurons/{leaky,synaptic,rleaky,rsynaptic}.py``
(the default ``reset_delay=True``; r[t] = H(mem[t-1] - v_th), the previous step's spike)::

    Leaky       mem[t] = beta mem[t-1] + x[t] - r[t] v_th                     reset "subtract"
                mem[t] = beta (1 - r[t]) mem[t-1] + x[t]                       reset "zero"
    Synaptic    syn[t] = alpha syn[t-1] + x[t]
                mem[t] = beta mem[t-1] + syn[t] - r[t] v_th                    "subtract"
                mem[t] = (1 - r[t]) (beta mem[t-1] + syn[t])                   "zero"
    RLeaky      as Leaky with x[t] + V(spk[t-1]) (V: Linear, Conv2d or one-to-one), and
                "zero" as Synaptic: mem[t] = (1 - r[t]) (beta mem[t-1] + x[t] + V spk[t-1])
    RSynaptic   as Synaptic with x[t] + V(spk[t-1]) into syn
    spike       spk[t] = H(mem[t] - v_th), strict (v > v_th): the surrogate's forward is (x > 0)
    beta, alpha clamped to [0, 1] in every forward

In NIR terms (forward Euler with dt, see :mod:`snnc.ir.reference`):

- ``Leaky``: ``nir.LIF(tau = dt/(1 - beta), r = tau/dt, v_leak = 0)`` (beta = 1: ``nir.IF(r = 1/dt)``).
  Reset "zero" is the usual immediate reset to 0 (``beta (1 - r) mem`` = decay of the reset
  membrane). Reset "subtract" removes v_th *after* the next step's decay, i.e. ``reset_timing =
  "next_step"`` (NIR's own subtract, before the decay, would remove beta v_th).
- ``Synaptic``: ``nir.CubaLIF(tau_syn = dt/(1 - alpha), w_in = tau_syn/dt, tau_mem = dt/(1 - beta),
  r = tau_mem/dt)``; both resets act on the membrane of the *next* step after its update
  (``"next_step"``): "zero" holds the membrane at 0 for the step after a spike (a one-step
  refractory period) while syn keeps integrating.
- ``RLeaky``/``RSynaptic``: the neuron plus its recurrent weights ``V`` as a nested graph
  ``<name>.lif`` <- ``<name>.w_rec`` <- ``<name>.lif`` (a cycle: ``w_rec`` reads the previous step's
  spikes; on loihi-sim a recurrent projection with its one-step synaptic delay).
- dt: 1e-4 s unless given (snnTorch's own NIR export convention); the discrete update does not
  depend on it.
- ``reset_delay=False`` (the reset applied in the same step as the spike), read in snnTorch 1.0's
  ``forward``: ``do_reset = spk - reset`` with ``reset = H(mem[t-1] - v_th)`` from the previous step's
  final membrane. Reset "zero": ``"immediate"`` timing (a zeroed membrane never leaves reset = 1, so
  this is the plain immediate reset). Reset "subtract": ``"immediate_recheck"``: v_th is subtracted
  right after each spike, but a membrane that ended a step above v_th has v_th subtracted again
  before the next comparison (and given back when no spike follows), so that spike needs
  ``v > 2 v_th`` (:mod:`snnc.ir.reference`). ``RSynaptic``'s ``reset_delay=False`` branch assigns a
  local ``mem`` and never ``self.mem``, so it runs as ``reset_delay=True`` (``"next_step"``), which
  snnc follows.
- Not mapped (a one-line error names the layer): ``reset_mechanism="none"`` with ``beta = 1``
  mixed in, ``inhibition=True``, ``state_quant``, ``graded_spikes_factor != 1``.

Loihi keeps: Leaky with reset "zero" (exactly). The others are semantic changes that the
compiler measures (see :mod:`snnc.ir.semantics`).
"""
from __future__ import annotations

import nir
import numpy as np

from snnc.frontends.base import make_neuron, TraceContext, neuron_meta, np32, subgraph
from snnc.ir import UnsupportedNodeError

DEFAULT_DT = 1e-4
SUPPORTED = ["snntorch Leaky", "snntorch Synaptic", "snntorch RLeaky", "snntorch RSynaptic"]
RESETS = {0: "subtract", 1: "zero", 2: "none"}


def _lib():
    try:
        import snntorch
        return snntorch
    except Exception:  # noqa: BLE001 - optional dependency
        return None


def available() -> bool:
    return _lib() is not None


def stateful_types() -> set:
    snn = _lib()
    return set() if snn is None else {snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic}


def _common(m, tc: TraceContext, kind: str) -> tuple[str, str]:
    name = tc.name(m)
    if getattr(m, "inhibition", False):
        raise UnsupportedNodeError(name, kind, "inhibition=True (winner-take-all across the layer)", SUPPORTED)
    if getattr(m, "state_quant", False):
        raise UnsupportedNodeError(name, kind, "state_quant (quantize the model with snnc's quantize pass instead)",
                                   SUPPORTED)
    gsf = np32(getattr(m, "graded_spikes_factor", 1.0))
    if np.any(gsf != 1.0):
        raise UnsupportedNodeError(name, kind, "graded_spikes_factor != 1 (fold the factor into the next layer's "
                                   "weights)", SUPPORTED)
    mech = RESETS[int(m.reset_mechanism_val)]
    delayed = bool(getattr(m, "reset_delay", True))
    return mech, delayed


def _decay(value):
    """beta / alpha as snnTorch uses them: clamped to [0, 1] in every forward."""
    return np.clip(np32(value), 0.0, 1.0)


def node_maps(tc: TraceContext, base_maps: dict) -> dict:
    snn = _lib()
    if snn is None:
        return {}
    dt = tc.dt or DEFAULT_DT

    def timing(mech, delayed, kind):
        if not delayed and kind == "RSynaptic":
            return "next_step"  # its reset_delay=False branch writes a local, never self.mem (module docstring)
        if not delayed and mech == "subtract":
            return "immediate_recheck"
        if not delayed or mech == "none":
            return "immediate"
        if kind == "Leaky" and mech == "zero":
            return "immediate"  # beta (1 - r) mem: the decay of a membrane reset to 0 right away
        return "next_step"

    def lif_node(m, kind, beta):
        mech, delayed = _common(m, tc, kind)
        md = neuron_meta(dt, mech, timing=timing(mech, delayed, kind), source=f"snntorch.{kind}")
        thr = np32(m.threshold)
        if np.all(beta == 1.0):
            return make_neuron(nir.IF, r=np.array(1.0 / dt, np.float32), v_threshold=thr, v_reset=np.zeros((), np.float32),
                          metadata=md)
        if np.any(beta == 1.0):
            raise UnsupportedNodeError(tc.name(m), f"snntorch.{kind}", "beta = 1 for some neurons only "
                                       "(no leak there); use beta < 1 everywhere or everywhere 1", SUPPORTED)
        tau = (dt / (1.0 - beta)).astype(np.float32)
        return make_neuron(nir.LIF, tau=tau, r=(tau / dt).astype(np.float32), v_leak=np.zeros((), np.float32), v_threshold=thr,
                       v_reset=np.zeros((), np.float32), metadata=md)

    def cuba_node(m, kind, alpha, beta):
        mech, delayed = _common(m, tc, kind)
        md = neuron_meta(dt, mech, timing=timing(mech, delayed, kind), source=f"snntorch.{kind}")
        if np.any(alpha >= 1.0) or np.any(beta >= 1.0):
            raise UnsupportedNodeError(tc.name(m), f"snntorch.{kind}", "alpha or beta = 1 (no decay); use values "
                                       "below 1", SUPPORTED)
        ts = (dt / (1.0 - alpha)).astype(np.float32)
        tm = (dt / (1.0 - beta)).astype(np.float32)
        return make_neuron(nir.CubaLIF, tau_syn=ts, tau_mem=tm, r=(tm / dt).astype(np.float32), v_leak=np.zeros((), np.float32),
                           v_threshold=np32(m.threshold), v_reset=np.zeros((), np.float32),
                           w_in=(ts / dt).astype(np.float32), metadata=md)

    def recurrent(m, kind):
        rec = m.recurrent
        if type(rec) in base_maps and type(rec).__name__ in ("Linear", "Conv2d"):
            return base_maps[type(rec)](rec)
        V = np32(getattr(rec, "V", getattr(m, "V", 1.0)))
        if V.ndim == 0 or V.size == 1:
            return nir.Scale(scale=V.reshape(()))
        return nir.Scale(scale=V)

    def leaky(m):
        return lif_node(m, "Leaky", _decay(m.beta))

    def synaptic(m):
        return cuba_node(m, "Synaptic", _decay(m.alpha),
                         _decay(m.beta))

    def with_rec(neuron, w):
        return subgraph({"input": nir.Input(input_type=None), "lif": neuron, "w_rec": w,
                         "output": nir.Output(output_type=None)},
                        [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])

    def rleaky(m):
        return with_rec(lif_node(m, "RLeaky", _decay(m.beta)), recurrent(m, "RLeaky"))

    def rsynaptic(m):
        return with_rec(cuba_node(m, "RSynaptic", _decay(m.alpha),
                                  _decay(m.beta)), recurrent(m, "RSynaptic"))

    return {snn.Leaky: leaky, snn.Synaptic: synaptic, snn.RLeaky: rleaky, snn.RSynaptic: rsynaptic}
