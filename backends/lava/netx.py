"""Write a compiled loihi-sim configuration as a lava-dl netx network file (HDF5, ``network.net``).

Layout, as ``lava.lib.dl.netx.hdf5.Network`` reads it (lava-dl 0.6.0 ``netx/hdf5.py``)::

    layer/<i>/type            "input" | "conv" | "flatten" | "dense"  (layers in topological order)
    layer/<i>/shape           (C, H, W) or (n,)                      (netx reverses it to Lava's (W, H, C))
    layer/<i>/neuron/type     "CUBA"
    layer/<i>/neuron/iDecay   du + 1     (netx passes du = iDecay - 1; lava adds ds_offset = 1)
    layer/<i>/neuron/vDecay   dv
    layer/<i>/neuron/vThMant  vThMant    (17-bit; vth_eff = vThMant << 6)
    layer/<i>/neuron/refDelay 1,  neuron/gradedSpike  False
    layer/<i>/weight          the integer weights (mantissa << weight_exp); conv: [O, I, kh, kw] (torch
                              cross-correlation order; netx flips it for lava's Conv); dense: [O, N], N in
                              C order over the source's (C, H, W)
    layer/<i>/stride|padding|dilation|groups   conv only, (H, W) order
    layer/<i>/bias            netx's unit (bias_exp = 6, netx fixes it): (n,) dense; (C,) per channel or
                              (W, H, C) conv; none on the input layer (its input is its neuron's bias_mant,
                              written per step by the host loop: :func:`netx_inputs`)
    layer/<i>/delay           dense only, when the projection has a synaptic delay

a ``flatten`` layer between a conv layer and the dense layer it feeds (netx then connects them through
``transpose([2, 1, 0]).flatten()``, C order), and ``layer/<i>/snnc/`` with snnc's own fields
(``biasMant``, ``biasExp``, ``wgtExp``, ``weightMant``, ``hostWeight``, ``hostBiasExp``, ``offset``).
Pooling is folded into the synapses (``engine.fold_pooling``).

Exact by construction: ``snnc compile --target lava`` compiles for loihi-sim with the fixed-point fields
limited to what netx holds (:data:`snnc.backends.export.NETX_FIXED_POINT`: bias_exp >= 6, weight_exp 0,
every bias from step 0), so lava-dl's run equals loihi-sim's at every step (``tests/test_netx_lava_dl.py``).
:func:`write_netx` refuses, naming the group and field, what netx cannot hold: a bias or host input off the
64 grid, biases enabled after step 0, dense weights outside -256..254 or a negative weight_exp with odd
mantissas, a conv projection with a delay, a graph that is not a chain (a skip, a recurrent projection),
per-channel thresholds or per-neuron decays (one vThMant, iDecay and vDecay per netx layer).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from snnc.backends.lava.engine import LavaMappingError, check_lava_form, fold_pooling


def check_chain(input_name: str, sources) -> None:
    """``sources``: ``(group, [source names])`` in order. Raises :class:`LavaMappingError` unless each group is fed
    by the one before alone (the first by ``input_name``): netx describes a chain of layers only."""
    prev = input_name
    for name, srcs in sources:
        if list(srcs) != [prev]:
            raise LavaMappingError(f"group {name!r} is fed by {list(srcs)}: netx describes a chain of layers "
                                   f"(each fed by the one before, {prev!r} here) only")
        prev = name


def _chain(config: dict) -> list:
    """Groups in order if the program is a chain (:func:`check_chain`)."""
    groups = config["groups"]
    check_chain(config["input"]["name"], [(g["name"], [p["source"] for p in g["projections"]]) for g in groups])
    return groups


def check_netx(config: dict) -> None:
    """What ``write_netx`` refuses, without writing: per-channel thresholds or per-neuron decays (one vThMant,
    iDecay and vDecay per netx layer) and a program that is not a chain of layers.

    Raises:
        LavaMappingError: naming the group and the reason.
    """
    check_lava_form(config)
    for g in _chain(config):
        for p in g["projections"]:
            if not p["host"] and int(p["delay"]) > 0 and p["ops"][-1]["op"] == "conv2d":
                raise LavaMappingError(f"group {g['name']!r}: a conv projection with a synaptic delay of "
                                       f"{p['delay']} steps (netx's Conv block has no delay)")


def _bias_dataset(value: np.ndarray, shape: list) -> np.ndarray:
    """A group's bias ``bias_mant << bias_exp`` (``[size]``, C order over ``shape``) in netx's unit (bias_exp 6) and
    layout: ``(n,)`` for a dense layer; per channel ``(C,)`` for a conv layer whose bias is constant over the
    positions (netx broadcasts it), else ``(W, H, C)``, Lava's neuron shape (netx does not reorder biases)."""
    b = np.asarray(value, np.int64) >> 6
    if len(shape) != 3:
        return b.reshape(-1)
    chw = b.reshape(shape)
    per_channel = chw.reshape(shape[0], -1)
    if np.all(per_channel == per_channel[:, :1]):
        return per_channel[:, 0].copy()
    return np.ascontiguousarray(chw.transpose(2, 1, 0))


