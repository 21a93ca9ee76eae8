"""Benchmark: distilled fine-tuning with the teacher's scores computed per batch vs once before training.

Usage::

    .venv/bin/python bench/bench_teacher_cache.py [--model fmnist_wide] [--keep 0.25] [--images 2000]
                                                  [--epochs 5] [--batch-size 128] [--threads 1]

The model (BatchNorm folded) is the teacher; its l1 cut to ``--keep`` of every layer's channels is the student,
trained ``--epochs`` over the first ``--images`` fitting samples of Fashion-MNIST with ``distill = 0.5``
(``snnc.driver.finetune.finetune``, horizontal flips on). Two runs in the same process, same seed: the teacher's
forward on every batch (the cache switched off), then the cache (``TEACHER_CACHE_EPOCHS``: two teacher passes,
over the images and their mirror images, before training). Prints each wall time (``time.perf_counter``), the
ratio, the last-epoch losses of both runs and the load average at start and end (on a shared machine the
figures move with it).
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch

import snnc.driver.finetune as FT
from snnc.data.training import load_training
from snnc.frontends import load_model
from snnc.passes import PassContext, Pipeline
from snnc.passes.prune import channel_groups, prune


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fmnist_wide")
    p.add_argument("--keep", type=float, default=0.25)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"load average at start {os.getloadavg()}, torch threads {torch.get_num_threads()}")
    graph, _, info = load_model(a.model)
    T = int(info.get("num_steps") or graph.metadata["snnc.num_steps"])
    teacher = Pipeline("fold_bn").run(graph, PassContext(num_steps=T))
    x, y = load_training("fashion-mnist", None, seed=0).fit(a.images)
    keep = {g.name: max(1, round(a.keep * g.channels)) for g in channel_groups(teacher) if g.prunable}
    student, _ = prune(copy.deepcopy(teacher), PassContext(calibration=x[:256], num_steps=T, seed=0), "l1", keep)
    times, losses = {}, {}
    default = FT.TEACHER_CACHE_EPOCHS
    for name, limit in (("teacher per batch", 10 ** 9), ("teacher cached", default)):
        FT.TEACHER_CACHE_EPOCHS = limit
        try:
            t0 = time.perf_counter()
            _, hist = FT.finetune(student, x, y, T, epochs=a.epochs, batch_size=a.batch_size, teacher=teacher,
                                  distill=0.5)
            times[name] = time.perf_counter() - t0
        finally:
            FT.TEACHER_CACHE_EPOCHS = default
        losses[name] = hist[-1]["loss"]
        print(f"{name}: {times[name]:.1f} s, last-epoch loss {losses[name]:.5f}", flush=True)
    print(f"{a.model} keep {a.keep} ({keep}), {a.images} images x {a.epochs} epochs, batch {a.batch_size}: "
          f"cached / per batch = {times['teacher cached'] / times['teacher per batch']:.2f} "
          f"({times['teacher per batch'] / times['teacher cached']:.2f}x faster)")
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
