"""Benchmark: cores against the lower bound, with and without shared-weight (population) formats, and
compile time with a per-stage breakdown (measured, never hard-coded).

Usage::

    .venv/bin/python bench/bench_mapping.py [--samples N] [--skip-vgg11] [--vgg11-steps T] [--vgg11-repeats K] [--skip-large]
        [--large-calibration N] [--json PATH]

What it measures, in one run (wall clock with ``time.perf_counter``, s):

1. **Bundled Fashion-MNIST CNN** (``models/fmnist_cnn.pt``), calibrated on 256 Fashion-MNIST training
   images: cores, lower bound, ratio, synaptic memory and stored synapses with ``formats="discrete"``
   (discrete axons, per-synapse weights: the format before issue 9) and ``formats="auto"`` (per
   projection the cheaper of discrete and population axons with shared weights). Both configurations
   are simulated bit-accurately on the first ``--samples`` (1,000) test images: the outputs must be
   equal element for element, and the accuracy and SynOps are printed for both.
2. **Zoo architectures** ``fmnist_res`` and ``fmnist_wide`` (random weights, ``torch.manual_seed(0)``;
   no checkpoint ships for them), compiled without calibration data: cores and bound, both formats.
3. **VGG-style SNN, 0.86 M parameters** (``bench_compile_sim.VGGSNN``, channels 32,32,64,64,64,
   3x32x32, random weights): cores and bound, both formats, and compile time per stage.
4. **VGG-11-width SNN, about 15 M parameters** (:class:`VGG11SNN`: 8 conv layers 64..512 channels at
   3x32x32 with 5 average poolings, then Linear 512->4096->1024 CubaLIF and a 10-class readout;
   random weights, ``torch.manual_seed(0)``; calibration 256 random uniform [0, 1] inputs,
   ``np.random.default_rng(0)``; T = ``--vgg11-steps``, 8): compile time per stage -- trace,
   fold_bn, quantize (and its calibration forward: the float run of the network on the calibration
   samples, timed inside the pass, with its GMAC), and the backend's lower / formats / pack / finish --
   median of ``--vgg11-repeats`` (3) compiles -- and the mapping figures,
   with the *tiling bound* beside today's lower bound: its memory term is the least synaptic memory over
   the placer's tilings (:meth:`snnc.backends.loihi.placement.Placer.tiling_bound`: the copies the
   synapse formats force, which the every-weight-once bound does not count), timed apart.
5. **VGG-16-width** (:data:`VGG16_PLAN`, the same classifier) and **ResNet-18-width** (:class:`ResNet18SNN`)
   SNNs at 3x32x32, random weights, calibrated on the first ``--large-calibration`` (32) of the random
   inputs: cores against the lower bound (``--skip-large`` skips them).

The load average at start and end is printed: on a shared machine the figures move with it. The last
line of stdout is the JSON of all figures (also written to ``--json PATH``).
"""
from __future__ import annotations

import argparse
import copy
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
sys.path.insert(0, str(REPO / "bench"))

from bench_compile_sim import NEURON, VGGSNN  # noqa: E402
from snnc import data as D  # noqa: E402
from snnc.backends.loihi.compile import compile_graph  # noqa: E402
from snnc.backends.loihi.sim import Program  # noqa: E402
from snnc.frontend import load_model, trace  # noqa: E402
from snnc.ir import graph_figures  # noqa: E402
from snnc.neurons import CubaLIF, Integrator  # noqa: E402
from snnc.passes import PassContext, Pipeline  # noqa: E402
from snnc.targets import load_target  # noqa: E402

SEED = 0
CALIB_N = 256


