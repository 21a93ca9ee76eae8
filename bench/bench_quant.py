"""Benchmark: weight bits, calibrated and per-channel scales, and time-step folding on the bundled model.

Usage::

    .venv/bin/python bench/bench_quant.py [--samples N] [--calibrate N] [--png PATH] [--json PATH]

What it measures, in one run, on the bundled Fashion-MNIST CNN (``models/fmnist_cnn.pt``, T = 8),
calibrated on the first ``--calibrate`` (256) Fashion-MNIST training images and evaluated on the first
``--samples`` test images (default all 10,000):

1. the float accuracy (the PyTorch module, T = 8), the reference of every difference below;
2. for weight bits {8, 6, 4, 2} x {per-layer, per-channel} x {max, mse} scales (``fold_bn,quantize:
   weight_bits=B;per_channel=...;scales=...``): loihi-sim accuracy (bit-accurate simulation of the
   emitted configuration), synaptic memory (bits, all cores), cores, energy and SynOps per inference,
   the weights clipped to the mantissa range, saturation/overflow events, the number of distinct
   per-channel scales;
3. for T in {8, 4, 2} (``fold_timesteps:steps=T'`` before ``quantize`` at 8 bits, per layer, max
   scales: the default) with and without threshold recalibration: the same figures plus latency.

It prints one table per part with ratios against the default (8-bit, per-layer, max, T = 8), checks the
targets of issue 7 (8-bit within 0.5 pp of float; 4-bit calibrated within 2 pp; T halved with
recalibration within 2 pp), writes a PNG (accuracy and memory against weight bits, accuracy and energy
against T) and, as the last line of stdout, the JSON of all figures (also ``--json PATH``). Wall times
and the load average at start and end are printed: on a shared machine they move with it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from snnc import data as D  # noqa: E402
from snnc.backends.loihi.compile import compile_graph  # noqa: E402
from snnc.backends.loihi.sim import Program  # noqa: E402
from snnc.driver.compiler import simulate  # noqa: E402
from snnc.ir import readout as R  # noqa: E402
from snnc.frontends import load_model  # noqa: E402
from snnc.passes import PassContext, Pipeline  # noqa: E402
from snnc.targets import load_target  # noqa: E402

BITS = (8, 6, 4, 2)
STEPS = (8, 4, 2)


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def measure(graph, spec: str, tgt, x_cal, y_cal, T: int, x, y) -> dict:
    """Run the pipeline ``spec``, compile, simulate on (x, y); return the figures."""
    t0 = time.perf_counter()
    ctx = PassContext(target=tgt, calibration=x_cal, num_steps=T, calibration_labels=y_cal)
    q = Pipeline(spec).run(graph, ctx)
    config, arrays, _ = compile_graph(q, tgt)
    t1 = time.perf_counter()
    program = Program(config, arrays, tgt)
    sim = simulate(program, x, y)
    t2 = time.perf_counter()
    m = sim["metrics"]
    notes = next(e for e in ctx.log if e["pass"] == "quantize")["notes"]["groups"]
    weights = sum(n.get("weights", 0) for n in notes.values())
    clipped = sum(n.get("weights_clipped", 0) for n in notes.values())
    levels = {g: n["per_channel"]["levels"] for g, n in notes.items()
              if n.get("per_channel", {}).get("applied")}
    overflow = {}
    for g, c in m["overflow"]["groups"].items():
        for k, v in c.items():
            overflow[k] = overflow.get(k, 0) + int(v)
    fold = next((e["notes"] for e in ctx.log if e["pass"] == "fold_timesteps"), None)
    return {"spec": spec, "accuracy": sim["accuracy"], "memory_bits": int(sum(c["memory_bits"] for c in config["cores"])),
            "cores": len(config["cores"]), "energy_uJ": m["energy"]["per_inference_pJ"] / 1e6,
            "synops": m["per_inference"]["synops"], "latency_steps": int(config["latency_steps"]),
            "num_steps": int(config["num_steps"]), "weights": int(weights), "weights_clipped": int(clipped),
            "per_channel_levels": levels, "overflow": overflow,
            "threshold_factors": (fold or {}).get("threshold_factors"),
            "calibration_accuracy": (fold or {}).get("calibration_accuracy"),
            "compile_s": round(t1 - t0, 2), "simulate_s": round(t2 - t1, 2)}


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fl = 100 * res["float_accuracy"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {("per-layer", "max"): "o-", ("per-layer", "mse"): "s-", ("per-channel", "max"): "o--",
              ("per-channel", "mse"): "s--"}
    for (gran, sc), st in styles.items():
        rows = [r for r in res["bits"] if r["granularity"] == gran and r["scales"] == sc]
        a1.plot([r["weight_bits"] for r in rows], [100 * r["accuracy"] for r in rows], st, label=f"{gran}, {sc}")
    a1.axhline(fl, color="k", lw=0.8, ls=":", label=f"float {fl:.2f}%")
    a1.set_xlabel("weight bits")
    a1.set_ylabel("loihi-sim accuracy (%)")
    a1.set_xticks(BITS)
    a1.set_ylim(max(0, min(100 * r["accuracy"] for r in res["bits"]) - 3), fl + 2)
    ax = a1.twinx()
    rows = [r for r in res["bits"] if r["granularity"] == "per-layer" and r["scales"] == "mse"]
    ax.bar([r["weight_bits"] for r in rows], [r["memory_bits"] / 8192 for r in rows], width=0.6, alpha=0.15,
           color="tab:gray")
    ax.set_ylabel("synaptic memory, all cores (KiB; bars: per-layer mse)")
    a1.set_zorder(ax.get_zorder() + 1)
    a1.patch.set_visible(False)
    a1.legend(fontsize=8, loc="lower right")
    a1.set_title(f"weight bits ({res['samples']:,} test images)")
    for rec, st in ((False, "o--"), (True, "s-")):
        rows = [r for r in res["timesteps"] if r["recalibrated"] == rec or r["steps"] == 8]
        a2.plot([r["steps"] for r in rows], [100 * r["accuracy"] for r in rows], st,
                label="recalibrated" if rec else "not recalibrated")
    a2.axhline(fl, color="k", lw=0.8, ls=":", label=f"float T=8 {fl:.2f}%")
    a2.set_xlabel("time steps T (fold_timesteps, 8-bit per-layer max)")
    a2.set_ylabel("loihi-sim accuracy (%)")
    a2.set_xticks(STEPS)
    ax2 = a2.twinx()
    rows = [r for r in res["timesteps"] if r["recalibrated"] or r["steps"] == 8]
    ax2.plot([r["steps"] for r in rows], [r["energy_uJ"] for r in rows], "^:", color="tab:red", label="energy")
    ax2.set_ylabel("energy per inference (uJ, triangles)", color="tab:red")
    a2.legend(fontsize=8, loc="lower right")
    a2.set_title("time-step folding")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=10_000, help="test images (default: all 10,000)")
    ap.add_argument("--calibrate", type=int, default=256, help="calibration images (training split)")
    ap.add_argument("--png", default=str(REPO / "out" / "bench_quant.png"), help="plot file")
    ap.add_argument("--json", default=None, help="also write the JSON here")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    load0 = _load()
    tgt = load_target("loihi-sim")
    graph, module, info = load_model(REPO / "models" / "fmnist_cnn.pt")
    T = int(info["num_steps"])
    x_cal, y_cal = D.load("fashion-mnist", "train", limit=args.calibrate)
    x, y = D.load("fashion-mnist", "test", limit=args.samples)
    print(f"bench_quant: bundled fmnist_cnn (T = {T}), calibration {len(y_cal):,} training images, "
          f"{len(y):,} test images; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load0:.2f}", flush=True)
    t0 = time.perf_counter()
    fs = R.scores(graph, x, T, R.readout_rule(graph)["rule"], module=module)
    float_acc = float((fs.argmax(1) == y).mean())
    print(f"float (PyTorch, T = {T}): {100 * float_acc:.2f}%  ({time.perf_counter() - t0:.1f} s)", flush=True)
    res = {"samples": int(len(y)), "calibration_images": int(len(y_cal)), "float_accuracy": float_acc, "bits": [],
           "timesteps": []}
    hdr = (f"{'bits':>4} {'scales':<12} {'accuracy':>9} {'vs float':>9} {'memory KiB':>11} {'x mem':>6} "
           f"{'cores':>5} {'energy uJ':>10} {'clipped':>9} {'levels':>14} {'overflow':>9} {'compile s':>9} {'sim s':>7}")
    print("\n1. weight bits x per-layer/per-channel x max/mse scales (T = 8)\n" + hdr, flush=True)
    base = None
    for bits in BITS:
        for gran in ("per-layer", "per-channel"):
            for sc in ("max", "mse"):
                spec = f"fold_bn,quantize:weight_bits={bits};scales={sc};per_channel={str(gran == 'per-channel').lower()}"
                r = measure(graph, spec, tgt, x_cal, y_cal, T, x, y)
                r.update(weight_bits=bits, granularity=gran, scales=sc)
                base = base or r
                res["bits"].append(r)
                lv = ",".join(f"{k}:{v}" for k, v in r["per_channel_levels"].items()) or "-"
                print(f"{bits:>4} {gran[4:] + ' ' + sc:<12} {100 * r['accuracy']:>8.2f}% "
                      f"{100 * (r['accuracy'] - float_acc):>+8.2f}pp {r['memory_bits'] / 8192:>11.1f} "
                      f"{r['memory_bits'] / base['memory_bits']:>6.3f} {r['cores']:>5} {r['energy_uJ']:>10.2f} "
                      f"{100 * r['weights_clipped'] / max(r['weights'], 1):>8.2f}% {lv:>14} "
                      f"{sum(r['overflow'].values()):>9} {r['compile_s']:>9.1f} {r['simulate_s']:>7.1f}", flush=True)
    print(f"\n2. time steps (fold_timesteps before quantize; 8-bit, per-layer, max scales)\n"
          f"{'T':>3} {'recalibrated':<12} {'accuracy':>9} {'vs float':>9} {'latency':>7} {'energy uJ':>10} "
          f"{'x energy':>8} {'SynOps':>10} {'thresholds x':>26} {'compile s':>9} {'sim s':>7}", flush=True)
    for steps in STEPS:
        for rec in ((False,) if steps == T else (False, True)):
            spec = "fold_bn,quantize" if steps == T else \
                f"fold_bn,fold_timesteps:steps={steps};recalibrate={str(rec).lower()},quantize"
            r = measure(graph, spec, tgt, x_cal, y_cal, T, x, y)
            r.update(steps=steps, recalibrated=rec)
            res["timesteps"].append(r)
            fac = ", ".join(f"{k} {v:.3g}" for k, v in (r["threshold_factors"] or {}).items()) or "-"
            print(f"{steps:>3} {'yes' if rec else 'no':<12} {100 * r['accuracy']:>8.2f}% "
                  f"{100 * (r['accuracy'] - float_acc):>+8.2f}pp {r['latency_steps']:>7} {r['energy_uJ']:>10.2f} "
                  f"{r['energy_uJ'] / base['energy_uJ']:>8.3f} {r['synops']:>10,.0f} {fac:>26} "
                  f"{r['compile_s']:>9.1f} {r['simulate_s']:>7.1f}", flush=True)

    def row(bits, gran, sc):
        return next(r for r in res["bits"] if r["weight_bits"] == bits and r["granularity"] == gran and r["scales"] == sc)
    d8 = row(8, "per-layer", "max")["accuracy"] - float_acc
    best4 = max((row(4, g, "mse") for g in ("per-layer", "per-channel")), key=lambda r: r["accuracy"])
    d4 = best4["accuracy"] - float_acc
    half = next(r for r in res["timesteps"] if r["steps"] == T // 2 and r["recalibrated"])
    dT = half["accuracy"] - float_acc
    res["targets"] = {
        "8-bit within 0.5 pp of float": {"difference_pp": 100 * d8, "met": bool(d8 >= -0.005)},
        "4-bit calibrated within 2 pp of float": {"difference_pp": 100 * d4, "met": bool(d4 >= -0.02),
                                                  "variant": f"{best4['granularity']}, mse"},
        "T halved with recalibration within 2 pp of float": {"difference_pp": 100 * dT, "met": bool(dT >= -0.02)},
    }
    print("\ntargets (issue 7):")
    for k, v in res["targets"].items():
        print(f"  {k}: {v['difference_pp']:+.2f} pp -> {'met' if v['met'] else 'MISSED'}"
              + (f" ({v['variant']})" if "variant" in v else ""))
    png = Path(args.png)
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(res, png)
    res["png"] = str(png)
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    res["load_average"] = {"start": load0, "end": _load()}
    print(f"wrote {png}; wall time {res['wall_s']:.0f} s; load average {load0:.2f} -> {res['load_average']['end']:.2f}")
    text = json.dumps(res, sort_keys=True)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return res


if __name__ == "__main__":
    main()
