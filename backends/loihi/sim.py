"""Bit-accurate, batched simulation of an emitted loihi-sim configuration.

Per time step and compartment, exactly as lava-nc ``PyLifModelBitAcc``
(``src/lava/proc/lif/models.py``, ``AbstractPyLifModelFixed``) with the synaptic
input of ``PyDenseModelBitAcc`` (``src/lava/proc/dense/models.py``)::

    a      = (sum of int weights of the spikes that arrive) << weight_exp   (>> -weight_exp, floor, if < 0)
    u      = sign(u) * (|u| * (4096 - (du + 1)) >> 12) + (a << 6)       wrapped to 24-bit signed
    v      = sign(v) * (|v| * (4096 - dv) >> 12) + u + (bias_mant << bias_exp)
    v      = clip(v, -(2^23 - 1), 2^23 - 1)
    spike  = v > (vThMant << 6);   v = 0 where spike

Spikes emitted at step t arrive at step t + 1 + delay (Loihi's one-step
synaptic delay; lava's Dense buffers one step), so group g starts ``offset(g)``
steps late; its bias is enabled at that step (before it, the group rests at
0), as the float graph's biases act from its first step -- or from step 0 where
the group's ``bias_from`` says so (a ``--target lava`` compile: netx has no
per-layer bias enable time). A direct analog input
is the per-sample bias computed by the host for steps 0..T-1. Synaptic sums
run through float32 convolutions where a bound on every partial sum stays
below 2^24 (integers exact), float64 otherwise. All arithmetic is on
int64 tensors. Outputs are read at ``read_step``: the
voltage of a non-spiking readout, or spike counts of a spiking output group.

Events are counted per neuron over the whole run (all ``latency_steps`` steps)
and turned into per-inference SynOps, spikes, neuron updates, spike messages
and energy by :mod:`snnc.backends.loihi.energy`.

Two implementations give the same results bit for bit (tests/test_sim_kernels.py): on the CPU, a
feed-forward program runs layer by layer over windows of steps, the compartment updates in the
compiled kernel of :mod:`snnc.backends.loihi.kernels` (one pass over a group's neurons for a whole
window, the synaptic sums of a window one batched torch operation); on CUDA, and for programs with
recurrent projections, the whole-tensor path runs step by step (``Program.run(kernel=...)``).
"""
from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from snnc.errors import SnncError
from snnc.backends.loihi import mapping as M
from snnc.ir.device import exact_cuda
from snnc.ir.ops import apply_ops, host_current, input_bound
from snnc.backends.loihi.validate import check_program
from snnc.targets import load_target


@dataclass
class _Proj:
    source: str
    ops: list
    weight: torch.Tensor
    weight_exp: int
    delay: int
    host: bool
    host_bias: torch.Tensor | None
    bound: int = 0                    # largest possible |synaptic sum| before the exponent shift


@dataclass
class _Group:
    cfg: dict
    shape: tuple
    du_eff: int
    dv_eff: int
    vth: int
    bias_const: torch.Tensor          # int64 [*shape]
    projections: list
    u_may_wrap: bool = True           # False when |u| provably stays inside 24 bits
    scale: torch.Tensor | None = None  # float64 [*shape]: per-channel scales (quantize per_channel), else None
    # du_eff / dv_eff: ints, or int64 [*shape] tensors for per-neuron time constants (<g>.du / <g>.dv arrays)
    one: int = 4096                   # decay unity 2^decay_bits (set from the target)

    @property
    def no_u_memory(self) -> bool:
        """No synaptic-current memory anywhere in the group (du_eff = 2^decay_bits: u is replaced each step)."""
        d = self.du_eff
        return bool((d >= self.one).all()) if isinstance(d, torch.Tensor) else d >= self.one

    @property
    def no_v_leak(self) -> bool:
        d = self.dv_eff
        return bool((d == 0).all()) if isinstance(d, torch.Tensor) else d == 0

    def du_dev(self, device):
        return self.du_eff.to(device) if isinstance(self.du_eff, torch.Tensor) else self.du_eff

    def dv_dev(self, device):
        return self.dv_eff.to(device) if isinstance(self.dv_eff, torch.Tensor) else self.dv_eff


