"""loihi-sim vs Lava throughput on the same compiled model and inputs (sample x steps per second).

    .venv/bin/python bench/bench_lava.py [--samples 32] [--out DIR]

Compiles the bundled Fashion-MNIST model for loihi-sim (no calibration data: the default
worst-case bounds; the config is the same for both engines), then runs the same test images
through loihi-sim (snnc's batched simulator, one batch) and through Lava (lava-nc 0.10
fixed-point process models on the CPU, 16 samples per Lava run), checks that every group's u, v
and spikes are equal at every step, and prints both throughputs and their ratio. Lava's time
includes building and compiling the process graph (once per run), as a user of
`snnc simulate --engine lava` pays it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--out", default=None, help="compile output folder (default: a temporary one)")
    args = ap.parse_args()
    from snnc.backends.lava import compare_with_loihi_sim
    from snnc.backends.lava.engine import LavaProgram
    from snnc.backends.loihi.sim import load_program
    from snnc.driver.compiler import compile_model
    from snnc.data import load

    out = Path(args.out or tempfile.mkdtemp(prefix="snnc-bench-lava-")) / "fmnist"
    compile_model(ROOT / "models" / "fmnist_cnn.pt", out, target="lava", force=True)
    prog = load_program(out)
    x, _ = load("fashion-mnist", "test", None, limit=args.samples)
    n, L = len(x), prog.L
    prog.run(x[:2])  # warm-up
    t0 = time.perf_counter()
    ref = prog.run(x, batch_size=max(n, 1))
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    lava = LavaProgram(prog, chunk=16)
    t_build = time.perf_counter() - t0
    res = lava.run(x)
    t_lava = time.perf_counter() - t0
    same = all(np.array_equal(ref.outputs[k].numpy(), res.outputs[k].numpy()) for k in ref.outputs) and all(
        np.array_equal(ref.spikes[g].numpy(), res.spikes[g].numpy()) for g in ref.spikes)
    _, cmp = compare_with_loihi_sim(prog, x[:4], batch_size=4)
    print(f"model: bundled fmnist_cnn (16x28x28 + 20x14x14 + 10 neurons), {n} Fashion-MNIST test images, "
          f"L = {L} chip steps per sample")
    print(f"loihi-sim: {t_sim:8.3f} s  {n * L / t_sim:12,.1f} sample*steps/s  (batched, one batch of {n})")
    print(f"Lava     : {t_lava:8.3f} s  {n * L / t_lava:12,.1f} sample*steps/s  (build {t_build:.2f} s; "
          f"lava-nc 0.10.0 Loihi2SimCfg fixed_pt, 16 samples per run)")
    print(f"ratio loihi-sim / Lava throughput: {t_lava / t_sim:,.1f}x")
    print(f"outputs and spike totals equal on all {n} samples: {same}; step-by-step u/v/spikes on 4 samples: "
          f"{cmp['equal']} ({cmp['values_compared']:,} values)")


if __name__ == "__main__":
    main()