def write_netx(path, config: dict, arrays: dict) -> list[dict]:
    """Write ``config``/``arrays`` (as from ``compile_graph`` for ``--target lava``) to the netx HDF5 file ``path``.

    Exact by construction: the compile for ``--target lava`` keeps every field on netx's grid
    (:data:`snnc.backends.export.NETX_FIXED_POINT`: biases multiples of 64, weight exponent 0, biases from step 0);
    a field netx still cannot hold (a config compiled for plain loihi-sim, a conv projection with a delay) is
    refused, never approximated.

    Returns one entry per layer: ``{"layer", "group", "type", "exact": True, "inexact": ""}``.

    Raises:
        LavaMappingError: the program is not a chain of layers, or a field netx cannot hold (naming the group
            and the field).
    """
    check_lava_form(config)
    groups = _chain(config)
    try:
        return _write(path, config, arrays, groups)
    except LavaMappingError:
        Path(path).unlink(missing_ok=True)  # never a half-written file
        raise


def _write(path, config: dict, arrays: dict, groups: list) -> list[dict]:
    notes = []
    shapes = {config["input"]["name"]: list(config["input"]["shape"])}
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["generator"] = "snnc"
        f.attrs["num_steps"] = int(config["num_steps"])
        f.attrs["latency_steps"] = int(config["latency_steps"])
        layers = f.create_group("layer", track_order=True)
        i = 0
        if config["input"]["encoding"] == "spikes":
            lay = layers.create_group(str(i))
            lay.create_dataset("type", data=np.bytes_("input"))
            lay.create_dataset("shape", data=np.asarray(config["input"]["shape"], np.int64))
            notes.append({"layer": i, "group": config["input"]["name"], "type": "input", "exact": True, "inexact": ""})
            i += 1
        for g in groups:
            name = g["name"]
            (p,) = g["projections"]
            w = np.asarray(arrays[p["weight_key"]])
            mant = np.asarray(arrays[f"{name}.bias_mant"], np.int64)
            be = int(g["bias_exp"])
            value = mant << be
            if be < 6 and np.any(value % 64):
                raise LavaMappingError(f"group {name!r}: bias_exp {be} < 6 (netx fixes bias_exp = 6; compile with "
                                       "--target lava, which keeps biases on multiples of 64)")
            if int(g.get("bias_from", g["offset"])) != 0 and np.any(value):
                raise LavaMappingError(f"group {name!r}: bias enabled at step {g.get('bias_from', g['offset'])} (netx "
                                       "enables biases from step 0; compile with --target lava)")
            kind = "input"
            params: dict = {}
            wf = None
            if not p["host"]:
                kind, params, wf = fold_pooling(p["ops"], w.astype(np.int64), p["source_shape"])
                e = int(p["weight_exp"])
                if e < 0 and np.any(wf % (1 << -e)):
                    raise LavaMappingError(f"group {name!r}: weight_exp {e} < 0 with mantissas that are not multiples "
                                           f"of {1 << -e} (netx stores integer weights: its Conv has no exponent, its "
                                           "Dense derives one from them; compile with --target lava)")
                wmant, wf = wf, (wf << e) if e >= 0 else (wf >> -e)  # the weights themselves, exponent 0
                if kind == "dense" and (wf.max(initial=0) > 254 or wf.min(initial=0) < -256):
                    raise LavaMappingError(f"group {name!r}: dense weights outside -256..254 at weight_exp {e} (netx "
                                           "clips them; compile with --target lava)")
                if int(p["delay"]) > 0 and kind != "dense":
                    raise LavaMappingError(f"group {name!r}: a conv projection with a synaptic delay of "
                                           f"{p['delay']} steps (netx's Conv block has no delay)")
                if kind == "dense" and len(shapes.get(p["source"], [])) > 1 and p["source"] != config["input"]["name"]:
                    # (from the network's input netx has no layer to flatten: net.inp takes the flat C-order
                    # vector, netx_inputs writes it so)
                    flat = layers.create_group(str(i))  # netx: conv (W, H, C) -> transpose, flatten -> dense
                    flat.create_dataset("type", data=np.bytes_("flatten"))
                    notes.append({"layer": i, "group": f"{name}.flatten", "type": "flatten", "exact": True,
                                  "inexact": ""})
                    i += 1
            lay = layers.create_group(str(i))
            snnc = lay.create_group("snnc")
            if p["host"]:
                snnc.create_dataset("hostWeight", data=np.asarray(w, np.float64))
                snnc.attrs["hostBiasExp"] = int(g["host_bias_exp"])
                snnc.attrs["hostOps"] = str(p["ops"])
                if int(g["host_bias_exp"]) < 6:
                    raise LavaMappingError(f"group {name!r}: host bias exponent {g['host_bias_exp']} < 6 (netx's input "
                                           "layer takes its input as bias_mant at bias_exp 6; compile with --target "
                                           "lava)")
            else:
                snnc.create_dataset("weightMant", data=wmant.astype(np.int32))
                snnc.attrs["wgtExp"] = int(p["weight_exp"])
                lay.create_dataset("weight", data=wf.astype(np.int64))
                if kind == "conv":
                    for key in ("stride", "padding", "dilation"):
                        lay.create_dataset(key, data=np.asarray(params[key], np.int64))
                    lay.create_dataset("groups", data=np.int64(params["groups"]))
                if int(p["delay"]) > 0:
                    lay.create_dataset("delay", data=np.full(wf.shape[0], int(p["delay"]), np.int64))
            lay.create_dataset("type", data=np.bytes_(kind))
            lay.create_dataset("shape", data=np.asarray(g["shape"], np.int64))
            neu = lay.create_group("neuron")
            neu.create_dataset("type", data=np.bytes_("CUBA"))
            neu.create_dataset("iDecay", data=np.int64(g["du"] + 1))
            neu.create_dataset("vDecay", data=np.int64(g["dv"]))
            neu.create_dataset("vThMant", data=np.int64(g["vth_mant"]))
            neu.create_dataset("refDelay", data=np.int64(1))
            neu.create_dataset("gradedSpike", data=False)
            snnc.create_dataset("biasMant", data=mant.astype(np.int32))
            snnc.attrs["biasExp"] = be
            snnc.attrs["offset"] = int(g["offset"])
            snnc.attrs["group"] = name
            # netx's input layer reads a scalar bias only (int(layer['bias'])); its input is written per step into
            # the neuron's bias_mant by the user's host loop (docs/lava.md), the constant bias with it
            if np.any(value) and kind != "input":
                lay.create_dataset("bias", data=_bias_dataset(value, g["shape"]))
            snnc.attrs["exact"] = True
            snnc.attrs["inexact"] = ""
            shapes[name] = list(g["shape"])
            notes.append({"layer": i, "group": name, "type": kind, "exact": True, "inexact": ""})
            i += 1
    return notes


