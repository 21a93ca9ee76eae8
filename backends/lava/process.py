"""Run a compiled loihi-sim configuration in Lava (lava-nc 0.10) on the CPU, fixed point.

:class:`LavaProgram` builds a plain Lava process graph from the same
``config.json`` + ``weights.npz`` that loihi-sim simulates (one source of
truth: the compiled, quantized graph and its fixed-point fields) and runs it
with ``Loihi2SimCfg(select_tag="fixed_pt")``, which selects lava-nc's
``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc`` and
``PyConvModelFixed``. One Lava process per piece:

=======================================  ======================================================
snnc                                      Lava process
=======================================  ======================================================
neuron group (any kind)                   ``lava.proc.lif.process.LIF``: du, dv, vth = vThMant,
                                          bias_mant/bias_exp per neuron; shape (n,) or, for a
                                          (C, H, W) group, Lava's (W, H, C) = (x, y, z)
dense projection (pooling/flatten         ``lava.proc.dense.process.Dense`` (weight_exp,
folded into the weight matrix)            num_weight_bits, sign_mode MIXED); ``DelayDense``
                                          when the projection has a synaptic delay
conv projection, pooling folded in        ``lava.proc.conv.process.Conv``; its fixed-point model
(kernel k*K, stride k*s, padding k*p)     ignores ``weight_exp``: weights are stored << e for
                                          e >= 0, and a :class:`RightShift` process (below)
                                          floors the sum by 2^-e for e < 0; a conv with a delay
                                          is unrolled into a ``DelayDense`` matrix
host-driven (direct analog input)         no process: the host writes the per-sample bias
                                          (mantissa, exponent ``host_bias_exp``) into the LIF's
                                          ``bias_mant``/``bias_exp`` at each step, as loihi-sim
graph input as spikes                     ``lava.proc.io.source.RingBuffer`` (L steps per sample)
spikes read back                          ``lava.proc.io.sink.RingBuffer`` on every group
=======================================  ======================================================

A group's bias is 0 before its time offset and its constant ``bias_mant <<
bias_exp`` after (host groups: the host bias during steps offset ... offset+T-1),
exactly as :mod:`snnc.backends.loihi.sim`. Lava has no batch dimension: samples
run one after the other, L steps each; between samples every LIF's u and v and
every synapse's buffered input (``a_buff``/``a_buf``) are set to 0.

Lava is slow next to loihi-sim (per-step Python processes and inter-process
messages): use it to check equality on a few samples (``snnc simulate OUT
--engine lava``); ``bench/bench_lava.py`` measures the ratio.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from snnc.backends.lava.compat import import_lava_nc
from snnc.backends.loihi.ops import apply_ops
from snnc.backends.loihi.sim import Program, SimResult

#: Largest dense matrix (entries) a conv projection with a delay is unrolled into.
MAX_UNROLLED = 20_000_000


class LavaMappingError(ValueError):
    """A configuration piece with no exact Lava process form."""


# ---------------------------------------------------------------------------- synapse forms

def fold_pooling(ops: list, weight: np.ndarray, source_shape) -> tuple[str, dict, np.ndarray]:
    """Fold the sum-pooling (and flatten) in front of one weighted op into its weights.

    ``ops`` as in a loihi-sim projection. Returns ``("conv", {"stride", "padding", "dilation",
    "groups"}, weight [O, I, kh, kw])`` or ``("dense", {}, weight [O, prod(source_shape)])``: the
    same integer map from the source's spikes (C order) without pooling. Exact: a sum-pool of
    kernel k before a conv with kernel K, stride s, padding p is a conv with kernel k*K (each tap
    repeated over a k x k block), stride k*s and padding k*p; before a dense layer, each weight
    column is repeated over its pooling window.

    Raises:
        LavaMappingError: pooling before a dilated conv, or a flatten that does not flatten all.
    """
    w = np.asarray(weight)
    kind = ops[-1]["op"]
    pools = [op["kernel"] for op in ops if op["op"] == "sum_pool2d"]
    k = [int(np.prod([p[0] for p in pools])), int(np.prod([p[1] for p in pools]))]
    if kind == "conv2d":
        op = ops[-1]
        params = {"stride": list(op["stride"]), "padding": list(op["padding"]),
                  "dilation": list(op["dilation"]), "groups": int(op["groups"])}
        if k != [1, 1]:
            if any(d != 1 for d in op["dilation"]):
                raise LavaMappingError("pooling before a dilated conv has no single-conv form")
            w = w.repeat(k[0], axis=2).repeat(k[1], axis=3)
            params["stride"] = [op["stride"][0] * k[0], op["stride"][1] * k[1]]
            params["padding"] = [op["padding"][0] * k[0], op["padding"][1] * k[1]]
        return "conv", params, w
    if kind == "dense":
        shape = tuple(source_shape)
        flats = [op for op in ops if op["op"] == "flatten"]
        if len(shape) > 1:
            if len(flats) != 1 or (flats[0]["start_dim"] % len(shape), flats[0]["end_dim"] % len(shape)) != (
                    0, len(shape) - 1):
                raise LavaMappingError(f"dense projection from {shape} without one full flatten")
            pooled = (shape[0], shape[1] // k[0], shape[2] // k[1]) if len(shape) == 3 else shape
            w = w.reshape((w.shape[0],) + pooled)
            if len(shape) == 3:
                w = w.repeat(k[0], axis=2).repeat(k[1], axis=3)
            w = w.reshape(w.shape[0], -1)
        return "dense", {}, w
    raise LavaMappingError(f"no Lava form for synapse op {kind!r}")


def unroll(ops: list, weight: np.ndarray, source_shape) -> np.ndarray:
    """Dense ``[out, prod(source_shape)]`` integer matrix of a projection (by linearity)."""
    n = int(np.prod(source_shape))
    basis = torch.eye(n, dtype=torch.float64).reshape((n,) + tuple(source_shape))
    with torch.no_grad():
        out = apply_ops(basis, ops, torch.as_tensor(np.asarray(weight, np.float64)))
    return np.rint(out.reshape(n, -1).T.numpy()).astype(np.int64)


def lava_shape(shape) -> tuple:
    """Lava's neuron shape for an snnc group shape: (n,) stays, (C, H, W) becomes (W, H, C)."""
    return tuple(shape) if len(shape) == 1 else tuple(reversed(shape))


