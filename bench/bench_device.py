"""Benchmark: fine-tuning and loihi-sim throughput per device (CPU, and CUDA where torch sees a GPU).

Usage::

    .venv/bin/python bench/bench_device.py [--samples N] [--train N] [--batch-size B] [--json PATH]

On the bundled model (``models/fmnist_cnn.pt``, T = 8) and Fashion-MNIST:

1. **Fine-tuning** (``snnc.driver.finetune.finetune``: surrogate-gradient BPTT over T steps, Adam, batch
   ``--batch-size`` 128): one epoch on ``--train`` (2,048) training images by the sampling rule, in
   training images per second.
2. **loihi-sim** (``Program.run``, batch 500) on ``--samples`` (2,000) test images, in samples per second;
   on CUDA the outputs and every spike count are compared with the CPU run (bit-identical expected).
3. **Float reference** (``snnc.ir.readout.scores`` on the source model, batch 500), samples per second.

Every device runs the same work; a warm-up batch runs first, untimed. Each figure is one timed run
(``time.perf_counter``); the load average at start and end is printed, since on a shared machine the CPU
figures move with it. The ratio column is each device's throughput over the CPU's, measured in the same
run. The last line of stdout is the JSON of all figures (also written to ``--json PATH``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from snnc.backends.loihi.sim import load_program
from snnc.data.training import load_training
from snnc.driver.compiler import compile_model
from snnc.driver.finetune import finetune
from snnc.frontends import load_model
from snnc.ir import readout as R
from snnc import data as D
from snnc.passes import PassContext, Pipeline

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--train", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"load average at start: {load0[0]:.2f}; torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"devices: {', '.join(devices)}" + ("" if torch.cuda.is_available() else " (no CUDA device)"))
    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "snnc-bench-device"
    compile_model(ROOT / "models" / "fmnist_cnn.pt", out_dir, data="fashion-mnist", limit=16, force=True,
                  device="cpu")
    prog = load_program(out_dir)
    graph, module, info = load_model(ROOT / "models" / "fmnist_cnn.pt")
    T = int(info.get("num_steps") or graph.metadata["snnc.num_steps"])
    g = Pipeline("fold_bn").run(graph, PassContext(num_steps=T))
    xte, _ = D.load("fashion-mnist", "test", limit=args.samples)
    xtr, ytr = load_training("fashion-mnist").fit(args.train)
    rows, ref = [], None
    for dev in devices:
        finetune(g, xtr[:args.batch_size], ytr[:args.batch_size], T, epochs=1, batch_size=args.batch_size,
                 device=dev)  # warm-up
        _, t_ft = timed(lambda: finetune(g, xtr, ytr, T, epochs=1, batch_size=args.batch_size, device=dev))
        prog.run(xte[:64], device=dev)
        res, t_sim = timed(lambda: prog.run(xte, batch_size=500, device=dev))
        R.scores(graph, xte[:64], T, module=module, device=dev)
        _, t_fl = timed(lambda: R.scores(graph, xte, T, module=module, device=dev))
        row = {"device": dev, "finetune_images_per_s": args.train / t_ft, "finetune_epoch_s": t_ft,
               "loihi_sim_samples_per_s": len(xte) / t_sim, "float_samples_per_s": len(xte) / t_fl}
        if ref is None:
            ref = res
        else:
            row["loihi_sim_equal_to_cpu"] = bool(all(torch.equal(ref.outputs[k], res.outputs[k]) for k in ref.outputs)
                                                 and all(torch.equal(ref.spikes[k], res.spikes[k]) for k in ref.spikes)
                                                 and ref.overflow == res.overflow)
        rows.append(row)
    base = rows[0]
    print(f"{'device':8} {'finetune img/s':>15} {'x cpu':>6} {'loihi-sim smp/s':>16} {'x cpu':>6} "
          f"{'float smp/s':>12} {'x cpu':>6}  equal to CPU")
    for r in rows:
        print(f"{r['device']:8} {r['finetune_images_per_s']:15.1f} {r['finetune_images_per_s'] / base['finetune_images_per_s']:6.2f} "
              f"{r['loihi_sim_samples_per_s']:16.1f} {r['loihi_sim_samples_per_s'] / base['loihi_sim_samples_per_s']:6.2f} "
              f"{r['float_samples_per_s']:12.1f} {r['float_samples_per_s'] / base['float_samples_per_s']:6.2f}  "
              f"{r.get('loihi_sim_equal_to_cpu', '-')}")
    load1 = os.getloadavg()
    print(f"load average at end: {load1[0]:.2f}")
    res = {"rows": rows, "samples": len(xte), "train_images": len(ytr), "T": T, "load_start": load0[0],
           "load_end": load1[0], "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
