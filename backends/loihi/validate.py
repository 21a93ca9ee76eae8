"""What a loihi-sim configuration may hold: schema and field ranges of the target.

:func:`check_program` is applied to every configuration the compiler emits (before
anything is written) and to every compile output folder that ``snnc simulate`` /
``snnc inspect`` read back, so a configuration outside the target's fields is refused,
never simulated. The ranges come from the target's ``[fixed_point]``, ``[core]`` and
``[synapse_format]`` tables (``snnc/targets/loihi-sim.toml``, with their sources: lava-nc
``AbstractPyLifModelFixed`` / ``PyDenseModelBitAcc``, Davies et al. 2018, nengo-loihi):

==================  =========================================================
du, dv              0 .. 2^decay_bits - 1 (12-bit)
vth_mant            1 .. vth_mant_max (17-bit unsigned; 0 allowed for readouts); with per-channel
                    scales also ``<g>.vth_mant`` per neuron (1 .. the group's vth_mant) and
                    ``<g>.scale`` (positive, per neuron)
bias_mant           signed ``bias_mant_bits`` (13-bit); bias_exp 0 .. bias_exp_max
weight mantissas    whole numbers in [-2^B, 2^B - step], multiples of step = 2^(B + 1 - weight_bits), B the
                    target's [synapse_format].weight_bits (8 on Loihi 1: [-256, 254] at 8 bits; lava
                    ``truncate_weights``, mixed sign); weight_exp in weight_exp_min..max
delay               0 .. max_delay steps
per core            neurons, input/output axons, synaptic memory within ``[core]``
==================  =========================================================

It also checks the structure the simulator relies on: group and projection fields of the
right types, sources that exist with matching shapes, synapse ops that map the source's
shape onto the group's, weight arrays of the shape the ops need, slices that tile each
group, outputs read inside the run.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from snnc.errors import SnncError
from snnc.backends.loihi.mapping import conv_padding, padded_shape
from snnc.backends.loihi.rules import core_range_problems
from snnc.ir.ops import apply_ops

MAX_LATENCY = 2 ** 15 - 1  # the simulator counts events per batch in int16
MAX_PROBLEMS_SHOWN = 6


class ConfigError(SnncError):
    """A loihi-sim configuration that breaks the schema or the target's field ranges."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = f" (and {len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        super().__init__(f"{where}: invalid loihi-sim configuration: {shown}{more}")


def _int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _in(v, lo, hi) -> bool:
    return _int(v) and lo <= v <= hi


def _shape(v) -> bool:
    return isinstance(v, list) and len(v) >= 1 and all(_in(x, 1, 2 ** 31) for x in v)


_OP_KEYS = {"sum_pool2d": {"kernel"}, "flatten": {"start_dim", "end_dim"},
            "conv2d": {"node", "stride", "padding", "dilation", "groups"}, "dense": {"node"},
            "max_pool2d": {"kernel", "stride", "padding"}}


def _check_ops(ops, host: bool = False) -> str | None:
    if not isinstance(ops, list) or not ops:
        return "ops must be a non-empty list"
    weighted = 0
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in _OP_KEYS:
            return f"unknown synapse op {op!r}"
        if not _OP_KEYS[op["op"]] <= set(op):
            return f"op {op['op']} lacks {sorted(_OP_KEYS[op['op']] - set(op))}"
        kind = op["op"]
        if kind in ("sum_pool2d", "max_pool2d") and not (isinstance(op["kernel"], list) and len(op["kernel"]) == 2 and
                                                         all(_in(k, 1, 4096) for k in op["kernel"])):
            return f"{kind} kernel {op['kernel']!r}"
        if kind == "max_pool2d":
            if not host:
                return "max_pool2d is computed by the host only (a direct-input projection)"
            for k, lo in (("stride", 1), ("padding", 0)):
                if not (isinstance(op[k], list) and len(op[k]) == 2 and all(_in(x, lo, 4096) for x in op[k])):
                    return f"max_pool2d {k} {op[k]!r}"
        if kind == "flatten" and not (_in(op["start_dim"], -8, 8) and _in(op["end_dim"], -8, 8)):
            return f"flatten dims {op['start_dim']!r}, {op['end_dim']!r}"
        if kind == "conv2d":
            for k, lo in (("stride", 1), ("padding", 0), ("dilation", 1)):
                if not (isinstance(op[k], list) and len(op[k]) == 2 and all(_in(x, lo, 4096) for x in op[k])):
                    return f"conv2d {k} {op[k]!r}"
            if not _in(op["groups"], 1, 2 ** 16):
                return f"conv2d groups {op['groups']!r}"
        if kind in ("conv2d", "dense"):
            weighted += 1
    if weighted != 1:
        return "ops must hold exactly one conv2d or dense"
    after = [op["op"] for op in ops[[o["op"] for o in ops].index("conv2d" if any(o["op"] == "conv2d" for o in ops)
                                                                 else "dense") + 1:]]
    if any(k not in (("flatten", "max_pool2d") if host else ("flatten",)) for k in after):
        return f"ops after the weighted one may only flatten{' or max-pool (host)' if host else ''}, got {after}"
    return None


