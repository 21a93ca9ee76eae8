"""Per-inference activity and energy from simulated event counts.

Events (all counted in :class:`~snnc.backends.loihi.sim.Program` runs, per sample):

- SynOps: one per spike and synapse it drives (spikes x non-zero synapses of the source), input
  events of a spike-input model included (each event drives its input axon's synapses);
- neuron updates: every compartment, every one of the ``latency_steps`` steps; *active* when
  its u or v is non-zero after the update or it spiked (snnc's reading of Davies 2018's
  active/inactive update), *inactive* otherwise. The padding compartments of a padded layout
  (:mod:`snnc.backends.loihi.compile`) are not simulated (no neuron behind them): they are charged
  as active on every step, an upper bound (``neuron_updates_padding``). The synaptic events into them
  (the non-zero weights of an entry's row that address padding, for each spike of a source with a
  neuron target in the slice) are charged like SynOps in energy and time but are not SynOps
  (``synaptic_events_padding``; SynOps count connections to neurons);
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

Time per step (``time``; per-event latencies and the barrier from the target's ``[time_ns]``, SANA-FE
2.2.9's Loihi architecture file): per core and time step,

    t_core = compartments x neuron_access + active compartments x neuron_update + spikes x spike_out
             + messages sent x message_out                                        (the neuron side)
             + messages received x message_in + sum over synapse units of SynOps x synapse_<unit>
                                                                                  (the message side)

with a step's messages and SynOps charged to the step in which the spikes were sent (the destination
core processes them within that step, SANA-FE's order). A step takes the busiest core's time plus the
barrier (``[time_ns].barrier`` for the number of tiles in use); an inference the sum of its steps.
``time_per_step_s_overlap`` is SANA-FE's "simple" timing model instead: max(slowest neuron side,
slowest message side) + barrier. The exact per-step form needs per-step events: from
``SimResult.trace`` (``Program.run(..., record=True)``, basis ``"trace"``); without a trace every core
gets its mean events per step (basis ``"mean"``: every step equal, the busiest core's mean time, a lower
bound on the mean of the per-step maxima).

The synapse unit of an on-chip projection (:func:`synapse_unit`): ``conv`` for a convolution on
population axons (one shared kernel), ``dense`` for a dense projection on population axons, ``sparse``
for discrete axons (per-axon sparse synapse lists) -- after SANA-FE's own DVS-gesture network.

SANA-FE's energy convention (``energy_sanafe``, the target's ``[sanafe_energy_pJ]``), beside snnc's
figure, which it does not change: SynOps x the unit's energy; every compartment-step x neuron_access,
active ones x neuron_update more, spikes x spike_out; spike messages x (message_out + message_in) plus
per tile hop (E-W / N-S). SANA-FE counts a neuron as updated when its v was non-zero before the step,
it received input or has a bias; snnc's *active* count (above) stands in for that.
"""
from __future__ import annotations

import numpy as np
import torch

from snnc.backends.loihi import mapping as M
from snnc.backends.loihi.compile import dest_core_matrix, source_core_vector
from snnc.errors import SnncError
from snnc.ir.ops import synapse_counts


def padding_synapse_counts(program) -> dict:
    """Per padded group and on-chip projection index: ``[K slices, source neurons]`` float64 synapses from each
    source neuron (C order) into the padding compartments of each slice (``{}`` without padded groups).
    Each spike drives them on the chip, though they feed no neuron."""
    out: dict = {}
    groups = {g["name"]: g for g in program.config["groups"]}
    for g in program.config["groups"]:
        if not g.get("padding"):
            continue
        shape, block = tuple(g["shape"]), g.get("channel_block")
        starts = M.block_starts(shape, block)
        chip = [p for p in g["projections"] if not p["host"]]
        out[g["name"]] = {}
        for j, p in enumerate(chip):
            mask = np.asarray(program.arrays[p["weight_key"]]) != 0
            src = groups.get(p["source"])
            atoms = int(p.get("atoms", 1)) if p.get("format") == M.POPULATION else None
            pc = M.ProjCounter(p, mask, shape, block, atoms, tuple(g["padding"]))
            rows = []
            for sl in g["slices"]:
                jb = int(np.searchsorted(starts, sl["start"], side="right") - 1)
                q0, q1 = sl["units"]
                rows.append(pc.padding_counts(jb, int(q0), int(q1)))
            n_src = int(np.prod(p["source_shape"])) if src is None else int(src["size"])
            out[g["name"]][j] = np.stack(rows) if rows else np.zeros((0, n_src))
    return out


