"""Write a compiled loihi-sim configuration as a lava-dl netx network file (HDF5, ``network.net``).

Layout, as ``lava.lib.dl.netx.hdf5.Network`` reads it (lava-dl 0.6.0 ``netx/hdf5.py``)::

    layer/<i>/type            "input" | "conv" | "dense"            (layers in topological order)
    layer/<i>/shape           (C, H, W) or (n,)                      (netx reverses it to Lava's (W, H, C))
    layer/<i>/neuron/type     "CUBA"
    layer/<i>/neuron/iDecay   du + 1     (netx passes du = iDecay - 1; lava adds ds_offset = 1)
    layer/<i>/neuron/vDecay   dv
    layer/<i>/neuron/vThMant  vThMant    (17-bit; vth_eff = vThMant << 6)
    layer/<i>/neuron/refDelay 1,  neuron/gradedSpike  False
    layer/<i>/weight          conv: [O, I, kh, kw] (torch cross-correlation order; netx flips it for
                              lava's Conv); dense: [O, N], N in C order over the source's (C, H, W)
    layer/<i>/stride|padding|dilation|groups   conv only, (H, W) order
    layer/<i>/bias            per neuron, netx's unit: bias_mant with bias_exp = 6 (netx fixes it)
    layer/<i>/delay           dense only, when the projection has a synaptic delay

and, for what netx cannot say, ``layer/<i>/snnc/`` with the exact fields (``biasMant``,
``biasExp``, ``wgtExp``, ``weightMant``, ``hostBiasExp``, ``offset``) and the attribute
``exact`` (bool) with ``inexact`` (a reason) when the netx fields alone do not reproduce
loihi-sim. Pooling is folded into the synapses (``engine.fold_pooling``), flatten becomes netx's
conv -> dense connection.

What netx holds exactly, and what it does not (then the netx fields are the nearest and
``snnc/`` holds the exact ones; ``snnc simulate --engine lava`` runs the exact process graph of
:mod:`snnc.backends.lava.engine`):

* a host-driven group (direct analog input): netx's ``input`` layer with a neuron is exactly that
  (lava-dl's input block takes the input through the neuron's bias, written by the host per
  sample); the host's weights are not in the file (``snnc/hostWeight`` keeps them).
* weights (stored as mantissa << weight_exp): netx's Dense derives weight_exp from 8-bit weights
  (``optimize_weight_bits``: exponents <= 0 only, larger weights clipped to -256 ... 254), its Conv
  applies none. Exact: conv with weight_exp >= 0; dense when the stored weights fit 8 bits; either
  with a negative weight_exp when every mantissa is a multiple of 2^-weight_exp.
* bias: netx fixes bias_exp = 6: exact when bias_mant << bias_exp is a multiple of 64.
* bias timing: netx enables biases from step 0, snnc at the group's time offset (``snnc/offset``).
* a graph that is not a chain (a skip, a recurrent projection, two inputs) has no netx form, nor
  per-channel thresholds (quantize ``per_channel=true``: netx holds one vThMant per layer):
  :func:`write_netx` raises :class:`~snnc.backends.lava.engine.LavaMappingError`.
"""
from __future__ import annotations

import h5py
import numpy as np

from snnc.backends.lava.engine import LavaMappingError, check_lava_form, fold_pooling


def _chain(config: dict) -> list:
    """Groups in order if the program is a chain (each group fed by the previous one alone)."""
    groups = config["groups"]
    prev = config["input"]["name"]
    for g in groups:
        srcs = [p["source"] for p in g["projections"]]
        if srcs != [prev]:
            raise LavaMappingError(f"group {g['name']!r} is fed by {srcs}: netx describes a chain of layers "
                                   f"(each fed by the one before, {prev!r} here) only")
        prev = g["name"]
    return groups


def check_netx(config: dict) -> None:
    """What ``write_netx`` refuses, without writing: per-channel thresholds or per-neuron decays (one vThMant,
    iDecay and vDecay per netx layer) and a program that is not a chain of layers.

    Raises:
        LavaMappingError: naming the group and the reason.
    """
    check_lava_form(config)
    _chain(config)


def write_netx(path, config: dict, arrays: dict) -> list[dict]:
    """Write ``config``/``arrays`` (as from ``compile_graph``) to the netx HDF5 file ``path``.

    Returns one entry per layer: ``{"layer", "group", "type", "exact", "inexact"}``.

    Raises:
        LavaMappingError: the program is not a chain of layers.
    """
    check_lava_form(config)
    groups = _chain(config)
    notes = []
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
            lay = layers.create_group(str(i))
            why = []
            (p,) = g["projections"]
            w = np.asarray(arrays[p["weight_key"]])
            snnc = lay.create_group("snnc")
            if p["host"]:
                kind = "input"
                snnc.create_dataset("hostWeight", data=np.asarray(w, np.float64))
                snnc.attrs["hostBiasExp"] = int(g["host_bias_exp"])
                snnc.attrs["hostOps"] = str(p["ops"])
            else:
                kind, params, wf = fold_pooling(p["ops"], w.astype(np.int64), p["source_shape"])
                e = int(p["weight_exp"])
                snnc.create_dataset("weightMant", data=wf.astype(np.int32))
                snnc.attrs["wgtExp"] = e
                if e >= 0:
                    lay.create_dataset("weight", data=(wf << e).astype(np.int64))
                    if kind == "dense" and e > 0 and (np.max(wf << e, initial=0) > 254 or np.min(wf << e, initial=0) < -256):
                        why.append(f"weight_exp {e} > 0 on a dense layer (netx derives the exponent from 8-bit "
                                   "weights and clips larger ones)")
                else:
                    lay.create_dataset("weight", data=wf.astype(np.int64))
                    if np.any(wf % (1 << -e)):
                        why.append(f"weight_exp {e} < 0 (netx: none for conv, derived from the weights for dense)")
                    else:
                        lay["weight"][...] = wf >> -e
                if kind == "conv":
                    for key in ("stride", "padding", "dilation"):
                        lay.create_dataset(key, data=np.asarray(params[key], np.int64))
                    lay.create_dataset("groups", data=np.int64(params["groups"]))
                if int(p["delay"]) > 0:
                    if kind != "dense":
                        why.append("a conv projection with a synaptic delay")
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
            mant = np.asarray(arrays[f"{g['name']}.bias_mant"], np.int64)
            be = int(g["bias_exp"])
            value = mant << be
            snnc.create_dataset("biasMant", data=mant.astype(np.int32))
            snnc.attrs["biasExp"] = be
            snnc.attrs["offset"] = int(g["offset"])
            snnc.attrs["group"] = g["name"]
            if np.any(value):
                lay.create_dataset("bias", data=np.rint(value / 64).astype(np.int64))
                if np.any(value % 64):
                    why.append(f"bias_mant << {be} is not a multiple of 64 (netx fixes bias_exp = 6)")
                if int(g["offset"]) > 0:
                    why.append(f"bias enabled at step {g['offset']} (netx: from step 0)")
            snnc.attrs["exact"] = not why
            snnc.attrs["inexact"] = "; ".join(why)
            notes.append({"layer": i, "group": g["name"], "type": kind, "exact": not why, "inexact": "; ".join(why)})
            i += 1
    return notes