def _conv_reach(g: dict, projs: list, arrays) -> tuple | None:
    """Elementwise largest ``(top, bottom, left, right)`` reach beyond the group of its on-chip convolutions
    (:func:`snnc.backends.loihi.mapping.conv_padding`), or None when it has no on-chip convolution."""
    out = None
    for p in projs:
        if not isinstance(p, dict) or p.get("host") or not any(isinstance(o, dict) and o.get("op") == "conv2d"
                                                                for o in p.get("ops", [])):
            continue
        w = arrays.get(p.get("weight_key")) if hasattr(arrays, "get") else None
        if w is None or np.ndim(w) != 4:
            continue
        r = conv_padding(p, np.shape(w)[2:], g["shape"]) or (0, 0, 0, 0)
        out = r if out is None else tuple(max(a, b) for a, b in zip(out, r))
    return out


def check_program(config, arrays, target, where: str = "configuration", core_limits: bool = True) -> None:
    """Validate a loihi-sim ``config`` (the ``config.json`` dict) and its ``arrays`` (``weights.npz``)
    against ``target``. ``core_limits=False`` skips the per-core neuron/axon/memory limits (to simulate
    a mapping that does not fit, e.g. to measure an unpruned model before compression).

    Raises:
        ConfigError: every problem found (the first few in the message; all in ``.problems``).
    """
    P: list[str] = []
    if not isinstance(config, dict):
        raise ConfigError(where, [f"config.json must hold an object, not {type(config).__name__}"])
    if not isinstance(arrays, dict):
        raise ConfigError(where, ["weights must be a mapping of arrays"])
    if config.get("format") != "snnc-loihi-sim":
        raise ConfigError(where, [f"format is {config.get('format')!r}, expected 'snnc-loihi-sim'"])
    if config.get("version") != 1:
        P.append(f"version {config.get('version')!r} (this snnc reads 1)")
    fp, core_lim, fmt = target["fixed_point"], target["core"], target["synapse_format"]
    T, L = config.get("num_steps"), config.get("latency_steps")
    if not _in(T, 1, MAX_LATENCY):
        P.append(f"num_steps {T!r} is not a whole number in 1..{MAX_LATENCY}")
        T = None
    if not _in(L, T or 1, MAX_LATENCY):
        P.append(f"latency_steps {L!r} is not a whole number in num_steps..{MAX_LATENCY}")
        L = None
    dt = config.get("dt")
    if dt is not None and not (isinstance(dt, numbers.Real) and math.isfinite(dt) and dt > 0):
        P.append(f"dt {dt!r} is not a positive time in s")
    inp = config.get("input")
    in_name = in_shape = None
    if not isinstance(inp, dict) or not isinstance(inp.get("name"), str) or not _shape(inp.get("shape")) or \
            inp.get("encoding") not in ("direct", "spikes"):
        P.append("input must have a name, a shape of positive whole numbers and encoding 'direct' or 'spikes'")
    else:
        in_name, in_shape = inp["name"], inp["shape"]
    groups = config.get("groups")
    if not isinstance(groups, list) or not groups:
        P.append("groups must be a non-empty list")
        raise ConfigError(where, P)
    cores = config.get("cores")
    if not isinstance(cores, list) or not cores:
        P.append("cores must be a non-empty list")
        raise ConfigError(where, P)
    one = 2 ** fp["decay_bits"]
    bmax = 2 ** (fp["bias_mant_bits"] - 1)
    shapes = {}
    if in_name is not None:
        shapes[in_name] = in_shape
    names = []
    for gi, g in enumerate(groups):
        if not isinstance(g, dict) or not isinstance(g.get("name"), str):
            P.append(f"group #{gi} is not an object with a name")
            continue
        if g["name"] in shapes:
            P.append(f"group name {g['name']!r} is used twice (or is the input's)")
        if _shape(g.get("shape")):
            shapes[g["name"]] = g["shape"]
        names.append(g["name"])
    core_neurons = [0] * len(cores)
    for g in groups:
        if not isinstance(g, dict) or not isinstance(g.get("name"), str):
            continue
        n = g["name"]
        gw = f"group {n}"
        if not _shape(g.get("shape")):
            P.append(f"{gw}: shape {g.get('shape')!r}")
            continue
        size = int(np.prod(g["shape"]))
        if g.get("size") != size:
            P.append(f"{gw}: size {g.get('size')!r} != product of its shape {size}")
        kind = g.get("kind")
        if kind not in ("spiking", "readout"):
            P.append(f"{gw}: kind {kind!r} (spiking or readout)")
        for key, lo, hi in (("du", 0, one - 1), ("dv", 0, one - 1),
                            ("vth_mant", 1 if kind == "spiking" else 0, fp["vth_mant_max"]),
                            ("bias_exp", 0, fp["bias_exp_max"]), ("host_bias_exp", -1, fp["bias_exp_max"])):
            if not _in(g.get(key), lo, hi):
                P.append(f"{gw}: {key} = {g.get(key)!r} is outside {lo}..{hi}")
        s = g.get("scale")
        if not (isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0):
            P.append(f"{gw}: scale {s!r} is not a positive finite number")
        want_reset = "zero" if kind == "spiking" else "none"
        if g.get("reset") != want_reset:
            P.append(f"{gw}: reset {g.get('reset')!r}; loihi-sim {kind} groups reset {want_reset!r} "
                     "(lava-nc PyLifModelBitAcc resets v to 0)")
        max_off = (L - T) if (L is not None and T is not None) else MAX_LATENCY
        if not _in(g.get("offset"), 0, max_off):
            P.append(f"{gw}: offset {g.get('offset')!r} is outside 0..{max_off}")
        if "bias_from" in g and not _in(g.get("bias_from"), 0, g.get("offset") if _in(g.get("offset"), 0, max_off)
                                        else 0):
            P.append(f"{gw}: bias_from {g.get('bias_from')!r} is outside 0..offset")
        bm = arrays.get(f"{n}.bias_mant")
        if bm is None:
            P.append(f"{gw}: weights lack {n}.bias_mant")
        else:
            P.extend(_int_array(bm, f"{gw}: bias_mant", size, -bmax, bmax - 1, f"the {fp['bias_mant_bits']}-bit range "))
        P.extend(_check_per_channel(g, gw, size, kind, arrays, fp))
        for key in ("du", "dv"):  # per-neuron time constants: 12-bit fields per neuron, both or neither
            if f"{g['name']}.{key}" in arrays:
                P.extend(_int_array(arrays[f"{g['name']}.{key}"], f"{gw}: {g['name']}.{key}", size, 0, one - 1))
        if (f"{g['name']}.du" in arrays) != (f"{g['name']}.dv" in arrays):
            P.append(f"{gw}: per-neuron decays need both {g['name']}.du and {g['name']}.dv")
        projs = g.get("projections")
        if not isinstance(projs, list) or not projs:
            P.append(f"{gw}: projections must be a non-empty list")
            projs = []
        for pi, p in enumerate(projs):
            P.extend(_check_projection(p, f"{gw} projection {pi}", g, size, shapes, in_name, inp, arrays, fp, fmt))
        slices = g.get("slices")
        if not isinstance(slices, list) or not slices:
            P.append(f"{gw}: slices must be a non-empty list")
            continue
        pad = g.get("padding")
        if pad is not None:
            reach = _conv_reach(g, projs, arrays)
            if not (isinstance(pad, list) and len(pad) == 4 and all(_in(v, 0, 2 ** 16) for v in pad)
                    and len(g["shape"]) == 3 and any(pad) and reach is not None
                    and all(v <= r for v, r in zip(pad, reach))):
                P.append(f"{gw}: padding {pad!r} must be [top, bottom, left, right] of a (C, H, W) group, not all 0, "
                         f"within what its convolutions reach ({list(reach) if reach else None})")
                pad = None
        n_cx_total = 0
        pos = 0
        for sl in slices:
            if not isinstance(sl, dict) or not _in(sl.get("core"), 0, len(cores) - 1) or \
                    sl.get("start") != pos or not _in(sl.get("stop"), pos + 1, size):
                P.append(f"{gw}: slices must tile neurons 0..{size} in order on existing cores (bad: {sl!r})")
                break
            n_cx = sl["stop"] - sl["start"]
            if "compartments" in sl:  # a padded layout's slice: its compartments, padding included
                if pad is None or not _in(sl["compartments"], n_cx, core_lim["neurons"]):
                    P.append(f"{gw}: slice {sl!r}: compartments must be {n_cx}..{core_lim['neurons']} "
                             "and the group padded")
                    break
                n_cx = sl["compartments"]
                u = sl.get("units")
                grid = int(np.prod(padded_shape(g["shape"], pad)[1:]))
                if not (isinstance(u, list) and len(u) == 2 and _in(u[0], 0, grid - 1) and _in(u[1], u[0] + 1, grid)
                        and n_cx % (u[1] - u[0]) == 0):
                    P.append(f"{gw}: slice {sl!r}: units must be [first, end) positions of the padded grid "
                             f"(0..{grid}) that its compartments are a multiple of")
                    break
            core_neurons[sl["core"]] += n_cx
            n_cx_total += n_cx
            pos = sl["stop"]
        else:
            if pos != size:
                P.append(f"{gw}: slices cover {pos} of {size} neurons")
            grid = int(np.prod(padded_shape(g["shape"], pad))) if pad else size
            if n_cx_total > grid:
                P.append(f"{gw}: its slices take {n_cx_total} compartments, more than its padded grid's {grid}")
    for ci, c in enumerate(cores):
        if not isinstance(c, dict) or c.get("core") != ci:
            P.append(f"core #{ci}: must be an object with core = {ci}")
            continue
        if not _in(c.get("chip"), 0, 2 ** 20) or c["chip"] != ci // target["chip"]["cores"]:
            P.append(f"core {ci}: chip {c.get('chip')!r} (a chip holds {target['chip']['cores']} cores)")
        P += core_range_problems(c, core_lim, ci, core_limits, _in)
        if not _in(c.get("synapses"), 0, 2 ** 62):
            P.append(f"core {ci}: synapses {c.get('synapses')!r}")
        if c.get("neurons") != core_neurons[ci]:
            P.append(f"core {ci}: claims {c.get('neurons')!r} neurons, its slices hold {core_neurons[ci]}")
    outs = config.get("outputs")
    if not isinstance(outs, list) or not outs:
        P.append("outputs must be a non-empty list")
    else:
        for o in outs:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str) or o.get("group") not in names or \
                    not _in(o.get("read_step"), 0, (L or MAX_LATENCY) - 1):
                P.append(f"output {o!r}: needs a name, an existing group and a read_step inside the run")
    if P:
        raise ConfigError(where, P)