class VGG11SNN(nn.Module):
    """VGG-11 widths as an SNN, 3x32x32 input; ``forward`` is one time step ``[B,3,32,32] -> [B,classes]``.

    conv 64 @32 - pool - 128 @16 - pool - 256, 256 @8 - pool - 512, 512 @4 - pool - 512, 512 @2 - pool
    - flatten 512 - fc 4096 - fc 1024 - readout. Convs are 3x3, padding 1, with BatchNorm2d and CubaLIF;
    each pooling (2x2 average) directly precedes a conv or the flatten (loihi-sim folds it into the
    next synapses).
    """

    PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, hidden=(4096, 1024), num_classes: int = 10, plan=None):
        super().__init__()
        if plan is not None:
            self.PLAN = tuple(plan)
        layers, c, hw, k, pools = [], 3, 32, 0, 0
        for v in self.PLAN:
            if v == "M":
                pools += 1
                layers.append((f"pool{pools}", nn.AvgPool2d(2)))
                hw //= 2
                continue
            k += 1
            layers += [(f"conv{k}", nn.Conv2d(c, v, 3, padding=1)), (f"bn{k}", nn.BatchNorm2d(v)),
                       (f"lif{k}", CubaLIF((v, hw, hw), **NEURON))]
            c = v
        layers.append(("flatten", nn.Flatten()))
        n = c * hw * hw
        for i, h in enumerate(hidden, start=1):
            layers += [(f"fc{i}", nn.Linear(n, h)), (f"lif_fc{i}", CubaLIF((h,), **NEURON))]
            n = h
        layers += [("fc_out", nn.Linear(n, num_classes)), ("readout", Integrator((num_classes,), dt=NEURON["dt"]))]
        self.net = nn.Sequential(OrderedDict(layers))

    def forward(self, x):
        return self.net(x)


#: VGG-16 widths (Simonyan & Zisserman 2015, configuration D) at 3x32x32: 13 convolutions
VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class ResNet18SNN(nn.Module):
    """ResNet-18 widths as an SNN, 3x32x32 input (the CIFAR form of He et al. 2016: a 3x3 stem, no max-pool);
    ``forward`` is one time step ``[B,3,32,32] -> [B,classes]``.

    stem conv 64 @32, then 4 stages of 2 basic blocks (64 @32, 128 @16, 256 @8, 512 @4; a stage's first
    block has stride 2 after the first stage), each block ``s1 = LIF(bn(conv3x3(x)))``,
    ``s2 = LIF(bn(conv3x3(s1)) + bn(conv1x1(x)))`` -- the shortcut is always a 1x1 projection (option B),
    as a spike cannot pass to a later layer unweighted on the chip -- then 4x4 average pooling, flatten,
    fc 512 -> classes and an integrator readout. Every LIF is CubaLIF with ``NEURON``.
    """

    def __init__(self, widths=(64, 128, 256, 512), num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]),
                                  CubaLIF((widths[0], 32, 32), **NEURON))
        blocks, c, hw = [], widths[0], 32
        for i, w in enumerate(widths):
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                hw_out = hw // stride
                blocks.append(nn.ModuleDict({
                    "conv1": nn.Conv2d(c, w, 3, stride=stride, padding=1), "bn1": nn.BatchNorm2d(w),
                    "lif1": CubaLIF((w, hw_out, hw_out), **NEURON),
                    "conv2": nn.Conv2d(w, w, 3, padding=1), "bn2": nn.BatchNorm2d(w),
                    "short": nn.Conv2d(c, w, 1, stride=stride), "bn_s": nn.BatchNorm2d(w),
                    "lif2": CubaLIF((w, hw_out, hw_out), **NEURON)}))
                c, hw = w, hw_out
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AvgPool2d(hw)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)
        self.readout = Integrator((num_classes,), dt=NEURON["dt"])

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            s1 = b["lif1"](b["bn1"](b["conv1"](x)))
            x = b["lif2"](b["bn2"](b["conv2"](s1)) + b["bn_s"](b["short"](x)))
        return self.readout(self.fc(self.flatten(self.pool(x))))


def _t() -> float:
    return time.perf_counter()


def forward_gmac(model: nn.Module, T: int, n: int) -> float:
    """GMAC of the float forward of ``model``'s convolutions and linear layers on ``n`` samples x ``T`` steps
    (per layer and step: outputs x fan-in; what quantize's calibration run computes)."""
    macs = []
    model = copy.deepcopy(model)   # its neuron modules keep state

    def hook(m, inp, out):
        fan = m.weight[0].numel()
        macs.append(out[0].numel() * fan)
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros((1, 3, 32, 32)))
    finally:
        for h in hs:
            h.remove()
    return sum(macs) * T * n / 1e9


def mapping_figures(config: dict) -> dict:
    cores = config["cores"]
    m = config["mapping"]
    return {"cores": len(cores), "chips": m["chips"], "lower_bound": m["lower_bound"]["cores"],
            "bound_terms": m["lower_bound"]["terms"], "ratio": m["ratio"],
            "memory_KiB": sum(c["memory_bits"] for c in cores) / 8192,
            "synapses": sum(c["synapses"] for c in cores), "stored_synapses": sum(c["stored_synapses"] for c in cores),
            "routes": m["routes"], "inter_chip_routes": m["inter_chip_routes"],
            "formats": {g["name"]: [p.get("format") for p in g["projections"] if not p["host"]]
                        for g in config["groups"]},
            "channel_blocks": {g["name"]: g.get("channel_block") for g in config["groups"] if "channel_block" in g}}