def _with_padding(cnt: torch.Tensor, pad_cnt) -> torch.Tensor:
    """Synaptic events per source spike and slice on the chip: the connections ``cnt`` plus, where a padded
    layout's entry reaches padding compartments, those (only for sources with a neuron target in the slice:
    the others have no input axon there)."""
    if pad_cnt is None:
        return cnt
    return cnt + torch.as_tensor(pad_cnt, dtype=cnt.dtype) * (cnt > 0)


def padding_per_core(cfg: dict) -> np.ndarray:
    """Padding compartments (a padded layout's compartments without a neuron) per core, int64 ``[cores]``."""
    out = np.zeros(len(cfg["cores"]), np.int64)
    for g in cfg["groups"]:
        for sl in g["slices"]:
            out[sl["core"]] += int(sl.get("compartments", sl["stop"] - sl["start"])) - (sl["stop"] - sl["start"])
    return out


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


#: how many cores the time model's per-core breakdown keeps (the slowest, by mean time per step)
TOP_CORES = 8
#: the synapse units of SANA-FE's Loihi architecture (``[time_ns]`` / ``[sanafe_energy_pJ]`` keys ``synapse_<unit>``)
SYNAPSE_UNITS = ("conv", "sparse", "dense")


def synapse_unit(p: dict) -> str:
    """SANA-FE's synapse unit for an on-chip projection config: ``"conv"`` (population axons and a
    convolution: one shared kernel), ``"dense"`` (population axons, a dense op), ``"sparse"`` (discrete
    axons: one sparse synapse list per axon; also a projection without a recorded format)."""
    if p.get("format") != M.POPULATION:
        return "sparse"
    return "conv" if any(op.get("op") == "conv2d" for op in p["ops"]) else "dense"


def barrier_ns(tiles: int, time_ns: dict) -> float:
    """The barrier at the end of a step for ``tiles`` tiles in use: the value of the largest
    ``barrier_tiles`` entry <= tiles (the first value below the first entry), as SANA-FE's table."""
    keys, vals = list(time_ns["barrier_tiles"]), list(time_ns["barrier"])
    if not keys or len(keys) != len(vals) or keys != sorted(keys):
        raise SnncError("[time_ns]: barrier_tiles must be ascending and as long as barrier")
    out = vals[0]
    for k, v in zip(keys, vals):
        if tiles >= k:
            out = v
    return float(out)


def tiles_used(cores: list, chip: dict) -> int:
    """Distinct tiles (over all chips) that hold at least one core of the configuration."""
    ids = np.array([c["core"] for c in cores if c.get("neurons", 1) > 0], np.int64)
    c, x, y = M.core_position(ids, chip)
    return len(set(zip(c.tolist(), x.tolist(), y.tolist())))