def _check_per_channel(g, gw, size, kind, arrays, fp) -> list[str]:
    """Per-channel scales (``per_channel``: true): ``<g>.scale`` (positive finite, one per neuron) and,
    for a spiking group, ``<g>.vth_mant`` (1..vth_mant_max per neuron, at most the group's vth_mant)."""
    out = []
    n = g["name"]
    pc = g.get("per_channel", False)
    if not isinstance(pc, bool):
        return [f"{gw}: per_channel must be true or false"]
    has = [k for k in (f"{n}.scale", f"{n}.vth_mant") if k in arrays]
    if not pc:
        return [f"{gw}: weights hold {', '.join(has)} but the group is not per_channel"] if has else []
    sc = arrays.get(f"{n}.scale")
    if sc is None:
        out.append(f"{gw}: per_channel without {n}.scale")
    else:
        sc = np.asarray(sc)
        if sc.dtype.kind != "f" or sc.shape != (size,) or not np.all(np.isfinite(sc)) or not np.all(sc > 0):
            out.append(f"{gw}: {n}.scale must be {size} positive finite numbers")
    vt = arrays.get(f"{n}.vth_mant")
    if kind == "spiking":
        if vt is None:
            out.append(f"{gw}: per_channel spiking group without {n}.vth_mant")
        else:  # per-neuron thresholds: 1..vthMant max, and none above the group's vth_mant
            group_vth = g.get("vth_mant", 0) if _in(g.get("vth_mant"), 1, fp["vth_mant_max"]) else fp["vth_mant_max"]
            out.extend(_int_array(vt, f"{gw}: {n}.vth_mant", size, 1, group_vth, "the group's range "))
    elif vt is not None:
        out.append(f"{gw}: a readout has no per-neuron vth_mant")
    return out