@dataclass
class SimResult:
    """Outputs and event counts of one simulation run.

    ``outputs``: ``{output name: [N, *shape]}`` (int64 voltage for a readout, spike counts otherwise).
    ``spikes``, ``active``: ``{group: [size] float64}`` totals over samples and steps.
    ``max_abs_input``: ``{group: int}`` largest |a| (synaptic input before the << 6 alignment).
    ``overflow``: ``{group: {"synaptic_input_16bit", "u_wrap_24bit", "v_saturated_24bit",
    "host_bias_clipped"}}`` -- how many (sample, step, neuron) values went beyond Loihi's 16-bit
    synaptic input (|a| > 2^15 - 1; counted, not saturated, as lava-nc's Python models), wrapped around
    the 24-bit current u, or were clipped to the 24-bit voltage range, and how many host-computed
    biases were clipped to the 13-bit mantissa (each computed bias once: per sample and neuron for a
    constant input, per step while a current ramps up). Counting does not change any result.
    ``out_scale``: ``{output: float64 [*shape]}`` for a readout with per-channel scales: the scores
    are ``outputs / out_scale`` (:meth:`scores`); the raw ``outputs`` stay the chip's integers.
    ``trace``: only with ``Program.run(..., record=True)``: ``{group: {"u", "v", "spikes"}}``, each
    ``[N, L, *shape]`` (samples, chip steps 0..L-1, neurons): u and v (int64) after step t's update and
    reset, spikes (bool) emitted at step t.
    """
    outputs: dict
    samples: int
    steps: int
    spikes: dict = field(default_factory=dict)
    active: dict = field(default_factory=dict)
    max_abs_input: dict = field(default_factory=dict)
    host_bias_clipped: int = 0
    trace: dict = field(default_factory=dict)
    input_spikes: object = None       # [prod(input shape)] float64 total input events (spike input), or None
    overflow: dict = field(default_factory=dict)
    out_scale: dict = field(default_factory=dict)

    def scores(self) -> np.ndarray:
        """Class scores of the first output: its integers, divided by the neurons' scales for a readout
        with per-channel scales (the host's step before the argmax)."""
        name, out = next(iter(self.outputs.items()))
        if name in self.out_scale:
            return out.to(torch.float64).numpy() / self.out_scale[name].numpy()
        return out.numpy()


