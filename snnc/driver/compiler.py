"""The compile driver: model file -> passes -> target configuration -> simulation -> report.

Python API::

    from snnc.driver.compiler import compile_model
    report = compile_model("models/fmnist_cnn.pt", out_dir="out", data="fashion-mnist")

Output folder (written to a temporary sibling and renamed into place, so a
failed compile never leaves a half-written folder)::

    config.json   core map and fixed-point fields (see snnc.backends.loihi.compile)
    weights.npz   integer weight mantissas and biases
    graph.nir     the compiled (quantized) NIR graph, readable with nir.read
    report.json   per-core resources, energy, accuracy (see README "Contract")
    cores.png     per-core utilisation
"""
from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import nir
import numpy as np
import torch

from snnc.errors import SnncError
from snnc import data as D
from snnc.data.events import load_data
from snnc.driver.budget import chip_figures, parse_budget, search_budget
from snnc.driver.finetune import finetune
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.energy import measure
from snnc.backends.loihi.mapping import DesignRuleError, check_formats
from snnc.backends.loihi.sim import Program, load_program, slice_counts_for
from snnc.io.files import OutputError, OutputExistsError, check_output_target, nir_bytes, write_output_folder
from snnc.frontends import load_model, resolve_model_path
from snnc.ir import copy_graph, graph_figures
from snnc.ir import semantics as S
from snnc.ir import readout as R
from snnc.passes import DEFAULT_PIPELINE, PassContext, Pipeline
from snnc.passes.prune import prune
from snnc.passes.quantize import apply_cli_options
from snnc.backends.loihi.report import quantization_section
from snnc.io.report import _plain, build_report, dumps, plot_utilisation
from snnc.targets import load_target
from snnc.ir.validate import check_graph, check_num_steps

CALIBRATION_SAMPLES = 256
#: Training images after the calibration ones that ``--budget`` holds out to measure accuracy.
HELD_OUT_SAMPLES = 512
#: ``--target`` names that compile for loihi-sim (same passes, fixed-point fields and report) and
#: also write the artefacts another tool runs: lava -> network.net (lava-dl netx HDF5),
#: nir -> portable.nir (snnTorch/Norse/Sinabs importers), onnx -> model.onnx (one stateful step).
EXPORT_TARGETS = ("lava", "nir", "onnx")

__all__ = ["compile_model", "simulate_output", "output_files", "OutputError", "OutputExistsError"]


