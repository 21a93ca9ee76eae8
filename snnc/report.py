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

CORE_KEYS = ("neurons", "axons_in", "axons_out", "synapses", "memory_bits")


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isinf(f) or math.isnan(f):
            return None
        return float(f"{f:.8g}")
    return v


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
        if metrics:
            row["synops_per_inference"] = metrics["per_core"]["synops"][i]
            row["spikes_per_inference"] = metrics["per_core"]["spikes"][i]
        cores.append(row)
    totals = {k: int(sum(c[k] for c in config["cores"])) for k in CORE_KEYS}
    totals["cores"] = len(config["cores"])
    totals["chips"] = (max((c["chip"] for c in config["cores"]), default=-1) + 1)
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
                                     "weight_exp": p["weight_exp"], "delay": p["delay"]} for p in g["projections"]]}
                   for g in config["groups"]],
        "limits": {"core": dict(lim), "source": src.get("core"), "synapse_format": src.get("synapse_format")},
        "energy": energy,
        # wall times are left out: the same input and seed give byte-identical files
        "pipeline": [{k: v for k, v in e.items() if k != "time_s"} for e in (pipeline_log or [])],
    }
    if metrics:
        energy["per_inference_pJ"] = metrics["energy"]["per_inference_pJ"]
        energy["breakdown"] = metrics["energy"]["breakdown"]
        rep["activity_per_inference"] = metrics["per_inference"]
        rep["checks"] = metrics["checks"]
        rep["conventions_45nm"] = dict(metrics["conventions_45nm"], source=src.get("energy_pJ"))
        rep["neurobench"] = dict(metrics["neurobench"], source="definitions of NeuroBench (Yik et al., "
                                 "Nature Communications 2025), measured in simulation")
    else:
        energy["note"] = "no data given: energy per inference depends on activity; compile or simulate with --data"
    if accuracy:
        rep["accuracy"] = accuracy
    return _plain(rep)


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
    t = Table(title=f"{report['target']}: {report['totals']['cores']} cores on {report['totals']['chips']} chip(s)",
              show_lines=False)
    for col in ("core", "groups", "neurons", "axons in", "axons out", "synapses", "memory (KiB)", "mem %",
                "SynOps/inf"):
        t.add_column(col, justify="right" if col not in ("groups",) else "left")
    for c in report["cores"]:
        t.add_row(str(c["core"]), ",".join(c["groups"]), f"{c['neurons']:,}", f"{c['axons_in']:,}",
                  f"{c['axons_out']:,}", f"{c['synapses']:,}", f"{c['memory_bits'] / 8192:.1f}",
                  f"{100 * c['utilisation']['memory']:.0f}",
                  f"{c['synops_per_inference']:,.0f}" if "synops_per_inference" in c else "-")
    tot = report["totals"]
    t.add_section()
    t.add_row("total", "", f"{tot['neurons']:,}", f"{tot['axons_in']:,}", f"{tot['axons_out']:,}",
              f"{tot['synapses']:,}", f"{tot['memory_bits'] / 8192:.1f}", "",
              f"{report['activity_per_inference']['synops']:,.0f}" if "activity_per_inference" in report else "-")
    console.print(t)
    e = report["energy"]
    if e.get("per_inference_pJ") is not None:
        b = e["breakdown"]
        a = report["activity_per_inference"]
        console.print(f"energy per inference: {e['per_inference_pJ'] / 1e6:.3f} µJ "
                      f"(SynOps {b['synops_pJ'] / 1e6:.3f}, neuron updates {b['neuron_updates_pJ'] / 1e6:.3f}, "
                      f"spike messages {b['spike_messages_pJ'] / 1e6:.3f} µJ; Davies et al. 2018 Table 2)")
        console.print(f"per inference: {a['synops']:,.0f} SynOps, {a['spikes']:,.0f} spikes, "
                      f"{a['inter_core_spike_messages']:,.0f} inter-core spike messages, "
                      f"latency {report['latency_steps']} time steps")
        c45 = report["conventions_45nm"]
        nb = report["neurobench"]
        console.print(f"45 nm convention: SNN {c45['snn_pJ'] / 1e6:.3f} µJ vs ANN {c45['ann_pJ'] / 1e6:.3f} µJ "
                      f"({c45['ratio_ann_over_snn']:.1f}x); activation sparsity {nb['activation_sparsity']:.3f}, "
                      f"connection sparsity {nb['connection_sparsity']:.3f}, footprint {nb['footprint_bytes']:,} bytes")
    else:
        console.print(e.get("note", ""))
    for c in report.get("checks", []):
        console.print(f"[yellow]warning[/yellow] [{c['check']}] {c['message']}")
    if "accuracy" in report:
        acc = report["accuracy"]
        f = acc.get("float")
        console.print(f"accuracy on {acc['samples']:,} samples ({acc['source']}): "
                      f"float {100 * f:.2f}% | compiled {100 * acc['compiled']:.2f}%"
                      + (f" | difference {100 * (acc['compiled'] - f):+.2f} pp" if f is not None else ""))


def plot_utilisation(report: dict, path: str | Path) -> None:
    """Bar chart of per-core utilisation (neurons, input axons, output axons, memory) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = report["cores"]
    keys = ("neurons", "axons_in", "axons_out", "memory")
    x = np.arange(len(cores))
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(cores) + 2), 3.6))
    w = 0.2
    for i, k in enumerate(keys):
        ax.bar(x + (i - 1.5) * w, [100 * c["utilisation"][k] for c in cores], w, label=k)
    ax.axhline(100, color="k", lw=0.8)
    ax.set_xlabel("core")
    ax.set_ylabel("utilisation (%)")
    ax.set_title(f"{report['target']}: per-core utilisation ({len(cores)} cores)")
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