def _int_array(a, what: str, size: int, lo: int, hi: int, range_name: str = "") -> list[str]:
    """Problems of an emitted integer array: ``size`` whole numbers, each in lo..hi (both inclusive)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or a.shape != (size,):
        return [f"{what} must be {size} whole numbers, got {a.dtype} {list(a.shape)}"]
    if a.size and (a.min() < lo or a.max() > hi):
        return [f"{what} outside {range_name}{lo}..{hi} (found {int(a.min())}..{int(a.max())})"]
    return []


def _check_projection(p, pw, g, size, shapes, in_name, inp, arrays, fp, fmt) -> list[str]:
    out = []
    if not isinstance(p, dict):
        return [f"{pw}: not an object"]
    src = p.get("source")
    if src not in shapes:
        return [f"{pw}: unknown source {src!r}"]
    if p.get("source_shape") != shapes[src]:
        out.append(f"{pw}: source_shape {p.get('source_shape')!r} != {src}'s shape {shapes[src]}")
    host = p.get("host")
    if not isinstance(host, bool) or not isinstance(p.get("recurrent"), bool):
        out.append(f"{pw}: host and recurrent must be true or false")
        return out
    bad = _check_ops(p.get("ops"), host)
    if bad:
        return out + [f"{pw}: {bad}"]
    if host and not (src == in_name and inp.get("encoding") == "direct"):
        out.append(f"{pw}: only a direct input can be computed on the host")
    key = p.get("weight_key")
    w = arrays.get(key) if isinstance(key, str) else None
    if w is None:
        return out + [f"{pw}: weights lack {key!r}"]
    w = np.asarray(w)
    if host:
        if w.dtype.kind != "f" or not np.all(np.isfinite(w)):
            out.append(f"{pw}: host weights must be finite floating-point numbers")
        hb = arrays.get(key.replace(".weight", ".host_bias"))
        if hb is not None and (np.asarray(hb).dtype.kind != "f" or np.asarray(hb).size != size or
                               not np.all(np.isfinite(hb))):
            out.append(f"{pw}: host_bias must be {size} finite numbers")
    else:
        wb = p.get("weight_bits")
        if not _in(wb, 2, fmt["weight_bits"]):
            out.append(f"{pw}: weight_bits {wb!r} is outside 2..{fmt['weight_bits']}")
            wb = fmt["weight_bits"]
        if not _in(p.get("weight_exp"), fp["weight_exp_min"], fp["weight_exp_max"]):
            out.append(f"{pw}: weight_exp {p.get('weight_exp')!r} is outside "
                       f"{fp['weight_exp_min']}..{fp['weight_exp_max']}")
        if not _in(p.get("delay"), 0, fp["max_delay"]):
            out.append(f"{pw}: delay {p.get('delay')!r} is outside 0..{fp['max_delay']}")
        if not _in(p.get("synapses"), 0, 2 ** 62):
            out.append(f"{pw}: synapses {p.get('synapses')!r}")
        wmax = 2 ** fmt["weight_bits"]                 # the target's mantissa width (Loihi 1: 8 bits)
        step = 2 ** (fmt["weight_bits"] + 1 - wb)
        if w.dtype.kind not in "iu":
            out.append(f"{pw}: weight mantissas must be whole numbers, got {w.dtype}")
        elif w.size and (w.min() < -wmax or w.max() > wmax - step or np.any(w % step)):
            out.append(f"{pw}: weight mantissas must be multiples of {step} in -{wmax}..{wmax - step} "
                       f"({wb}-bit, mixed sign; found {int(w.min())}..{int(w.max())})")
    if out:
        return out
    try:
        with torch.no_grad():
            y = apply_ops(torch.zeros((1, *shapes[src]), dtype=torch.float32), p["ops"],
                          torch.zeros(w.shape, dtype=torch.float32))
        if y.numel() != size:
            out.append(f"{pw}: its ops and weight {list(w.shape)} map {shapes[src]} to {list(y.shape[1:])}, "
                       f"not the group's {g['shape']}")
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        out.append(f"{pw}: its ops and weight {list(w.shape)} do not apply to source shape {shapes[src]} "
                   f"({str(e).splitlines()[0][:120]})")
    return out
