"""Benchmark: compile time of snnc's loihi-sim path and simulation throughput (measured, never hard-coded).

Usage::

    .venv/bin/python bench/bench_compile_sim.py [--samples N] [--bundled PATH] [--skip-vgg] [--json PATH]

What it measures, in one run (all times with ``time.perf_counter``, wall clock, s):

1. **Bundled Fashion-MNIST CNN** (``models/fmnist_cnn.pt``; if the file does not
   exist, ``snnc.models.FMNISTConvSNN()`` with random weights, ``torch.manual_seed``
   fixed, and the output says so). Compile time = trace (``snnc.frontend.load_model``
   or ``trace``) + ``Pipeline("fold_bn,quantize")`` with a ``PassContext`` on the
   loihi-sim target, 256 Fashion-MNIST training images as calibration, T steps +
   ``snnc.backends.loihi.compile.compile_graph``. Loading the calibration images is
   timed separately and not part of the compile time.
2. **Synthetic VGG-style SNN** at 3x32x32 with random weights (seeded): 5 conv+BN+CubaLIF
   layers, two 2x2 average pools (each right before a conv, as the loihi-sim
   lowering needs), flatten, Linear -> Integrator readout. The last LIF layer is
   C x 8 x 8 with C*64 <= 4,096 neurons, the readout's fan-in limit of one core.
   Calibration: 256 random uniform inputs in [0, 1] (no real data at this shape).
3. **Simulation throughput** on the same Fashion-MNIST test images (``--samples``,
   default 1,000): the float PyTorch model (``snnc.neurons.run_float``, no_grad) and
   the bit-accurate loihi-sim (``Program.run``: on the CPU its compiled layer-by-layer kernel,
   ``kernel="fused"``), both with batch ``--batch-size`` (256), in samples x time steps per second;
   loihi-sim's whole-tensor path (``kernel="tensor"``, what runs on CUDA and for recurrent
   programs) is timed in the same rounds and must give the same outputs bit for bit. Float runs T steps; loihi-sim runs
   ``program.L`` = latency steps (T + pipeline depth, what the chip simulation
   actually steps), both bases are printed. Agreement = fraction of samples whose
   argmax prediction is equal. Optionally the same for the VGG net on
   ``--vgg-samples`` (64) random inputs.

A small warm-up batch (``--warmup``, default 16 samples) is run once before each
throughput measurement and not timed (first-call allocation / oneDNN setup). Each
throughput figure is the median of ``--repeats`` (3) interleaved rounds (float, sim,
float, sim, ...), so a change in machine load hits both sides alike; every round's
time is printed too. Compile times are single runs. The load average at start and
end is printed: on a shared machine the figures move with it.

The last line of stdout is the JSON of all figures (also written to ``--json PATH``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]

from snnc import data as D  # noqa: E402
from snnc.backends.loihi.compile import compile_graph  # noqa: E402
from snnc.backends.loihi.sim import Program  # noqa: E402
from snnc.frontend import load_model, trace  # noqa: E402
from snnc.ir import graph_figures  # noqa: E402
from snnc.neurons import CubaLIF, Integrator, run_float  # noqa: E402
from snnc.passes import PassContext, Pipeline  # noqa: E402
from snnc.targets import load_target  # noqa: E402

PIPELINE = "fold_bn,quantize"
TARGET = "loihi-sim"
CALIB_N = 256
SEED = 0
NEURON = dict(tau_syn=1e-3, tau_mem=5e-3, threshold=1.0, dt=1e-3, reset="zero")


# --------------------------------------------------------------------------- models

class VGGSNN(nn.Module):
    """VGG-style SNN, 3x32x32 input; ``forward`` is one time step ``[B,3,32,32] -> [B,classes]``.

    conv1 c0 32x32 -> conv2 c1 32x32 -> pool -> conv3 c2 16x16 -> conv4 c3 16x16 -> pool
    -> conv5 c4 8x8 -> flatten -> fc -> readout. Every conv is 3x3, padding 1, then
    BatchNorm2d and CubaLIF.
    """

    def __init__(self, channels=(32, 32, 64, 64, 64), num_classes: int = 10, input_shape=(3, 32, 32)):
        super().__init__()
        c = list(channels)
        cin, h, w = input_shape
        layers: list = []
        sizes = [(h, w), (h, w), (h // 2, w // 2), (h // 2, w // 2), (h // 4, w // 4)]
        prev = cin
        for i, (ch, (hh, ww)) in enumerate(zip(c, sizes), start=1):
            if i in (3, 5):  # pooling right before a conv (folded into its synapses)
                layers.append((f"pool{(i - 1) // 2}", nn.AvgPool2d(2)))
            layers += [(f"conv{i}", nn.Conv2d(prev, ch, 3, padding=1)),
                       (f"bn{i}", nn.BatchNorm2d(ch)),
                       (f"lif{i}", CubaLIF((ch, hh, ww), **NEURON))]
            prev = ch
        hh, ww = sizes[-1]
        layers += [("flatten", nn.Flatten()),
                   ("fc", nn.Linear(prev * hh * ww, num_classes)),
                   ("readout", Integrator((num_classes,), dt=NEURON["dt"]))]
        self.net = nn.Sequential(OrderedDict(layers))
        self.input_shape = tuple(input_shape)

    def forward(self, x):
        return self.net(x)


# --------------------------------------------------------------------------- helpers

def _t() -> float:
    return time.perf_counter()


def compile_timed(get_graph, calibration: np.ndarray, T: int | None, target) -> dict:
    """Run trace -> passes -> compile_graph, timing each stage. ``get_graph()`` returns the traced graph.

    ``T`` None: read from the traced graph's ``snnc.num_steps`` metadata.
    """
    t0 = _t()
    graph = get_graph()
    t_trace = _t() - t0
    if T is None:
        T = int((graph.metadata or {})["snnc.num_steps"])
    ctx = PassContext(target=target, calibration=calibration, num_steps=int(T), seed=SEED)
    t0 = _t()
    compiled = Pipeline(PIPELINE).run(graph, ctx)
    t_passes = _t() - t0
    t0 = _t()
    config, arrays, violations = compile_graph(compiled, target)
    t_backend = _t() - t0
    cores = config["cores"]
    figs = graph_figures(compiled)
    return {
        "graph": compiled, "config": config, "arrays": arrays,
        "figures": {
            "trace_s": t_trace,
            "passes_s": t_passes,
            "passes_breakdown_s": {e["pass"]: e["time_s"] for e in ctx.log},
            "compile_graph_s": t_backend,
            "total_s": t_trace + t_passes + t_backend,
            "neurons": int(figs["neurons"]),
            "synapses_graph": int(figs["synapses"]),
            "synapses_mapped": int(sum(c["synapses"] for c in cores)),
            "parameters": int(figs["parameters"]),
            "cores": len(cores),
            "chips": (max(c["chip"] for c in cores) + 1) if cores else 0,
            "latency_steps": int(config["latency_steps"]),
            "num_steps": int(config["num_steps"]),
            "violations": len(violations),
        },
    }


def warm_float(model, x: np.ndarray, T: int, warmup: int) -> None:
    if warmup > 0:
        with torch.no_grad():
            run_float(model, torch.from_numpy(x[:warmup]), T)


def float_predict(model, x: np.ndarray, T: int, batch: int) -> tuple[np.ndarray, float]:
    preds = []
    t0 = _t()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = run_float(model, torch.from_numpy(x[i:i + batch]), T)[-1]
            preds.append(out.argmax(1).numpy())
    return np.concatenate(preds), _t() - t0


def sim_predict(program: Program, x: np.ndarray, batch: int, kernel: str = "auto") -> tuple[np.ndarray, float, object]:
    t0 = _t()
    res = program.run(x, batch_size=batch, kernel=kernel)
    dt = _t() - t0
    return res.scores().reshape(len(x), -1).argmax(1), dt, res


def throughput(model, program: Program, x: np.ndarray, T: int, batch: int, warmup: int, repeats: int,
               y: np.ndarray | None = None) -> dict:
    """Time float and loihi-sim on the same ``x``; ``repeats`` interleaved rounds, median wall time used."""
    n = len(x)
    warm_float(model, x, T, warmup)
    if warmup > 0:
        program.run(x[:warmup], batch_size=batch)
        program.run(x[:warmup], batch_size=batch, kernel="tensor")
    tfs, tss, tts = [], [], []
    pf = ps = res = None
    same = True
    for _ in range(max(1, repeats)):  # interleaved, so a change in machine load hits every side alike
        pf, tf = float_predict(model, x, T, batch)
        ps, ts, res = sim_predict(program, x, batch)
        _, tt, res_t = sim_predict(program, x, batch, kernel="tensor")
        same &= all(torch.equal(res.outputs[k], res_t.outputs[k]) for k in res.outputs) and \
            all(torch.equal(res.spikes[k], res_t.spikes[k]) for k in res.spikes)
        tfs.append(tf)
        tss.append(ts)
        tts.append(tt)
    tf, ts, tt = float(np.median(tfs)), float(np.median(tss)), float(np.median(tts))
    L = program.L
    f_sps = n * T / tf
    s_sps_L = n * L / ts
    spikes = sum(float(v.sum()) for v in res.spikes.values()) / n
    out = {
        "samples": int(n), "batch_size": int(batch), "T": int(T), "L": int(L), "repeats": len(tfs),
        "float_s": tf, "sim_s": ts, "float_s_all": tfs, "sim_s_all": tss,
        "float_samples_per_s": n / tf, "sim_samples_per_s": n / ts,
        "float_sample_steps_per_s_T": f_sps,
        "sim_sample_steps_per_s_L": s_sps_L,
        "sim_sample_steps_per_s_T": n * T / ts,
        "ratio_sim_over_float_steps": s_sps_L / f_sps,   # loihi-sim (L basis) / float (T basis)
        "ratio_sim_over_float_samples": (n / ts) / (n / tf),
        "sim_tensor_s": tt, "sim_tensor_s_all": tts, "ratio_tensor_over_float_samples": tf / tt,
        "fused_equals_tensor": bool(same),
        "agreement": float((pf == ps).mean()),
        "sim_spikes_per_sample": spikes,
        "pred_classes_float": int(len(np.unique(pf))),
        "pred_classes_sim": int(len(np.unique(ps))),
    }
    if y is not None:
        out["float_accuracy"] = float((pf == y).mean())
        out["sim_accuracy"] = float((ps == y).mean())
    return out


# --------------------------------------------------------------------------- printing

def _row(label, value, unit=""):
    print(f"  {label:<46} {value:>16} {unit}")


def _f(x, nd=3):
    return f"{x:,.{nd}f}"


def print_compile(title: str, f: dict, notes: list[str]) -> None:
    print(f"\n== {title}")
    for n in notes:
        print(f"  note: {n}")
    _row("trace (frontend)", _f(f["trace_s"]), "s")
    _row(f"passes {PIPELINE}", _f(f["passes_s"]), "s")
    for k, v in f["passes_breakdown_s"].items():
        _row(f"  - {k}", _f(v), "s")
    _row("compile_graph (lower, split, pack, rules)", _f(f["compile_graph_s"]), "s")
    _row("TOTAL compile", _f(f["total_s"]), "s")
    _row("neurons", f"{f['neurons']:,}")
    _row("synapses (graph, conv per output position)", f"{f['synapses_graph']:,}")
    _row("synapses (mapped on cores)", f"{f['synapses_mapped']:,}")
    _row("parameters", f"{f['parameters']:,}")
    _row("cores / chips", f"{f['cores']:,} / {f['chips']}")
    _row("T / latency steps L", f"{f['num_steps']} / {f['latency_steps']}")


def print_tp(title: str, r: dict, notes: list[str]) -> None:
    print(f"\n== {title}")
    for n in notes:
        print(f"  note: {n}")
    _row("samples / batch", f"{r['samples']:,} / {r['batch_size']}")
    _row(f"float run_float: wall, median of {r['repeats']}", _f(r["float_s"]), "s")
    _row(f"loihi-sim Program.run: wall, median of {r['repeats']}", _f(r["sim_s"]), "s")
    _row("  all float runs", " ".join(f"{v:.2f}" for v in r["float_s_all"]), "s")
    _row("  all loihi-sim runs", " ".join(f"{v:.2f}" for v in r["sim_s_all"]), "s")
    _row("float: samples/s", _f(r["float_samples_per_s"], 1))
    _row("loihi-sim: samples/s", _f(r["sim_samples_per_s"], 1))
    _row(f"float: sample*steps/s (T={r['T']})", _f(r["float_sample_steps_per_s_T"], 1))
    _row(f"loihi-sim: sample*steps/s (L={r['L']})", _f(r["sim_sample_steps_per_s_L"], 1))
    _row(f"loihi-sim: sample*steps/s (T={r['T']} basis)", _f(r["sim_sample_steps_per_s_T"], 1))
    _row("ratio loihi-sim/float, sample*steps/s (L vs T)", _f(r["ratio_sim_over_float_steps"], 4))
    _row("ratio loihi-sim/float, samples/s", _f(r["ratio_sim_over_float_samples"], 4))
    _row(f"loihi-sim tensor path: wall, median of {r['repeats']}", _f(r["sim_tensor_s"]), "s")
    _row("  all tensor-path runs", " ".join(f"{v:.2f}" for v in r["sim_tensor_s_all"]), "s")
    _row("ratio tensor path/float, samples/s", _f(r["ratio_tensor_over_float_samples"], 4))
    _row("compiled and tensor paths equal (outputs, spikes)", str(r["fused_equals_tensor"]))
    _row("prediction agreement (equal argmax)", _f(r["agreement"], 4))
    if "float_accuracy" in r:
        _row("float accuracy / loihi-sim accuracy", f"{r['float_accuracy']:.4f} / {r['sim_accuracy']:.4f}")
    _row("loihi-sim spikes per sample", _f(r["sim_spikes_per_sample"], 1))
    _row("distinct predicted classes float / sim", f"{r['pred_classes_float']} / {r['pred_classes_sim']}")


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000, help="Fashion-MNIST test samples for throughput")
    ap.add_argument("--bundled", default=str(REPO / "models" / "fmnist_cnn.pt"), help="bundled model checkpoint")
    ap.add_argument("--skip-vgg", action="store_true", help="skip the synthetic VGG compile and throughput")
    ap.add_argument("--vgg-channels", default="32,32,64,64,64", help="5 conv widths; last * 64 must be <= 4096")
    ap.add_argument("--vgg-samples", type=int, default=64, help="random samples for the VGG throughput (0 = skip)")
    ap.add_argument("--vgg-steps", type=int, default=8, help="T for the VGG net")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=16, help="untimed warm-up samples before each throughput run")
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved timing rounds per throughput figure (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--json", default=None, help="also write the JSON figures to this path")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = _t()
    target = load_target(TARGET)
    machine = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    print("snnc compile + simulation benchmark")
    print(f"  machine: {machine['platform']} ({machine['processor']}), {machine['cpu_count']} CPUs, "
          f"python {machine['python']}, torch {machine['torch']}, torch threads {machine['torch_threads']} "
          f"(interop {machine['torch_interop_threads']}), load average at start {machine['loadavg_at_start']}")
    results: dict = {"machine": machine, "target": TARGET, "pipeline": PIPELINE, "timer": "time.perf_counter"}

    # ---- 1. bundled model
    t0 = _t()
    calib, _ = D.load_fashion_mnist("train", limit=CALIB_N)
    t_calib = _t() - t0
    bundled = Path(args.bundled)
    notes = []
    if bundled.is_file():
        info_box = {}

        def get_graph():
            g, m, info = load_model(bundled)
            info_box.update(module=m, info=info)
            return g
        source = str(bundled)
        notes.append(f"model: {bundled} (trace stage = snnc.frontend.load_model: torch.load + trace)")
        T = None  # read from the traced graph (checkpoint config)
        random_weights = False
    else:
        from snnc.models import FMNISTConvSNN
        torch.manual_seed(SEED)
        fm = FMNISTConvSNN().eval()
        T = int(fm.config["num_steps"])
        info_box = {"module": fm}

        def get_graph():
            return trace(fm, tuple(fm.config["input_shape"]), dt=fm.config["dt"], num_steps=T)
        source = f"FMNISTConvSNN() random weights (torch.manual_seed({SEED}))"
        random_weights = True
        notes.append(f"{bundled} does not exist: using snnc.models.FMNISTConvSNN() with RANDOM weights "
                     f"(torch.manual_seed({SEED})); accuracy figures are meaningless, timings are real")
        notes.append("trace stage = snnc.frontend.trace")
    c1 = compile_timed(get_graph, calib, T, target)
    T = c1["figures"]["num_steps"]
    ckpt_meta = {}
    if not random_weights:
        meta = (info_box.get("info") or {}).get("meta") or {}
        ckpt_meta = {k: meta[k] for k in ("epochs", "float_test_accuracy", "command", "seed") if k in meta}
        notes.append(f"checkpoint meta: {json.dumps(ckpt_meta, sort_keys=True)}")
    notes.append(f"calibration: first {CALIB_N} Fashion-MNIST training images "
                 f"(loaded in {t_calib:.3f} s, not counted in compile time); T = {T}")
    fm_model = info_box["module"]
    fm_model.eval()
    f1 = dict(c1["figures"], source=source, random_weights=random_weights, calibration_load_s=t_calib,
              checkpoint_meta=ckpt_meta,
              calibration="Fashion-MNIST train[:256]")
    print_compile(f"1. compile: Fashion-MNIST CNN ({source})", f1, notes)
    results["fmnist_compile"] = f1

    # ---- 2. VGG
    vgg = None
    if not args.skip_vgg:
        ch = [int(c) for c in args.vgg_channels.split(",")]
        if len(ch) != 5:
            ap.error("--vgg-channels needs 5 widths")
        torch.manual_seed(SEED)
        vgg = VGGSNN(ch).eval()
        Tv = int(args.vgg_steps)
        rng = np.random.default_rng(SEED)
        vcal = rng.uniform(0.0, 1.0, size=(CALIB_N, 3, 32, 32)).astype(np.float32)
        c2 = compile_timed(lambda: trace(vgg, (3, 32, 32), dt=NEURON["dt"], num_steps=Tv), vcal, Tv, target)
        f2 = dict(c2["figures"], channels=ch, calibration="256 random uniform [0,1] inputs (numpy seed 0)",
                  torch_seed=SEED)
        print_compile(f"2. compile: synthetic VGG-style SNN 3x32x32, channels {ch} (random weights)", f2,
                      [f"torch.manual_seed({SEED}); calibration: {CALIB_N} random uniform [0,1] inputs "
                       f"(np.random.default_rng({SEED})), not real data; T = {Tv}"])
        results["vgg_compile"] = f2
        fmf, vgf = f1, f2
        print(f"\n  VGG / FMNIST ratios: neurons x{vgf['neurons'] / fmf['neurons']:.1f}, "
              f"synapses(graph) x{vgf['synapses_graph'] / fmf['synapses_graph']:.1f}, "
              f"cores x{vgf['cores'] / fmf['cores']:.1f}, compile time x{vgf['total_s'] / fmf['total_s']:.1f}")
        results["vgg_over_fmnist"] = {k: vgf[k] / fmf[k] for k in ("neurons", "synapses_graph", "cores", "total_s")}

    # ---- 3. throughput
    xte, yte = D.load_fashion_mnist("test", limit=args.samples)
    program = Program(c1["config"], c1["arrays"], target)
    r3 = throughput(fm_model, program, xte, T, args.batch_size, args.warmup, args.repeats, y=yte)
    print_tp(f"3. throughput: Fashion-MNIST CNN on {len(xte):,} Fashion-MNIST test images", r3,
             ["same inputs for both; float = run_float (torch.no_grad, float32), "
              "loihi-sim = Program.run (bit-accurate; compiled CPU kernel, int64)",
              f"float steps T = {T}; loihi-sim steps L = program.L = {program.L} (latency steps)",
              f"{args.warmup} warm-up samples run once before each, untimed; {args.repeats} interleaved "
              "rounds (float, sim, float, sim, ...), median wall time"])
    results["fmnist_throughput"] = r3

    if vgg is not None and args.vgg_samples > 0:
        rng = np.random.default_rng(SEED + 1)
        xv = rng.uniform(0.0, 1.0, size=(args.vgg_samples, 3, 32, 32)).astype(np.float32)
        pv = Program(c2["config"], c2["arrays"], target)
        r4 = throughput(vgg, pv, xv, Tv, args.batch_size, min(args.warmup, 8), args.repeats, y=None)
        print_tp(f"4. throughput: VGG-style SNN on {len(xv)} random uniform [0,1] inputs", r4,
                 [f"float steps T = {Tv}; loihi-sim steps L = {pv.L}; random weights, so agreement "
                  "reflects quantization on an untrained net"])
        results["vgg_throughput"] = r4

    results["bench_wall_s"] = _t() - t_start
    print(f"\n  benchmark wall time: {results['bench_wall_s']:.1f} s; load average at end "
          f"{[round(x, 2) for x in os.getloadavg()]}")
    text = json.dumps(results, sort_keys=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