def to_lava(a: np.ndarray) -> np.ndarray:
    """Array in snnc's (C, H, W) order -> Lava's (W, H, C) (no-op for 1-D)."""
    return a if a.ndim <= 1 else a.transpose(tuple(reversed(range(a.ndim))))


def from_lava(a: np.ndarray) -> np.ndarray:
    return to_lava(a)


# ---------------------------------------------------------------------------- RightShift process

_RIGHT_SHIFT = {}


def _right_shift_classes():
    """A small Lava process between a Conv and a LIF: ``a_out = a_in >> shift`` (floor), in the same
    step. It supplies the negative weight exponent that lava-nc's PyConvModelFixed does not apply
    (PyDenseModelBitAcc applies it the same way: ``np.right_shift(a_accum, -weight_exp)``)."""
    if _RIGHT_SHIFT:
        return _RIGHT_SHIFT["proc"]
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    class RightShift(AbstractProcess):
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

    _RIGHT_SHIFT["proc"] = RightShift
    _RIGHT_SHIFT["model"] = PyRightShiftModel  # keep a reference: Lava finds models by module scan
    return RightShift


# ---------------------------------------------------------------------------- the program

@dataclass
class _LGroup:
    name: str
    shape: tuple
    lif: object
    sink: object
    cfg: dict
    synapses: list = field(default_factory=list)   # (process, buffer var name)


