"""Reports: JSON (stable key order), a terminal table (rich) and a per-core utilisation plot.

Every figure names its source: limits and energies cite the target TOML's
``[sources]``; activity figures are measured in the bit-accurate simulation
on the samples named in ``accuracy.source``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from snnc.errors import SnncError

CORE_KEYS = ("neurons", "axons_in", "axons_out", "synapses", "memory_bits")


def _not_finite(v) -> bool:
    return isinstance(v, (float, np.floating)) and not math.isfinite(float(v))


def _plain(v):
    """``v`` as JSON data: numpy values as Python numbers (8 significant digits), dict keys as strings.

    A figure that cannot be computed (NaN or infinite: a ratio over zero samples, an empty layer) is
    written as ``null``; in a dict, a key ``<name>_reason`` beside it says so (a producer that knows the
    cause writes its own ``<name>_reason``, which is kept). Never a silent null.
    """
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            out[str(k)] = _plain(x)
            if _not_finite(x) and f"{k}_reason" not in v:
                out[f"{k}_reason"] = f"not computable ({float(x)}: a division by zero or no samples)"
        return out
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return None
        return float(f"{f:.8g}")
    return v


def group_labels(report: dict) -> dict[str, str]:
    """Readable names of the neuron groups: ``report["groups"][i]["label"]`` where the frontend gave one (a
    ``Sequential`` index such as ``2`` becomes ``2:Leaky``), else the group name."""
    return {g["name"]: g.get("label", g["name"]) for g in report.get("groups", [])}


def build_report(config: dict, target, metrics: dict | None = None, accuracy: dict | None = None,
                 pipeline_log: list | None = None, model: dict | None = None) -> dict:
    """Assemble ``report.json`` (see README "Contract")."""
    lim = target["core"]
    cores = []
    for i, c in enumerate(config["cores"]):
        row = {k: c[k] for k in ("core", "chip", "groups") + CORE_KEYS}
        row["utilisation"] = {"neurons": c["neurons"] / lim["neurons"], "axons_in": c["axons_in"] / lim["axons_in"],
                              "axons_out": c["axons_out"] / lim["axons_out"],
                              "memory": c["memory_bits"] / lim["synapse_memory_bits"]}
        row["stored_synapses"] = c.get("stored_synapses", c["synapses"])
        if metrics:
            row["synops_per_inference"] = metrics["per_core"]["synops"][i]
            row["spikes_per_inference"] = metrics["per_core"]["spikes"][i]
        cores.append(row)
    totals = {k: int(sum(c[k] for c in config["cores"])) for k in CORE_KEYS}
    totals["cores"] = len(config["cores"])
    totals["chips"] = (max((c["chip"] for c in config["cores"]), default=-1) + 1)
    totals["stored_synapses"] = int(sum(c.get("stored_synapses", c["synapses"]) for c in config["cores"]))
    src = target.sources
    energy = {"per_inference_pJ": None, "breakdown": None,
              "sources": {"energy_per_event": src.get("energy_pJ"), "chip_geometry": src.get("chip"),
                          "activity": "measured in the bit-accurate loihi-sim simulation (see accuracy.source)"}}
    rep = {
        "target": config["target"],
        "model": model or {},
        "num_steps": config["num_steps"], "dt_s": config["dt"], "latency_steps": config["latency_steps"],
        "cores": cores, "totals": totals,
        "groups": [{"name": g["name"], "kind": g["kind"], "neurons": g["size"], "cores": len({s["core"] for s in g["slices"]}),
                    "vth_mant": g["vth_mant"], "du": g["du"], "dv": g["dv"], "bias_exp": g["bias_exp"],
                    "time_offset_steps": g["offset"],
                    "projections": [{"source": p["source"], "host": p["host"], "synapses": p["synapses"],
                                     "weight_exp": p["weight_exp"], "delay": p["delay"],
                                     **({"format": p["format"], "axon_type": p["axon_type"], "atoms": p["atoms"]}
                                        if "format" in p else {})} for p in g["projections"]]}
                   for g in config["groups"]],
        "limits": {"core": dict(lim), "source": src.get("core"), "synapse_format": src.get("synapse_format")},
        "mapping": _mapping_section(config, src),
        "energy": energy,
        # wall times are left out: the same input and seed give byte-identical files
        "pipeline": [{k: v for k, v in e.items() if k not in ("time_s", "times_s")} for e in (pipeline_log or [])],
    }
    if metrics:
        energy["per_inference_pJ"] = metrics["energy"]["per_inference_pJ"]
        energy["breakdown"] = metrics["energy"]["breakdown"]
        energy["spike_messages_interchip_pJ"] = metrics["energy"].get("spike_messages_interchip_pJ", 0.0)
        if "host" in metrics:
            energy["host"] = metrics["host"]
            totals["host_macs_per_inference"] = int(metrics["host"]["macs"])
        if "routes" in metrics:
            rep["traffic"] = {"top_routes": metrics["routes"],
                              "note": "the heaviest inter-core routes: spike messages per inference from source "
                                      "core to destination core (floorplan.png draws them)"}
        rep["activity_per_inference"] = metrics["per_inference"]
        if "time" in metrics:
            rep["time"] = metrics["time"]
        if "energy_sanafe" in metrics:
            energy["sanafe_convention"] = metrics["energy_sanafe"]
        rep["checks"] = metrics["checks"]
        if "overflow" in metrics:
            rep["overflow"] = metrics["overflow"]
        rep["conventions_45nm"] = dict(metrics["conventions_45nm"], source=src.get("energy_pJ"))
        rep["neurobench"] = dict(metrics["neurobench"], source="definitions of NeuroBench (Yik et al., "
                                 "Nature Communications 2025), measured in simulation")
    else:
        energy["note"] = "no data given: energy per inference depends on activity; compile or simulate with --data"
    if accuracy:
        rep["accuracy"] = accuracy
    return _plain(rep)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_report(rep, where) -> None:
    """The structure :func:`print_report` reads (see README "Contract").

    Raises:
        ValueError: naming the first missing or mistyped field.
    """
    def need(cond, what):
        if not cond:
            raise SnncError(f"{where}: not an snnc report ({what})")

    need(isinstance(rep, dict), "must hold a JSON object")
    need(isinstance(rep.get("target"), str), "target")
    need(isinstance(rep.get("cores"), list) and rep["cores"], "cores")
    for c in rep["cores"]:
        need(isinstance(c, dict) and all(_num(c.get(k)) for k in ("core",) + CORE_KEYS) and
             isinstance(c.get("groups"), list) and isinstance(c.get("utilisation"), dict) and
             all(_num(c["utilisation"].get(k)) for k in ("neurons", "axons_in", "axons_out", "memory")), "a core row")
    tot = rep.get("totals")
    need(isinstance(tot, dict) and all(_num(tot.get(k)) for k in CORE_KEYS + ("cores", "chips")), "totals")
    e = rep.get("energy")
    need(isinstance(e, dict) and "per_inference_pJ" in e, "energy")
    need(_num(rep.get("latency_steps")), "latency_steps")
    if e["per_inference_pJ"] is not None:
        need(_num(e["per_inference_pJ"]) and isinstance(e.get("breakdown"), dict) and
             all(_num(e["breakdown"].get(k)) for k in ("synops_pJ", "neuron_updates_pJ", "spike_messages_pJ")),
             "energy breakdown")
        a = rep.get("activity_per_inference")
        need(isinstance(a, dict) and all(_num(a.get(k)) for k in ("synops", "spikes", "inter_core_spike_messages")),
             "activity_per_inference")
        c45, nb = rep.get("conventions_45nm"), rep.get("neurobench")
        need(isinstance(c45, dict) and all(_num(c45.get(k)) for k in ("snn_pJ", "ann_pJ", "ratio_ann_over_snn")),
             "conventions_45nm")
        need(isinstance(nb, dict) and all(_num(nb.get(k)) for k in ("activation_sparsity", "connection_sparsity",
                                                                      "footprint_bytes")), "neurobench")
        need(isinstance(rep.get("checks", []), list) and all(isinstance(c, dict) and "check" in c and "message" in c
                                                             for c in rep.get("checks", [])), "checks")
        need(all("synops_per_inference" not in c or _num(c["synops_per_inference"]) for c in rep["cores"]),
             "a core's synops_per_inference")
    if "accuracy" in rep:
        acc = rep["accuracy"]
        need(isinstance(acc, dict) and _num(acc.get("compiled")) and _num(acc.get("samples")) and
             isinstance(acc.get("source"), str) and (acc.get("float") is None or _num(acc.get("float"))), "accuracy")


def _mapping_section(config: dict, src: dict) -> dict:
    m = config.get("mapping")
    if not m:
        return {}
    out = dict(m)
    out["sources"] = {"axon_types": src.get("axon_types"), "interchip": src.get("interchip"),
                      "lower_bound": "max over neurons, synaptic memory, input axons and output-axon slots of "
                                     "ceil(total / per-core limit), each total at its cheapest synapse format "
                                     "(backends/loihi/placement.py)"}
    return out


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def print_report(report: dict, console=None) -> None:
    """Per-core table and totals on the terminal."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=120)
    labels = group_labels(report)
    t = Table(title=f"{report['target']}: {report['totals']['cores']} cores on {report['totals']['chips']} chip(s)",
              show_lines=False)
    for col in ("chip", "core", "groups", "neurons", "axons in", "axons out", "synapses", "memory (KiB)", "mem %",
                "SynOps/inf"):
        t.add_column(col, justify="right" if col not in ("groups",) else "left")
    prev_chip = None
    for c in report["cores"]:
        if prev_chip is not None and c["chip"] != prev_chip:
            t.add_section()
        prev_chip = c["chip"]
        t.add_row(str(c["chip"]), str(c["core"]), ",".join(labels.get(g, g) for g in c["groups"]), f"{c['neurons']:,}", f"{c['axons_in']:,}",
                  f"{c['axons_out']:,}", f"{c['synapses']:,}", f"{c['memory_bits'] / 8192:.1f}",
                  f"{100 * c['utilisation']['memory']:.0f}",
                  f"{c['synops_per_inference']:,.0f}" if "synops_per_inference" in c else "-")
    tot = report["totals"]
    t.add_section()
    t.add_row("total", "", "", f"{tot['neurons']:,}", f"{tot['axons_in']:,}", f"{tot['axons_out']:,}",
              f"{tot['synapses']:,}", f"{tot['memory_bits'] / 8192:.1f}", "",
              f"{report['activity_per_inference']['synops']:,.0f}" if "activity_per_inference" in report else "-")
    console.print(t)
    m = report.get("mapping") or {}
    if m.get("lower_bound"):
        lb = m["lower_bound"]
        terms = ", ".join(f"{k} {v}" for k, v in lb["terms"].items())
        console.print(f"mapping: {tot['cores']} cores on {tot['chips']} chip(s); lower bound {lb['cores']} cores "
                      f"({terms}), ratio {m['ratio']:.2f}; stored synapses {tot.get('stored_synapses', 0):,} for "
                      f"{tot['synapses']:,} connections; routes {m['routes']:,}, {m['inter_chip_routes']:,} between chips")
    o = m.get("objective") or {}
    if o.get("candidates"):
        c, fewest = o["candidates"][o["chosen"]], o["candidates"][0]
        cap = f"at most {c['neurons_per_core']}" if c["neurons_per_core"] else "up to the core's limit of"
        console.print(f"objective {o['objective']}: {c['formats']} synapse formats, {cap} compartments per core: "
                      f"{c['cores']} cores, "
                      f"{c['time_per_inference_s'] * 1e3:.3f} ms and {c['energy_per_inference_pJ'] / 1e6:.3f} µJ per "
                      f"inference (fewest cores: {fewest.get('cores', '-')} cores, "
                      f"{fewest.get('time_per_inference_s', float('nan')) * 1e3:.3f} ms, "
                      f"{fewest.get('energy_per_inference_pJ', float('nan')) / 1e6:.3f} µJ; "
                      f"{len(o['candidates'])} candidates in report.json)")
    e = report["energy"]
    if e.get("per_inference_pJ") is not None:
        b = e["breakdown"]
        a = report["activity_per_inference"]
        console.print(f"energy per inference: {e['per_inference_pJ'] / 1e6:.3f} µJ "
                      f"(SynOps {b['synops_pJ'] / 1e6:.3f}, neuron updates {b['neuron_updates_pJ'] / 1e6:.3f}, "
                      f"spike messages {b['spike_messages_pJ'] / 1e6:.3f} µJ, of which between chips "
                      f"{e.get('spike_messages_interchip_pJ', 0.0) / 1e6:.3f}; Davies et al. 2018 Table 2, inter-chip: "
                      "snnc's assumption)")
        tm = report.get("time")
        if tm:
            console.print(f"time (SANA-FE's Loihi latencies, the busiest core per step + barrier): "
                          f"{tm['time_per_step_s']['mean'] * 1e6:,.1f} µs per step, {tm['time_per_inference_s'] * 1e3:.3f} ms "
                          f"per inference; busiest core {tm['busiest_core']} ({tm['basis']} events per step)")
        h = e.get("host") or {}
        if h.get("macs"):
            console.print(f"host (outside the chip energy above): the direct-input first layer, {h['macs']:,} MACs "
                          f"per sample ({h['energy_pJ_45nm'] / 1e6:.3f} µJ at the 45 nm float MAC, Horowitz 2014) "
                          f"and {h['bias_writes']:,} bias writes per sample")
        console.print(f"per inference: {a['synops']:,.0f} SynOps, {a['spikes']:,.0f} spikes, "
                      f"{a['inter_core_spike_messages']:,.0f} inter-core and {a.get('inter_chip_spike_messages', 0):,.0f} "
                      f"inter-chip spike messages (message latency mean "
                      f"{a.get('spike_message_latency_ns_mean', 0):.1f} ns, max {a.get('spike_message_latency_ns_max', 0):.1f} "
                      f"ns), latency {report['latency_steps']} time steps")
        c45 = report["conventions_45nm"]
        nb = report["neurobench"]
        console.print(f"45 nm convention: SNN {c45['snn_pJ'] / 1e6:.3f} µJ vs ANN {c45['ann_pJ'] / 1e6:.3f} µJ "
                      f"({c45['ratio_ann_over_snn']:.1f}x); activation sparsity {nb['activation_sparsity']:.3f}, "
                      f"connection sparsity {nb['connection_sparsity']:.3f}, footprint {nb['footprint_bytes']:,} bytes")
    else:
        console.print(e.get("note", ""))
    pr = report.get("pruning")
    if pr:
        layers = ", ".join(f"{k} {v['kept']}/{v['total']}" for k, v in pr["layers"].items())
        console.print(f"pruning ({pr['criterion']}): {layers}")
        for when in ("before", "after"):
            f = pr.get(when) or {}
            if f:
                extra = f", {f['synops']:,.0f} SynOps, {f['energy_pJ'] / 1e6:.3f} µJ per inference" if "synops" in f else ""
                fits = "" if f.get("fits", True) else f" — does not fit ({', '.join(f['violations'])})"
                console.print(f"  {when}: {f['neurons']:,} neurons, {f['synapses']:,} mapped synapses, "
                              f"{f['cores']} cores, {f['memory_bits'] / 8192:,.0f} KiB{extra}{fits}")
        if pr.get("budget"):
            b = pr["budget"]
            console.print(f"  budget {b['budget']['resource']}={b['budget']['value']:g}: reached {b['reached']:,.0f}")
    last = [c for c in report.get("checks", []) if c["check"] in LAST_CHECKS]
    for line in check_lines([c for c in report.get("checks", []) if c["check"] not in LAST_CHECKS]):
        console.print(f"[yellow]warning[/yellow] {line}")
    qz = report.get("quantization")
    if qz:
        console.print(quantization_line(qz))
    if "accuracy" in report:
        acc = report["accuracy"]
        f = acc.get("float")
        console.print(f"accuracy on {acc['samples']:,} samples ({acc['source']}): "
                      + (f"float {100 * f:.2f}% | " if f is not None else "")
                      + (f"pruned float {100 * acc['float_pruned']:.2f}% | " if "float_pruned" in acc else "")
                      + f"compiled {100 * acc['compiled']:.2f}%"
                      + (f" | difference {100 * (acc['compiled'] - f):+.2f} pp" if f is not None else ""))
        if acc.get("readout"):
            console.print(f"readout (float and compiled alike): {acc['readout']}"
                          + (f"; predictions agree on {100 * acc['agreement']:.2f}% of samples"
                             if acc.get("agreement") is not None else "")
                          + (f" (float: {acc['agreement_against']})" if acc.get("agreement_against") else ""))
    for c in last:  # the verdict on the whole result: the report's last line
        console.print(f"[yellow]warning[/yellow] [{c['check']}] {c['message']}")


