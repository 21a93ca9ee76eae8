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

A group's bias is 0 before its time offset (or its ``bias_from`` step, 0 in a ``--target lava``
compile) and its constant ``bias_mant << bias_exp`` after (host groups: the host bias during steps
offset ... offset+T-1),
exactly as :mod:`snnc.backends.loihi.sim`. Lava has no batch dimension: samples
run one after the other, L steps each; between samples every LIF's u and v and
every synapse's buffered input (``a_buff``/``a_buf``) are set to 0.

Lava is slow next to loihi-sim (per-step Python processes and inter-process
messages): use it to check equality on a few samples (``snnc simulate OUT
--engine lava``); ``bench/bench_lava.py`` measures the ratio.
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snnc.errors import SnncError
from snnc.backends.lava.compat import import_lava_nc
from snnc.ir.ops import apply_ops
from snnc.backends.loihi.sim import Program, SimResult

#: Largest dense matrix (entries) a conv projection with a delay is unrolled into.
MAX_UNROLLED = 20_000_000


class LavaMappingError(SnncError):
    """A configuration piece with no exact Lava process form."""


def check_lava_form(config: dict) -> None:
    """Raise :class:`LavaMappingError` for what lava-nc's LIF and lava-dl netx cannot hold: per-channel
    thresholds (quantize ``per_channel=true``): lava-nc 0.10's ``LIF`` has one ``vth`` per process
    (``Var(shape=(1,))``), netx one ``vThMant`` per layer."""
    pc = [g["name"] for g in config["groups"] if g.get("per_channel")]
    if pc:
        raise LavaMappingError(f"groups {pc} have per-channel scales (quantize per_channel=true): lava-nc's LIF holds "
                               "one vth per process and netx one vThMant per layer; compile without --per-channel "
                               "for Lava")
    pd = [g["name"] for g in config["groups"] if g.get("per_neuron_decays")]
    if pd:
        raise LavaMappingError(f"groups {pd} have per-neuron time constants (du/dv per neuron): snnc's Lava engine "
                               "and netx writer make one LIF process / layer per group with one du and dv")


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


def _pass_classes() -> dict:
    """snnc's two pass-through Lava processes (:mod:`snnc.backends.lava.procs`), imported after the
    compat fixes (that module imports lava-nc at import time)."""
    from snnc.backends.lava import procs
    return {"RightShift": procs.RightShift, "FlattenWHC": procs.FlattenWHC}


# ---------------------------------------------------------------------------- the program

@dataclass
class _LGroup:
    name: str
    shape: tuple
    lif: object
    cfg: dict
    io: dict


