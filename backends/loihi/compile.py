"""Compile a quantized NIR graph into a loihi-sim configuration (config dict + integer arrays).

``config`` (JSON-serialisable, written as ``config.json``)::

    {"format": "snnc-loihi-sim", "version": 1, "target": name, "num_steps": T, "dt": s,
     "latency_steps": T + max offset, "input": {"name", "shape", "encoding"},
     "outputs": [{"name", "group", "read_step"}],
     "groups": [{"name", "kind", "nir_type", "shape", "size", "du", "dv", "vth_mant", "bias_exp",
                 "host_bias_exp", "scale", "reset", "offset", "bias_from",
                 "channel_block",                                  # (C, H, W) groups only
                 "per_channel",                                    # only with per-channel scales
                 "projections": [{"source", "source_shape", "ops", "weight_exp", "weight_bits", "delay",
                                  "recurrent", "host", "synapses", "weight_key",
                                  "format", "axon_type", "atoms"}],   # weight_bits .. atoms: on-chip only
                 "padding",                                        # padded layout only
                 "slices": [{"core", "start", "stop",            # neuron ranges in core order
                             "compartments", "units"}]}],        # padded layout only
     "cores": [{"core", "chip", "groups", "neurons", "axons_in", "axons_out", "synapses",
                "stored_synapses", "memory_bits"}],
     "mapping": {"lower_bound": {"cores", "terms", "totals"}, "ratio", "chips", "cores_per_chip",
                 "routes", "inter_chip_routes", "formats", "axon_types_used"}}

*Core order* (:func:`snnc.backends.loihi.mapping.neuron_order`): a ``(C, H, W)`` group is laid out
channel block by channel block (``channel_block`` channels; all ``C`` unless the layer is too wide
for one core to hold a position's channels), then position by position (raster order), the
block's channels last; other groups keep their order. Every slice is a whole number of positions
of one block, and a group's slices tile it in order.

*Padded layout* (``padding``: ``[top, bottom, left, right]``, only on a ``(C, H, W)`` group whose
on-chip inputs are all convolutions some of whose taps reach beyond it -- zero padding, or a valid
convolution's border sources -- and only where it needs fewer cores): each
block's positions are laid out on the grid ``(H + top + bottom) x (W + left + right)``, the
positions outside the image being compartments without a neuron behind them (no bias, no output
axon; nothing reads them). Every source of a convolution then addresses a full kernel, so its
border sources share the interior's population entry instead of one entry per set of valid taps.
On its core such a slice is planar (channel by channel, each channel's positions in raster order),
so an entry's compartment base steps by one per position and stays below ``cx_base_max``.
A slice of such a group still gives its real neurons as ``start``/``stop`` in core order,
``compartments`` the compartments it takes on its core (padding included: the core's ``neurons``
counts compartments), and ``units`` the ``[first, end)`` positions of its block's padded grid.

Per on-chip projection, ``format`` says how its synapses are stored and addressed
(:mod:`snnc.backends.loihi.mapping`, after nengo-loihi's axon types):

- ``"discrete"`` (``axon_type`` ``"discrete"``, ``atoms`` 1): one input axon per source neuron
  and destination core, one synapse list per axon, one output-axon slot per (source neuron,
  destination core);
- ``"population"`` (``axon_type`` ``"pop32"``): one input axon per source *population* -- one
  position of one channel block of a ``(C, H, W)`` source, ``atoms`` neurons, or ``atoms``
  consecutive neurons of a 1-D source (the last population may be shorter; a slice of the source
  holds whole populations) -- and destination
  core (the spike carries the atom), two output-axon slots per (population, destination core);
  weight entries of ``atoms x targets`` are shared by every population with the same weights
  and relative targets: a convolution stores one kernel per set of valid taps (and per 256
  compartments of index offset), a dense projection one entry per pooled source position.

The weights in ``weights.npz`` are the same in both formats and the simulation does not read
``format``: the simulated result and the SynOps are the same. ``synapses`` counts connections
(non-zero weights per target neuron), ``stored_synapses`` the weight entries in synaptic memory.

``mapping``: the lower bound on cores (``terms``: neurons, memory, input axons, output-axon
slots, each summed over projections at its cheapest format; ``totals`` the sums), the ratio of
cores to it, the chips, and the static routes (source neuron or population -> destination core
pairs), of which ``inter_chip_routes`` cross chips.

``arrays`` (written as ``weights.npz``): per group ``<g>.bias_mant`` (int32, one per
neuron, C order); for a group with per-channel scales (``per_channel``: true) also ``<g>.scale``
(float64, the scale of each neuron's channel: the host multiplies its direct-input bias by it and
divides a readout's voltage by it) and, for a spiking group, ``<g>.vth_mant`` (int32 per neuron;
the group's ``vth_mant`` is then their largest); for a group whose neurons have different time constants
``<g>.du`` and ``<g>.dv`` (int32 per neuron; the group's ``du``/``dv`` are then the first neuron's); per projection ``<g>.p<i>.weight`` (int32 weight mantissas,
or float64 host weights for a direct input) and ``<g>.p<i>.host_bias`` (float64).
"""
from __future__ import annotations