def check_lines(checks: list) -> list[str]:
    """The terminal lines of report.json ``checks``: ``[CHECK] message``, with ``SEMANTIC_CHANGE`` checks that
    differ only in the node grouped into one line naming the nodes (a model with 15 converted neurons of one
    kind gives one line, not 15)."""
    lines, groups = [], {}
    for c in checks:
        if c["check"] == "SEMANTIC_CHANGE" and "node" in c:
            key = (c.get("source"), c.get("source_semantics"), c.get("target_semantics"), c.get("agreement"),
                   c.get("agreement_samples"))
            if key not in groups:
                groups[key] = []
                lines.append(key)
            groups[key].append(c)
        else:
            lines.append(f"[{c['check']}] {c['message']}")
    out = []
    for item in lines:
        if isinstance(item, str):
            out.append(item)
            continue
        cs = groups[item]
        if len(cs) == 1:
            out.append(f"[SEMANTIC_CHANGE] {cs[0]['message']}")
            continue
        nodes = [c["node"] for c in cs]
        shown = ", ".join(nodes[:6]) + (f", ... ({len(nodes)} in all)" if len(nodes) > 6 else "")
        src, ssem, tsem, agree, where = item
        out.append(f"[SEMANTIC_CHANGE] {len(nodes)} nodes ({shown}; {src}): {ssem} -> {tsem}"
                   + (f"; prediction agreement source vs compiled {100 * agree:.1f}% on {where}"
                      if agree is not None else ""))
    return out