class LavaProgram:
    """A loihi-sim configuration as a Lava process graph, ready to run.

    Args:
        program: the loaded loihi-sim :class:`~snnc.backends.loihi.sim.Program` (config, integer
            arrays, target); it also computes the host's per-sample biases, so both engines get
            the same host values.
        chunk: samples per Lava run (host arrays are sized for one chunk).

    Raises:
        LavaNotInstalledError: lava-nc cannot be imported.
        LavaMappingError: a piece of the configuration with no exact Lava form.
    """

    def __init__(self, program: Program, chunk: int = 16):
        import_lava_nc()
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import DelayDense, Dense
        from lava.utils.weightutils import SignMode

        from snnc.backends.lava import procs

        self.program = program
        cfg = program.config
        check_lava_form(cfg)
        self.T, self.L = program.T, program.L
        self.hold = program.max_delay + 1            # hold steps before each sample
        self.P = self.hold + self.L                  # Lava steps per sample
        self.chunk = int(chunk)
        self.S = self.chunk * self.P                 # Lava steps per run
        self.spikes_in = cfg["input"]["encoding"] == "spikes"
        self.in_name = cfg["input"]["name"]
        self.in_shape = tuple(cfg["input"]["shape"])
        self._tmp = tempfile.TemporaryDirectory(prefix="snnc-lava-")
        tmp = Path(self._tmp.name)
        hold = np.zeros(self.S, np.uint8)
        for i in range(self.chunk):
            hold[i * self.P:i * self.P + self.hold] = 1
        hold_spec = {"hold": str(tmp / "hold.u8"), "hold_shape": [self.S]}
        np.memmap(hold_spec["hold"], np.uint8, "w+", shape=(self.S,))[:] = hold
        self.source = None
        if self.spikes_in:
            ls = lava_shape(self.in_shape)
            self.source_io = {"spikes": str(tmp / "input.i32"), "spikes_shape": [self.S, *ls]}
            np.memmap(self.source_io["spikes"], np.int32, "w+", shape=(self.S, *ls))
            self.source = procs.FileSpikeSource(shape=ls, io=self.source_io, name=self.in_name)
        self.groups: dict[str, _LGroup] = {}
        for gi, g in enumerate(cfg["groups"]):
            shape = tuple(g["shape"])
            ls = lava_shape(shape)
            io = dict(hold_spec, steps=self.S,
                      bias=str(tmp / f"g{gi}.bias.i32"), bias_shape=[self.S, 2, *ls],
                      rec=str(tmp / f"g{gi}.rec.i32"), rec_shape=[self.S, 3, *ls])
            np.memmap(io["bias"], np.int32, "w+", shape=tuple(io["bias_shape"]))
            np.memmap(io["rec"], np.int32, "w+", shape=tuple(io["rec_shape"]))
            lif = procs.HostLIF(shape=ls, du=int(g["du"]), dv=int(g["dv"]), vth=int(g["vth_mant"]),
                                bias_mant=np.zeros(ls, np.int32), bias_exp=np.zeros(ls, np.int32),
                                name=g["name"], io=io)
            self.groups[g["name"]] = _LGroup(g["name"], shape, lif, g, io)
        for g in cfg["groups"]:
            lg = self.groups[g["name"]]
            for p in g["projections"]:
                if p["host"]:
                    continue
                w = np.asarray(program.arrays[p["weight_key"]]).astype(np.int64)
                src_shape = tuple(p["source_shape"])
                src_port = self.source.s_out if p["source"] == self.in_name else self.groups[p["source"]].lif.s_out
                kind, params, wf = fold_pooling(p["ops"], w, src_shape)
                e, d = int(p["weight_exp"]), int(p["delay"])
                wbits = int(p["weight_bits"])  # checked present by check_program
                tag = f"{g['name']}<-{p['source']}"
                if kind == "conv" and d > 0:
                    if np.prod(src_shape) * lg.cfg["size"] > MAX_UNROLLED:
                        raise LavaMappingError(f"{tag}: a conv projection with a synaptic delay is unrolled into a "
                                               f"dense matrix, and {lg.cfg['size']} x {int(np.prod(src_shape))} is "
                                               f"more than {MAX_UNROLLED:,} entries")
                    kind, wf = "dense", unroll(p["ops"], w, src_shape)
                if kind == "conv":
                    we = wf << e if e > 0 else wf
                    kern = np.ascontiguousarray(we[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)).astype(np.int32)
                    conv = Conv(weight=kern, input_shape=lava_shape(src_shape),
                                stride=tuple(reversed(params["stride"])), padding=tuple(reversed(params["padding"])),
                                dilation=tuple(reversed(params["dilation"])), groups=params["groups"],
                                num_weight_bits=wbits, name=f"conv {tag}")
                    if tuple(conv.output_shape) != lava_shape(lg.shape):
                        raise LavaMappingError(f"{tag}: Lava conv output {tuple(conv.output_shape)} != "
                                               f"{lava_shape(lg.shape)}")
                    src_port.connect(conv.s_in)
                    out = conv.a_out
                    if e < 0:
                        shift = procs.RightShift(shape=lava_shape(lg.shape), shift=-e, name=f"shift {tag}")
                        out.connect(shift.a_in)
                        out = shift.a_out
                    out.connect(lg.lif.a_in)
                else:
                    if len(src_shape) > 1:
                        flat = procs.FlattenWHC(shape=lava_shape(src_shape), name=f"flatten {tag}")
                        src_port.connect(flat.s_in)
                        src_port = flat.s_out
                    kw = dict(weights=wf.astype(np.int32), weight_exp=e, num_weight_bits=wbits,
                              sign_mode=SignMode.MIXED, name=f"dense {tag}")
                    syn = DelayDense(delays=np.full(wf.shape, d, dtype=int), max_delay=d, **kw) if d > 0 \
                        else Dense(**kw)
                    src_port.connect(syn.s_in)
                    syn.a_out.connect(lg.lif.a_in)
        self._anchor = next(iter(self.groups.values())).lif
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ host side
    def _write_chunk(self, x: torch.Tensor, n: int) -> None:
        """Bias (and input spike) arrays for ``n`` samples of ``x`` (host order: sample, then step)."""
        prog = self.program
        for name, lg in self.groups.items():
            g = prog.groups[name]
            c = lg.cfg
            off = int(c["offset"])
            ls = lava_shape(lg.shape)
            bias = np.memmap(lg.io["bias"], np.int32, "r+", shape=tuple(lg.io["bias_shape"]))
            bias[:] = 0
            const_m = to_lava(np.asarray(prog.arrays[f"{name}.bias_mant"], np.int64).reshape(lg.shape))
            host = None
            if any(p.host for p in g.projections):
                host, _ = prog.host_bias(g, x[:n].to(torch.float64))
                he = int(c["host_bias_exp"])
            for i in range(n):
                base = i * self.P + self.hold
                for t in range(int(c.get("bias_from", off)), self.L):
                    if host is not None and off <= t < off + self.T:
                        bias[base + t, 0] = to_lava((host[t - off][i] >> he).numpy())
                        bias[base + t, 1] = he
                    else:
                        bias[base + t, 0] = const_m
                        bias[base + t, 1] = int(c["bias_exp"])
            bias.flush()
            del ls
        if self.spikes_in:
            spk = np.memmap(self.source_io["spikes"], np.int32, "r+", shape=tuple(self.source_io["spikes_shape"]))
            spk[:] = 0
            for i in range(n):
                for t in range(self.T):
                    spk[i * self.P + self.hold + t] = to_lava(x[t, i].numpy().astype(np.int32))
            spk.flush()

    def _run(self, steps: int) -> None:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        if self._stopped:
            raise RuntimeError("this LavaProgram has run and stopped; build a new one")
        with warnings.catch_warnings():
            # Lava's model search imports every .py file beside procs.py by file name; the other
            # modules of this package do not import that way (harmless, but a warning per process)
            warnings.filterwarnings("ignore", message="Cannot import module", category=UserWarning)
            self._anchor.run(condition=RunSteps(num_steps=steps),
                             run_cfg=Loihi2SimCfg(select_tag="fixed_pt", loglevel=logging.WARNING))
        self._started = True

    def stop(self) -> None:
        """Stop the Lava runtime (its worker processes) and remove the host files."""
        if self._started and not self._stopped:
            self._anchor.stop()
        self._stopped = True
        self._tmp.cleanup()

    def run(self, x, record: bool = False, progress=None, on_chunk=None) -> SimResult:
        """Run every sample of ``x`` in Lava and stop the runtime (one call per LavaProgram).

        Args:
            x: as :meth:`snnc.backends.loihi.sim.Program.run`: ``[N, *input_shape]`` analog, or
                ``[T, N, *input_shape]`` 0/1 spikes.
            record: fill ``SimResult.trace`` (u, v, spikes of every group at every step,
                ``[N, L, *shape]``, as loihi-sim's).
            progress: callable(n_done) after each chunk of samples.
            on_chunk: callable(first_sample, trace) per chunk, ``trace`` as ``SimResult.trace`` for
                that chunk's samples (to compare with loihi-sim without keeping every step of a large run).

        Returns:
            a :class:`~snnc.backends.loihi.sim.SimResult` with outputs, per-neuron spike and
            active-update totals (active: u or v non-zero, or a spike, after the step), the trace.
        """
        x = torch.as_tensor(np.asarray(x))
        N = x.shape[1] if self.spikes_in else x.shape[0]
        want = len(self.in_shape) + (2 if self.spikes_in else 1)
        if x.dim() != want or tuple(x.shape[-len(self.in_shape):]) != self.in_shape or (
                self.spikes_in and x.shape[0] != self.T):
            raise SnncError(f"input of shape {tuple(x.shape)} does not fit this program's input {self.in_shape} "
                             f"({'[T, N, *shape] spikes' if self.spikes_in else '[N, *shape] analog'})")
        cfg = self.program.config
        res = SimResult(outputs={}, samples=N, steps=self.L)
        outs = {o["name"]: [] for o in cfg["outputs"]}
        spikes_tot = {n: np.zeros(int(np.prod(lg.shape)), np.int64) for n, lg in self.groups.items()}
        active_tot = {n: np.zeros(int(np.prod(lg.shape)), np.int64) for n, lg in self.groups.items()}
        trace = {n: {"u": [], "v": [], "spikes": []} for n in self.groups}
        try:
            for i0 in range(0, N, self.chunk):
                n = min(self.chunk, N - i0)
                xc = x[:, i0:i0 + n] if self.spikes_in else x[i0:i0 + n]
                self._write_chunk(xc, n)
                self._run(n * self.P)
                chunk_trace = {}
                for name, lg in self.groups.items():
                    rec = np.array(np.memmap(lg.io["rec"], np.int32, "r", shape=tuple(lg.io["rec_shape"])))
                    rec = rec[:n * self.P].reshape((n, self.P, 3) + lava_shape(lg.shape))[:, self.hold:]
                    rec = np.stack([np.stack([from_lava(rec[i, t, k]) for t in range(self.L)])
                                    for i in range(n) for k in range(3)]).reshape((n, 3, self.L) + lg.shape)
                    u, v, s = rec[:, 0].astype(np.int64), rec[:, 1].astype(np.int64), rec[:, 2] != 0
                    spikes_tot[name] += s.reshape(n, self.L, -1).sum((0, 1))
                    active_tot[name] += ((u != 0) | (v != 0) | s).reshape(n, self.L, -1).sum((0, 1))
                    if on_chunk is not None:
                        chunk_trace[name] = {"u": torch.as_tensor(u), "v": torch.as_tensor(v),
                                             "spikes": torch.as_tensor(s)}
                    if record:
                        trace[name]["u"].append(u)
                        trace[name]["v"].append(v)
                        trace[name]["spikes"].append(s)
                    for o in cfg["outputs"]:
                        if o["group"] != name:
                            continue
                        if lg.cfg["kind"] == "spiking":
                            off = lg.cfg["offset"]
                            outs[o["name"]].append(s[:, off:min(off + self.T, o["read_step"] + 1)].sum(1).astype(np.int64))
                        else:
                            outs[o["name"]].append(v[:, o["read_step"]])
                if on_chunk is not None:
                    on_chunk(i0, chunk_trace)
                if progress:
                    progress(i0 + n)
        finally:
            self.stop()
        res.outputs = {k: torch.as_tensor(np.concatenate(v)) for k, v in outs.items()}
        res.spikes = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in spikes_tot.items()}
        res.active = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in active_tot.items()}
        if record:
            res.trace = {n: {k: torch.as_tensor(np.concatenate(v)) for k, v in tr.items()} for n, tr in trace.items()}
        return res
