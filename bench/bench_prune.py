"""Structured channel pruning on real data: keep ratios x criteria, with and without fine-tuning.

For each model (the bundled fmnist_cnn and the wide fmnist_wide by default) and each keep ratio
in {1.0, 0.5, 0.25, 0.1} x criterion in {l1, activity, attention, random}: prune every prunable layer
to that fraction of its channels (``prune_channels``), then measure

- float accuracy (snnc's NIR reference executor) and loihi-sim accuracy (quantized, mapped,
  bit-accurate simulation) on the Fashion-MNIST test images (all 10,000 by default),
- parameters (weights and biases), graph synapses (as the pipeline log counts them), mapped synapses, cores, synaptic
  memory, SynOps and energy per inference (measured in the loihi-sim run),

once as pruned and once after recovery fine-tuning (:func:`snnc.driver.finetune.finetune`: surrogate
gradients, knowledge distillation from the unpruned model with weight ``--distill``, on the
training images after the first 256 calibration ones, minus 5,000 held out).

Prints one table per model, writes every figure to ``--json`` (re-running skips the rows already
there, so an interrupted run resumes) and a PNG of accuracy vs graph synapses to ``--png``::

    .venv/bin/python bench/bench_prune.py --json runs/prune.json --png runs/prune.png
    .venv/bin/python bench/bench_prune.py --models fmnist_cnn --limit 1000 --ft-epochs 1 --train-limit 20000  # quicker

Runs on the CPU; ``--threads`` sets torch's threads. Processes run side by side (e.g. one with
``--no-finetune``, one with ``--finetune-only``, each with its own ``--json``) are combined with
``--merge a.json,b.json --json all.json --png all.png``, which measures nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snnc import data as D  # noqa: E402
from snnc.backends.loihi.compile import compile_graph  # noqa: E402
from snnc.backends.loihi.energy import measure  # noqa: E402
from snnc.backends.loihi.sim import Program, slice_counts_for  # noqa: E402
from snnc.driver.finetune import finetune  # noqa: E402
from snnc.ir import readout as R  # noqa: E402
from snnc.frontends import load_model, resolve_model_path  # noqa: E402
from snnc.ir import graph_figures  # noqa: E402
from snnc.passes import PassContext, Pipeline  # noqa: E402
from snnc.passes.prune import channel_groups, group_scores, prune  # noqa: E402
from snnc.targets import load_target  # noqa: E402

RATIOS = (1.0, 0.5, 0.25, 0.1)
CRITERIA = ("l1", "activity", "attention", "random")


def evaluate(graph, ctx, target, xte, yte, T, rule, batch_size):
    """Float and loihi-sim accuracy and chip figures of a (pruned) graph on the test images."""
    t0 = time.time()
    f_acc = float((R.scores(graph, xte, T, rule, batch_size=batch_size, dtype=torch.float32).argmax(1) == yte).mean())
    q = Pipeline("quantize").run(graph, PassContext(target=target, calibration=ctx.calibration, num_steps=T))
    config, arrays, violations = compile_graph(q, target, raise_on_violation=False)
    prog = Program(config, arrays, target, core_limits=False)
    res = prog.run(xte, batch_size=batch_size)
    m = measure(prog, res, slice_counts_for(prog))
    fig = graph_figures(graph)
    weights = sum(int(np.size(n.weight)) + int(np.size(getattr(n, "bias", None) if getattr(n, "bias", None) is not None
                                                        else 0)) for n in graph.nodes.values() if hasattr(n, "weight"))
    return {"float_accuracy": f_acc, "loihi_accuracy": float((res.scores().reshape(len(yte), -1).argmax(1) == yte).mean()),
            "parameters": weights, "graph_synapses": fig["synapses"], "neurons": fig["neurons"],
            "mapped_synapses": int(sum(c["synapses"] for c in config["cores"])),
            "memory_bits": int(sum(c["memory_bits"] for c in config["cores"])), "cores": len(config["cores"]),
            "fits": not violations, "violations": sorted({v.rule for v in violations}),
            "synops": float(m["per_inference"]["synops"]), "energy_uJ": float(m["energy"]["per_inference_pJ"]) / 1e6,
            "eval_s": round(time.time() - t0, 1)}


def teacher_scores(module, x, T, rule, batch_size=500):
    out = []
    module.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(R.step_scores(module, torch.from_numpy(x[i:i + batch_size]), T, rule).numpy())
    return np.concatenate(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="fmnist_cnn,fmnist_wide", help="shipped names or checkpoint paths")
    p.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    p.add_argument("--criteria", default=",".join(CRITERIA))
    p.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--train-limit", type=int, default=None, help="training images for fine-tuning (default: all)")
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--distill", type=float, default=0.5)
    p.add_argument("--no-finetune", action="store_true")
    p.add_argument("--finetune-only", action="store_true", help="only the fine-tuned rows (e.g. in a second process)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="runs/bench_prune.json")
    p.add_argument("--png", default="runs/bench_prune.png")
    p.add_argument("--merge", default=None, metavar="JSON[,JSON...]",
                   help="measure nothing: merge the rows of these result files (e.g. of processes run in "
                        "parallel with --no-finetune / --finetune-only) into --json, print the tables, write --png")
    args = p.parse_args(argv)
    out_json = Path(args.json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}
    if args.merge:
        for f in args.merge.split(","):
            for name, rows in json.loads(Path(f).read_text()).items():
                results.setdefault(name, {}).update(rows)
        out_json.write_text(json.dumps(results, indent=1, sort_keys=True))
        for name, rows in results.items():
            print_table(name, rows)
        plot(results, args.png)
        print(f"wrote {out_json} and {args.png}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    target = load_target("loihi-sim")
    xtr_all, ytr_all = D.load_fashion_mnist("train", limit=args.train_limit)
    calib = xtr_all[:256]
    xtr, ytr = xtr_all[256:-5000], ytr_all[256:-5000]
    xte, yte = D.load_fashion_mnist("test", limit=args.limit)
    ratios = [float(r) for r in args.ratios.split(",")]
    criteria = args.criteria.split(",")
    for name in args.models.split(","):
        path = resolve_model_path(name)
        graph, module, info = load_model(path)
        T = int(info["num_steps"])
        base = Pipeline("fold_bn").run(graph, PassContext(num_steps=T))
        rule = R.readout_rule(base)["rule"]
        ctx = PassContext(target=target, calibration=calib, num_steps=T, seed=args.seed)
        groups = [g for g in channel_groups(base) if g.prunable]
        scores = {c: group_scores(base, ctx, c, groups) for c in criteria}
        rows = results.setdefault(name, {})
        t_scores = None
        for ratio in ratios:
            for crit in (criteria if ratio < 1 else criteria[:1]):
                for ft in ((False,) if args.no_finetune else (True,) if args.finetune_only else (False, True)):
                    key = f"{ratio}/{crit if ratio < 1 else '-'}/{'ft' if ft else 'no-ft'}"
                    if key in rows:
                        continue
                    t0 = time.time()
                    g = prune(copy.deepcopy(base), ctx, crit, ratio, scores=scores[crit])[0] if ratio < 1 else \
                        copy.deepcopy(base)
                    extra = {}
                    if ft:
                        if t_scores is None:
                            print(f"[{name}] teacher scores on {len(ytr):,} training images", flush=True)
                            t_scores = teacher_scores(module, xtr, T, rule)
                        m, hist = finetune(g, xtr, ytr, T, epochs=args.ft_epochs, lr=args.ft_lr, seed=args.seed,
                                           teacher_scores=t_scores, distill=args.distill, flip=False)
                        g = m.to_nir()
                        extra = {"finetune": {"epochs": args.ft_epochs, "lr": args.ft_lr, "distill": args.distill,
                                              "train_samples": int(len(ytr)), "history": hist}}
                    r = evaluate(g, ctx, target, xte, yte, T, rule, args.batch_size)
                    r.update(extra, ratio=ratio, criterion=crit if ratio < 1 else "none", finetuned=ft,
                             channels={gr.name: int(np.shape(g.nodes[gr.producers[0]].weight)[0]) for gr in groups},
                             test_samples=int(len(yte)), wall_s=round(time.time() - t0, 1))
                    rows[key] = r
                    out_json.write_text(json.dumps(results, indent=1, sort_keys=True))
                    print(f"[{name}] {key:<22} float {100 * r['float_accuracy']:.2f}% loihi {100 * r['loihi_accuracy']:.2f}% "
                          f"syn {r['graph_synapses']:,} cores {r['cores']} SynOps {r['synops']:,.0f} "
                          f"E {r['energy_uJ']:.2f} uJ ({r['wall_s']:.0f}s)", flush=True)
        print_table(name, rows)
    plot(results, args.png)
    print(f"wrote {out_json} and {args.png}")


def print_table(name, rows):
    base = rows.get("1.0/-/no-ft")
    print(f"\n{name}: keep ratio x criterion, test accuracy (float / loihi-sim), resources")
    hdr = (f"{'ratio':>5} {'criterion':<9} {'ft':<5} {'float':>7} {'loihi':>7} {'params':>9} {'graph syn':>11} "
           f"{'x fewer':>7} {'mapped syn':>11} {'cores':>5} {'SynOps/inf':>12} {'E uJ':>7}")
    print(hdr)
    for key in sorted(rows, key=lambda k: (-rows[k]["ratio"], rows[k]["criterion"], rows[k]["finetuned"])):
        r = rows[key]
        fewer = f"{base['graph_synapses'] / r['graph_synapses']:>6.1f}x" if base else f"{'-':>7}"
        print(f"{r['ratio']:>5} {r['criterion']:<9} {'yes' if r['finetuned'] else 'no':<5} "
              f"{100 * r['float_accuracy']:>6.2f}% {100 * r['loihi_accuracy']:>6.2f}% {r['parameters']:>9,} "
              f"{r['graph_synapses']:>11,} {fewer} {r['mapped_synapses']:>11,} {r['cores']:>5} "
              f"{r['synops']:>12,.0f} {r['energy_uJ']:>7.2f}" + ("" if r["fits"] else "  (does not fit)"))


def plot(results, path):
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    colors = {"l1": "C0", "activity": "C1", "attention": "C2", "random": "C3", "none": "k"}
    for ax, (name, rows) in zip(axes[0], results.items()):
        for r in rows.values():
            ax.scatter(r["graph_synapses"], 100 * r["loihi_accuracy"], color=colors.get(r["criterion"], "C4"),
                       marker="o" if r["finetuned"] else "x", s=36)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
        ax.set_xlabel("graph synapses")
        ax.set_ylabel("loihi-sim test accuracy (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in colors.items()]
    handles += [plt.Line2D([], [], color="gray", marker="x", ls="", label="pruned"),
                plt.Line2D([], [], color="gray", marker="o", ls="", label="fine-tuned")]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