#: checks printed after the accuracy line, as the report's last lines (they judge the whole result)
LAST_CHECKS = ("ACCURACY_DROP",)


def quantization_line(qz: dict) -> str:
    """One terminal line for report.json ``quantization``."""
    parts = [f"quantization: {qz['weight_bits']}-bit weights, {qz['scales']} scales"
             + (f" (calibrated on {qz['calibration_images']:,} images)" if qz["scales"] == "mse" else "")]
    pc = [f"{n} {g['per_channel'].get('levels', '?')} scales" for n, g in qz["groups"].items()
          if g["per_channel"].get("applied")]
    parts.append("per-channel (" + ", ".join(pc) + ")" if pc else "per-layer")
    clipped = [f"{n} {g['weights_clipped']:,}/{g['weights']:,}" for n, g in qz["groups"].items() if g["weights"]]
    parts.append("weights clipped " + (", ".join(clipped) if clipped else "none"))
    ov = [f"{n} {k} {v:,}" for n, g in qz["groups"].items() for k, v in (g.get("overflow") or {}).items() if v]
    if any("overflow" in g for g in qz["groups"].values()):
        parts.append("overflow " + (", ".join(ov) if ov else "none"))
    ts = qz.get("timesteps")
    if ts:
        fac = ts.get("threshold_factors")
        parts.append(f"T {ts['from_steps']} -> {ts['steps']} (fold_timesteps k = {ts['k']}"
                     + (", thresholds x " + ", ".join(f"{n} {v:.3g}" for n, v in fac.items()) if fac else
                        ", not recalibrated") + ")")
    return "; ".join(parts)