def compile_stages(get_graph, calibration, T, target, formats=("discrete", "auto"), tiling: bool = False) -> dict:
    """trace -> fold_bn -> quantize -> compile_graph (each format), each stage timed."""
    out = {"stages_s": {}}
    t0 = _t()
    graph = get_graph()
    out["stages_s"]["trace"] = _t() - t0
    ctx = PassContext(target=target, calibration=calibration, num_steps=T, seed=SEED)
    t0 = _t()
    compiled = Pipeline("fold_bn,quantize").run(graph, ctx)
    out["stages_s"]["passes"] = _t() - t0
    for e in ctx.log:
        out["stages_s"][e["pass"]] = e["time_s"]
        for k, v in e.get("times_s", {}).items():
            out["stages_s"][f"{e['pass']}.{k}"] = v
    figs = graph_figures(compiled)
    out["parameters"] = int(figs["parameters"])
    out["neurons"] = int(figs["neurons"])
    out["graph"] = compiled
    for f in formats:
        tm = {}
        t0 = _t()
        config, arrays, viol = compile_graph(compiled, target, raise_on_violation=False, formats=f, timings=tm,
                                             tiling_bound=tiling)
        total = _t() - t0
        if tiling:  # timed apart: not part of the compile
            total -= tm["tiling_bound"]
            tb = dict(config["mapping"]["tiling_bound"], seconds=tm.pop("tiling_bound"))
        out[f] = dict(mapping_figures(config), violations=sorted({v.rule for v in viol}), compile_graph_s=total,
                      compile_graph_breakdown_s=tm)
        if tiling:
            out[f]["tiling_bound"] = {k: tb[k] for k in ("bound_cores", "ratio", "terms", "memory_bits", "groups",
                                                         "seconds")}
        out[f + "_config"] = (config, arrays)
    return out


def _row(label, value, unit=""):
    print(f"  {label:<52} {value:>18} {unit}")


