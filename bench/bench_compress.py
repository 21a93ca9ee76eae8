"""Compression methods side by side: accuracy against graph synapses, cores and energy, at the same training budget.

For each model (default ``fmnist_cnn``), keep ratio (default 0.5, 0.25, 0.1) and seed, every method below compresses
the model to the same keep ratio of channels and is measured the same way: float accuracy (snnc's reference
executor) and loihi-sim accuracy (quantized, mapped, bit-accurate simulation) on the test images (all 10,000 by
default), graph synapses (as the pipeline log counts them), cores, SynOps and energy per inference (the loihi-sim run),
and the wall time of the method (cut + repair + training; not the evaluation).

Methods (names as in the JSON and the plots):

``cut``            one-shot ``l1`` channel cut, no repair (``prune_channels:repair=false``);
``repair``         the cut followed by snnc's closed-form repair (``prune_channels``' default), no training;
``cut+ft``         the cut (no repair), then distilled fine-tuning: the path before the repair existed;
``repair+ft``      cut + repair, then distilled fine-tuning (``snnc compile --train-epochs``);
``sca``            Li et al.'s spiking-channel-activity pruning with regeneration during training
                   (``snnc finetune --method sca --keep R``), from the unpruned model;
``minimax``        the primal-dual minimax adapted from Chen et al. (``--method minimax --keep R``), from the
                   unpruned model, the budget = the graph synapses a uniform cut to R keeps;
``spike-thrift``   cut + repair, then attention transfer + trained thresholds and leaks (``--method spike-thrift``);
``torch-pruning``  the peer: torch-pruning 1.6 (``tp.pruner.BasePruner``, ``GroupMagnitudeImportance(p=2)``, the
                   readout layer ignored) cuts snnc's float module (the model's own torch module) to the same number
                   of channels per layer, which snnc traces again and fine-tunes with the same loop and budget.

Every training method gets the same budget: ``--epochs`` over the first ``--train-images`` fitting samples of the
training split (snnc's sampling rule), Adam lr 1e-3 with a cosine schedule, batch 128, knowledge distillation
(weight 0.5) from the unpruned model.

Prints a table per model, writes every row to ``--json`` (re-running skips rows already there, so long grids resume
across sessions; ``--merge a.json,b.json`` combines files and measures nothing) and the accuracy-vs-synapses and
accuracy-vs-energy PNGs::

    .venv/bin/python bench/bench_compress.py --json runs/compress.json              # fmnist_cnn grid, 1 seed
    .venv/bin/python bench/bench_compress.py --ratios 0.25 --seeds 1,2 --json runs/compress.json   # more seeds
    .venv/bin/python bench/bench_compress.py --models fmnist_wide --ratios 0.25 \\
        --methods repair,repair+ft,spike-thrift,torch-pruning --json runs/compress_wide.json
    .venv/bin/python bench/bench_compress.py --quick                # smoke: 256 training / 100 test images, keep 0.5

Needs Fashion-MNIST (``make data``) and torch-pruning (in the ``test`` extra). Runs where ``--device`` says
(default auto: CUDA when available); prints the load average with the figures (2-core machine: run it alone).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
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
from snnc.data.training import load_training  # noqa: E402
from snnc.driver.finetune import finetune  # noqa: E402
from snnc.driver.methods import Recipe, batchnorm_affines  # noqa: E402
from snnc.frontends import load_model, trace_module  # noqa: E402
from snnc.ir import graph_figures  # noqa: E402
from snnc.ir import readout as R  # noqa: E402
from snnc.ir.device import resolve as resolve_device  # noqa: E402
from snnc.passes import PassContext, Pipeline  # noqa: E402
from snnc.passes.prune import channel_groups, prune, repair_cut  # noqa: E402
from snnc.targets import load_target  # noqa: E402

METHODS = ("cut", "repair", "cut+ft", "repair+ft", "sca", "minimax", "spike-thrift", "torch-pruning")
TRAINED = ("cut+ft", "repair+ft", "sca", "minimax", "spike-thrift", "torch-pruning")
DISTILL = 0.5


def evaluate(graph, target, calib, xte, yte, T, batch_size=500, device=None):
    """Float and loihi-sim accuracy (one readout rule) and chip figures of a float graph on the test images."""
    rule = R.readout_rule(graph)["rule"]
    f_acc = float((R.scores(graph, xte, T, rule, dtype=torch.float32, device=device).argmax(1) == yte).mean())
    q = Pipeline("quantize").run(graph, PassContext(target=target, calibration=calib, num_steps=T))
    config, arrays, violations = compile_graph(q, target, raise_on_violation=False)
    prog = Program(config, arrays, target, core_limits=False)
    res = prog.run(xte, batch_size=batch_size, device=device)
    m = measure(prog, res, slice_counts_for(prog))
    fig = graph_figures(graph)
    return {"float_accuracy": f_acc,
            "loihi_accuracy": float((res.scores().reshape(len(yte), -1).argmax(1) == yte).mean()),
            "graph_synapses": int(fig["synapses"]), "neurons": int(fig["neurons"]), "cores": len(config["cores"]),
            "fits": not violations, "synops": float(m["per_inference"]["synops"]),
            "energy_uJ": float(m["energy"]["per_inference_pJ"]) / 1e6}


def keep_counts(graph, ratio):
    return {g.name: int(np.clip(round(ratio * g.channels), 1, g.channels))
            for g in channel_groups(graph) if g.prunable}


def torch_pruning_cut(module, graph, ratio, input_shape, T):
    """The peer: torch-pruning cuts the model's torch module to the channel counts of a uniform cut; snnc traces it."""
    import torch_pruning as tp
    from snnc.neurons import CubaLIF

    class NeuronPruner(tp.pruner.BasePruningFunc):
        """Per-neuron buffers of snnc's CubaLIF follow their channels (torch-pruning prunes only parameters)."""

        def prune_out_channels(self, layer, idxs):
            keep = [i for i in range(self.get_out_channels(layer)) if i not in set(idxs)]
            for name, buf in list(layer.named_buffers(recurse=False)):
                if buf.dim() >= 1 and buf.shape[0] == self.get_out_channels(layer):
                    setattr(layer, name, buf[keep].clone())
            if layer.shape is not None:
                layer.shape = (len(keep),) + tuple(layer.shape[1:])
            return layer

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer):
            return layer.shape[0] if layer.shape is not None else None

        get_in_channels = get_out_channels

    m = copy.deepcopy(module).cpu()
    counts = keep_counts(Pipeline("fold_bn").run(graph, PassContext(num_steps=T)), ratio)
    convs = [mod for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    readout = convs[-1]
    total = {mod: mod.weight.shape[0] for mod in convs[:-1]}
    # snnc's groups are named after their neuron node; the torch layers feeding them are in the same order
    wanted = list(counts.values())
    ratios = {mod: (1 - k / total[mod]) - 1e-6 for mod, k in zip(convs[:-1], wanted)}
    pruner = tp.pruner.BasePruner(m, torch.zeros((1,) + tuple(input_shape)), importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=0.0, pruning_ratio_dict=ratios, ignored_layers=[readout],
                                  customized_pruners={CubaLIF: NeuronPruner()})
    for mod in m.modules():
        if hasattr(mod, "reset_state"):
            mod.reset_state()
    pruner.step()
    for mod in m.modules():
        if hasattr(mod, "reset_state"):
            mod.reset_state()
    m.eval()
    g = trace_module(m, input_shape, num_steps=T)
    return Pipeline("fold_bn").run(g, PassContext(num_steps=T))


def run_method(method, graph, module, ratio, seed, data, T, epochs, device, log, unfolded=None):
    """Compress ``graph`` (BatchNorm folded; ``unfolded``: the graph before ``fold_bn``, whose BatchNorm scales give
    SCA's regeneration score) by ``method``; returns ``(compressed graph, notes)``."""
    x_fit, y_fit, x_val, y_val, input_shape = data
    ctx = PassContext(calibration=x_fit[:256], num_steps=T, seed=seed,
                      fit_samples=lambda n: x_fit[:n])
    notes = {}
    train = dict(epochs=epochs, seed=seed, x_val=x_val, y_val=y_val, teacher=graph, distill=DISTILL, device=device,
                 log=log)
    if method in ("cut", "repair", "cut+ft", "repair+ft", "spike-thrift"):
        g = copy.deepcopy(graph)
        cut, _ = prune(g, ctx, "l1", keep_counts(graph, ratio))
        if method in ("repair", "repair+ft", "spike-thrift"):
            notes["repair"] = {k: {kk: vv for kk, vv in v.items() if "error" in kk}
                               for k, v in repair_cut(cut, graph, ctx).get("layers", {}).items()}
        if method in ("cut", "repair"):
            return cut, notes
        recipe = Recipe("spike-thrift") if method == "spike-thrift" else Recipe()
        model, hist = finetune(cut, x_fit, y_fit, T, recipe=recipe, **train)
    elif method in ("sca", "minimax"):
        extra = {"bn": batchnorm_affines(unfolded)} if method == "sca" and unfolded is not None else {}
        model, hist = finetune(graph, x_fit, y_fit, T, recipe=Recipe(method, keep=ratio, extra=extra), **train)
    elif method == "torch-pruning":
        cut = torch_pruning_cut(module, graph, ratio, input_shape, T)
        model, hist = finetune(cut, x_fit, y_fit, T, **train)
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    rep = getattr(model, "method_report", {})
    notes["history"] = [{k: v for k, v in h.items() if not isinstance(v, dict)} for h in hist]
    if rep.get("pruning"):
        notes["kept"] = rep["pruning"]["kept"]
    if rep.get("neurons"):
        notes["neurons"] = rep["neurons"]
    out = model.to_nir()
    return out, notes


def print_table(name, rows):
    print(f"\n{name}: accuracy (float / loihi-sim, %) vs graph synapses, cores, energy per inference; method time")
    print(f"{'keep':>5} {'method':<14} {'seed':>4} {'float':>7} {'loihi':>7} {'synapses':>11} {'x fewer':>8} "
          f"{'cores':>5} {'uJ':>8} {'time s':>8}")
    base = rows.get("dense") or rows.get("dense/quick")
    for key in sorted((k for k in rows if not k.startswith("dense")),
                      key=lambda k: (-rows[k]["ratio"], METHODS.index(rows[k]["method"]), rows[k]["seed"])):
        r = rows[key]
        fewer = base["graph_synapses"] / max(r["graph_synapses"], 1) if base else float("nan")
        print(f"{r['ratio']:>5} {r['method']:<14} {r['seed']:>4} {100 * r['float_accuracy']:>7.2f} "
              f"{100 * r['loihi_accuracy']:>7.2f} {r['graph_synapses']:>11,} {fewer:>8.1f} {r['cores']:>5} "
              f"{r['energy_uJ']:>8.2f} {r['method_s']:>8.1f}")
    if base:
        print(f"{'1.0':>5} {'dense':<14} {'':>4} {100 * base['float_accuracy']:>7.2f} {100 * base['loihi_accuracy']:>7.2f} "
              f"{base['graph_synapses']:>11,} {1.0:>8.1f} {base['cores']:>5} {base['energy_uJ']:>8.2f}")
    seeds = {}
    for r in rows.values():
        if r.get("method") and r["method"] in TRAINED:
            seeds.setdefault((r["ratio"], r["method"]), []).append(r["loihi_accuracy"])
    multi = {k: v for k, v in seeds.items() if len(v) > 1}
    if multi:
        print("seeds (loihi-sim): mean ± std over the seeds run")
        for (ratio, method), v in sorted(multi.items()):
            print(f"  keep {ratio} {method:<14} {100 * np.mean(v):.2f} ± {100 * np.std(v):.2f} (n = {len(v)})")


def plot(results, path_syn, path_energy):
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for path, key, label in ((path_syn, "graph_synapses", "graph synapses"), (path_energy, "energy_uJ",
                                                                               "energy per inference (µJ, loihi-sim)")):
        fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
        for ax, (name, rows) in zip(axes[0], results.items()):
            for i, method in enumerate(METHODS):
                pts = sorted((r[key], r["loihi_accuracy"]) for r in rows.values() if r.get("method") == method)
                if pts:
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", color=f"C{i}", label=method)
            dense = rows.get("dense") or rows.get("dense/quick")
            if dense:
                ax.plot([dense[key]], [100 * dense["loihi_accuracy"]], "k*", ms=12, label="dense")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel("loihi-sim test accuracy (%)")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="fmnist_cnn")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--ratios", default="0.5,0.25,0.1")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-images", type=int, default=20000)
    p.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 256 training images, 1 epoch, 100 test images, keep 0.5, every method")
    p.add_argument("--json", default="runs/bench_compress.json")
    p.add_argument("--png", default="runs/bench_compress_synapses.png")
    p.add_argument("--png-energy", default="runs/bench_compress_energy.png")
    p.add_argument("--merge", default=None, metavar="JSON[,JSON...]")
    a = p.parse_args(argv)
    if a.quick:
        a.train_images, a.epochs, a.limit, a.ratios = 256, 1, a.limit or 100, "0.5"
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.is_file() else {}
    if a.merge:
        for f in a.merge.split(","):
            for name, rows in json.loads(Path(f).read_text()).items():
                results.setdefault(name, {}).update(rows)
        out.write_text(json.dumps(results, indent=1, sort_keys=True))
    else:
        methods = [m for m in a.methods.split(",") if m]
        bad = sorted(set(methods) - set(METHODS))
        if bad:
            p.error(f"unknown methods {bad}; known: {', '.join(METHODS)}")
        dev = resolve_device(a.device)
        target = load_target("loihi-sim")
        td = load_training("fashion-mnist", a.data_dir, seed=0)
        x_fit, y_fit = td.fit(a.train_images)
        x_val, y_val = td.val(min(td.val_count, 1000))
        xte, yte = D.load("fashion-mnist", "test", a.data_dir, limit=a.limit)
        print(f"device {dev.type}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()}; "
              f"{len(y_fit):,} training images x {a.epochs} epoch(s), {len(yte):,} test images")
        for name in a.models.split(","):
            graph, module, info = load_model(name)
            T = int(info.get("num_steps") or graph.metadata["snnc.num_steps"])
            folded = Pipeline("fold_bn").run(graph, PassContext(num_steps=T))
            input_shape = tuple(x_fit.shape[1:])
            rows = results.setdefault(name, {})
            calib = x_fit[:256]
            for key, r in rows.items():  # a file holds one budget: resuming must not mix runs measured otherwise
                want = {"test_images": int(len(yte))} if key.startswith("dense") else {
                    "test_images": int(len(yte)), "train_images": int(len(y_fit)), "epochs": a.epochs}
                if (key.endswith("/quick") == a.quick) and any(r.get(k) != v for k, v in want.items()):
                    p.error(f"{out}: row {name} {key} was measured with {({k: r.get(k) for k in want})}, this run "
                            f"with {want}; give another --json")
            dense_key = "dense/quick" if a.quick else "dense"
            if dense_key not in rows:
                rows[dense_key] = dict(evaluate(folded, target, calib, xte, yte, T, device=dev), ratio=1.0,
                                       test_images=int(len(yte)))
                out.write_text(json.dumps(results, indent=1, sort_keys=True))
            for ratio in [float(r) for r in a.ratios.split(",")]:
                for seed in [int(s) for s in a.seeds.split(",")]:
                    for method in methods:
                        key = f"{method}/{ratio}/{seed}" + ("/quick" if a.quick else "")
                        if key in rows:
                            continue
                        t0 = time.time()
                        say = (lambda m, _k=key: print(f"  [{_k}] {m}", flush=True))
                        g, notes = run_method(method, folded, module, ratio, seed,
                                              (x_fit, y_fit, x_val, y_val, input_shape), T, a.epochs, dev, say,
                                              unfolded=graph)
                        took = time.time() - t0
                        row = dict(evaluate(g, target, calib, xte, yte, T, device=dev), method=method, ratio=ratio,
                                   seed=seed, method_s=round(took, 1), train_images=int(len(y_fit)),
                                   epochs=a.epochs, test_images=int(len(yte)), load_average=os.getloadavg()[0],
                                   device=dev.type, notes=notes)
                        rows[key] = row
                        out.write_text(json.dumps(results, indent=1, sort_keys=True))
                        print(f"{name} keep {ratio} {method} seed {seed}: float {100 * row['float_accuracy']:.2f}% "
                              f"loihi {100 * row['loihi_accuracy']:.2f}% synapses {row['graph_synapses']:,} "
                              f"cores {row['cores']} {row['energy_uJ']:.2f} uJ, {took:.0f} s", flush=True)
    for name, rows in results.items():
        print_table(name, rows)
    plot(results, a.png, a.png_energy)
    print(f"wrote {out}, {a.png} and {a.png_energy}")


if __name__ == "__main__":
    main()