class LavaProgram:
    """A loihi-sim configuration as a Lava process graph, ready to run sample by sample.

    Args:
        program: the loaded loihi-sim :class:`~snnc.backends.loihi.sim.Program` (config, integer
            arrays, target); it also computes the host's per-sample biases, so both engines get
            the same host values.

    Raises:
        LavaNotInstalledError: lava-nc cannot be imported.
        LavaMappingError: a piece of the configuration with no exact Lava form.
    """

    def __init__(self, program: Program):
        import_lava_nc()
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import DelayDense, Dense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF
        from lava.utils.weightutils import SignMode

        self.program = program
        cfg = program.config
        self.T, self.L = program.T, program.L
        self.spikes_in = cfg["input"]["encoding"] == "spikes"
        self.in_name = cfg["input"]["name"]
        self.in_shape = tuple(cfg["input"]["shape"])
        self.source = None
        if self.spikes_in:
            self.source = Source(data=np.zeros(lava_shape(self.in_shape) + (self.L,), np.int32))
        self.groups: dict[str, _LGroup] = {}
        for g in cfg["groups"]:
            shape = tuple(g["shape"])
            ls = lava_shape(shape)
            lif = LIF(shape=ls, du=int(g["du"]), dv=int(g["dv"]), vth=int(g["vth_mant"]),
                      bias_mant=np.zeros(ls, np.int32), bias_exp=np.zeros(ls, np.int32), name=g["name"])
            sink = Sink(shape=ls, buffer=self.L)
            lif.s_out.connect(sink.a_in)
            self.groups[g["name"]] = _LGroup(g["name"], shape, lif, sink, g)
        for g in cfg["groups"]:
            lg = self.groups[g["name"]]
            for p in g["projections"]:
                if p["host"]:
                    continue
                w = np.asarray(program.arrays[p["weight_key"]]).astype(np.int64)
                src_shape = tuple(p["source_shape"])
                if p["source"] == self.in_name:
                    src_port = self.source.s_out
                else:
                    src_port = self.groups[p["source"]].lif.s_out
                kind, params, wf = fold_pooling(p["ops"], w, src_shape)
                e, d = int(p["weight_exp"]), int(p["delay"])
                wbits = int(p.get("weight_bits", 8))
                if kind == "conv" and d > 0:
                    if wf.size and np.prod(src_shape) * lg.cfg["size"] > MAX_UNROLLED:
                        raise LavaMappingError(f"{g['name']}: a conv projection with a synaptic delay is unrolled "
                                               f"into a dense matrix, and {lg.cfg['size']} x {np.prod(src_shape)} is "
                                               f"larger than {MAX_UNROLLED:,} entries")
                    kind, wf = "dense", unroll(p["ops"], w, src_shape)
                if kind == "conv":
                    we = wf << e if e > 0 else wf
                    kern = np.ascontiguousarray(we[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)).astype(np.int32)
                    conv = Conv(weight=kern, input_shape=lava_shape(src_shape),
                                stride=tuple(reversed(params["stride"])), padding=tuple(reversed(params["padding"])),
                                dilation=tuple(reversed(params["dilation"])), groups=params["groups"],
                                num_weight_bits=wbits, name=f"{g['name']}.conv<-{p['source']}")
                    if tuple(conv.output_shape) != lava_shape(lg.shape):
                        raise LavaMappingError(f"{g['name']}: Lava conv output {tuple(conv.output_shape)} != "
                                               f"{lava_shape(lg.shape)}")
                    src_port.connect(conv.s_in)
                    lg.synapses.append((conv, "a_buf"))
                    out = conv.a_out
                    if e < 0:
                        shift = _right_shift_classes()(shape=lava_shape(lg.shape), shift=-e,
                                                       name=f"{g['name']}.shift<-{p['source']}")
                        out.connect(shift.a_in)
                        out = shift.a_out
                    out.connect(lg.lif.a_in)
                else:
                    if len(src_shape) > 1:
                        src_port = src_port.transpose(list(reversed(range(len(src_shape))))).flatten()
                    kw = dict(weights=wf.astype(np.int32), weight_exp=e, num_weight_bits=wbits,
                              sign_mode=SignMode.MIXED, name=f"{g['name']}.dense<-{p['source']}")
                    if d > 0:
                        syn = DelayDense(delays=np.full(wf.shape, d, np.int32), max_delay=d, **kw)
                    else:
                        syn = Dense(**kw)
                    src_port.connect(syn.s_in)
                    syn.a_out.connect(lg.lif.a_in)
                    lg.synapses.append((syn, "a_buff"))
        self._started = False
        self._anchor = next(iter(self.groups.values())).lif
        self.seconds_build = 0.0

    # ------------------------------------------------------------------ schedule
    def bias_schedule(self, x_sample: torch.Tensor | None) -> dict[str, list]:
        """Per group and chip step: ``(bias_mant, bias_exp)`` int arrays in the group's (C-order) shape."""
        prog = self.program
        fp = prog.fp
        out = {}
        for name, lg in self.groups.items():
            g = prog.groups[name]
            c = lg.cfg
            off = int(c["offset"])
            zero = (np.zeros(lg.shape, np.int64), np.zeros(lg.shape, np.int64))
            const = (np.asarray(prog.arrays[f"{name}.bias_mant"], np.int64).reshape(lg.shape),
                     np.full(lg.shape, int(c["bias_exp"]), np.int64))
            host = None
            if any(p.host for p in g.projections):
                vals, _ = prog.host_bias(g, x_sample)
                e = int(c["host_bias_exp"])
                host = [((v[0].numpy() >> e), np.full(lg.shape, e, np.int64)) for v in vals]
            sched = []
            for t in range(self.L):
                if t < off:
                    sched.append(zero)
                elif host is not None and t < off + self.T:
                    sched.append(host[t - off])
                else:
                    sched.append(const)
            out[name] = sched
        del fp
        return out

    # ------------------------------------------------------------------ run
    def _run_steps(self, n: int):
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        self._anchor.run(condition=RunSteps(num_steps=n), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        self._started = True

    def _reset(self):
        for lg in self.groups.values():
            z = np.zeros(lava_shape(lg.shape))
            lg.lif.u.set(z)
            lg.lif.v.set(z)
            for syn, var in lg.synapses:
                buf = getattr(syn, var)
                buf.set(np.zeros(buf.shape))

    def run(self, x, record: bool = False, progress=None) -> SimResult:
        """Run every sample of ``x`` in Lava, one after the other.

        Args:
            x: as :meth:`snnc.backends.loihi.sim.Program.run`: ``[N, *input_shape]`` analog, or
                ``[T, N, *input_shape]`` 0/1 spikes.
            record: fill ``SimResult.trace`` (u, v, spikes of every group at every step).
            progress: callable(n_done) after each sample.

        Returns:
            a :class:`~snnc.backends.loihi.sim.SimResult` with outputs, per-neuron spike and
            active-update totals (active: u or v non-zero, or a spike, after the step), and the trace.
        """
        x = torch.as_tensor(np.asarray(x))
        N = x.shape[1] if self.spikes_in else x.shape[0]
        want = len(self.in_shape) + (2 if self.spikes_in else 1)
        if x.dim() != want or tuple(x.shape[-len(self.in_shape):]) != self.in_shape:
            raise ValueError(f"input of shape {tuple(x.shape)} does not fit this program's input {self.in_shape}")
        cfg = self.program.config
        res = SimResult(outputs={}, samples=N, steps=self.L)
        outs = {o["name"]: [] for o in cfg["outputs"]}
        spikes_tot = {n: np.zeros(int(np.prod(lg.shape)), np.int64) for n, lg in self.groups.items()}
        active_tot = {n: np.zeros(int(np.prod(lg.shape)), np.int64) for n, lg in self.groups.items()}
        trace = {n: {"u": [], "v": [], "spikes": []} for n in self.groups}
        prev = {}
        try:
            for i in range(N):
                xs = None if self.spikes_in else x[i:i + 1].to(torch.float64)
                sched = self.bias_schedule(xs)
                if self._started:
                    self._reset()
                if self.spikes_in:
                    data = np.zeros(lava_shape(self.in_shape) + (self.L,), np.int32)
                    for t in range(self.T):
                        data[..., t] = to_lava(x[t, i].numpy().astype(np.int32))
                    self.source.data.set(data) if self._started else setattr(self.source.data, "init", data)
                us = {n: [] for n in self.groups}
                vs = {n: [] for n in self.groups}
                for t in range(self.L):
                    for name, lg in self.groups.items():
                        mant, exp = sched[name][t]
                        key = prev.get(name)
                        if key is None or key[0] is not mant or key[1] is not exp:
                            if key is None or not (np.array_equal(key[0], mant) and np.array_equal(key[1], exp)):
                                m, e = to_lava(mant).astype(np.int32), to_lava(exp).astype(np.int32)
                                if self._started:
                                    lg.lif.bias_mant.set(m)
                                    lg.lif.bias_exp.set(e)
                                else:
                                    lg.lif.bias_mant.init = m
                                    lg.lif.bias_exp.init = e
                            prev[name] = (mant, exp)
                    self._run_steps(1)
                    for name, lg in self.groups.items():
                        us[name].append(from_lava(np.rint(lg.lif.u.get())).astype(np.int64))
                        vs[name].append(from_lava(np.rint(lg.lif.v.get())).astype(np.int64))
                for name, lg in self.groups.items():
                    data = lg.sink.data.get()  # [*lava shape, L], slot t = step t of this sample
                    s = np.stack([from_lava(data[..., t]) for t in range(self.L)]).astype(bool)
                    u, v = np.stack(us[name]), np.stack(vs[name])
                    spikes_tot[name] += s.reshape(self.L, -1).sum(0)
                    act = (u != 0) | (v != 0) | s
                    active_tot[name] += act.reshape(self.L, -1).sum(0)
                    if record:
                        trace[name]["u"].append(u)
                        trace[name]["v"].append(v)
                        trace[name]["spikes"].append(s)
                    for o in cfg["outputs"]:
                        if o["group"] != name:
                            continue
                        if lg.cfg["kind"] == "spiking":
                            off = lg.cfg["offset"]
                            outs[o["name"]].append(s[off:min(off + self.T, o["read_step"] + 1)].sum(0).astype(np.int64))
                        else:
                            outs[o["name"]].append(v[o["read_step"]])
                if progress:
                    progress(i + 1)
        finally:
            if self._started:
                self._anchor.stop()
                self._started = False
        res.outputs = {k: torch.as_tensor(np.stack(v)) for k, v in outs.items()}
        res.spikes = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in spikes_tot.items()}
        res.active = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in active_tot.items()}
        if record:
            res.trace = {n: {k: torch.as_tensor(np.stack(v)) for k, v in tr.items()} for n, tr in trace.items()}
        return res