def print_mapping(title: str, r: dict, notes=()) -> None:
    print(f"\n== {title}")
    for n in notes:
        print(f"  note: {n}")
    for f in ("discrete", "auto"):
        if f not in r:
            continue
        m = r[f]
        _row(f"[{f}] cores / lower bound (ratio)", f"{m['cores']:,} / {m['lower_bound']:,} ({m['ratio']:.2f})")
        _row(f"[{f}] bound terms", ", ".join(f"{k} {v}" for k, v in m["bound_terms"].items()))
        if "tiling_bound" in m:
            tb = m["tiling_bound"]
            _row(f"[{f}] cores / tiling bound (ratio)", f"{m['cores']:,} / {tb['bound_cores']:,} ({tb['ratio']:.2f})")
            _row(f"[{f}]   its memory term (least over the placer's tilings)",
                 f"{tb['terms']['memory']:,} cores ({tb['seconds']:.1f} s)")
        _row(f"[{f}] chips; routes (inter-chip)", f"{m['chips']}; {m['routes']:,} ({m['inter_chip_routes']:,})")
        _row(f"[{f}] synaptic memory", f"{m['memory_KiB']:,.1f}", "KiB")
        _row(f"[{f}] stored synapses / connections", f"{m['stored_synapses']:,} / {m['synapses']:,}")
        _row(f"[{f}] compile_graph", f"{m['compile_graph_s']:.2f}", "s")
        if m["violations"]:
            _row(f"[{f}] design-rule violations", ", ".join(m["violations"]))
    if "discrete" in r and "auto" in r:
        _row("cores discrete / auto", f"{r['discrete']['cores'] / r['auto']['cores']:.2f}x")
        _row("memory discrete / auto", f"{r['discrete']['memory_KiB'] / max(r['auto']['memory_KiB'], 1e-9):.1f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000, help="Fashion-MNIST test images for the equality check")
    ap.add_argument("--skip-vgg11", action="store_true", help="skip the 15 M-parameter VGG-11-width compile")
    ap.add_argument("--vgg11-steps", type=int, default=8, help="T for the VGG-11-width net")
    ap.add_argument("--vgg11-repeats", type=int, default=3, help="VGG-11-width compiles (the median is reported)")
    ap.add_argument("--skip-large", action="store_true", help="skip the VGG-16 and ResNet-18-width mappings")
    ap.add_argument("--large-calibration", type=int, default=32,
                    help="random calibration inputs for VGG-16 and ResNet-18-width (their float forward is the cost)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    target = load_target("loihi-sim")
    t_start = _t()
    machine = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    print("snnc mapping benchmark (loihi-sim)")
    print(f"  machine: {machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), load average at start {machine['loadavg_at_start']}")
    results: dict = {"machine": machine}

    # ---- 1. bundled model
    calib, _ = D.load_fashion_mnist("train", limit=CALIB_N)
    r1 = compile_stages(lambda: load_model(REPO / "models" / "fmnist_cnn.pt")[0], calib, 8, target)
    xte, yte = D.load_fashion_mnist("test", limit=args.samples)
    sims = {}
    for f in ("discrete", "auto"):
        cfg, arr = r1[f + "_config"]
        res = Program(cfg, arr, target).run(xte)
        sims[f] = res
        r1[f]["accuracy"] = float((res.scores().reshape(len(yte), -1).argmax(1) == yte).mean())
    equal = all(torch.equal(sims["discrete"].outputs[k], sims["auto"].outputs[k]) for k in sims["auto"].outputs)
    spikes_equal = all(torch.equal(sims["discrete"].spikes[k], sims["auto"].spikes[k]) for k in sims["auto"].spikes)
    print_mapping("1. bundled Fashion-MNIST CNN (models/fmnist_cnn.pt), calibrated on 256 training images", r1,
                  ["before issue 9 the packer mapped it to 48 cores / 4,051 KiB (README at commit 67c6683)"])
    _row(f"simulated outputs equal on {len(yte):,} test images", str(equal and spikes_equal))
    _row("accuracy discrete / auto", f"{r1['discrete']['accuracy']:.4f} / {r1['auto']['accuracy']:.4f}")
    results["bundled"] = {k: r1[k] for k in ("discrete", "auto", "stages_s", "parameters", "neurons")}
    results["bundled"]["outputs_equal"] = bool(equal and spikes_equal)
    results["bundled"]["samples"] = int(len(yte))

    # ---- 2. zoo architectures (random weights)
    from snnc.models import build_fmnist_res, build_fmnist_wide
    for name, ctor in (("fmnist_res", build_fmnist_res), ("fmnist_wide", build_fmnist_wide)):
        torch.manual_seed(SEED)
        m = ctor().eval()
        r = compile_stages(lambda m=m: trace(m, (1, 28, 28), num_steps=8), None, 8, target)
        print_mapping(f"2. zoo {name} (random weights, torch.manual_seed(0), no calibration data)", r)
        results[name] = {k: r[k] for k in ("discrete", "auto", "stages_s", "parameters", "neurons")}

    # ---- 3. VGG-style 0.86 M
    torch.manual_seed(SEED)
    vgg = VGGSNN().eval()
    vcal = np.random.default_rng(SEED).uniform(0.0, 1.0, size=(CALIB_N, 3, 32, 32)).astype(np.float32)
    r3 = compile_stages(lambda: trace(vgg, (3, 32, 32), dt=NEURON["dt"], num_steps=8), vcal, 8, target)
    print_mapping(f"3. VGG-style SNN 3x32x32, {r3['parameters']:,} parameters (random weights)", r3,
                  ["calibration: 256 random uniform [0,1] inputs (np.random.default_rng(0)); T = 8"])
    _row("compile total (trace + passes + compile_graph auto)",
         f"{r3['stages_s']['trace'] + r3['stages_s']['passes'] + r3['auto']['compile_graph_s']:.2f}", "s")
    results["vgg_0.86M"] = {k: r3[k] for k in ("discrete", "auto", "stages_s", "parameters", "neurons")}

    # ---- 4. VGG-11 widths, ~15 M
    if not args.skip_vgg11:
        torch.manual_seed(SEED)
        v11 = VGG11SNN().eval()
        n_weights = sum(p.numel() for p in v11.parameters())
        T = int(args.vgg11_steps)
        runs = [compile_stages(lambda: trace(v11, (3, 32, 32), dt=NEURON["dt"], num_steps=T), vcal, T, target,
                               formats=("auto",), tiling=(i == 0)) for i in range(max(1, args.vgg11_repeats))]
        r4 = runs[0]
        totals = [r["stages_s"]["trace"] + r["stages_s"]["passes"] + r["auto"]["compile_graph_s"] for r in runs]
        med = int(np.argsort(totals)[len(totals) // 2])   # the run with the median total
        st = runs[med]["stages_s"]
        a = dict(r4["auto"], compile_graph_s=runs[med]["auto"]["compile_graph_s"],
                 compile_graph_breakdown_s=runs[med]["auto"]["compile_graph_breakdown_s"])
        total = totals[med]
        calib_s = st.get("quantize.calibration", 0.0)
        print_mapping(f"4. VGG-11-width SNN 3x32x32, {n_weights:,} module parameters (weights, biases, BatchNorm), "
                      f"{r4['neurons']:,} neurons (random weights)", r4,
                      [f"calibration: 256 random uniform [0,1] inputs; T = {T}",
                       f"{r4['parameters']:,} parameters in the compiled NIR graph (with per-neuron parameters)"])
        _row("trace", f"{st['trace']:.2f}", "s")
        for k in ("fold_bn", "quantize"):
            _row(f"pass {k}", f"{st[k]:.2f}", "s")
        _row("compile_graph", f"{a['compile_graph_s']:.2f}", "s")
        for k, v in a["compile_graph_breakdown_s"].items():
            _row(f"  - {k}", f"{v:.2f}", "s")
        _row(f"TOTAL compile (trace + passes + compile_graph), median of {len(runs)}", f"{total:.2f}", "s")
        _row("  of which quantize's calibration forward", f"{calib_s:.2f}", "s")
        _row("  the rest (bounded by the weights)", f"{total - calib_s:.2f}", "s")
        _row("calibration forward", f"{len(vcal)} samples x {T} steps, {forward_gmac(v11, T, len(vcal)):.0f} GMAC "
             f"({forward_gmac(v11, T, len(vcal)) / max(calib_s, 1e-9):.0f} GMAC/s)")
        _row("totals of the runs", ", ".join(f"{t:.2f}" for t in totals), "s")
        results["vgg11_15M"] = {"auto": a, "stages_s": st, "parameters": r4["parameters"], "module_parameters": n_weights,
                                "neurons": r4["neurons"],
                                "total_compile_s": total, "total_compile_runs_s": totals,
                                "calibration_forward_s": calib_s, "compile_without_calibration_s": total - calib_s,
                                "calibration_gmac": forward_gmac(v11, T, len(vcal)), "T": T}
    # ---- 5. VGG-16 and ResNet-18 widths: cores against the bound (reported)
    if not args.skip_large:
        lcal = vcal[:args.large_calibration]
        for key, title, ctor in (("vgg16", "VGG-16-width SNN", lambda: VGG11SNN(plan=VGG16_PLAN)),
                                 ("resnet18", "ResNet-18-width SNN (1x1 projection shortcuts)", ResNet18SNN)):
            torch.manual_seed(SEED)
            m = ctor().eval()
            n_weights = sum(p.numel() for p in m.parameters())
            r5 = compile_stages(lambda m=m: trace(m, (3, 32, 32), dt=NEURON["dt"], num_steps=8), lcal, 8, target,
                                formats=("auto",), tiling=True)
            st = r5["stages_s"]
            print_mapping(f"5. {title} 3x32x32, {n_weights:,} module parameters, {r5['neurons']:,} neurons "
                          f"(random weights)", r5,
                          [f"calibration: the first {len(lcal)} of the random uniform inputs above; T = 8"])
            total = st["trace"] + st["passes"] + r5["auto"]["compile_graph_s"]
            _row("compile total (trace + passes + compile_graph)", f"{total:.2f}", "s")
            results[key] = {"auto": r5["auto"], "stages_s": st, "parameters": r5["parameters"],
                            "module_parameters": n_weights, "neurons": r5["neurons"], "total_compile_s": total,
                            "calibration_samples": len(lcal)}
    results["bench_wall_s"] = _t() - t_start
    print(f"\n  benchmark wall time {results['bench_wall_s']:.1f} s; load average at end "
          f"{[round(x, 2) for x in os.getloadavg()]}")
    text = json.dumps(results, sort_keys=True, default=float)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, sort_keys=True, default=float) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
