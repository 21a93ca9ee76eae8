"""What every frontend shares: errors, the neuron-semantics metadata, tensor helpers.

Neuron semantics that NIR cannot say are written into each neuron node's
``metadata`` through :class:`snnc.ir.semantics.NeuronSemantics` (the only code that reads or
writes these keys)::

    snnc.dt            time step in s
    snnc.reset         "zero" | "subtract" | "to_v_reset" | "none"
    snnc.reset_timing  "immediate"  (default; NIR, Loihi: v is reset right after the spike)
                       "next_step"  (snnTorch's reset_delay=True: the spike of step t resets the
                                     membrane of step t+1 *after* its update: subtract removes
                                     v_th, zero multiplies the updated membrane by 0)
                       "immediate_recheck" (snnTorch's reset_delay=False with subtract reset:
                                     v_th is subtracted right after each spike, and in a step
                                     after one that ended with v > v_th the spike needs
                                     v > 2 v_th; snntorch/_neurons/leaky.py, synaptic.py:
                                     do_reset = spk - reset)
    snnc.threshold_op  ">" (default; NIR, Loihi, snnTorch, Norse) | ">=" (SpikingJelly, Sinabs)
    snnc.spikes        "single" (default) | "multi" (Sinabs MultiSpike: floor(v / v_th) spikes
                                     per step where v >= v_th, each one subtracting v_th)
    snnc.v_min         voltage floor (float; Sinabs min_v_mem), absent = none
    snnc.source        the framework class the node came from, for messages and reports

:func:`snnc.ir.reference.GraphExecutor` runs every combination exactly; the
loihi-sim target keeps ``reset = "zero"`` with ``immediate`` timing, ``">"``
(and ``">="`` exactly, through the quantizer's choice of scale), single spikes
and no floor; everything else is a semantic change that the compiler measures
and refuses without ``--allow-semantic-change`` (:mod:`snnc.ir.semantics`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch

from snnc.errors import SnncError
from snnc.ir.semantics import NeuronSemantics



class ModelLoadError(SnncError):
    """A model file, module or factory that cannot be read or traced (one-line message naming it)."""


def np32(t) -> np.ndarray:
    """A tensor/array/number as a float32 numpy array (detached, copied)."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy().astype(np.float32, copy=True)
    return np.array(t, dtype=np.float32)


def neuron_meta(dt: float, reset: str = "zero", *, timing: str = "immediate", threshold_op: str = ">",
                spikes: str = "single", v_min: float | None = None, source: str = "") -> dict:
    """The ``snnc.*`` metadata of a neuron node (:meth:`snnc.ir.semantics.NeuronSemantics.to_metadata`:
    keys only where they differ from the defaults, except ``snnc.dt`` and ``snnc.reset``)."""
    return NeuronSemantics(dt=float(dt), reset=reset, reset_timing=timing, threshold_op=threshold_op, spikes=spikes,
                           v_min=None if v_min is None else float(v_min), source=source).to_metadata()


def first_tensor(out):
    """A module's output as one tensor: the first element of a tuple/list ((spikes, state) of
    snnTorch ``output=True``, Norse cells, ...)."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


def subgraph(nodes: dict, edges: list) -> nir.NIRGraph:
    """A nested NIR graph (e.g. a recurrent neuron with its recurrent weights). ``nodes`` must
    include ``"input"`` (nir.Input) and ``"output"`` (nir.Output); it is inlined into the parent by
    :func:`snnc.frontends.torch_snnc.flatten_subgraphs` with names ``<parent>.<node>``."""
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@dataclass
class TraceContext:
    """What node maps may read while tracing.

    ``dt``: the time step the user gave (s) or None (each framework then uses its own default).
    ``names``: id(module) -> qualified name, for messages. ``notes``: lines for the report/CLI.
    """
    dt: float | None = None
    names: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def name(self, m) -> str:
        return self.names.get(id(m), type(m).__name__)


def reset_module_states(model: torch.nn.Module) -> None:
    """Reset the hidden state of every stateful submodule, whatever its framework
    (snnc ``reset_state``, snnTorch ``reset_mem``, SpikingJelly ``reset``, Sinabs ``reset_states``)."""
    for m in model.modules():
        if m is model and not hasattr(m, "reset_mem"):
            continue
        for meth in ("reset_state", "reset_mem", "reset_states"):
            if hasattr(m, meth) and callable(getattr(m, meth)):
                try:
                    getattr(m, meth)()
                except Exception:  # a method of that name with another meaning: leave it
                    pass
                break
        else:
            mod = type(m).__module__
            if mod.startswith("spikingjelly") and hasattr(m, "reset") and callable(m.reset):
                m.reset()


def make_neuron(cls, metadata: dict | None = None, **params):
    """Build a NIR neuron node with its parameter arrays broadcast to one common shape (NIR asserts
    equal shapes; the tracer later broadcasts them to the node's full shape)."""
    keys = list(params)
    arrs = np.broadcast_arrays(*[np.asarray(params[k], np.float32) for k in keys])
    kw = {k: np.array(a, np.float32) for k, a in zip(keys, arrs)}
    return cls(**kw, metadata=dict(metadata or {}))