def save_npz(path, arrays: dict) -> None:
    """Deterministic ``.npz`` (sorted keys, fixed zip timestamps), readable with ``numpy.load``.
    ``path``: a file path or a binary file object."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _dataset_source(name: str, split: str, n: int, data_dir, encode: str | None = None) -> str:
    if name.startswith("events:"):
        return f"event data {name[len('events:'):]}, first {n:,} samples"
    if encode:
        return _dataset_source(name, split, n, data_dir) + f", {encode}-coded spikes"
    if name == "fashion-mnist":
        return f"Fashion-MNIST {split} split, first {n:,} images ({D.find_fashion_mnist(data_dir)})"
    return f"scikit-learn digits {split} split, first {n:,} images"


def simulate(program: Program, x: np.ndarray, y: np.ndarray | None, batch_size: int = 500, progress=None) -> dict:
    """Run the bit-accurate simulation; return accuracy (if labels), activity and energy figures."""
    res = program.run(x, batch_size=batch_size, progress=progress)
    out = {"result": res, "metrics": measure(program, res, slice_counts_for(program))}
    if y is not None:
        out["accuracy"] = float((res.scores().reshape(len(y), -1).argmax(1) == y).mean())
    return out


def compile_model(model, out_dir: str | os.PathLike, target: str = "loihi-sim",
                  passes: str = DEFAULT_PIPELINE, data: str | None = None, data_dir=None, limit: int | None = None,
                  max_cores: int | None = None, max_chips: int | None = None, trust_pickle: bool = False,
                  dt: float | None = None, num_steps: int | None = None, input_shape=None,
                  input_encoding: str | None = None, reset: str | None = None, seed: int = 0, batch_size: int = 500,
                  force: bool = False, progress=None, log=None, weights=None, encode: str | None = None,
                  allow_semantic_change: bool = False, finetune_samples: int = 2048, budget: str | None = None,
                  budget_criterion: str | None = None, weight_bits: int | None = None, per_channel: bool = False,
                  calibrate: int | None = None, timesteps: int | None = None, formats: str = "auto") -> dict:
    """Compile ``model`` for ``target`` into ``out_dir``; returns the report dict.

    Args:
        model: a path (snnc checkpoint, ``.nir``, ``file.py:factory`` with ``weights``, a pickled
            module with ``trust_pickle``), a shipped model's name (``fmnist_cnn``), an ``nn.Module``
            or a ``nir.NIRGraph`` (see :func:`snnc.frontends.load_model`).
        data: ``"fashion-mnist"`` or ``"digits"``: calibrate on the first 256 training
            images, evaluate float and compiled accuracy on the test split (``limit`` samples);
            ``"events:PATH"``: event data (:mod:`snnc.data.events`) for spike-input models.
        encode: ``"rate"``/``"latency"``: turn image data into spikes for a spike-input model.
        allow_semantic_change: compile a model whose neuron semantics the target cannot keep
            (subtract reset, several spikes per step, voltage floor; :mod:`snnc.ir.semantics`) after
            converting them; the measured agreement is reported either way.
        finetune_samples: training samples handed to a fine-tuning ``adapt_semantics`` pass.
        max_cores: fail (DesignRuleError) when the model needs more cores.
        max_chips: fail (DesignRuleError) when the model needs more chips.
        formats: synapse formats of the mapping: ``"auto"`` (per projection the one that needs fewer
            cores: population axons sharing a convolution kernel, or discrete axons) or ``"discrete"``
            (one input axon per source neuron and a weight per synapse everywhere: the mapping of a
            chip or tool without population axons; a neuron's fan-in is then its source neurons,
            at most 4,096). ``budget`` prunes until the model fits with these formats.
        budget: ``"cores=K"`` (or ``synapses=N``, ``synops=N``, ``memory_bits=N``): prune channels until the
            mapped model fits the target within it (:mod:`snnc.driver.budget`; needs ``data``: training images
            256..767 are the held-out set that measures accuracy); ``budget_criterion`` ranks the channels
            (default ``sca``).
        weight_bits, per_channel, calibrate, timesteps: ``--weight-bits B`` (quantize ``weight_bits``),
            ``--per-channel`` (per-channel scales), ``--calibrate N`` (MSE-calibrated scales on the first N
            training images instead of 256; needs ``data``), ``--timesteps T'`` (the ``fold_timesteps``
            pass; its threshold recalibration needs ``data``), see
            :func:`snnc.passes.quantize.apply_cli_options`; recorded in report.json ``pipeline``,
            ``num_steps`` and ``quantization``.
        input_encoding: ``"direct"`` (analog input, computed on the host and injected as a
            per-sample bias) or ``"spikes"`` (events through input axons); default from the graph.
        progress: callable(stage: str, done: int, total: int) for long work.
        log: callable(str) for one-line status messages.

    Raises:
        OutputExistsError: ``out_dir`` exists, is not empty, and is not a previous snnc output that
            ``force`` may replace.
        OutputError: ``out_dir`` holds an input, cannot be written, or writing failed (nothing changed).
        ModelLoadError, ValidationError, UnsupportedNodeError, DesignRuleError, ConfigError,
        DataNotFoundError, DataFormatError, BudgetError,
        SemanticChangeError (the target cannot keep the source's semantics; with the measured agreement)
        (all ValueError/FileNotFoundError subclasses with a one-line message).
    """
    say = log or (lambda s: None)
    export = target if target in EXPORT_TARGETS else None
    tgt = load_target("loihi-sim" if export else target)
    if tgt.backend != "loihi":
        raise SnncError(f"target {tgt.name!r} uses backend {tgt.backend!r}, which this snnc does not have")
    inputs = [data_dir, tgt.path, weights]
    if isinstance(model, (str, os.PathLike)):
        spec = str(model)
        if spec.rpartition(":")[0].endswith(".py"):
            inputs.append(spec.rpartition(":")[0])
        else:
            model = resolve_model_path(model)
            inputs.append(model)
    out_dir = check_output_target(out_dir, force, inputs)  # before any work: fail fast, lose nothing
    if num_steps is not None:
        check_num_steps(num_steps, "--num-steps")
    graph, module, info = load_model(model, trust_pickle=trust_pickle, dt=dt, input_shape=input_shape,
                                     num_steps=num_steps, reset=reset, weights=weights, input_encoding=input_encoding)
    for note in info.get("notes", []):
        say(note)
    if info.get("kind") != "snnc-checkpoint":
        module = None  # the float reference is the traced graph, with the framework's semantics
    T = next((v for v in (num_steps, info.get("num_steps"), (graph.metadata or {}).get("snnc.num_steps"))
              if v is not None), None)
    if T is None:
        raise SnncError("the number of time steps T is unknown for this model; pass --num-steps")
    T = check_num_steps(T, f"{model if isinstance(model, (str, os.PathLike)) else type(model).__name__}: T")
    graph.metadata = dict(graph.metadata or {}, **{"snnc.num_steps": T})
    if input_encoding is not None:
        if input_encoding not in ("direct", "spikes"):
            raise SnncError(f"input encoding must be 'direct' or 'spikes', got {input_encoding!r}")
        graph.metadata["snnc.input_encoding"] = input_encoding
    check_graph(graph)
    calib = xte = yte = held_out = calib_labels = None
    spikes = graph.metadata.get("snnc.input_encoding") == "spikes"
    data_checks = []
    source_graph = copy_graph(graph)
    diffs = S.differences(graph)
    pipe = Pipeline(apply_cli_options(Pipeline(passes).passes, weight_bits, per_channel, calibrate, timesteps))
    if diffs and "adapt_semantics" not in [n for n, _ in pipe.passes]:
        pipe = Pipeline([("adapt_semantics", {})] + pipe.passes)  # the conversion is explicit and measured
    if budget and (not data or spikes):
        raise SnncError("--budget needs --data with direct (image) input: it measures the accuracy of each "
                         "pruning step on held-out images")
    check_formats(formats)
    if calibrate is not None and not data:
        raise SnncError("--calibrate needs --data: it calibrates the quantization on that dataset's training images")
    n_cal = int(calibrate) if calibrate is not None else CALIBRATION_SAMPLES
    if data:
        n_train = n_cal + (HELD_OUT_SAMPLES if budget else 0)
        xtr, ytr, _ = load_data(data, "train", data_dir, n_train, spikes=spikes, num_steps=T, encode_method=encode,
                                seed=seed)
        calib = xtr[:, :n_cal] if spikes else xtr[:n_cal]
        calib_labels = ytr[:n_cal]
        if budget:
            held_out = (xtr[n_cal:], ytr[n_cal:])
        xte, yte, data_checks = load_data(data, "test", data_dir, limit, spikes=spikes, num_steps=T,
                                          encode_method=encode, seed=seed + 1)
        want = next(n for n in graph.nodes.values() if isinstance(n, nir.Input)).input_type
        want = tuple(int(v) for v in next(iter(want.values())))
        got = tuple(xte.shape[2:] if spikes else xte.shape[1:])
        if got != want:
            raise SnncError(f"dataset {data!r} has samples of shape {got}, the model's input is {want}")
    ctx = PassContext(target=tgt, calibration=calib, num_steps=int(T), seed=seed, calibration_labels=calib_labels,
                      trainer=finetune)
    if data and any(n == "adapt_semantics" and o.get("finetune_epochs") for n, o in pipe.passes):
        xft, yft, _ = load_data(data, "train", data_dir, finetune_samples, spikes=spikes, num_steps=T,
                                encode_method=encode, seed=seed + 2)
        ctx.train_data = (xft, yft)
    say(f"passes: {', '.join(n for n, _ in pipe.passes)}" + (f"; budget {budget}" if budget else ""))
    mapping = {"formats": formats, "max_cores": max_cores, "max_chips": max_chips}
    compiled, structural, pruning = run_pipeline(graph, ctx, pipe, tgt, budget, budget_criterion, held_out, say,
                                                 mapping)
    say("mapping onto cores" + (" (discrete axons only)" if formats == "discrete" else ""))
    try:
        config, arrays, _ = compile_graph(compiled, tgt, max_cores=max_cores, max_chips=max_chips, formats=formats)
    except DesignRuleError as e:
        if budget or spikes:
            raise
        raise DesignRuleError(e.violations, hint="to make it fit, prune channels: --budget cores=K (or synapses=N, "
                                                 "synops=N, memory_bits=N) with --data") from None
    program = Program(config, arrays, tgt)
    semantic_checks = _semantic_checks(pipe, diffs, source_graph, program, calib, graph, T, spikes, seed,
                                       allow_semantic_change, target, say)
    metrics = accuracy = None
    if data:
        rule = R.readout_rule(graph)
        say(f"float model on {len(yte):,} test samples")
        f_scores = R.scores(graph, xte, T, rule["rule"], spikes, batch_size, module=module)
        cb = (lambda n: progress("simulate", n, len(yte))) if progress else None
        say(f"bit-accurate simulation on {len(yte):,} test samples")
        sim = simulate(program, xte, yte, batch_size, cb)
        metrics = sim["metrics"]
        accuracy = {"source": _dataset_source(data, "test", len(yte), data_dir, encode), "samples": int(len(yte)),
                    "float": float((f_scores.argmax(1) == yte).mean()), "compiled": sim["accuracy"],
                    "readout": rule["description"],
                    "agreement": float((f_scores.argmax(1) == sim["result"].scores().reshape(len(yte), -1)
                                        .argmax(1)).mean())}
        if pruning is not None:
            say(f"float model after pruning on {len(yte):,} test samples")
            pf = R.scores(structural, xte, T, rule["rule"], spikes, batch_size)
            accuracy["float_pruned"] = float((pf.argmax(1) == yte).mean())
    model_info = {"path": str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__,
                  "kind": info.get("kind"), "num_steps": T, "framework": info.get("framework"),
                  "notes": list(info.get("notes", []))}
    if info.get("meta"):
        model_info["card"] = {k: info["meta"][k] for k in sorted(info["meta"]) if k in (
            "float_test_accuracy", "seed", "epochs", "dt", "command")}
    report = build_report(config, tgt, metrics, accuracy, ctx.log, model_info)
    if semantic_checks or data_checks:
        report["checks"] = list(report.get("checks", [])) + _plain(semantic_checks + data_checks)
    report = dict(report, quantization=quantization_section(config, arrays, tgt, ctx.log, metrics,
                                                            len(calib) if calib is not None and not spikes else
                                                            (calib.shape[1] if calib is not None else 0)))
    if pruning is not None:
        report = dict(report, pruning=_plain(pruning))
    extra = {}
    if export:
        from snnc.backends.export import writer_for
        say(f"exporting for {export}")
        extra, report = export_files(writer_for(export, config, arrays, compiled, program, xte, yte), report)
    files = output_files(config, arrays, compiled, report)
    files.update(extra)
    for line in write_output_folder(out_dir, files, force, inputs):
        say(line)
    return report


def _semantic_checks(pipe, diffs, source_graph, program, calib, graph, T, spikes, seed, allow, target, say) -> list:
    """SEMANTIC_CHANGE checks with the measured source-vs-compiled agreement (:mod:`snnc.ir.semantics`);
    refuses a change the target forces unless ``allow``."""

    requested = [o for n, o in pipe.passes if n == "adapt_semantics" and (o.get("maxpool") == "avg" or
                                                                         o.get("finetune_epochs"))]
    if requested and not diffs:  # changes the user asked for (pooling replaced, weights fine-tuned): measure them
        measured = [{"node": "*", "what": "adapt_semantics", "source": "adapt_semantics",
                     "source_semantics": "the source model",
                     "target_semantics": "adapt_semantics " + ";".join(f"{k}={v}" for k, v in requested[0].items())}]
    else:
        measured = diffs
    checks = []
    if not measured:
        return checks
    x_ag, where = _agreement_inputs(calib, graph, T, spikes, seed)
    say(f"measuring source vs compiled agreement on {where}")
    agree = R.agreement(source_graph, program, x_ag, T, spikes)
    for d in measured:
        checks.append({"check": "SEMANTIC_CHANGE", "node": d["node"], "what": d["what"], "source": d["source"],
                       "source_semantics": d["source_semantics"], "target_semantics": d["target_semantics"],
                       "agreement": agree, "agreement_samples": where,
                       "message": f"{d['node']} ({d['source']}): {d['source_semantics']} -> {d['target_semantics']}; "
                                  f"prediction agreement source vs compiled {100 * agree:.1f}% on {where}"})
    if diffs and not allow:
        raise S.SemanticChangeError(
            f"{target} cannot keep the model's neuron semantics ({S.describe(diffs)}); compiled with them "
            f"converted, source and compiled predictions agree on {100 * agree:.1f}% of {where}; pass "
            "--allow-semantic-change to accept, or fine-tune with --passes "
            "'adapt_semantics:finetune_epochs=2,fold_bn,quantize'")
    return checks


def _agreement_inputs(calib, graph, num_steps: int, spikes: bool, seed: int):
    """Inputs for measuring source-vs-compiled agreement: the calibration data, else 64 random samples."""
    if calib is not None:
        n = calib.shape[1] if spikes else calib.shape[0]
        return calib, f"{n} calibration samples"
    shape = tuple(int(v) for v in next(iter(next(n for n in graph.nodes.values()
                                                  if isinstance(n, nir.Input)).input_type.values())))
    rng = np.random.default_rng(seed)
    if spikes:
        return (rng.random((num_steps, 64) + shape) < 0.2).astype(np.float32), \
            "64 random spike inputs (p = 0.2 per step; no --data given)"
    return rng.random((64,) + shape).astype(np.float32), "64 random inputs in [0, 1) (no --data given)"


def run_pipeline(graph, ctx, pipe, target, budget=None, budget_criterion=None, held_out=None, say=None,
                 mapping=None):
    """Run the passes; with pruning (a ``prune_channels`` pass, or ``budget``), measure the model before
    and after it on the calibration images (:func:`snnc.driver.budget.chip_figures`: the real mapper and
    simulator). ``mapping``: ``formats``, ``max_cores``, ``max_chips`` of the mapping to fit and measure
    (:func:`snnc.driver.budget.chip_figures`'s options; default ``formats="auto"``, no core or chip limit).

    Returns ``(compiled graph, the graph after the structural passes and before quantize, pruning
    report section or None)``.
    """


    say = say or (lambda s: None)
    mapping = dict(mapping or {})
    names = [n for n, _ in pipe.passes]
    q = names.index("quantize") if "quantize" in names else len(names)
    if budget:
        if "prune_channels" in names:
            raise SnncError("--budget chooses the pruning itself; leave prune_channels out of --passes")
        if q == len(names):
            raise SnncError("--budget measures the quantized model: keep quantize in --passes")
        pre, post = Pipeline(pipe.passes[:q]), Pipeline(pipe.passes[q:])
        g_pre = pre.run(graph, ctx)
        crit = budget_criterion or ("sca" if ctx.calibration is not None else "l1")
        keep, search = search_budget(g_pre, ctx, target, post, parse_budget(budget), crit, *held_out,
                                     x_sim=ctx.calibration, log=say, **mapping)
        g_struct, plog = prune(copy.deepcopy(g_pre), ctx, crit, keep)
        ctx.log.append({"pass": "prune_channels", "options": {"criterion": crit, "budget": budget},
                        "before": graph_figures(g_pre), "after": graph_figures(g_struct), "time_s": 0.0,
                        "notes": {"criterion": crit, "groups": {k: f"{v['kept']}/{v['total']}"
                                                                for k, v in plog["groups"].items()},
                                  "kept_whole": plog["kept_whole"]}})
        layers = {k: {"kept": v["kept"], "total": v["total"]} for k, v in plog["groups"].items()}
        pruning = {"criterion": crit, "layers": layers, "budget": search}
        compiled = post.run(g_struct, ctx)
    else:
        if "prune_channels" not in names:
            compiled = pipe.run(graph, ctx)
            return compiled, None, None
        i = names.index("prune_channels")
        pre, post = Pipeline(pipe.passes[:i]), Pipeline(pipe.passes[q:])
        g_pre = pre.run(graph, ctx)
        g_struct = Pipeline(pipe.passes[i:q]).run(g_pre, ctx)
        pr = g_struct.metadata["snnc.pruning"]
        pruning = {"criterion": pr["criterion"], "layers": pr["layers"]}
        compiled = post.run(g_struct, ctx)
    say("measuring the model before and after pruning on the calibration images")
    x_sim = ctx.calibration if ctx.calibration is not None and \
        (graph.metadata or {}).get("snnc.input_encoding") != "spikes" else None
    pruning["before"] = chip_figures(g_pre, post, target, ctx, x_sim, **mapping)
    pruning["after"] = chip_figures(g_struct, post, target, ctx, x_sim, **mapping)
    pruning["measured_on"] = ("the calibration images (SynOps and energy per inference)" if x_sim is not None
                              else "the mapping only (no data: no SynOps or energy)")
    return compiled, g_struct, pruning


def export_files(writer, report) -> tuple[dict[str, bytes], dict]:
    """Run an export writer (``writer(folder) -> dict``) in a scratch folder; return its files as bytes
    and the report with the writer's dict under ``export``."""
    with tempfile.TemporaryDirectory(prefix="snnc-export-") as d:
        info = writer(Path(d))
        files = {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}
    return files, dict(report, export=info)


def output_files(config, arrays, graph, report) -> dict[str, bytes]:
    """The files of a compile output folder, as bytes (made in memory; written by
    :func:`snnc.io.files.write_output_folder`)."""
    npz, png = io.BytesIO(), io.BytesIO()
    save_npz(npz, arrays)
    plot_utilisation(report, png)
    return {"config.json": (json.dumps(config, indent=1, sort_keys=True) + "\n").encode(),
            "weights.npz": npz.getvalue(), "graph.nir": nir_bytes(graph),
            "report.json": dumps(report).encode(), "cores.png": png.getvalue()}


def simulate_output(out_dir, data: str, data_dir=None, limit: int | None = None, batch_size: int = 500,
                    progress=None, target: str | None = None, engine: str = "loihi-sim", encode: str | None = None,
                    seed: int = 1) -> dict:
    """Re-run the simulation of a compile output folder; returns the ``snnc simulate --json`` object.

    ``data`` as in :func:`compile_model` (``events:PATH`` or an image dataset with ``encode`` for
    spike-input folders; the default ``seed`` 1 gives the same rate-coded test spikes as the compile).
    ``engine="lava"`` runs the configuration in Lava (:mod:`snnc.backends.lava.engine`) and
    compares it with loihi-sim on the same samples, step by step; the object then has
    ``engine`` and ``lava_vs_loihi_sim`` (see :func:`snnc.backends.lava.compare_with_loihi_sim`).
    """

    if engine not in ("loihi-sim", "lava"):
        raise SnncError(f"unknown engine {engine!r}; known: loihi-sim, lava")
    program = load_program(out_dir, load_target(target) if target else None)
    spikes = program.config["input"]["encoding"] == "spikes"
    x, y, _ = load_data(data, "test", data_dir, limit, spikes=spikes, num_steps=program.T, encode_method=encode,
                        seed=seed)
    got = tuple(x.shape[2:] if spikes else x.shape[1:])
    if got != tuple(program.config["input"]["shape"]):
        raise SnncError(f"dataset {data!r} has samples of shape {got}, "
                         f"the compiled model's input is {tuple(program.config['input']['shape'])}")
    cb = (lambda n: progress("simulate", n, len(y))) if progress else None
    extra = {}
    if engine == "lava":
        from snnc.backends.lava import compare_with_loihi_sim
        res, cmp = compare_with_loihi_sim(program, x, batch_size=batch_size, progress=cb)
        sim = {"result": res, "metrics": measure(program, res, slice_counts_for(program)),
               "accuracy": float((res.scores().reshape(len(y), -1).argmax(1) == y).mean())}
        extra = {"engine": "lava", "lava_vs_loihi_sim": cmp}
    else:
        sim = simulate(program, x, y, batch_size, cb)
    m = sim["metrics"]
    return {**extra, "accuracy": sim["accuracy"], "samples": int(len(y)),
            "source": _dataset_source(data, "test", len(y), data_dir, encode),
            "synops_per_inference": m["per_inference"]["synops"],
            "spikes_per_inference": m["per_inference"]["spikes"],
            "energy_per_inference_pJ": m["energy"]["per_inference_pJ"],
            "energy_breakdown_pJ": m["energy"]["breakdown"],
            "latency_steps": program.L, "cores": len(program.config["cores"]), "target": program.target.name,
            "compiled_for": program.config["target"]}