import time

import nir
import numpy as np
import torch

from snnc.errors import SnncError
from snnc.backends.loihi import mapping as M
from snnc.backends.loihi import rules
from snnc.ir.ops import host_weight
from snnc.ir.quant import QuantFormat, is_quantized
from snnc.backends.loihi.validate import check_program
from snnc.backends.loihi.placement import Placer
from snnc.ir.lowering import group_offsets, lower
from snnc.ir import UnsupportedNodeError


class NotQuantizedError(SnncError):
    """The graph lacks the ``quantize`` pass's formats for this target."""


def _int_weights(p, wf: QuantFormat, s, shift: int) -> np.ndarray:
    """The integer weights ``quantize`` chose for projection ``p`` (:class:`snnc.ir.quant.QuantFormat`), after
    checking that the graph's float weights still are those mantissas (``s``: the group's scale, or ``[rows]``
    per-channel scales): weights changed after quantize are refused, never rounded again."""
    q = wf.mantissa
    if q.shape != p.weight.shape:
        raise NotQuantizedError(f"weights of {p.weighted!r} have shape {p.weight.shape}, the quantized mantissas "
                                f"{q.shape}: the graph changed after the quantize pass")
    if np.ndim(s):
        s = np.asarray(s, np.float64).reshape((-1,) + (1,) * (p.weight.ndim - 1))
    deq = q.astype(np.float64) * 2.0 ** (shift + wf.weight_exp) / s   # float32 rounding of these is all that differs
    if not np.allclose(p.weight, deq, rtol=1e-5, atol=1e-6 * float(np.abs(deq).max(initial=1.0))):
        raise NotQuantizedError(f"weights of {p.weighted!r} are not the mantissas the quantize pass chose (changed "
                                "after it); run the quantize pass last before the backend")
    return q.astype(np.int32)


