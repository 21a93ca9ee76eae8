"""Two small Lava processes snnc adds to lava-nc's LIF, Dense and Conv (import after
:func:`snnc.backends.lava.compat.import_lava_nc`: this module imports lava-nc).

Both act within the time step (``recv`` then ``send``, no buffering), so the timing is that of a
direct port connection. Lava finds a process's models by scanning the process's module, so the
models live here beside their processes.

* :class:`RightShift`: ``a_out = a_in >> shift`` (floor), between a Conv and a LIF. It supplies the
  negative weight exponent that lava-nc's ``PyConvModelFixed`` does not apply, the way
  ``PyDenseModelBitAcc`` applies it (``np.right_shift(a_accum, -weight_exp)``,
  lava-nc ``src/lava/proc/dense/models.py``).
* :class:`FlattenWHC`: spikes of a (W, H, C) LIF flattened in snnc's C order over (C, H, W), in
  front of a Dense. lava-nc's virtual ports (``s_out.transpose([2, 1, 0]).flatten()``, as netx
  connects a conv block to a dense block) hung the Python runtime here (lava-nc 0.10.0, Python
  3.11, numpy 2.4.6): no step finished within 60 s on a 32-neuron example.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifModelBitAcc
from lava.proc.lif.process import LIF


class RightShift(AbstractProcess):
    """``a_out = a_in >> shift`` (arithmetic, floor) per element; ``shape`` of both ports."""

    def __init__(self, *, shape, shift: int, name=None):
        super().__init__(shape=shape, shift=shift, name=name)
        self.a_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
        self.shift = Var(shape=(1,), init=shift)


@implements(proc=RightShift, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRightShiftModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    shift: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=4)

    def run_spk(self):
        a = np.asarray(self.a_in.recv()).astype(np.int64)
        self.a_out.send(np.right_shift(a, int(self.shift[0])))


class FlattenWHC(AbstractProcess):
    """Spikes ``[W, H, C]`` in, ``[C*H*W]`` out in C order over (C, H, W)."""

    def __init__(self, *, shape, name=None):
        super().__init__(shape=shape, name=name)
        self.s_in = InPort(shape=shape)
        self.s_out = OutPort(shape=(int(np.prod(shape)),))


@implements(proc=FlattenWHC, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFlattenWHCModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, bool, precision=1)

    def run_spk(self):
        s = np.asarray(self.s_in.recv())
        self.s_out.send(s.transpose(tuple(reversed(range(s.ndim)))).reshape(-1))


# ---------------------------------------------------------------------------- host I/O
#
# Var.get/Var.set move one element per message in lava-nc 0.10's runtime (runtime.py get_var /
# set_var): ~35 us per element here, i.e. seconds per step for the bundled model's 12,544-neuron
# layer. The host therefore exchanges per-step data with the process models through
# memory-mapped files (np.memmap), written by the host before a run and read after it. Arrays
# are indexed by ``(time_step - 1) % steps`` (Lava counts time steps from 1).

def _open(spec: dict, key: str, mode: str):
    return np.memmap(spec[key], dtype=np.int32 if key != "hold" else np.uint8, mode=mode,
                     shape=tuple(spec[f"{key}_shape"]))


class HostLIF(LIF):
    """lava-nc's ``LIF`` process, with host I/O (proc param ``io``: memmap paths and shapes):
    per step, ``hold`` (uint8 ``[S]``), ``bias`` (int32 ``[S, 2, *shape]``: bias_mant, bias_exp)
    in; ``rec`` (int32 ``[S, 3, *shape]``: u, v, spikes after the step) out."""


@implements(proc=HostLIF, protocol=LoihiProtocol)
@requires(CPU)
class PyHostLifModel(PyLifModelBitAcc):
    """lava-nc's ``PyLifModelBitAcc`` unchanged (inherited: the same ``subthr_dynamics``,
    ``spiking_activation``, reset), with the host's bias writes before each step:

    * a normal step: ``bias_mant``/``bias_exp`` are set from the host's array (what
      ``Var.set`` does between runs), then ``PyLifModelBitAcc.run_spk`` runs;
    * a hold step (between samples): the synaptic input is received and dropped, u = v = 0, no
      spike. ``max_delay + 1`` hold steps empty every synapse buffer, so the next sample starts
      from the rest state, as a fresh batch in loihi-sim.
    """
    implements_process = None   # replaced by @implements above (the parent implements LIF)
    implements_protocol = None

    def _io(self):
        if not hasattr(self, "_io_cache"):
            spec = self.proc_params["io"]
            self._io_cache = (spec["steps"], _open(spec, "hold", "r"), _open(spec, "bias", "r"),
                              _open(spec, "rec", "r+"))
        return self._io_cache

    def run_spk(self):
        steps, hold, bias, rec = self._io()
        t = (self.time_step - 1) % steps
        if hold[t]:
            self.a_in.recv()
            self.u[:] = 0
            self.v[:] = 0
            self.s_out_buff = np.zeros(self.v.shape, dtype=bool)
            self.s_out.send(self.s_out_buff)
        else:
            self.bias_mant[:] = bias[t, 0]
            self.bias_exp[:] = bias[t, 1]
            super().run_spk()
        rec[t, 0] = self.u
        rec[t, 1] = self.v
        rec[t, 2] = self.s_out_buff


class FileSpikeSource(AbstractProcess):
    """Spikes from the host: proc param ``io`` with ``spikes`` (int32 ``[S, *shape]``)."""

    def __init__(self, *, shape, io: dict, name=None):
        super().__init__(shape=shape, io=io, name=name)
        self.s_out = OutPort(shape=shape)


@implements(proc=FileSpikeSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFileSpikeSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)

    def run_spk(self):
        if not hasattr(self, "_data"):
            spec = self.proc_params["io"]
            self._data = _open(spec, "spikes", "r")
        t = (self.time_step - 1) % self._data.shape[0]
        self.s_out.send(np.asarray(self._data[t]))