def core_step_events(program, result, counts: dict, core_vec: dict, ncores: int, chunk: int = 512,
                     pad_counts: dict | None = None) -> tuple:
    """Per (sample, step) row and core: the events the time model prices, from ``result.trace``.

    Returns ``(rows, ev)``: ``ev`` maps ``active``, ``spikes``, ``messages_out``, ``messages_in`` and
    ``synops_<unit>`` to float64 ``[rows, ncores]`` arrays (rows = samples x steps, sample-major).
    SynOps and messages count in the step the spikes were sent. ``pad_counts``:
    :func:`padding_synapse_counts` of the program, if the caller has them."""
    cfg = program.config
    N, L = int(result.samples), int(result.steps)
    rows = N * L
    keys = ("active", "spikes", "messages_out", "messages_in") + tuple(f"synops_{u}" for u in SYNAPSE_UNITS)
    ev = {k: np.zeros((rows, ncores)) for k in keys}
    groups = {g["name"]: g for g in cfg["groups"]}
    padc = padding_synapse_counts(program) if pad_counts is None else pad_counts
    for g in cfg["groups"]:
        tr = result.trace[g["name"]]
        idx = torch.as_tensor(core_vec[g["name"]])
        for r0 in range(0, rows, chunk):
            sl = slice(r0, min(rows, r0 + chunk))
            s = tr["spikes"].reshape(rows, -1)[sl].to(torch.float64)
            act = ((tr["u"].reshape(rows, -1)[sl] != 0) | (tr["v"].reshape(rows, -1)[sl] != 0)).to(torch.float64)
            act = torch.maximum(act, s)
            for key, val in (("spikes", s), ("active", act)):
                ev[key][sl] += torch.zeros((s.shape[0], ncores), dtype=torch.float64).index_add_(1, idx, val).numpy()
    for g in cfg["groups"]:
        slice_cores = [sc["core"] for sc in g["slices"]]
        chip_projs = [p for p in g["projections"] if not p["host"]]
        for j, p in enumerate(chip_projs):
            cnt = counts[g["name"]][j].to(torch.float64)
            unit = f"synops_{synapse_unit(p)}"
            if p["source"] not in groups:  # host spike input: no per-step record; its mean over the T input steps
                if getattr(result, "input_spikes", None) is not None:
                    T = int(cfg["num_steps"])
                    per_slice = (cnt @ result.input_spikes).numpy() / max(N * T, 1)
                    st = np.arange(rows) % L < T
                    for k, c in enumerate(slice_cores):
                        ev[unit][st, c] += per_slice[k]
                continue
            D = dest_core_matrix(cnt, slice_cores).to(torch.float64)       # [dest cores, src]
            uniq = sorted(set(slice_cores))
            fan = D.sum(0)                                                # destination cores per source neuron
            src_idx = torch.as_tensor(core_vec[p["source"]])
            spk = result.trace[p["source"]]["spikes"].reshape(rows, -1)
            hw = _with_padding(cnt, padc.get(g["name"], {}).get(j))
            for r0 in range(0, rows, chunk):
                sl = slice(r0, min(rows, r0 + chunk))
                s = spk[sl].to(torch.float64)
                per_slice = (s @ hw.T).numpy()                             # [rows, slices]
                for k, c in enumerate(slice_cores):
                    ev[unit][sl, c] += per_slice[:, k]
                ev["messages_in"][sl][:, uniq] += (s @ D.T).numpy()
                ev["messages_out"][sl] += torch.zeros((s.shape[0], ncores), dtype=torch.float64).index_add_(
                    1, src_idx, s * fan).numpy()
    return rows, ev