class Program:
    """A loaded configuration, ready to simulate. ``config``/``arrays`` as written by the compiler."""

    #: the compiled CPU path simulates a window of steps per group at once; the window is cut so that
    #: the largest group's synaptic sums of one window (float32, steps x batch x neurons) take at most this
    FUSED_WINDOW_BYTES = 2 ** 28

    def __init__(self, config: dict, arrays: dict, target, where: str = "configuration", core_limits: bool = True):
        """Raises ConfigError (a ValueError) for a configuration outside the target's schema and ranges
        (``core_limits=False``: per-core limits not checked, to simulate a mapping that does not fit)."""
        check_program(config, arrays, target, where, core_limits)
        self.config, self.arrays, self.target = config, arrays, target
        fp = target["fixed_point"]
        self.fp = fp
        self.T = int(config["num_steps"])
        self.L = int(config["latency_steps"])
        self.groups: dict[str, _Group] = {}
        for g in config["groups"]:
            shape = tuple(g["shape"])
            projs = []
            for p in g["projections"]:
                w = arrays[p["weight_key"]]
                hb = arrays.get(p["weight_key"].replace(".weight", ".host_bias"))
                projs.append(_Proj(p["source"], p["ops"], torch.as_tensor(np.asarray(w, np.float64)),
                                   int(p["weight_exp"]), int(p["delay"]), bool(p["host"]),
                                   None if hb is None else torch.as_tensor(hb).reshape(shape)))
            bias = torch.as_tensor(arrays[f"{g['name']}.bias_mant"].astype(np.int64)).reshape(shape) << g["bias_exp"]
            vth = int(g["vth_mant"]) << fp["vth_shift"]
            if f"{g['name']}.vth_mant" in arrays:  # per-channel thresholds
                vth = torch.as_tensor(arrays[f"{g['name']}.vth_mant"].astype(np.int64)).reshape(shape) << fp["vth_shift"]
            du_eff, dv_eff = g["du"] + fp["ds_offset"], g["dv"] + fp["dm_offset"]
            if f"{g['name']}.du" in arrays:  # per-neuron time constants (one compartment profile per pair)
                du_eff = torch.as_tensor(arrays[f"{g['name']}.du"].astype(np.int64)).reshape(shape) + fp["ds_offset"]
                dv_eff = torch.as_tensor(arrays[f"{g['name']}.dv"].astype(np.int64)).reshape(shape) + fp["dm_offset"]
            grp = _Group(g, shape, du_eff, dv_eff, vth, bias, projs, one=2 ** fp["decay_bits"])
            if f"{g['name']}.scale" in arrays:
                grp.scale = torch.as_tensor(np.asarray(arrays[f"{g['name']}.scale"], np.float64)).reshape(shape)
            a_bound = 0
            for p, pc in zip(projs, g["projections"]):
                if not p.host:
                    p.bound = int(input_bound(p.weight, pc["ops"]).max(initial=0))
                    # float32 carries integers exactly below 2^24: use it when every partial sum stays below
                    p.weight = p.weight.to(torch.float32 if p.bound < 2 ** 24 else torch.float64)
                    a_bound += p.bound << max(p.weight_exp, 0)
            d = int(grp.du_eff.min()) if isinstance(grp.du_eff, torch.Tensor) else grp.du_eff
            one = 2 ** fp["decay_bits"]
            u_bound = (a_bound << fp["act_shift"]) * (1 if d >= one else one / max(d, 1))
            grp.u_may_wrap = u_bound >= 2 ** (fp["uv_bits"] - 1)
            self.groups[g["name"]] = grp
        if self.L >= 2 ** 15:
            raise SnncError(f"latency {self.L} steps: per-batch int16 event counters would overflow")
        self.max_delay = max((p.delay for g in self.groups.values() for p in g.projections), default=0)
        bad = [(n, p.source, p.delay) for n, g in self.groups.items() for p in g.projections if p.delay < 0]
        if bad:
            raise SnncError(f"negative synaptic delays {bad}: feedback from a later group cannot arrive in time")

    def _spike_buffer(self, name: str, shape: tuple) -> np.ndarray:
        """A uint8 array of ``shape`` for group ``name``'s spikes, kept between batches of the fused path."""
        bufs = self.__dict__.setdefault("_spike_buffers", {})
        if name not in bufs or bufs[name].shape != shape:
            bufs[name] = np.empty(shape, np.uint8)
        return bufs[name]

    @property
    def feedforward(self) -> bool:
        """Every on-chip projection comes from the input or from a group earlier in the configuration's
        order (no recurrence): the groups can be simulated one after the other over a window of steps."""
        order = {name: i for i, name in enumerate(self.groups)}
        in_name = self.config["input"]["name"]
        return all(p.host or p.source == in_name or order.get(p.source, len(order)) < order[name]
                   for name, g in self.groups.items() for p in g.projections)

    # ------------------------------------------------------------------ host
    def host_bias(self, g: _Group, x: torch.Tensor) -> tuple[list[torch.Tensor], int]:
        """Per-sample biases (int64 ``[B, *shape]``) for a group driven by a direct analog input.

        Returns one bias per group-local step 0..T-1. With no current memory (du = 4095) they
        are all the same. Otherwise the float graph's current ramps up to its steady state,
        ``i_t = i_ss (1 - alpha^(t+1))``, and the host writes that ramp step by step (alpha as
        quantized), so the chip follows the graph. Rounding: half to even (torch.round).
        """
        val = host_current(x, [(p.ops, p.weight, p.host_bias) for p in g.projections if p.host], g.shape)
        e = g.cfg["host_bias_exp"]
        mmax = 2 ** (self.fp["bias_mant_bits"] - 1) - 1
        one = 2 ** self.fp["decay_bits"]
        alpha = 1.0 - (g.du_eff.clamp(max=one).to(torch.float64) if isinstance(g.du_eff, torch.Tensor)
                       else min(g.du_eff, one)) / one
        biases, clipped, prev = [], 0, None
        bias_f = g.bias_const.to(torch.float64)
        for t in range(self.T):
            ramp = 1.0 - alpha ** (t + 1)
            if prev is not None and bool(torch.all(torch.as_tensor(ramp) == 1.0)):
                biases.append(prev)
                continue
            if g.scale is None:
                total = val * (g.cfg["scale"] * ramp)
            else:  # per-channel scales: each neuron's own
                total = val * (g.scale * ramp)
            mant = total.add_(bias_f).div_(2 ** e).round_()
            lo, hi = torch.aminmax(mant)
            if hi > mmax or lo < -mmax - 1:
                clipped += int(((mant > mmax) | (mant < -mmax - 1)).sum())
                mant.clamp_(-mmax - 1, mmax)
            prev = mant.to(torch.int64).bitwise_left_shift_(e)
            biases.append(prev)
        return biases, clipped

    # ------------------------------------------------------------------ run
    def _on(self, device: torch.device) -> dict:
        """The group tensors the chip steps read, on ``device`` (cached): ``{group: (bias_const, vth,
        [weight per projection])}``; host projections stay on the CPU (the host computes them)."""
        cache = self.__dict__.setdefault("_device_cache", {})
        if device not in cache:
            cache[device] = {n: (g.bias_const.to(device),
                                 g.vth.to(device) if isinstance(g.vth, torch.Tensor) else g.vth,
                                 [p.weight if p.host else p.weight.to(device) for p in g.projections])
                             for n, g in self.groups.items()}
        return cache[device]

    def run(self, x, batch_size: int = 500, progress=None, record: bool = False, device=None,
            kernel: str = "auto") -> SimResult:
        """Simulate every sample of ``x``.

        Args:
            x: ``[N, *input_shape]`` float analog input (encoding "direct"), or
               ``[T, N, *input_shape]`` 0/1 spikes (encoding "spikes").
            progress: callable(n_done) after each batch.
            record: keep every group's u, v and spikes at every step in ``SimResult.trace``
                (memory: 17 bytes per neuron, step and sample; for step-by-step comparisons).
            device: torch device for the chip's integer steps (default CPU; :func:`snnc.ir.device.resolve`
                gives ``auto``). The host's first-layer currents are computed on the CPU either way; on
                CUDA, TF32 is off while it runs, so every product and sum is exact (float32 only where every
                partial sum stays below 2^24, else float64 rounded) and the results equal the CPU's bit
                for bit. Results come back on the CPU.
            kernel: ``"auto"`` (on the CPU, for a feed-forward program, the compiled compartment update
                of :mod:`snnc.backends.loihi.kernels`, one pass per group and window of steps; the tensor
                path on other devices and for recurrent programs), ``"fused"`` (the compiled kernel; CPU only) or ``"tensor"`` (whole-tensor
                torch operations on any device). Both give the same results bit for bit (tested).

        Raises:
            ValueError: input of the wrong shape, spike input other than 0/1, or ``kernel="fused"``
                on a device other than the CPU.
        """
        device = torch.device("cpu") if device is None else torch.device(device)
        if kernel not in ("auto", "fused", "tensor"):
            raise SnncError(f"kernel must be 'auto', 'fused' or 'tensor', got {kernel!r}")
        if kernel == "fused" and device.type != "cpu":
            raise SnncError(f"kernel='fused' runs on the CPU only, not on {device}")
        if kernel == "fused" and not self.feedforward:
            raise SnncError("kernel='fused' simulates feed-forward programs only; this one has a recurrent "
                            "projection (use kernel='tensor' or 'auto')")
        fused = kernel == "fused" or (kernel == "auto" and device.type == "cpu" and self.feedforward)
        if device.type == "cuda":
            with exact_cuda():
                return self._run(x, batch_size, progress, record, device, fused)
        return self._run(x, batch_size, progress, record, device, fused)

    def _run(self, x, batch_size, progress, record, device, fused=False) -> SimResult:
        x = torch.as_tensor(np.asarray(x))
        spikes_in = self.config["input"]["encoding"] == "spikes"
        shape = tuple(self.config["input"]["shape"])
        want = (self.T,) + ("N",) + shape if spikes_in else ("N",) + shape
        if x.dim() != len(want) or tuple(x.shape[-len(shape):]) != shape or (spikes_in and x.shape[0] != self.T):
            raise SnncError(f"input of shape {tuple(x.shape)}; this program takes {want} "
                             f"({'spikes, time-major' if spikes_in else 'analog samples'})")
        if spikes_in and not bool(((x == 0) | (x == 1)).all()):
            raise SnncError("spike input must hold only 0 and 1")
        N = x.shape[1] if spikes_in else x.shape[0]
        outs: dict[str, list] = {o["name"]: [] for o in self.config["outputs"]}
        res = SimResult(outputs={}, samples=N, steps=self.L)
        for name, g in self.groups.items():
            res.spikes[name] = torch.zeros(int(np.prod(g.shape)), dtype=torch.int64)
            res.active[name] = torch.zeros(int(np.prod(g.shape)), dtype=torch.int64)
            res.max_abs_input[name] = 0
            res.overflow[name] = {"synaptic_input_16bit": 0, "u_wrap_24bit": 0, "v_saturated_24bit": 0,
                                  "host_bias_clipped": 0}
        for o in self.config["outputs"]:
            g = self.groups[o["group"]]
            if g.scale is not None and g.cfg["kind"] != "spiking":
                res.out_scale[o["name"]] = g.scale
        for i in range(0, N, batch_size):
            xb = x[:, i:i + batch_size] if spikes_in else x[i:i + batch_size]
            rec = {name: {"u": [], "v": [], "spikes": []} for name in self.groups} if record else None
            if fused:
                o = self._run_batch_fused(xb.to(torch.float64), res, rec)
            else:
                o = self._run_batch(xb.to(torch.float64), res, rec, device)
            if record:
                for name, tr in rec.items():
                    for key, steps in tr.items():
                        res.trace.setdefault(name, {}).setdefault(key, []).append(torch.stack(steps, 1).cpu())
            for k, v in o.items():
                outs[k].append(v.cpu())
            if progress:
                progress(min(i + batch_size, N))
        res.outputs = {k: torch.cat(v) for k, v in outs.items()}
        res.trace = {g: {k: torch.cat(v) for k, v in tr.items()} for g, tr in res.trace.items()}
        if spikes_in:  # every input event reaches its synapses (counted as SynOps by energy.measure)
            res.input_spikes = x.reshape(x.shape[0], x.shape[1], -1).sum((0, 1)).to(torch.float64)
        res.spikes = {k: v.to(torch.float64) for k, v in res.spikes.items()}
        res.active = {k: v.to(torch.float64) for k, v in res.active.items()}
        return res

    def _run_batch(self, x_host: torch.Tensor, res: SimResult, rec: dict | None = None,
                   device: torch.device = torch.device("cpu")) -> dict:
        fp = self.fp
        on = self._on(device)
        x = x_host.to(device)
        spikes_in = self.config["input"]["encoding"] == "spikes"
        B = x.shape[1] if spikes_in else x.shape[0]
        in_name = self.config["input"]["name"]
        umax = 2 ** (fp["uv_bits"] - 1)
        a_lim = 2 ** (fp["syn_input_bits"] - 1) - 1
        dbits = fp["decay_bits"]
        state, hist, host, n_spk, n_act = {}, {}, {}, {}, {}
        for name, g in self.groups.items():
            z = torch.zeros((B,) + g.shape, dtype=torch.int64, device=device)
            state[name] = [z, z.clone()]
            hist[name] = []
            n_spk[name] = torch.zeros((B,) + g.shape, dtype=torch.int16, device=device)  # per-batch (<= L steps)
            n_act[name] = torch.zeros((B,) + g.shape, dtype=torch.int16, device=device)
            if any(p.host for p in g.projections):
                biases, clipped = self.host_bias(g, x_host)  # the host's work: on the CPU
                host[name] = [b.to(device) for b in biases]
                res.host_bias_clipped += clipped
                res.overflow[name]["host_bias_clipped"] += clipped
        zero = torch.zeros((), dtype=torch.int64, device=device)
        out_vals = {}
        spike_window = {o["name"]: torch.zeros((B,) + self.groups[o["group"]].shape, dtype=torch.int64, device=device)
                        for o in self.config["outputs"] if self.groups[o["group"]].cfg["kind"] == "spiking"}
        for t in range(self.L):
            new_spikes = {}
            for name, g in self.groups.items():
                a = None
                bias_const, vth, weights = on[name]
                for p, w in zip(g.projections, weights):
                    if p.host:
                        continue
                    ts = t - 1 - p.delay
                    if p.source == in_name:
                        if not spikes_in or ts < 0 or ts >= self.T:
                            continue
                        src = x[ts]
                    else:
                        h = hist[p.source]
                        back = t - 1 - ts  # 0 = previous step
                        if ts < 0 or back >= len(h):
                            continue
                        src = h[-1 - back]
                    acc = apply_ops(src.to(w.dtype), p.ops, w)
                    if p.weight.dtype == torch.float64:
                        acc = torch.round(acc)
                    acc = acc.to(torch.int64).reshape((B,) + g.shape)
                    acc = acc << p.weight_exp if p.weight_exp >= 0 else acc >> (-p.weight_exp)
                    a = acc if a is None else a.add_(acc)
                u, v = state[name]
                if a is not None:
                    lo, hi = torch.aminmax(a)
                    res.max_abs_input[name] = max(res.max_abs_input[name], int(-lo), int(hi))
                    if hi > a_lim or lo < -a_lim:
                        res.overflow[name]["synaptic_input_16bit"] += int(((a > a_lim) | (a < -a_lim)).sum())
                    a <<= fp["act_shift"]
                if g.no_u_memory:
                    if a is not None:
                        u = a
                    elif u.any():
                        u = torch.zeros_like(u)
                else:
                    u = _decay(u, g.du_dev(device), dbits)
                    if a is not None:
                        u.add_(a)
                if g.u_may_wrap:
                    lo, hi = torch.aminmax(u)
                    if hi > umax or lo <= -umax:  # 24-bit wrap-around, as lava
                        res.overflow[name]["u_wrap_24bit"] += int(((u > umax) | (u <= -umax)).sum())
                        u = torch.where(u > umax, u - 2 * umax, u)
                        u = torch.where(u <= -umax, u + 2 * umax, u)
                off = g.cfg["offset"]
                if t < g.cfg.get("bias_from", off):  # at rest until its first input arrives: the bias starts then
                    bias = zero
                elif name in host and off <= t < off + self.T:
                    bias = host[name][t - off]
                else:
                    bias = bias_const
                v = (v.clone() if g.no_v_leak else _decay(v, g.dv_dev(device), dbits)).add_(u).add_(bias)
                lo, hi = torch.aminmax(v)
                if hi > umax - 1 or lo < -umax + 1:
                    res.overflow[name]["v_saturated_24bit"] += int(((v > umax - 1) | (v < -umax + 1)).sum())
                    v.clamp_(-umax + 1, umax - 1)
                s = v > vth
                v.masked_fill_(s, 0)
                state[name] = [u, v]
                new_spikes[name] = s
                if rec is not None:
                    rec[name]["u"].append(u.clone())
                    rec[name]["v"].append(v.clone())
                    rec[name]["spikes"].append(s.clone())
                n_spk[name].add_(s)
                act = (v != 0).logical_or_(s)
                if a is not None or not g.no_u_memory:
                    act.logical_or_(u != 0)
                n_act[name].add_(act)
            for name, s in new_spikes.items():
                hist[name].append(s)
                if len(hist[name]) > self.max_delay + 1:
                    hist[name].pop(0)
            for o in self.config["outputs"]:
                g = self.groups[o["group"]]
                if g.cfg["kind"] == "spiking":
                    if g.cfg["offset"] <= t < g.cfg["offset"] + self.T:
                        spike_window[o["name"]] += new_spikes[o["group"]].to(torch.int64)
                    if t == o["read_step"]:
                        out_vals[o["name"]] = spike_window[o["name"]].clone()
                elif t == o["read_step"]:
                    out_vals[o["name"]] = state[o["group"]][1].clone()
        for name in self.groups:
            res.spikes[name] += n_spk[name].reshape(B, -1).sum(0).cpu()
            res.active[name] += n_act[name].reshape(B, -1).sum(0).cpu()
        return out_vals


    def _run_batch_fused(self, x: torch.Tensor, res: SimResult, rec: dict | None = None) -> dict:
        """:meth:`_run_batch` on the CPU, layer by layer over windows of steps, with the compartment
        update of :func:`.kernels.lif_window` (feed-forward programs only: :attr:`feedforward`)."""
        from snnc.backends.loihi.kernels import lif_window, sum_pool
        fp = self.fp
        on = self._on(torch.device("cpu"))
        spikes_in = self.config["input"]["encoding"] == "spikes"
        B = x.shape[1] if spikes_in else x.shape[0]
        in_name = self.config["input"]["name"]
        half = 2 ** (fp["uv_bits"] - 1)
        a_lim = 2 ** (fp["syn_input_bits"] - 1) - 1
        L = self.L
        size = {n: int(np.prod(g.shape)) for n, g in self.groups.items()}
        W = int(max(1, min(L, self.FUSED_WINDOW_BYTES // (4 * B * max(size.values(), default=1)))))
        keep = self.max_delay + 1           # source steps a window reaches back for
        chunks = 4 * max(1, numba_threads())
        none = np.zeros((0, 1, 1), np.float32)
        none64 = np.zeros((0, 1, 1), np.int64)
        xs = x.to(torch.float32) if spikes_in else None
        st, buf = {}, {}
        for name, g in self.groups.items():
            n = size[name]
            bias_const, vth, _ = on[name]
            s = {"v": np.zeros((B, n), np.int64), "u": np.zeros((B, n), np.int64),
                 "n_spk": np.zeros(n, np.int64), "n_act": np.zeros(n, np.int64),
                 "stats": np.zeros((1 if n * B * L < 2 ** 16 else min(n, chunks), 4), np.int64),
                 "bias": bias_const.to(torch.int64).reshape(-1).numpy(),
                 "du": _per_neuron(g.du_eff, n), "dv": _per_neuron(g.dv_eff, n), "vth": _per_neuron(vth, n),
                 "host": np.zeros((0, 1, n), np.int64), "host_idx": {}}
            if any(p.host for p in g.projections):
                biases, clipped = self.host_bias(g, x)
                res.host_bias_clipped += clipped
                res.overflow[name]["host_bias_clipped"] += clipped
                uniq = []
                for b in biases:
                    if not any(b is q for q in uniq):
                        uniq.append(b)
                s["host"] = np.ascontiguousarray(torch.stack(uniq).reshape(len(uniq), B, n).numpy())
                s["host_idx"] = {j: next(i for i, q in enumerate(uniq) if q is b) for j, b in enumerate(biases)}
            st[name] = s
        out_vals = {}
        outs = {o["name"]: o for o in self.config["outputs"]}
        v_read = {o["name"]: np.zeros((B, size[o["group"]]), np.int64) for o in outs.values()}
        counts = {o["name"]: torch.zeros((B, size[o["group"]]), dtype=torch.int64) for o in outs.values()
                  if self.groups[o["group"]].cfg["kind"] == "spiking"}
        for t0 in range(0, L, W):
            t1 = min(L, t0 + W)
            w = t1 - t0
            for name, g in self.groups.items():
                n = size[name]
                s = st[name]
                acc, exp, acc_t0 = None, 0, 0
                for p, wt in zip(g.projections, on[name][2]):
                    if p.host:
                        continue
                    # step t receives the source's spikes of step t - 1 - delay
                    lo, hi = t0 - 1 - p.delay, t1 - 1 - p.delay
                    if p.source == in_name:
                        a_lo, a_hi = max(lo, 0), min(hi, self.T if spikes_in else 0)
                        src = xs[a_lo:a_hi] if a_hi > a_lo else None
                    else:
                        start, arr = buf[p.source]
                        a_lo, a_hi = max(lo, 0), hi
                        src = arr[a_lo - start:a_hi - start] if a_hi > a_lo else None
                    if src is None:
                        continue
                    nv = a_hi - a_lo
                    srcs = src.reshape((nv * B,) + tuple(src.shape[2:]))
                    ops = p.ops
                    if ops and ops[0]["op"] == "sum_pool2d" and len(set(ops[0]["kernel"])) == 1 and srcs.dim() == 4:
                        srcs = torch.from_numpy(sum_pool(srcs.numpy(), int(ops[0]["kernel"][0])))  # 0/1 sums: exact
                        ops = ops[1:]
                    one = apply_ops(srcs if srcs.dtype == wt.dtype else srcs.to(wt.dtype), ops, wt)
                    one = one.reshape(nv, B, n)
                    if wt.dtype == torch.float64:
                        one = torch.round(one).to(torch.int64)
                    first = a_lo + 1 + p.delay - t0  # the window step that receives src's first step
                    if acc is None and one.dtype == torch.float32:
                        acc, exp, acc_t0 = one, p.weight_exp, first
                        continue
                    if acc is not None and (acc.dtype == torch.float32 or acc_t0 != 0 or len(acc) != w):
                        acc, exp = _pad_steps(_shifted(acc.to(torch.int64), exp), acc_t0, w), 0  # a second projection:
                        acc_t0 = 0                                                               # sum in int64
                    one = _pad_steps(_shifted(one.to(torch.int64), p.weight_exp), first, w)
                    acc, acc_t0 = (one if acc is None else acc.add_(one)), 0
                off = g.cfg["offset"]
                code = np.full(w, -1, np.int64)
                for i, t in enumerate(range(t0, t1)):
                    if t < g.cfg.get("bias_from", off):
                        code[i] = -2
                    elif s["host_idx"] and off <= t < off + self.T:
                        code[i] = s["host_idx"][t - off]
                if w == L:  # one window per batch: the spike buffer is reused by the next batch (no page faults)
                    spk = self._spike_buffer(name, (w, B, n))
                else:
                    spk = np.empty((w, B, n), np.uint8)
                ru = rv = none64
                if rec is not None:
                    ru, rv = np.empty((w, B, n), np.int64), np.empty((w, B, n), np.int64)
                reads = [o for o in outs.values() if o["group"] == name and g.cfg["kind"] != "spiking"]
                read_t = np.array([o["read_step"] - t0 if t0 <= o["read_step"] < t1 else -1 for o in reads] or [-1],
                                  np.int64)
                vr = np.zeros((len(read_t), B, n), np.int64)
                lif_window(s["v"], s["u"], none if acc is None else np.ascontiguousarray(acc.numpy()), int(acc_t0), int(exp),
                           code, s["host"], s["bias"], s["du"], s["dv"], s["vth"], half, a_lim, fp["act_shift"],
                           fp["decay_bits"], spk, s["n_spk"], s["n_act"], s["stats"], ru, rv,
                           read_t, vr)
                for r, o in enumerate(reads):
                    if read_t[r] >= 0:
                        v_read[o["name"]] = vr[r]
                if acc is not None:
                    res.max_abs_input[name] = max(res.max_abs_input[name], int(s["stats"][:, 0].max()))
                    res.overflow[name]["synaptic_input_16bit"] += int(s["stats"][:, 1].sum())
                res.overflow[name]["u_wrap_24bit"] += int(s["stats"][:, 2].sum())
                res.overflow[name]["v_saturated_24bit"] += int(s["stats"][:, 3].sum())
                sp = torch.from_numpy(spk).reshape((w, B) + g.shape)
                if t0 == 0 and t1 == L:
                    buf[name] = (0, sp)
                else:  # keep the last steps a later window's projections reach back for
                    start, prev = buf.get(name, (t0, sp[:0]))
                    prev = prev[max(0, t0 - keep - start):]
                    buf[name] = (t0 - len(prev), torch.cat([prev, sp]))
                if rec is not None:
                    shp = (w, B) + g.shape
                    rec[name]["u"].extend(torch.from_numpy(ru).reshape(shp).unbind(0))
                    rec[name]["v"].extend(torch.from_numpy(rv).reshape(shp).unbind(0))
                    rec[name]["spikes"].extend((sp > 0).unbind(0))
                for o in outs.values():
                    if o["group"] == name and o["name"] in counts:
                        a, b = max(t0, off), min(t1, off + self.T, o["read_step"] + 1)
                        if b > a:
                            counts[o["name"]] += sp[a - t0:b - t0].reshape(b - a, B, n).to(torch.int64).sum(0)
        for o in outs.values():
            g = self.groups[o["group"]]
            val = counts[o["name"]] if o["name"] in counts else torch.from_numpy(v_read[o["name"]])
            out_vals[o["name"]] = val.reshape((B,) + g.shape)
        for name in self.groups:
            res.spikes[name] += torch.from_numpy(st[name]["n_spk"])
            res.active[name] += torch.from_numpy(st[name]["n_act"])
        return out_vals


def numba_threads() -> int:
    """numba's thread count (the compiled kernel's parallel chunks)."""
    import numba
    return int(numba.get_num_threads())


def _per_neuron(x, n: int) -> np.ndarray:
    """An int, or an int tensor of a group's shape, as int64 ``[n]`` (the kernel's layout)."""
    if isinstance(x, torch.Tensor):
        return np.ascontiguousarray(x.to(torch.int64).reshape(-1).numpy())
    return np.full(n, int(x), np.int64)


def _pad_steps(a: torch.Tensor, t0: int, w: int) -> torch.Tensor:
    """``a`` (steps ``t0 ..`` of a window of ``w``) with zero steps around it: ``[w, ...]``."""
    if t0 == 0 and len(a) == w:
        return a
    full = torch.zeros((w,) + tuple(a.shape[1:]), dtype=a.dtype)
    full[t0:t0 + len(a)] = a
    return full


def _shifted(a: torch.Tensor, e: int) -> torch.Tensor:
    return a << e if e >= 0 else a >> (-e)


def _decay(x: torch.Tensor, d: int, bits: int = 12) -> torch.Tensor:
    """``sign(x) * ((|x| * (2^bits - d)) >> bits)``: the product divided by 2^bits, truncated toward zero
    (computed with shifts: add 2^bits - 1 to negative products before the arithmetic shift)."""
    y = x * (2 ** bits - d)
    y.add_((y >> 63) & (2 ** bits - 1))
    return y.__irshift__(bits)


def load_program(out_dir, target=None) -> Program:
    """Load ``config.json`` + ``weights.npz`` from a compile output folder and validate them
    (:func:`~snnc.backends.loihi.validate.check_program`).

    Raises:
        ValueError: not a compile output folder, unreadable or corrupt files, or a configuration
            outside the target's schema and ranges (ConfigError).
    """
    out_dir = Path(out_dir)
    cfg_path, w_path = out_dir / "config.json", out_dir / "weights.npz"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise SnncError(f"{out_dir}: not a compile output folder (missing {p.name})")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SnncError(f"{cfg_path}: not readable JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise SnncError(f"{cfg_path}: must hold a JSON object, not a {type(config).__name__}")
    try:
        with np.load(w_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SnncError(f"{w_path}: not a readable .npz file ({msg})") from None
    if config.get("format") != "snnc-loihi-sim":
        raise SnncError(f"{cfg_path}: not a loihi-sim configuration (format is {config.get('format')!r}, "
                         "expected 'snnc-loihi-sim')")
    if target is None:
        name = config.get("target")
        if not isinstance(name, str) or not name:
            raise SnncError(f"{cfg_path}: names no target")
        target = load_target(name)
    return Program(config, arrays, target, where=str(out_dir))


def slice_counts_for(program: Program) -> dict:
    """Per group and on-chip projection: ``[K slices, src]`` synapse counts for the final slices."""
    out = {}
    for g in program.config["groups"]:
        chip = [p for p in g["projections"] if not p["host"]]
        mws = [torch.as_tensor((np.asarray(program.arrays[p["weight_key"]]) != 0).astype(np.float32)) for p in chip]
        bounds = [(s["start"], s["stop"]) for s in g["slices"]]
        out[g["name"]] = M.count_slices(g, chip, mws, bounds)
    return out
