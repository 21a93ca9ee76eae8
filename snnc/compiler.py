"""The compile driver: model file -> passes -> target configuration -> simulation -> report.

Python API::

    from snnc.compiler import compile_model
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

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import nir
import numpy as np
import torch

from snnc import data as D
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.energy import measure
from snnc.backends.loihi.sim import Program, load_program, slice_counts_for
from snnc.frontend import load_model
from snnc.ir import copy_graph
from snnc.passes import DEFAULT_PIPELINE, PassContext, Pipeline
from snnc.report import build_report, dumps, plot_utilisation
from snnc.targets import load_target

CALIBRATION_SAMPLES = 256


class OutputExistsError(FileExistsError):
    pass


def save_npz(path: Path, arrays: dict) -> None:
    """Deterministic ``.npz`` (sorted keys, fixed zip timestamps), readable with ``numpy.load``."""
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


def float_accuracy(module, graph, x: np.ndarray, y: np.ndarray, num_steps: int, batch_size: int = 500) -> float:
    """Float accuracy: the torch module when there is one (an snnc step module), else snnc's NIR
    reference executor on the source graph (framework semantics). ``x``: ``[N, ...]`` direct input,
    or ``[T, N, ...]`` spikes when the graph takes spikes."""
    from snnc.neurons import run_float
    from snnc.semantics import predictions_float

    if module is None or (graph.metadata or {}).get("snnc.input_encoding") == "spikes":
        spikes = (graph.metadata or {}).get("snnc.input_encoding") == "spikes"
        return float((predictions_float(graph, x, num_steps, spikes, batch_size) == y).mean())
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            xb = torch.from_numpy(x[i:i + batch_size])
            out = run_float(module, xb, num_steps)[-1]
            correct += int((out.argmax(1).numpy() == y[i:i + batch_size]).sum())
    return correct / len(y)


def simulate(program: Program, x: np.ndarray, y: np.ndarray | None, batch_size: int = 500, progress=None) -> dict:
    """Run the bit-accurate simulation; return accuracy (if labels), activity and energy figures."""
    res = program.run(x, batch_size=batch_size, progress=progress)
    out = {"result": res, "metrics": measure(program, res, slice_counts_for(program))}
    if y is not None:
        out["accuracy"] = float((res.scores().reshape(len(y), -1).argmax(1) == y).mean())
    return out


def compile_model(model: str | os.PathLike, out_dir: str | os.PathLike, target: str = "loihi-sim",
                  passes: str = DEFAULT_PIPELINE, data: str | None = None, data_dir=None, limit: int | None = None,
                  max_cores: int | None = None, trust_pickle: bool = False, dt: float | None = None,
                  num_steps: int | None = None, input_shape=None, input_encoding: str | None = None,
                  reset: str | None = None, seed: int = 0, batch_size: int = 500,
                  force: bool = False, progress=None, log=None, weights=None, encode: str | None = None,
                  allow_semantic_change: bool = False, finetune_samples: int = 2048) -> dict:
    """Compile ``model`` for ``target`` into ``out_dir``; returns the report dict.

    Args:
        model: a path (snnc checkpoint, ``.nir``, ``file.py:factory`` with ``weights``, a pickled
            module with ``trust_pickle``), an ``nn.Module`` or a ``nir.NIRGraph`` (see
            :func:`snnc.frontends.load_model`).
        data: ``"fashion-mnist"`` or ``"digits"``: calibrate on the first 256 training
            images, evaluate float and compiled accuracy on the test split (``limit`` samples);
            ``"events:PATH"``: event data (:mod:`snnc.events`) for spike-input models.
        encode: ``"rate"``/``"latency"``: turn image data into spikes for a spike-input model.
        allow_semantic_change: compile a model whose neuron semantics the target cannot keep
            (subtract reset, several spikes per step, voltage floor; :mod:`snnc.semantics`) after
            converting them; the measured agreement is reported either way.
        finetune_samples: training samples handed to a fine-tuning ``adapt_semantics`` pass.
        max_cores: fail (DesignRuleError) when the model needs more cores.
        input_encoding: ``"direct"`` (analog input, computed on the host and injected as a
            per-sample bias) or ``"spikes"`` (events through input axons); default from the graph.
        progress: callable(stage: str, done: int, total: int) for long work.
        log: callable(str) for one-line status messages.

    Raises:
        OutputExistsError: ``out_dir`` exists and is not empty (and not ``force``).
        ModelLoadError, UnsupportedNodeError, DesignRuleError, DataNotFoundError,
        SemanticChangeError (the target cannot keep the source's semantics; with the measured agreement).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise OutputExistsError(f"{out_dir} exists and is not empty; pass --force to replace it")
    say = log or (lambda s: None)
    tgt = load_target(target)
    if tgt.backend != "loihi":
        raise ValueError(f"target {tgt.name!r} uses backend {tgt.backend!r}, which this snnc does not have")
    graph, module, info = load_model(model, trust_pickle=trust_pickle, dt=dt, input_shape=input_shape,
                                     num_steps=num_steps, reset=reset, weights=weights, input_encoding=input_encoding)
    for note in info.get("notes", []):
        say(note)
    if info.get("kind") != "snnc-checkpoint":
        module = None  # the float reference is the traced graph, with the framework's semantics
    T = num_steps or info.get("num_steps") or (graph.metadata or {}).get("snnc.num_steps")
    if T is None:
        raise ValueError("the number of time steps T is unknown for this model; pass --num-steps")
    graph.metadata = dict(graph.metadata or {}, **{"snnc.num_steps": int(T)})
    if input_encoding is not None:
        if input_encoding not in ("direct", "spikes"):
            raise ValueError(f"input encoding must be 'direct' or 'spikes', got {input_encoding!r}")
        graph.metadata["snnc.input_encoding"] = input_encoding
    calib = xte = yte = None
    spikes = graph.metadata.get("snnc.input_encoding") == "spikes"
    data_checks = []
    from snnc import semantics as S
    from snnc.events import load_data
    source_graph = copy_graph(graph)
    diffs = S.differences(graph)
    pipe = Pipeline(passes)
    if diffs and "adapt_semantics" not in [n for n, _ in pipe.passes]:
        pipe = Pipeline([("adapt_semantics", {})] + pipe.passes)  # the conversion is explicit and measured
    if data:
        calib, _, data_checks = load_data(data, "train", data_dir, CALIBRATION_SAMPLES, spikes=spikes,
                                          num_steps=int(T), encode_method=encode, seed=seed)
        xte, yte, data_checks = load_data(data, "test", data_dir, limit, spikes=spikes, num_steps=int(T),
                                          encode_method=encode, seed=seed + 1)
        want = next(n for n in graph.nodes.values() if isinstance(n, nir.Input)).input_type
        want = tuple(int(v) for v in next(iter(want.values())))
        got = tuple(xte.shape[2:] if spikes else xte.shape[1:])
        if got != want:
            raise ValueError(f"dataset {data!r} has samples of shape {got}, the model's input is {want}")
    ctx = PassContext(target=tgt, calibration=calib, num_steps=int(T), seed=seed)
    if data and any(n == "adapt_semantics" and o.get("finetune_epochs") for n, o in pipe.passes):
        xtr, ytr, _ = load_data(data, "train", data_dir, finetune_samples, spikes=spikes, num_steps=int(T),
                                encode_method=encode, seed=seed + 2)
        ctx.train_data = (xtr, ytr)
    say(f"passes: {', '.join(n for n, _ in pipe.passes)}")
    compiled = pipe.run(graph, ctx)
    say("mapping onto cores")
    config, arrays, _ = compile_graph(compiled, tgt, max_cores=max_cores)
    program = Program(config, arrays, tgt)
    semantic_checks = []
    requested = [o for n, o in pipe.passes if n == "adapt_semantics" and (o.get("maxpool") == "avg" or
                                                                         o.get("finetune_epochs"))]
    if requested and not diffs:  # changes the user asked for (pooling replaced, weights fine-tuned): measure them
        diffs_measured = [{"node": "*", "what": "adapt_semantics", "source": "adapt_semantics",
                           "source_semantics": "the source model",
                           "target_semantics": "adapt_semantics " + ";".join(f"{k}={v}" for k, v in requested[0].items())}]
    else:
        diffs_measured = diffs
    if diffs_measured:
        x_ag, where = _agreement_inputs(calib, graph, int(T), spikes, seed)
        say(f"measuring source vs compiled agreement on {where}")
        agree = S.agreement(source_graph, program, x_ag, int(T), spikes)
        for d in diffs_measured:
            semantic_checks.append({"check": "SEMANTIC_CHANGE", "node": d["node"], "what": d["what"],
                                    "source": d["source"], "source_semantics": d["source_semantics"],
                                    "target_semantics": d["target_semantics"], "agreement": agree,
                                    "agreement_samples": where,
                                    "message": f"{d['node']} ({d['source']}): {d['source_semantics']} -> "
                                               f"{d['target_semantics']}; prediction agreement source vs compiled "
                                               f"{100 * agree:.1f}% on {where}"})
        if diffs and not allow_semantic_change:
            raise S.SemanticChangeError(
                f"{target} cannot keep the model's neuron semantics ({S.describe(diffs)}); compiled with them "
                f"converted, source and compiled predictions agree on {100 * agree:.1f}% of {where}; pass "
                "--allow-semantic-change to accept, or fine-tune with --passes "
                "'adapt_semantics:finetune_epochs=2,fold_bn,quantize'")
    metrics = accuracy = None
    if data:
        say(f"float model on {len(yte):,} test samples")
        f_acc = float_accuracy(module, graph, xte, yte, int(T), batch_size)
        cb = (lambda n: progress("simulate", n, len(yte))) if progress else None
        say(f"bit-accurate simulation on {len(yte):,} test samples")
        sim = simulate(program, xte, yte, batch_size, cb)
        metrics = sim["metrics"]
        accuracy = {"source": _dataset_source(data, "test", len(yte), data_dir, encode), "samples": int(len(yte)),
                    "float": f_acc, "compiled": sim["accuracy"]}
    model_info = {"path": str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__,
                  "kind": info.get("kind"), "num_steps": int(T), "framework": info.get("framework"),
                  "notes": list(info.get("notes", []))}
    if info.get("meta"):
        model_info["card"] = {k: info["meta"][k] for k in sorted(info["meta"]) if k in (
            "float_test_accuracy", "seed", "epochs", "dt", "command")}
    report = build_report(config, tgt, metrics, accuracy, ctx.log, model_info)
    if semantic_checks or data_checks:
        report["checks"] = list(report.get("checks", [])) + _plain_checks(semantic_checks + data_checks)
    _write_outputs(out_dir, config, arrays, compiled, report, force)
    return report


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


def _plain_checks(checks):
    from snnc.report import _plain
    return [_plain(c) for c in checks]


def _write_outputs(out_dir: Path, config, arrays, graph, report, force: bool) -> None:
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; an output folder gets the usual mode
    try:
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        save_npz(tmp / "weights.npz", arrays)
        nir.write(str(tmp / "graph.nir"), graph)
        (tmp / "report.json").write_text(dumps(report))
        plot_utilisation(report, tmp / "cores.png")
        if out_dir.exists():
            if not force:
                raise OutputExistsError(f"{out_dir} appeared while compiling")
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            os.replace(out_dir, old / "x")
            try:
                os.replace(tmp, out_dir)
            except BaseException:
                os.replace(old / "x", out_dir)  # put the previous output back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def simulate_output(out_dir, data: str, data_dir=None, limit: int | None = None, batch_size: int = 500,
                    progress=None, target: str | None = None, encode: str | None = None, seed: int = 1) -> dict:
    """Re-run the simulation of a compile output folder; returns the ``snnc simulate --json`` object.

    ``data`` as in :func:`compile_model` (``events:PATH`` or an image dataset with ``encode`` for
    spike-input folders; the default ``seed`` 1 gives the same rate-coded test spikes as the compile)."""
    from snnc.events import load_data
    program = load_program(out_dir, load_target(target) if target else None)
    spikes = program.config["input"]["encoding"] == "spikes"
    x, y, _ = load_data(data, "test", data_dir, limit, spikes=spikes, num_steps=program.T, encode_method=encode,
                        seed=seed)
    got = tuple(x.shape[2:] if spikes else x.shape[1:])
    if got != tuple(program.config["input"]["shape"]):
        raise ValueError(f"dataset {data!r} has samples of shape {got}, "
                         f"the compiled model's input is {tuple(program.config['input']['shape'])}")
    cb = (lambda n: progress("simulate", n, len(y))) if progress else None
    sim = simulate(program, x, y, batch_size, cb)
    m = sim["metrics"]
    return {"accuracy": sim["accuracy"], "samples": int(len(y)), "source": _dataset_source(data, "test", len(y), data_dir, encode),
            "synops_per_inference": m["per_inference"]["synops"],
            "spikes_per_inference": m["per_inference"]["spikes"],
            "energy_per_inference_pJ": m["energy"]["per_inference_pJ"],
            "energy_breakdown_pJ": m["energy"]["breakdown"],
            "latency_steps": program.L, "cores": len(program.config["cores"]), "target": program.target.name,
            "compiled_for": program.config["target"]}