def compile_graph(graph: nir.NIRGraph, target, max_cores: int | None = None, raise_on_violation: bool = True,
                  max_chips: int | None = None, formats: str = "auto", timings: dict | None = None,
                  neurons_per_core: int | None = None, tiling_bound: bool = False):
    """Build the loihi-sim config for a graph that went through ``fold_bn`` and ``quantize``.

    Args:
        max_cores, max_chips: limits; needing more is a design-rule violation (``MAX_CORES``,
            ``MAX_CHIPS``).
        formats: ``"auto"`` (per projection the synapse format that needs fewer cores) or
            ``"discrete"`` (discrete axons and per-synapse weights everywhere).
        timings: if given, filled with the wall time in s of each stage: ``lower`` (lowering and
            integer weights), ``formats`` (blocks and formats), ``pack``, ``finish`` (exact counts,
            chips, config), and with ``tiling_bound`` that bound's own time (``tiling_bound``).
        neurons_per_core: place at most this many compartments on a core (1 .. the core's limit;
            None: the limit). Fewer per core spreads a layer's synaptic events over more cores: a
            shorter time step for more cores (``--objective latency``). The lower bound stays the
            target's.
        tiling_bound: also report ``mapping.tiling_bound``, the least synaptic memory over the
            placer's tilings (:meth:`.placement.Placer.tiling_bound`; it compiles every tiling's
            ranges, so it costs about as much as the packing).

    Returns:
        ``(config dict, arrays dict, violations list)``.

    Raises:
        NotQuantizedError: the graph was not quantized for this target.
        UnsupportedNodeError: a node or chain the backend cannot map.
        DesignRuleError: with ``raise_on_violation``, every broken limit at once.
        ConfigError: an emitted field outside the target's ranges (see :mod:`.validate`).
        ValueError: ``formats`` is not one of the two, or ``neurons_per_core`` is outside 1 .. the core's limit.
    """
    if not is_quantized(graph, target.name):
        raise NotQuantizedError(f"the graph is not quantized for {target.name!r}: add the quantize pass "
                                "(e.g. --passes fold_bn,quantize)")
    M.check_formats(formats)
    if neurons_per_core is not None and not 1 <= int(neurons_per_core) <= int(target["core"]["neurons"]):
        raise SnncError(f"neurons_per_core must be in 1..{target['core']['neurons']}, got {neurons_per_core}")
    tm = timings if timings is not None else {}
    t0 = time.perf_counter()
    fp, core_lim, chip = target["fixed_point"], target["core"], target["chip"]
    low = lower(graph)
    if len(low.inputs) != 1:
        raise UnsupportedNodeError("input", "Input", f"{len(low.inputs)} inputs; loihi-sim takes exactly one")
    in_name, in_shape = next(iter(low.inputs.items()))
    if low.num_steps is None:
        raise NotQuantizedError("T (num_steps) is not recorded in the graph; pass --num-steps")
    T = int(low.num_steps)
    offsets = group_offsets(low)
    netx = bool(target.data.get("netx"))  # lava-dl netx enables every bias from step 0 (no per-layer enable time)
    groups, arrays = [], {}
    chip_projs_all, masks_all = [], []
    for g in low.groups.values():
        node = graph.nodes[g.name]
        q = node.metadata["snnc.quant"]
        s = float(q["scale"])
        gcfg = {"name": g.name, "kind": g.kind, "nir_type": g.nir_type, "shape": list(g.shape), "size": g.size,
                "du": int(q["du"]), "dv": int(q["dv"]), "vth_mant": int(q["vth_mant"]), "bias_exp": int(q["bias_exp"]),
                "host_bias_exp": int(q["host_bias_exp"]), "scale": s, "reset": g.reset, "offset": offsets[g.name],
                "bias_from": 0 if netx else offsets[g.name], "projections": []}
        arrays[f"{g.name}.bias_mant"] = np.asarray(q["bias_mant"], np.int32).reshape(-1)
        if "du_neuron" in q:  # per-neuron time constants: du/dv per neuron (a compartment profile per pair)
            arrays[f"{g.name}.du"] = np.asarray(q["du_neuron"], np.int32).reshape(-1)
            arrays[f"{g.name}.dv"] = np.asarray(q["dv_neuron"], np.int32).reshape(-1)
            gcfg["per_neuron_decays"] = True
        s_rows = s
        if "channel_scale" in q:  # per-channel scales (quantize per_channel=true): per-neuron arrays
            s_rows = np.asarray(q["channel_scale"], np.float64)
            reps = g.size // len(s_rows)
            arrays[f"{g.name}.scale"] = np.repeat(s_rows, reps)
            gcfg["per_channel"] = True
            if "vth_mant_channel" in q:
                arrays[f"{g.name}.vth_mant"] = np.repeat(np.asarray(q["vth_mant_channel"], np.int32), reps)
        chip_projs, masks = [], []
        for i, p in enumerate(g.projections):
            key = f"{g.name}.p{i}"
            pc = {"source": p.source, "source_shape": list(p.source_shape), "ops": p.ops, "recurrent": p.recurrent,
                  "host": p.host, "weight_key": f"{key}.weight"}
            if p.host:
                arrays[f"{key}.weight"] = host_weight(p, g).astype(np.float64)
                if p.bias is not None:
                    arrays[f"{key}.host_bias"] = np.asarray(p.bias, np.float64).reshape(-1)
                pc.update(weight_exp=0, delay=0, synapses=0)
            else:
                wf = QuantFormat.of(p.weighted, graph.nodes[p.weighted])
                e = wf.weight_exp
                pc["weight_bits"] = wf.weight_bits
                arrays[f"{key}.weight"] = _int_weights(p, wf, s_rows, fp["act_shift"])
                src_off = offsets.get(p.source, 0)
                delay = offsets[g.name] - src_off - (0 if p.recurrent else 1) + p.delay  # + NIR Delay steps
                pc.update(weight_exp=e, delay=int(delay))
                chip_projs.append(pc)
                masks.append(arrays[f"{key}.weight"] != 0)
            gcfg["projections"].append(pc)
        groups.append(gcfg)
        chip_projs_all.append(chip_projs)
        masks_all.append(masks)
    t1 = time.perf_counter()
    tm["lower"] = t1 - t0
    placer = Placer(groups, chip_projs_all, masks_all, target, formats, neurons_per_core)
    placer.choose_formats()
    t2 = time.perf_counter()
    tm["formats"] = t2 - t1
    placer.pack()
    t3 = time.perf_counter()
    tm["pack"] = t3 - t2
    summary = placer.finish()
    bound = placer.lower_bound()
    # ---- groups: blocks, formats, slices, synapses
    for gp, gcfg in zip(placer.groups, groups):
        if M.is_spatial(gp.shape):
            gcfg["channel_block"] = int(M.layout_of(gp.shape, gp.block)[2])
        if gp.pad:
            gcfg["padding"] = [int(v) for v in gp.pad]
        for pp in gp.projs:
            pop = pp.fmt == M.POPULATION
            pp.cfg.update({"format": pp.fmt, "axon_type": "pop32" if pop else "discrete",
                           "atoms": int(pp.counter.src_block) if pop else 1, "synapses": 0})
    cores, pieces = [], []
    cpc = int(chip["cores"])
    for cid, core in enumerate(placer.cores):
        mem, stored = placer.core_memory(core)
        c = {"core": cid, "chip": cid // cpc, "groups": [], "neurons": int(core.neurons),
             "axons_in": int(core.axons_in), "axons_out": int(core.axons_out), "synapses": 0,
             "stored_synapses": int(stored), "memory_bits": int(mem)}
        for p in core.pieces:
            gp = placer.groups[p.gi]
            if gp.cfg["name"] not in c["groups"]:
                c["groups"].append(gp.cfg["name"])
            for pp, st in zip(gp.projs, p.stats):
                c["synapses"] += int(st.synapses)
                pp.cfg["synapses"] += int(st.synapses)
            pieces.append((p.gi, p.j, p.q0, p.q1, cid))
        cores.append(c)
    for gp, gcfg in zip(placer.groups, groups):
        starts = M.block_starts(gp.shape, gp.block)
        slices = []
        rc = gp.real_cum
        for _, j, q0, q1, cid in sorted(pc for pc in pieces if pc[0] == gp.gi):
            bs = M.block_size(gp.shape, gp.block, j)
            if rc is None:
                slices.append({"core": cid, "start": int(starts[j] + q0 * bs), "stop": int(starts[j] + q1 * bs)})
            else:  # padded layout: the slice's real neurons, and its compartments with the padding
                slices.append({"core": cid, "start": int(starts[j] + rc[q0] * bs), "stop": int(starts[j] + rc[q1] * bs),
                               "compartments": int((q1 - q0) * bs), "units": [int(q0), int(q1)]})
        gcfg["slices"] = slices
    read_outputs = []
    for oname, gname in low.outputs.items():
        read_outputs.append({"name": oname, "group": gname, "read_step": T - 1 + offsets[gname]})
    n = len(cores)
    at = M.target_section(target, "axon_types")
    config = {
        "format": "snnc-loihi-sim", "version": 1, "target": target.name, "num_steps": T,
        "dt": float(next(iter(low.groups.values())).dt) if low.groups else None,
        "latency_steps": T + max(offsets.values(), default=0),
        "input": {"name": in_name, "shape": list(in_shape), "encoding": low.encoding},
        "outputs": read_outputs, "groups": groups, "cores": cores,
        "mapping": {"lower_bound": bound, "ratio": n / bound["cores"], "chips": M.ceil_div(n, cpc),
                    "cores_per_chip": cpc, "routes": summary["routes"],
                    "inter_chip_routes": summary["inter_chip_routes"], "formats": formats,
                    "axon_types_used": [t for t in at.get("used", []) if formats == "auto" or t == "discrete"]},
    }
    if neurons_per_core is not None:
        config["mapping"]["neurons_per_core"] = int(neurons_per_core)
    violations = rules.design_rules(cores, groups, core_lim, fp, max_cores, placer.unsplittable, max_chips, cpc)
    violations += rules.profile_rules(cores, groups, arrays, target)
    tm["finish"] = time.perf_counter() - t3
    if tiling_bound:
        t4 = time.perf_counter()
        tb = placer.tiling_bound()
        terms = dict(bound["terms"], memory=tb["cores"])
        config["mapping"]["tiling_bound"] = dict(tb, bound_cores=max(terms.values()), ratio=n / max(max(terms.values()), 1),
                                                 terms=terms)
        tm["tiling_bound"] = time.perf_counter() - t4
    if violations and raise_on_violation:
        raise rules.DesignRuleError(violations)
    if not violations:  # every emitted field within the target's ranges, checked before anything is written
        check_program(config, arrays, target, where="the compiled configuration")
    return config, arrays, violations


def dest_core_matrix(cnt: torch.Tensor, slice_cores: list[int]) -> torch.Tensor:
    """``[n_dest_cores, src]`` 0/1: does the source neuron reach a destination core."""
    uniq = sorted(set(slice_cores))
    pos = {c: i for i, c in enumerate(uniq)}
    onehot = torch.zeros((len(uniq), len(slice_cores)), dtype=torch.float32)
    for k, c in enumerate(slice_cores):
        onehot[pos[c], k] = 1.0
    return ((onehot @ (cnt > 0).to(torch.float32)) > 0).to(torch.float32)


def source_core_vector(gcfg: dict) -> np.ndarray:
    """Core id of every neuron of a group, C order."""
    perm = M.neuron_order(tuple(gcfg["shape"]), gcfg.get("channel_block"))
    out = np.empty(gcfg["size"], np.int64)
    for s in gcfg["slices"]:
        out[perm[s["start"]:s["stop"]]] = s["core"]
    return out