def plot_utilisation(report: dict, path: str | Path) -> None:
    """Bar chart of per-core utilisation (neurons, input axons, output axons, memory) as a PNG: whole-number
    core ticks, the neuron groups above each run of cores holding the same groups; chips are separated by
    vertical lines and labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = report["cores"]
    labels = group_labels(report)
    keys = ("neurons", "axons_in", "axons_out", "memory")
    x = np.arange(len(cores))
    fig, ax = plt.subplots(figsize=(min(40.0, max(6, 0.18 * len(cores) + 2)), 3.8))
    w = 0.2
    for i, k in enumerate(keys):
        ax.bar(x + (i - 1.5) * w, [100 * c["utilisation"][k] for c in cores], w, label=k)
    ax.axhline(100, color="k", lw=0.8)
    chips = [c["chip"] for c in cores]
    for k in range(1, len(cores)):
        if chips[k] != chips[k - 1]:
            ax.axvline(k - 0.5, color="0.3", lw=1.0, ls="--")
    if len(set(chips)) > 1:
        for ch in sorted(set(chips)):
            idx = [i for i, c in enumerate(chips) if c == ch]
            ax.text((idx[0] + idx[-1]) / 2, 104, f"chip {ch}", ha="center", va="bottom", fontsize=8)
    runs = []  # consecutive cores holding the same neuron groups: one label each, along the top
    for i, c in enumerate(cores):
        g = ", ".join(labels.get(x, x) for x in c.get("groups", []))
        if runs and runs[-1][2] == g:
            runs[-1][1] = i
        else:
            runs.append([i, i, g])
    for a, b, g in runs:
        if g:
            ax.text((a + b) / 2, 101, g, ha="center", va="bottom", fontsize=7, rotation=90 if b - a < 3 else 0,
                    color="0.25", clip_on=True)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # core numbers are whole
    ax.set_xlim(-0.6, len(cores) - 0.4)
    ax.set_ylim(0, 135 if any(b - a < 3 for a, b, g in runs if g) else 115)
    ax.set_xlabel("core (labels above the bars: the neuron groups each run of cores holds)")
    ax.set_ylabel("utilisation (%)")
    n_chips = len(set(chips))
    ax.set_title(f"{report['target']}: per-core utilisation ({len(cores)} cores on {n_chips} chip(s))")
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def plot_floorplan(report: dict, chip: dict, path: str | Path) -> None:
    """The chip floorplan as a PNG: each chip's mesh of ``chip["tiles_x"] x chip["tiles_y"]`` tiles of
    ``chip["cores_per_tile"]`` cores (the target's ``[chip]`` section; chips side by side east-west, snnc's
    assumption, :func:`snnc.backends.loihi.mapping.core_position`), each used core coloured by the neuron group
    it holds (hatched when it holds several; the label names them), unused cores grey, and the heaviest inter-core
    routes of ``report["traffic"]`` (spike messages per inference) drawn as arrows, width by traffic."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

    cpt, tx_n, ty_n = int(chip["cores_per_tile"]), int(chip["tiles_x"]), int(chip["tiles_y"])
    per_chip = cpt * tx_n * ty_n
    sub_x = max(1, int(math.ceil(math.sqrt(cpt))))
    sub_y = int(math.ceil(cpt / sub_x))
    cores = report["cores"]
    labels = group_labels(report)
    n_chips = max(1, max((c["chip"] for c in cores), default=0) + 1)

    def centre(core_id: int):
        c, local = divmod(core_id, per_chip)
        tile, sub = divmod(local, cpt)
        tx, ty = tile % tx_n, tile // tx_n
        x = (c * tx_n + tx) * (sub_x + 0.6) + sub % sub_x + 0.5
        y = ty * (sub_y + 0.6) + sub // sub_x + 0.5
        return x, y

    groups = []
    for c in cores:
        for g in (labels.get(x, x) for x in c.get("groups", [])):
            if g not in groups:
                groups.append(g)
    cmap = plt.get_cmap("tab20")
    colour = {g: cmap(i % 20) for i, g in enumerate(groups)}
    used = {c["core"]: c for c in cores}
    width = n_chips * tx_n * (sub_x + 0.6)
    height = ty_n * (sub_y + 0.6)
    fig, ax = plt.subplots(figsize=(min(40.0, 1.2 + 0.55 * width), 1.6 + 0.55 * height))
    for core_id in range(n_chips * per_chip):
        x, y = centre(core_id)
        c = used.get(core_id)
        gs = [labels.get(x, x) for x in (c or {}).get("groups", [])]
        ax.add_patch(Rectangle((x - 0.45, y - 0.45), 0.9, 0.9, facecolor=colour[gs[0]] if gs else "0.92",
                               edgecolor="0.4" if gs else "0.8", lw=0.6, hatch="//" if len(gs) > 1 else None))
        if gs:
            ax.text(x, y, str(core_id), ha="center", va="center", fontsize=6)
    for ch in range(1, n_chips):
        ax.axvline(ch * tx_n * (sub_x + 0.6) - 0.3, color="0.2", lw=1.2, ls="--")
    routes = (report.get("traffic") or {}).get("top_routes", [])
    top = max((r["spike_messages"] for r in routes), default=0.0)
    for r in routes[::-1]:  # heaviest drawn last (on top)
        (x0, y0), (x1, y1) = centre(r["source_core"]), centre(r["dest_core"])
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=7,
                                     connectionstyle="arc3,rad=0.2", color="crimson", alpha=0.75,
                                     lw=0.4 + 3.0 * r["spike_messages"] / max(top, 1e-12)))
    ax.set_xlim(-0.5, width)
    ax.set_ylim(height, -0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    handles = [Patch(facecolor=colour[g], edgecolor="0.4", label=g) for g in groups[:20]]
    if routes:
        handles.append(Patch(facecolor="crimson", label=f"inter-core spike traffic (top {len(routes)} routes; "
                                                        f"widest {top:,.0f} msgs/inference)"))
    ax.legend(handles=handles, fontsize=7, ncol=min(6, max(1, len(handles))), loc="upper center",
              bbox_to_anchor=(0.5, -0.02), frameon=False)
    ax.set_title(f"{report['target']}: floorplan, {len(cores)} cores on {n_chips} chip(s) "
                 f"({tx_n} x {ty_n} tiles of {cpt} cores per chip)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
