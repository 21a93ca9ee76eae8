"""Per-inference activity and energy from simulated event counts.

Events (all counted in :class:`~snnc.backends.loihi.sim.Program` runs, per sample):

- SynOps: one per spike and synapse it drives (spikes x non-zero synapses of the source), input
  events of a spike-input model included (each event drives its input axon's synapses);
- neuron updates: every compartment, every one of the ``latency_steps`` steps; *active* when
  its u or v is non-zero after the update or it spiked (snnc's reading of Davies 2018's
  active/inactive update), *inactive* otherwise;
- spike messages: one per spike and destination core (Loihi sends one message per axon; a
  population axon's message carries the atom, one message all the same), costing the
  within-tile energy plus per tile hop E-W / N-S (tile mesh: ``[chip]`` of the target);
- inter-chip spike messages: those whose destination core is on another chip (chips side by
  side east-west); each chip boundary crossed adds ``[interchip].energy_pJ`` (snnc's modelling
  assumption, see the target's ``[sources]``), included in ``spike_messages_pJ`` and given on its
  own as ``spike_messages_interchip_pJ``.

Message latency (ns) per route: ``[latency_ns]`` (Davies 2018, Table 2: within tile, per E-W and
N-S hop) plus ``[interchip].latency_ns`` per chip boundary; reported as the message-weighted mean
and the largest over the routes used (the time a time step's spikes need to arrive, before the
barrier synchronisation that ends the step, which is not modelled).

Energies per event (pJ) come from the target's ``[energy_pJ]`` table (Davies et al., IEEE Micro
2018, Table 2). The literature's 45 nm convention (Horowitz, ISSCC 2014) is reported alongside:
``E_SNN = SynOps x E_AC (0.9 pJ) + MACs of the host-encoded first layer x E_MAC`` against
``E_ANN = MACs x E_MAC (4.6 pJ)`` for the same layers run once as an ANN (per layer: outputs x fan-in,
zero weights included). Activation sparsity is over all simulated steps (latency_steps).
NeuroBench-style figures (Yik et al., NeuroBench, Nature Communications 2025): effective SynOps,
activation sparsity, connection sparsity, footprint.
"""
from __future__ import annotations

import numpy as np
import torch

from snnc.backends.loihi import mapping as M
from snnc.backends.loihi.compile import dest_core_matrix, source_core_vector
from snnc.ir.ops import synapse_counts


def _dense_connections(g: dict, p: dict, arrays: dict) -> int:
    """Connections of a projection counting zero weights too (for connection sparsity and ANN MACs)."""
    w = torch.ones_like(torch.as_tensor(np.asarray(arrays[p["weight_key"]], np.float32)))
    masks = torch.ones((1,) + tuple(g["shape"]), dtype=torch.float32)
    return int(synapse_counts(p["ops"], w, p["source_shape"], g["shape"], masks).sum())


#: how many inter-core routes the report keeps (the heaviest, by spike messages per inference)
TOP_ROUTES = 32


def _top_routes(route_msgs: np.ndarray) -> list[dict]:
    """The :data:`TOP_ROUTES` heaviest inter-core routes: ``[{"source_core", "dest_core", "spike_messages"}]``
    (messages per inference, descending; ties by core ids)."""
    src, dst = np.nonzero(route_msgs)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    vals = route_msgs[src, dst]
    order = np.lexsort((dst, src, -vals))[:TOP_ROUTES]
    return [{"source_core": int(src[i]), "dest_core": int(dst[i]), "spike_messages": float(vals[i])} for i in order]