def netx_inputs(program, x) -> dict:
    """What a Lava process running ``network.net`` feeds its input layer, sample by sample, for loihi-sim's
    ``program`` (compiled with ``--target lava``) on inputs ``x`` (``[N, *input_shape]`` direct, or time-major
    ``[T, N, *input_shape]`` spikes): ``{"steps": L, "bias_mant": [N, L, *lava shape] int32}`` for a host-driven
    input layer (the host's first-layer result during steps 0..T-1, then the layer's constant bias, in netx's
    unit: bias_exp 6), else ``{"steps": L, "spikes": [N, L, *lava shape] int8}`` (zeros after step T-1).
    ``examples/netx_run.py`` reads this file.

    Raises:
        LavaMappingError: a host bias exponent below 6 (the program was not compiled with ``--target lava``).
    """
    import torch

    from snnc.backends.lava.engine import lava_shape, to_lava

    cfg = program.config
    L, T = int(program.L), int(program.T)
    if cfg["input"]["encoding"] == "spikes":
        xs = np.asarray(x)
        n = xs.shape[1]
        first = cfg["groups"][0]["projections"][0]
        flat = len(cfg["input"]["shape"]) > 1 and first["ops"][-1]["op"] == "dense"  # net.inp is the dense's (N,)
        shape = (int(np.prod(cfg["input"]["shape"])),) if flat else lava_shape(cfg["input"]["shape"])
        out = np.zeros((n, L) + shape, np.int8)
        for t in range(T):
            for i in range(n):
                out[i, t] = xs[t, i].reshape(-1) if flat else to_lava(xs[t, i])
        return {"steps": L, "spikes": out}
    g0 = next(g for g in cfg["groups"] if any(p["host"] for p in g["projections"]))
    if int(g0["host_bias_exp"]) < 6:
        raise LavaMappingError(f"group {g0['name']!r}: host bias exponent {g0['host_bias_exp']} below 6 (netx's input "
                               "layer takes bias_mant at bias_exp 6; compile with --target lava)")
    if np.any((np.asarray(program.arrays[f"{g0['name']}.bias_mant"], np.int64) << int(g0["bias_exp"])) % 64):
        raise LavaMappingError(f"group {g0['name']!r}: bias not a multiple of 64 (compile with --target lava)")
    g = program.groups[g0["name"]]
    xt = torch.as_tensor(np.asarray(x)).to(torch.float64)
    host, _ = program.host_bias(g, xt)
    n = xt.shape[0]
    shape = lava_shape(g0["shape"])
    const = (np.asarray(program.arrays[f"{g0['name']}.bias_mant"], np.int64) << int(g0["bias_exp"])) >> 6
    out = np.zeros((n, L) + shape, np.int32)
    for t in range(L):
        off = int(g0["offset"])
        if off <= t < off + T:
            vals = host[t - off].numpy().astype(np.int64) >> 6
            out[:, t] = np.stack([to_lava(v.reshape(g0["shape"])) for v in vals])
        elif t >= int(g0.get("bias_from", off)):
            out[:, t] = to_lava(const.reshape(g0["shape"]))
    return {"steps": L, "bias_mant": out}