def time_model(program, result, counts: dict, core_vec: dict | None = None, top: int = TOP_CORES,
               mean_events: dict | None = None, pad_counts: dict | None = None) -> dict:
    """Time per step and per inference (see the module docstring), with the busiest core and the
    slowest ``top`` cores' breakdown. Per-step events from ``result.trace`` when the run recorded one
    (basis ``"trace"``), else every core's mean events per step, ``mean_events`` (basis ``"mean"``:
    ``{"active", "spikes", "messages_out", "messages_in", "synops_<unit>"}`` -> float64 ``[ncores]``
    per sample and step, as :func:`measure` counts them). ``pad_counts``: :func:`padding_synapse_counts`
    of the program, if the caller has them.

    Raises:
        SnncError: no trace and no ``mean_events``.
    """
    cfg, target = program.config, program.target
    tn = M.target_section(target, "time_ns")
    ncores = len(cfg["cores"])
    if core_vec is None:
        core_vec = {g["name"]: source_core_vector(g) for g in cfg["groups"]}
    N, L = max(int(result.samples), 1), max(int(result.steps), 1)
    padding = padding_per_core(cfg)   # charged as compartments active on every step (an upper bound)
    neurons = padding.astype(np.float64)
    for g in cfg["groups"]:
        neurons += np.bincount(core_vec[g["name"]], minlength=ncores)
    if getattr(result, "trace", None) and all(g["name"] in result.trace for g in cfg["groups"]):
        basis = "trace"
        rows, ev = core_step_events(program, result, counts, core_vec, ncores, pad_counts=pad_counts)
    elif mean_events is not None:
        basis = "mean"
        rows, ev = 1, {k: np.asarray(v, np.float64).reshape(1, ncores) for k, v in mean_events.items()}
    else:
        raise SnncError("time_model needs a recorded run (Program.run(record=True)) or the cores' mean events")
    ns = 1e-9
    parts = {
        "neuron_access_s": np.broadcast_to(neurons * tn["neuron_access"] * ns, (rows, ncores)),
        "neuron_update_s": (ev["active"] + padding) * tn["neuron_update"] * ns,
        "spike_out_s": ev["spikes"] * tn["spike_out"] * ns,
        "message_out_s": ev["messages_out"] * tn["message_out"] * ns,
        "message_in_s": ev["messages_in"] * tn["message_in"] * ns,
        "synapse_s": sum(ev[f"synops_{u}"] * tn[f"synapse_{u}"] for u in SYNAPSE_UNITS) * ns,
    }
    neuron_side = parts["neuron_access_s"] + parts["neuron_update_s"] + parts["spike_out_s"] + parts["message_out_s"]
    message_side = parts["message_in_s"] + parts["synapse_s"]
    core_t = neuron_side + message_side                                   # [rows, cores]
    tiles = tiles_used(cfg["cores"], target["chip"])
    bar = barrier_ns(tiles, tn) * ns
    step = core_t.max(1) + bar                                            # [rows]
    step_ov = np.maximum(neuron_side.max(1), message_side.max(1)) + bar
    if basis == "trace":
        per_inf = step.reshape(N, L).sum(1)
        per_inf_ov = step_ov.reshape(N, L).sum(1)
    else:
        per_inf, per_inf_ov = step * L, step_ov * L
    mean_core = core_t.mean(0)
    slowest = np.argmax(core_t, 1)
    busiest_steps = np.bincount(slowest, minlength=ncores)
    order = np.lexsort((np.arange(ncores), -mean_core))[:top]
    rows_out = []
    for c in order:
        rows_out.append({
            "core": int(c), "time_per_step_s_mean": float(mean_core[c]),
            "time_per_step_s_max": float(core_t[:, c].max()),
            "slowest_in_steps": int(busiest_steps[c]),
            "breakdown_s": {k: float(v[:, c].mean()) for k, v in parts.items()},
            "events_per_step": dict({"neurons": float(neurons[c])},
                                    **{k: float(v[:, c].mean()) for k, v in ev.items()}),
        })
    return {
        "time_per_step_s": {"mean": float(step.mean()), "max": float(step.max())},
        "time_per_inference_s": float(per_inf.mean()),
        "time_per_inference_s_max": float(per_inf.max()),
        "time_per_step_s_overlap": {"mean": float(step_ov.mean()), "max": float(step_ov.max())},
        "time_per_inference_s_overlap": float(per_inf_ov.mean()),
        "barrier_s": bar, "tiles": tiles, "steps": L, "samples": int(result.samples), "basis": basis,
        "busiest_core": int(order[0]) if ncores else None,
        "per_core": rows_out,
        "definition": "per core and step: compartments x neuron_access + active x neuron_update + spikes x spike_out + "
                      "messages sent x message_out + messages received x message_in + SynOps x synapse_<unit> "
                      "(conv / sparse / dense); step = slowest core + barrier (by tiles in use); inference = sum of "
                      "its steps. overlap: SANA-FE's simple timing model, max(slowest neuron side, slowest message "
                      "side) + barrier. basis 'trace': per (sample, step) events from a recorded run; 'mean': each "
                      "core's mean events per step (a lower bound on the mean step time)",
        "source": target.sources.get("time_ns"),
    }


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
    SE = M.target_section(target, "sanafe_energy_pJ")
    sf_cost = M.spike_cost_matrix(ncores, chip, {"spike_in_tile": SE["message_out"] + SE["message_in"],
                                                 "hop_ew": SE["hop_ew"], "hop_ns": SE["hop_ns"]})
    core_syn_unit = {u: np.zeros(ncores) for u in SYNAPSE_UNITS}   # synaptic events per core and synapse unit
    sf_msg = 0.0
    padc = padding_synapse_counts(program)
    pad_events = 0.0   # synaptic events into padding compartments (on the chip, not SynOps)
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
                        core_syn_unit[synapse_unit(p)][c] += per_slice[k]
                    synops += float(per_slice.sum())
                continue
            s_src = result.spikes[p["source"]].to(torch.float64)
            per_slice = (cnt @ s_src).numpy()
            hw_slice = (_with_padding(cnt, padc.get(g["name"], {}).get(j)) @ s_src).numpy()
            for k, c in enumerate(slice_cores):
                core_syn_unit[synapse_unit(p)][c] += hw_slice[k]
            synops += float(per_slice.sum())
            pad_events += float(hw_slice.sum() - per_slice.sum())
            D = dest_core_matrix(cnt, slice_cores).numpy()  # [dest cores, src]
            uniq = np.array(sorted(set(slice_cores)))
            src_core = core_vec[p["source"]]
            spn = s_src.numpy()
            # messages per (source core, destination core) route
            routes = np.stack([np.bincount(src_core, weights=spn * D[k], minlength=ncores)
                               for k in range(len(uniq))], 1)            # [ncores, dest cores]
            msgs += float(routes.sum())
            msg_energy += float((routes * cost_all[:, uniq]).sum())
            sf_msg += float((routes * sf_cost[:, uniq]).sum())
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
    pad_updates = float(padding_per_core(cfg).sum()) * result.steps * n   # padding compartments, active every step
    active = float(sum(v.sum() for v in result.active.values())) + pad_updates
    updates = float(size_total) * result.steps * n + pad_updates
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
    e_syn = (synops + pad_events) / n * E["synop"]
    e_neu = (active * E["neuron_update_active"] + inactive * E["neuron_update_inactive"]) / n
    e_msg = msg_energy / n
    e_chip = chip_energy / n
    spiking = [g for g in cfg["groups"] if g["kind"] == "spiking"]
    spiking_slots = sum(g["size"] for g in spiking) * result.steps * n
    spiking_spikes = sum(float(result.spikes[g["name"]].sum()) for g in spiking)
    core_syn = sum(core_syn_unit.values())
    syn_unit = {u: float(v.sum()) for u, v in core_syn_unit.items()}
    sf_hops = sf_msg - msgs * (SE["message_out"] + SE["message_in"])
    sf = {"synapse_pJ": sum(syn_unit[u] * SE[f"synapse_{u}"] for u in SYNAPSE_UNITS) / n,
          "neuron_pJ": (updates * SE["neuron_access"] + active * SE["neuron_update"]
                        + spikes_total * SE["spike_out"]) / n,
          "message_pJ": sf_msg / n}
    per_row = n * max(int(result.steps), 1)
    core_active = sum(np.bincount(core_vec[g["name"]], weights=result.active[g["name"]].numpy(), minlength=ncores)
                      for g in cfg["groups"])
    mean_events = dict({f"synops_{u}": v / per_row for u, v in core_syn_unit.items()},
                       active=core_active / per_row, spikes=core_spikes / per_row,
                       messages_out=route_msgs.sum(1) / per_row, messages_in=route_msgs.sum(0) / per_row)
    timing = time_model(program, result, counts, core_vec, mean_events=mean_events, pad_counts=padc)
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
            "neuron_updates_padding": pad_updates / n,
            "synaptic_events_padding": pad_events / n,
            "latency_steps": result.steps,
            "time_per_step_s_mean": timing["time_per_step_s"]["mean"],
            "time_per_step_s_max": timing["time_per_step_s"]["max"],
            "time_per_inference_s": timing["time_per_inference_s"],
        },
        "time": timing,
        "energy_sanafe": {
            "per_inference_pJ": sum(sf.values()),
            "breakdown": sf,
            "detail": dict({f"synapse_{u}_pJ": syn_unit[u] * SE[f"synapse_{u}"] / n for u in SYNAPSE_UNITS},
                           neuron_access_pJ=updates * SE["neuron_access"] / n,
                           neuron_update_pJ=active * SE["neuron_update"] / n,
                           spike_out_pJ=spikes_total * SE["spike_out"] / n,
                           message_out_pJ=msgs * SE["message_out"] / n, message_in_pJ=msgs * SE["message_in"] / n,
                           hops_pJ=sf_hops / n),
            "synops_by_unit": {u: syn_unit[u] / n for u in SYNAPSE_UNITS},
            "definition": "SANA-FE's Loihi convention, beside snnc's energy (unchanged): SynOps x the synapse "
                          "unit's energy (conv / sparse / dense, see time.definition); every compartment-step x "
                          "neuron_access, active ones x neuron_update more, spikes x spike_out; spike messages x "
                          "(message_out + message_in) + E-W / N-S tile hops. snnc's active count stands in for "
                          "SANA-FE's updated count (v non-zero before the step, input received, or a bias)",
            "source": target.sources.get("sanafe_energy_pJ"),
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