def measure(program, result, counts: dict) -> dict:
    """Activity, per-core event counts and energy per inference.

    Args:
        program: the :class:`Program` that ran.
        result: its :class:`SimResult`.
        counts: :func:`snnc.backends.loihi.sim.slice_counts_for` of the program.

    Returns:
        dict with ``per_inference`` totals, ``per_core`` lists and ``energy`` (pJ per inference).
    """
    cfg, target = program.config, program.target
    chip, E = target["chip"], target["energy_pJ"]
    ic, lat = M.target_section(target, "interchip"), M.target_section(target, "latency_ns")
    n = max(result.samples, 1)
    ncores = len(cfg["cores"])
    core_syn = np.zeros(ncores)
    core_spikes = np.zeros(ncores)
    core_msgs = np.zeros(ncores)
    route_msgs = np.zeros((ncores, ncores))                           # [source core, destination core]
    synops = msgs = msg_energy = inter = 0.0
    chip_msgs = chip_energy = lat_sum = 0.0
    lat_max = 0.0
    dense_conn = nnz_conn = 0
    groups = {g["name"]: g for g in cfg["groups"]}
    core_vec = {g["name"]: source_core_vector(g) for g in cfg["groups"]}
    cost_all = M.spike_cost_matrix(ncores, chip, E)                  # on-chip mesh part
    cross_all = M.chip_crossings(ncores, chip)
    lat_all = M.spike_latency_matrix(ncores, chip, lat, ic)
    for g in cfg["groups"]:
        sp = result.spikes[g["name"]].numpy()
        core_spikes += np.bincount(core_vec[g["name"]], weights=sp, minlength=ncores)
        chip_projs = [p for p in g["projections"] if not p["host"]]
        slice_cores = [s["core"] for s in g["slices"]]
        for j, p in enumerate(chip_projs):
            cnt = counts[g["name"]][j].to(torch.float64)
            nnz_conn += int(cnt.sum())
            dense_conn += _dense_connections(g, p, program.arrays)
            if p["source"] not in groups:  # events from the host through input axons
                if getattr(result, "input_spikes", None) is not None:
                    per_slice = (cnt @ result.input_spikes).numpy()
                    for k, c in enumerate(slice_cores):
                        core_syn[c] += per_slice[k]
                    synops += float(per_slice.sum())
                continue
            s_src = result.spikes[p["source"]].to(torch.float64)
            per_slice = (cnt @ s_src).numpy()
            for k, c in enumerate(slice_cores):
                core_syn[c] += per_slice[k]
            synops += float(per_slice.sum())
            D = dest_core_matrix(cnt, slice_cores).numpy()  # [dest cores, src]
            uniq = np.array(sorted(set(slice_cores)))
            src_core = core_vec[p["source"]]
            spn = s_src.numpy()
            # messages per (source core, destination core) route
            routes = np.stack([np.bincount(src_core, weights=spn * D[k], minlength=ncores)
                               for k in range(len(uniq))], 1)            # [ncores, dest cores]
            msgs += float(routes.sum())
            msg_energy += float((routes * cost_all[:, uniq]).sum())
            inter += float(routes.sum() - routes[uniq, np.arange(len(uniq))].sum())
            core_msgs += routes.sum(1)
            route_msgs[:, uniq] += routes
            cross = cross_all[:, uniq]
            chip_msgs += float(routes[cross > 0].sum())
            chip_energy += float((routes * cross).sum()) * ic["energy_pJ"]
            lat_r = lat_all[:, uniq]
            lat_sum += float((routes * lat_r).sum())
            if (routes > 0).any():
                lat_max = max(lat_max, float(lat_r[routes > 0].max()))
    size_total = sum(g["size"] for g in cfg["groups"])
    active = float(sum(v.sum() for v in result.active.values()))
    updates = float(size_total) * result.steps * n
    inactive = updates - active
    spikes_total = float(sum(v.sum() for v in result.spikes.values()))
    host_macs = ann_macs = 0
    for g in cfg["groups"]:
        for p in g["projections"]:
            w = program.arrays[p["weight_key"]]
            macs = g["size"] * (w.size // w.shape[0])  # the layer run once as an ANN: outputs x fan-in
            ann_macs += macs
            if p["host"]:
                host_macs += macs
    e_syn = synops / n * E["synop"]
    e_neu = (active * E["neuron_update_active"] + inactive * E["neuron_update_inactive"]) / n
    e_msg = msg_energy / n
    e_chip = chip_energy / n
    spiking = [g for g in cfg["groups"] if g["kind"] == "spiking"]
    spiking_slots = sum(g["size"] for g in spiking) * result.steps * n
    spiking_spikes = sum(float(result.spikes[g["name"]].sum()) for g in spiking)
    return {
        "per_inference": {
            "synops": synops / n,
            "spikes": spikes_total / n,
            "spike_messages": msgs / n,
            "inter_core_spike_messages": inter / n,
            "inter_chip_spike_messages": chip_msgs / n,
            "spike_message_latency_ns_mean": lat_sum / max(msgs, 1e-12) if msgs else 0.0,
            "spike_message_latency_ns_max": lat_max,
            "neuron_updates_active": active / n,
            "neuron_updates_inactive": inactive / n,
            "latency_steps": result.steps,
        },
        "checks": _checks(program, result),
        "overflow": _overflow(program, result),
        "per_core": {"synops": (core_syn / n).tolist(), "spikes": (core_spikes / n).tolist(),
                     "spike_messages": (core_msgs / n).tolist()},
        "routes": _top_routes(route_msgs / n),
        "energy": {
            "per_inference_pJ": e_syn + e_neu + e_msg + e_chip,
            "breakdown": {"synops_pJ": e_syn, "neuron_updates_pJ": e_neu, "spike_messages_pJ": e_msg + e_chip},
            "spike_messages_interchip_pJ": e_chip,     # the part of spike_messages_pJ for chip boundaries
        },
        "host": {
            "macs": host_macs,
            "bias_writes": int(sum(g["size"] for g in cfg["groups"] if any(p["host"] for p in g["projections"]))),
            "energy_pJ_45nm": host_macs * E["mac_45nm"],
            "definition": "the host computes the direct-input first layer once per sample (outputs x fan-in MACs, "
                          "float) and writes one bias per host-fed neuron; its energy at the 45 nm float MAC "
                          "(Horowitz, ISSCC 2014: 4.6 pJ) is not part of the chip's per_inference_pJ",
        },
        "conventions_45nm": {
            "snn_pJ": synops / n * E["ac_45nm"] + host_macs * E["mac_45nm"],
            "ann_pJ": ann_macs * E["mac_45nm"],
            "ann_macs": ann_macs,
            "host_macs": host_macs,
            "ratio_ann_over_snn": ann_macs * E["mac_45nm"] / max(synops / n * E["ac_45nm"] + host_macs * E["mac_45nm"],
                                                               1e-12),
            "definition": "SNN: SynOps x E_AC + host-encoded first layer MACs x E_MAC (once per sample); "
                          "ANN: every layer once, outputs x fan-in MACs x E_MAC",
        },
        "neurobench": {
            "effective_synops": synops / n,
            "activation_sparsity": 1.0 - spiking_spikes / max(spiking_slots, 1),
            "activation_sparsity_steps": result.steps,
            "connection_sparsity": 1.0 - nnz_conn / max(dense_conn, 1),
            "footprint_bytes": int(sum(c["memory_bits"] for c in cfg["cores"]) // 8 + sum(
                program.arrays[p["weight_key"]].size * 4 for g in cfg["groups"] for p in g["projections"] if p["host"])),
        },
    }


def _overflow(program, result) -> dict:
    """Per group: saturation and overflow events counted in the run (see ``SimResult.overflow``),
    totals over the samples, with the samples and steps they are counted over."""
    groups = {g: dict(c) for g, c in sorted(result.overflow.items())}
    return {"groups": groups, "samples": int(result.samples), "steps": int(result.steps),
            "definition": "values beyond Loihi's 16-bit synaptic input (|a| > 2^15 - 1, counted, not saturated, as "
                          "lava-nc's models), 24-bit current u wrapped around, 24-bit voltage v clipped, per (sample, "
                          "step, neuron); host-computed biases clipped to the 13-bit mantissa (each computed bias once)"}


def _checks(program, result) -> list[dict]:
    """Warnings from the run: synaptic input beyond Loihi's 16-bit dendritic accumulator (lava-nc's
    Python models do not saturate it, nor does loihi-sim), readouts that fired (scores reset), and
    host biases clipped to 13 bits."""
    out = []
    for name, m in sorted(result.max_abs_input.items()):
        lim = 2 ** (program.fp["syn_input_bits"] - 1) - 1
        if m > lim:
            out.append({"check": "SYNAPTIC_INPUT_16BIT", "group": name, "value": int(m), "limit": lim,
                        "message": f"group {name}: synaptic input reached {m}; Loihi's input is 16-bit signed"})
    for g in program.config["groups"]:
        fired = float(result.spikes[g["name"]].sum())
        if g["kind"] != "spiking" and fired:
            out.append({"check": "READOUT_SATURATED", "group": g["name"], "value": fired, "limit": 0,
                        "message": f"readout {g['name']} crossed its threshold {fired:.0f} times (voltage beyond the "
                                   "calibrated range): those scores were reset to 0"})
    for name, c in sorted(result.overflow.items()):
        for key, rule, what in (("u_wrap_24bit", "U_WRAP_24BIT", "current u wrapped around its 24 bits"),
                                ("v_saturated_24bit", "V_SATURATED_24BIT", "voltage v clipped to its 24 bits")):
            if c.get(key):
                out.append({"check": rule, "group": name, "value": int(c[key]), "limit": 0,
                            "message": f"group {name}: {what} {c[key]} times (sample x step x neuron, "
                                       f"{result.samples} samples)"})
    if result.host_bias_clipped:
        out.append({"check": "HOST_BIAS_CLIPPED", "value": int(result.host_bias_clipped),
                    "message": f"{result.host_bias_clipped} host-computed biases clipped to the 13-bit mantissa"})
    return out
