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
    floorplan.png the chips' tile mesh, each core coloured by its neuron groups, the heaviest inter-core routes
"""
from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np

from snnc.ir.device import resolve as resolve_device
from snnc.errors import SnncError, UsageError
from snnc import data as D
from snnc.data.checks import check_classes, fit_input
from snnc.data.events import NoSplitError
from snnc.data.events import load_data as read_split
from snnc.data.sampling import RULE
from snnc.data.training import load_training
from snnc.driver.budget import chip_figures
from snnc.driver.options import CompileOptions
from snnc.driver.finetune import finetune
from snnc.driver.methods import Recipe
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.energy import measure
from snnc.backends.loihi.rules import DesignRuleError
from snnc.backends.loihi.sim import Program, load_program, slice_counts_for
from snnc.io.files import OutputError, OutputExistsError, check_output_target, nir_bytes, write_output_folder
from snnc.frontends import load_model, resolve_model_path
from snnc.ir import copy_graph, output_classes
from snnc.ir import semantics as S
from snnc.ir import readout as R
from snnc.passes import PassContext, Pipeline
from snnc.passes.budget import parse_budget
from snnc.passes.quantize import apply_cli_options
from snnc.backends.loihi.report import quantization_section
from snnc.io.report import _plain, build_report, dumps, plot_floorplan, plot_utilisation
from snnc.targets import load_target
from snnc.ir.validate import check_graph, check_num_steps

CALIBRATION_SAMPLES = 256
#: Validation samples (:mod:`snnc.data.sampling`) on which ``--budget`` measures held-out accuracy.
HELD_OUT_SAMPLES = 512
#: Knowledge-distillation weight of ``--train-epochs`` (the loss is (1 - a) CE + a tau^2 KL; Hinton et al. 2015).
TRAIN_DISTILL = 0.5
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


def _dataset_source(name, split: str, n: int, data_dir, encode: str | None = None) -> str:
    if isinstance(name, str) and name.startswith("events:"):
        return f"event data {name[len('events:'):]}, first {n:,} samples"
    if encode:
        return _dataset_source(name, split, n, data_dir) + f", {encode}-coded spikes"
    return D.describe(name, split, n, data_dir)


def simulate(program: Program, x: np.ndarray, y: np.ndarray | None, batch_size: int = 500, progress=None,
             device=None) -> dict:
    """Run the bit-accurate simulation (on ``device``, default CPU); return accuracy (if labels), activity and
    energy figures."""
    res = program.run(x, batch_size=batch_size, progress=progress, device=device)
    out = {"result": res, "metrics": measure(program, res, slice_counts_for(program))}
    if y is not None:
        out["accuracy"] = float((res.scores().reshape(len(y), -1).argmax(1) == y).mean())
    return out


@dataclass
class Loaded:
    """What the load stage found: the graph (``T`` and the input encoding recorded in its metadata), the
    torch module when it is an snnc checkpoint's (else None: the float reference is the traced graph),
    the loader's info, the inputs the output folder must never replace, and the source semantics."""
    graph: nir.NIRGraph
    module: object
    info: dict
    T: int
    spikes: bool
    inputs: list
    source_graph: nir.NIRGraph
    diffs: list
    #: a NIR model as given (a path, or an untouched copy of an in-memory graph): re-read by other conventions
    raw: object = None


@dataclass
class Data:
    """The data stage's arrays (None without ``--data``): calibration samples and labels, held-out
    samples for ``--budget``, test samples and labels, fine-tuning samples, the data checks, and
    ``splits``: per use (calibration, held_out, test, finetune) its split, source and sample count."""
    calib: np.ndarray | None = None
    calib_labels: np.ndarray | None = None
    held_out: tuple | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    train: tuple | None = None
    fit_samples: object = None
    fit_labelled: object = None
    validation: object = None
    checks: list = field(default_factory=list)
    splits: dict = field(default_factory=dict)


@dataclass
class Passed:
    """The passes stage's result: the compiled graph, the graph before quantize when pruning ran (else
    None), the pruning report section (or None), the pipeline and its context (``ctx.log``)."""
    compiled: nir.NIRGraph
    structural: nir.NIRGraph | None
    pruning: dict | None
    pipe: Pipeline
    ctx: PassContext


def compile_model(model, out_dir: str | os.PathLike, options: CompileOptions | None = None, *, progress=None,
                  log=None, **overrides) -> dict:
    """Compile ``model`` into ``out_dir``; returns the report dict. The stages, each a function below:
    :func:`load` -> :func:`check` -> :func:`prepare_data` -> :func:`run_passes` -> :func:`map_model` ->
    :func:`check_semantics` -> :func:`measure_model` -> :func:`make_report` -> :func:`write`.

    Args:
        model: a path (snnc checkpoint, ``.nir``, ``file.py:factory`` with ``weights``, a pickled
            module with ``trust_pickle``), a shipped model's name (``fmnist_cnn``), an ``nn.Module``
            or a ``nir.NIRGraph`` (see :func:`snnc.frontends.load_model`).
        out_dir: the output folder (written atomically; see the module docstring).
        options: a :class:`~snnc.driver.options.CompileOptions` (the CLI's options); ``overrides``
            are its fields by name (the Python API: ``compile_model(m, "out", data="digits")``).
        progress: callable(stage: str, done: int, total: int) for long work.
        log: callable(str) for one-line status messages.

    Raises:
        SnncError and its subclasses (one-line messages): OutputExistsError (``out_dir`` exists and is not
        a previous snnc output that ``force`` may replace), OutputError, ModelLoadError, ValidationError,
        UnsupportedNodeError, DesignRuleError, ConfigError, DataNotFoundError, DataFormatError,
        BudgetError, SemanticChangeError (the target cannot keep the source's semantics; with the
        measured agreement), UsageError (options that do not go together).
    """
    opts = (options or CompileOptions()).replace(**overrides)  # checked, unknown names refused
    say = log or (lambda s: None)
    export = opts.target if opts.target in EXPORT_TARGETS else None
    tgt = load_target("loihi-sim" if export else opts.target)
    if export:
        from snnc.backends.export import export_target  # lava: the fields netx holds exactly
        tgt = export_target(export, tgt)
    if tgt.backend != "loihi":
        raise SnncError(f"target {tgt.name!r} uses backend {tgt.backend!r}, which this snnc does not have")
    loaded = load(model, opts, [opts.data_dir, tgt.path, opts.weights], say)
    out_dir = check_output_target(out_dir, opts.force, loaded.inputs)  # before any work: fail fast, lose nothing
    check(loaded, opts)
    if export and "adapt_semantics" not in [n for n, _ in pipeline_of(loaded, opts).passes]:
        # right after tracing, before data and calibration (a semantic conversion changes what is exported: then
        # the check on the compiled program, before the simulations, decides)
        from snnc.backends.export import check_export_early
        check_export_early(export, loaded.graph, tgt)
    data = prepare_data(loaded, opts, progress)
    passed = run_passes(loaded, data, opts, tgt, say, progress)
    config, arrays, program = map_model(passed.compiled, tgt, opts, loaded.spikes, say, data.calib)
    if export:
        from snnc.backends.export import check_export  # before the simulations: fail fast, lose nothing
        check_export(export, config, passed.compiled)
    semantic = check_semantics(loaded, data, passed.pipe, program, opts, say, progress)
    semantic = undeclared_semantics(loaded, data, opts, say) + semantic + inexact_bias(loaded, data, passed, program,
                                                                                       opts, say, semantic)
    metrics, accuracy = measure_model(loaded, data, passed, program, opts, progress, say)
    report = make_report(model, loaded, data, passed, config, arrays, tgt, metrics, accuracy, semantic)
    extra = {}
    if export:
        from snnc.backends.export import writer_for  # optional tools (Lava, onnx): imported when asked for
        say(f"exporting for {export}")
        extra, report = export_files(writer_for(export, config, arrays, passed.compiled, program, data.x_test,
                                                data.y_test), report)
    write(out_dir, config, arrays, passed.compiled, report, extra, opts, loaded.inputs, say)
    return report


def load(model, opts: CompileOptions, inputs: list, say) -> Loaded:
    """Stage 1: read ``model`` into a NIR graph with T and the input encoding recorded.

    Raises:
        ModelLoadError, ValidationError, UnsupportedNodeError; SnncError when T is unknown.
    """
    inputs = list(inputs)
    if isinstance(model, (str, os.PathLike)):
        spec = str(model)
        if spec.rpartition(":")[0].endswith(".py"):
            inputs.append(spec.rpartition(":")[0])
        else:
            model = resolve_model_path(model)
            inputs.append(model)
    if opts.num_steps is not None:
        check_num_steps(opts.num_steps, "--num-steps")
    raw = copy_graph(model) if isinstance(model, nir.NIRGraph) else model  # loading repairs a graph in place
    data_shape = None  # the data's sample shape, for a model that does not state its input shape
    if opts.input_shape is None and opts.data is not None and not str(opts.data).startswith("events:"):
        data_shape = D.sample_shape(opts.data, opts.data_dir)
    graph, module, info = load_model(model, trust_pickle=opts.trust_pickle, dt=opts.dt, input_shape=opts.input_shape,
                                     num_steps=opts.num_steps, reset=opts.reset, weights=opts.weights,
                                     semantics=opts.semantics,
                                     input_encoding=opts.input_encoding, data_shape=data_shape,
                                     data_name=f"dataset {opts.data!r}")
    if info.get("factory_weights") == "random":
        raise SnncError(f"{model}: the factory returns different weights on every call (its random initial "
                         "weights: an untrained model); give the trained weights with --weights FILE (a state dict), "
                         "or load them inside the factory")
    for note in info.get("notes", []):
        say(note)
    if info.get("kind") != "snnc-checkpoint":
        module = None  # the float reference is the traced graph, with the framework's semantics
    T = next((v for v in (opts.num_steps, info.get("num_steps"), (graph.metadata or {}).get("snnc.num_steps"))
              if v is not None), None)
    if T is None:
        raise SnncError("the number of time steps T is unknown for this model; pass --num-steps")
    T = check_num_steps(T, f"{model if isinstance(model, (str, os.PathLike)) else type(model).__name__}: T")
    graph.metadata = dict(graph.metadata or {}, **{"snnc.num_steps": T})
    if opts.input_encoding is not None:
        graph.metadata["snnc.input_encoding"] = opts.input_encoding
    info = dict(info, path=str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__)
    return Loaded(graph=graph, module=module, info=info, T=T, inputs=inputs,
                  spikes=graph.metadata.get("snnc.input_encoding") == "spikes",
                  source_graph=copy_graph(graph), diffs=S.differences(graph),
                  raw=raw if info.get("kind") in ("nir", "nir-graph") else None)


def check(loaded: Loaded, opts: CompileOptions) -> None:
    """Stage 2: refuse a graph no backend could compile faithfully (:func:`snnc.ir.validate.check_graph`)
    and options that do not fit the model (``--budget`` with spike input).

    Raises:
        ValidationError, UsageError.
    """
    check_graph(loaded.graph)
    if opts.budget and loaded.spikes:
        raise UsageError("--budget needs --data with direct (image) input: it measures the accuracy of each "
                         "pruning step on held-out images")


def prepare_data(loaded: Loaded, opts: CompileOptions, progress=None) -> Data:
    """Stage 3: the data by the one sampling rule (:mod:`snnc.data.sampling`): the training split ordered by
    content and class; calibration = the first 256 (or ``--calibrate N``) fitting samples, ``--budget``'s
    held-out samples = the first 512 validation samples (the dataset's own ``val`` split, else carved from
    the training split), fine-tuning for an ``adapt_semantics`` pass = the first ``finetune_samples``
    fitting samples, the test split (its first ``--limit`` samples) only for the accuracy. Event data without
    a training split is compiled without calibration (a ``NO_CALIBRATION`` check says so); fine-tuning,
    ``--budget`` and ``--calibrate`` are refused there. ``Data.splits`` is report.json's ``data`` section:
    the rule, the train/validation/test counts and each use's split, count and source.
    Nothing without ``opts.data``.

    Raises:
        DataNotFoundError, DataFormatError, EventDataError; SnncError when the samples' shape is not
        the model's input shape, a class is outside the model's, or a training split is needed and missing.
    """
    if opts.data is None:
        return Data()
    T, spikes = loaded.T, loaded.spikes
    n_cal = int(opts.calibrate) if opts.calibrate is not None else CALIBRATION_SAMPLES
    finetunes = any(n == "adapt_semantics" and o.get("finetune_epochs") for n, o in pipeline_of(loaded, opts).passes)
    d = Data()
    name = opts.data
    d.splits = {"rule": RULE}
    try:
        td = load_training(name, opts.data_dir, spikes=spikes, num_steps=T, encode_method=opts.encode,
                           seed=opts.seed, progress=progress)
    except NoSplitError as e:
        needs = [w for w, on in (("--budget", opts.budget), ("--calibrate", opts.calibrate is not None),
                                 (f"--objective {opts.objective}", opts.objective != "cores"),
                                 ("fine-tuning (adapt_semantics finetune_epochs)", finetunes)) if on]
        if needs:
            raise SnncError(f"{' and '.join(needs)} need(s) a training split: {e}") from None
        td = None
        d.checks.append({"check": "NO_CALIBRATION", "value": 0, "limit": 0,
                         "message": f"{e}: compiled without calibration data (quantize uses worst-case bounds)"})
    want = next(n for n in loaded.graph.nodes.values() if isinstance(n, nir.Input)).input_type
    want = tuple(int(v) for v in next(iter(want.values())))
    classes = output_classes(loaded.graph)
    if td is not None:
        check_classes(td.y_fit, classes, f"dataset {name!r} (train split)")
        if td.val_count:
            check_classes(td.y_val, classes, f"dataset {name!r} ({'val' if td.val_source == 'val split' else 'train'}"
                                             " split)")
        d.splits["splits"] = {
            "train": {"samples": td.fit_count, "of": td.train_count,
                      "source": _dataset_source(name, "train", td.train_count, opts.data_dir, opts.encode)},
            "validation": {"samples": td.val_count, "from": ("the dataset's val split" if td.val_source == "val split"
                                                             else f"carved from the training split's {td.train_count:,}")}}
        d.fit_labelled = lambda n=None, _td=td: (lambda xy: (fit_input(xy[0], want, spikes, name)[0], xy[1]))(_td.fit(n))
        d.fit_samples = lambda n, _fl=d.fit_labelled: _fl(n)[0]
        d.validation = lambda n=None, _td=td: (lambda v: None if v is None else
                                               (fit_input(v[0], want, spikes, name)[0], v[1]))(_td.val(n))
        xc, d.calib_labels = td.fit(n_cal)
        d.calib = fit_input(xc, want, spikes, name)[0]
        d.splits["calibration"] = {"split": "train", "samples": int(len(d.calib_labels)),
                                   "selection": f"the first {len(d.calib_labels):,} fitting samples by the rule"}
        if opts.budget:
            v = td.val(HELD_OUT_SAMPLES)
            if v is None:
                raise SnncError(f"--budget needs validation samples: {name}'s {td.train_count:,} training samples "
                                "give none (fewer than 10; add a val split)")
            d.held_out = (fit_input(v[0], want, spikes, name)[0], v[1])
            d.splits["held_out"] = {"split": "validation", "samples": int(len(v[1])),
                                    "selection": f"the first {len(v[1]):,} validation samples by the rule"}
        if finetunes:
            xft, yft = td.fit(opts.finetune_samples)
            d.train = (fit_input(xft, want, spikes, name)[0], yft)
            d.splits["finetune"] = {"split": "train", "samples": int(len(yft)),
                                    "selection": f"the first {len(yft):,} fitting samples by the rule"}
        d.checks += td.checks
    d.x_test, d.y_test, checks = read_split(name, "test", opts.data_dir, opts.limit, spikes=spikes,
                                            num_steps=T, encode_method=opts.encode, seed=opts.seed + 1,
                                            progress=(lambda n, tot: progress("reading the test split", n, tot))
                                            if progress else None)
    d.checks += checks
    d.x_test, check = fit_input(d.x_test, want, spikes, name)
    if check:
        d.checks.append(check)
    check_classes(d.y_test, classes, f"dataset {name!r} (test split)")
    src = _dataset_source(name, "test", len(d.y_test), opts.data_dir, opts.encode)
    d.splits.setdefault("splits", {})["test"] = {"samples": int(len(d.y_test)), "source": src}
    d.splits["test"] = {"split": "test", "samples": int(len(d.y_test)), "source": src,
                        "selection": "the first samples in file order" if opts.limit else "all"}
    return d


def pipeline_of(loaded: Loaded, opts: CompileOptions) -> Pipeline:
    """The passes to run: ``opts.passes`` with the CLI's quantization options applied, an explicit (and
    measured) ``adapt_semantics`` first when the target cannot keep the source's semantics, and with
    ``--budget`` a ``budget`` pass before ``quantize``.

    Raises:
        SnncError: bad pass specs; ``--budget`` with ``prune_channels`` or without ``quantize``.
    """
    passes = apply_cli_options(Pipeline(opts.passes).passes, opts.weight_bits, opts.per_channel, opts.calibrate,
                               opts.timesteps)
    if loaded.diffs and "adapt_semantics" not in [n for n, _ in passes]:
        passes = [("adapt_semantics", {})] + passes
    if opts.budget:
        names = [n for n, _ in passes]
        if "prune_channels" in names:
            raise SnncError("--budget chooses the pruning itself; leave prune_channels out of --passes")
        if "quantize" not in names:
            raise SnncError("--budget measures the quantized model: keep quantize in --passes")
        kind, value = parse_budget(opts.budget)
        q = names.index("quantize")
        passes = passes[:q] + [("budget", {"resource": kind, "value": value,
                                           "criterion": opts.budget_criterion or ""})] + passes[q:]
    return Pipeline(passes)


def run_passes(loaded: Loaded, data: Data, opts: CompileOptions, tgt, say, progress=None) -> Passed:
    """Stage 4: run the pipeline (:func:`pipeline_of`) with a pass context that carries what passes may not
    import: the target, calibration data, training (``trainer``), and for ``budget`` the mapper and
    simulator (``measure``) and held-out data. With pruning (``prune_channels`` or ``budget``) the model is
    measured before and after it on the calibration images (:func:`snnc.driver.budget.chip_figures`).
    With ``--train-epochs N`` the cut (and repaired) model is fine-tuned before quantize (:func:`train_cut`).
    """
    pipe = pipeline_of(loaded, opts)
    dev = resolve_device(opts.device)
    ctx = PassContext(target=tgt, calibration=data.calib, num_steps=int(loaded.T), seed=opts.seed,
                      calibration_labels=data.calib_labels, trainer=functools.partial(finetune, device=dev),
                      held_out=data.held_out, say=say,
                      train_data=data.train, fit_samples=data.fit_samples)
    say(f"passes: {', '.join(n for n, _ in pipe.passes)}")
    names = [n for n, _ in pipe.passes]
    mapping = {"formats": opts.formats, "max_cores": opts.max_cores, "max_chips": opts.max_chips}
    q = names.index("quantize") if "quantize" in names else len(names)
    post = Pipeline(pipe.passes[q:])
    ctx.measure = lambda g, x_sim: chip_figures(g, post, tgt, ctx, x_sim, device=dev, **mapping)
    cut = next((i for i, n in enumerate(names) if n in ("prune_channels", "budget")), None)
    if cut is None and opts.train_epochs and "fold_timesteps" in names[:q]:  # training at the folded T'
        cut = names.index("fold_timesteps")
    if cut is None:
        return Passed(pipe.run(loaded.graph, ctx), None, None, pipe, ctx)
    g_pre = Pipeline(pipe.passes[:cut]).run(loaded.graph, ctx)
    g_struct = Pipeline(pipe.passes[cut:q]).run(g_pre, ctx)
    training = None
    if opts.train_epochs:
        g_struct, training = train_cut(g_struct, g_pre, data, opts, int(loaded.T), dev, say, progress, target=tgt)
        ctx.log.append({"pass": "train", "options": {"epochs": opts.train_epochs, "distill": TRAIN_DISTILL,
                                                     "method": opts.train_method, "synops": opts.train_synops},
                        "time_s": training["time_s"], "notes": {k: v for k, v in training.items() if k != "history"}})
    compiled = post.run(g_struct, ctx)
    pr = (g_struct.metadata or {}).get("snnc.pruning")
    if pr is None:  # trained at T' without a cut: the training log goes to the pipeline entry only
        return Passed(compiled, None, None, pipe, ctx)
    pruning = {"criterion": pr["criterion"], "layers": pr["layers"]}
    if "repair" in pr:
        pruning["repair"] = pr["repair"]
    if training is not None:
        pruning["training"] = training
    entry = next((e for e in ctx.log if e["pass"] == "budget"), None)
    if entry is not None:  # the search's steps go to report.json "pruning"; the pipeline log keeps the summary
        search = entry["notes"].pop("search")
        entry["notes"].update(reached=search["reached"], search_steps=len(search["steps"]) - 1)
        pruning["budget"] = dict(search, formats=opts.formats)
    say("measuring the model before and after pruning on the calibration images")
    x_sim = data.calib if data.calib is not None and not loaded.spikes else None
    pruning["before"] = chip_figures(g_pre, post, tgt, ctx, x_sim, **mapping)
    pruning["after"] = chip_figures(g_struct, post, tgt, ctx, x_sim, **mapping)
    pruning["measured_on"] = ("the calibration images (SynOps and energy per inference)" if x_sim is not None
                              else "the mapping only (no data: no SynOps or energy)")
    return Passed(compiled, g_struct, pruning, pipe, ctx)


def train_cut(graph, teacher, data: Data, opts: CompileOptions, T: int, dev, say, progress=None, target=None):
    """``--train-epochs N``: train the cut (or folded) model ``graph`` N epochs over all fitting samples of the
    training split (the sampling rule), distilled (weight :data:`TRAIN_DISTILL`, Hinton et al. 2015) from
    ``teacher``, the model before the cut (at its own T: ``T``, or T' when ``fold_timesteps`` ran before the cut;
    ``graph`` trains at its own, T' after ``fold_timesteps``), with :func:`snnc.driver.finetune.finetune` (surrogate gradients, Adam lr 1e-3 with a
    cosine schedule) and the recipe ``--train-method``/``--train-synops`` (:class:`snnc.driver.methods.Recipe`);
    the per-epoch accuracy is on the ``--budget`` held-out validation samples, or the first 512 validation
    samples. Returns ``(trained graph, log)``.

    Raises:
        SnncError: spike-input models (finetune trains on direct input).
    """
    if data.fit_labelled is None:
        raise SnncError("--train-epochs needs a training split")
    if (graph.metadata or {}).get("snnc.input_encoding") == "spikes":
        raise SnncError("--train-epochs trains direct-input models; this model takes spike input")
    x, y = data.fit_labelled()
    v = data.held_out if data.held_out is not None else data.validation(HELD_OUT_SAMPLES)
    xv, yv = v if v is not None else (None, None)
    what = "cut" if (graph.metadata or {}).get("snnc.pruning") else "folded"
    T_now = int((graph.metadata or {}).get("snnc.num_steps") or T)
    say(f"training the {what} model at T = {T_now}: {opts.train_epochs} epoch(s) over {len(y):,} fitting samples, "
        f"distilled from the model before the {'cut' if what == 'cut' else 'fold'} ({dev.type}, method "
        f"{opts.train_method})")
    t0 = time.perf_counter()
    cb = ((lambda e, s, n, loss: progress(f"training epoch {e + 1}/{opts.train_epochs}", s, n)) if progress else None)
    T_train = T_now
    recipe = Recipe(method=opts.train_method, synops=float(opts.train_synops))
    model, history = finetune(graph, x, y, T_train, epochs=int(opts.train_epochs), seed=opts.seed, x_val=xv,
                              y_val=yv, teacher=teacher, distill=TRAIN_DISTILL, recipe=recipe, device=dev, progress=cb,
                              log=say, target=target,
                              teacher_steps=int((teacher.metadata or {}).get("snnc.num_steps") or T))
    trained = model.to_nir()
    trained.metadata = dict(graph.metadata or {})
    return trained, {"epochs": int(opts.train_epochs), "samples": int(len(y)), "distill": TRAIN_DISTILL,
                     "num_steps": T_train, "method": model.method_report,
                     "teacher": "the model before the cut", "val_samples": 0 if yv is None else int(len(yv)),
                     "time_s": round(time.perf_counter() - t0, 1), "history": history}


#: ``--objective``: what the mapping minimises (``cores``: the placer's own; the others choose among candidates)
OBJECTIVES = ("cores", "latency", "energy")
#: the candidates' cap on compartments per core (None: the core's limit), each with either synapse format
OBJECTIVE_NEURON_CAPS = (None, 512, 256, 128, 64)
#: calibration samples simulated to measure the activity that prices each candidate
OBJECTIVE_SAMPLES = 128


def map_model(compiled: nir.NIRGraph, tgt, opts: CompileOptions, spikes: bool, say, calib=None):
    """Stage 5: map the compiled graph onto cores and check every design rule; returns
    ``(config, arrays, Program)``. With ``opts.objective`` ``latency`` or ``energy``, :func:`choose_mapping`
    picks among candidate mappings by the activity on the calibration data ``calib``.

    Raises:
        DesignRuleError: every violation (with a pointer to ``--budget`` when pruning could help).
    """
    say("mapping onto cores" + (" (discrete axons only)" if opts.formats == "discrete" else ""))
    try:
        config, arrays, _ = compile_graph(compiled, tgt, max_cores=opts.max_cores, max_chips=opts.max_chips,
                                          formats=opts.formats)
    except DesignRuleError as e:
        if opts.budget or spikes:
            raise
        raise DesignRuleError(e.violations, hint="to make it fit, prune channels: --budget cores=K (or synapses=N, "
                                                 "synops=N, memory_bits=N) with --data") from None
    program = Program(config, arrays, tgt)
    if opts.objective == "cores":
        config["mapping"]["objective"] = {"objective": "cores"}
        return config, arrays, program
    return choose_mapping(compiled, tgt, opts, program, calib, spikes, say)


def choose_mapping(compiled: nir.NIRGraph, tgt, opts: CompileOptions, base: Program, calib, spikes: bool, say):
    """``--objective latency|energy``: the mapping with the least time per inference (the time model of
    :func:`snnc.backends.loihi.energy.time_model`) or energy per inference among candidates -- each synapse
    format (only ``discrete`` with ``--formats discrete``) with each cap on compartments per core in
    :data:`OBJECTIVE_NEURON_CAPS` -- priced by the activity of the first :data:`OBJECTIVE_SAMPLES` calibration
    samples simulated once (a mapping does not change what is computed, only where). A candidate must keep the
    limits (``--max-cores``, ``--max-chips``; without ``--max-chips``, no more chips than the fewest-cores
    mapping). Ties go to fewer cores. The choice and every candidate's figures go to ``mapping.objective``.

    Raises:
        UsageError: no calibration data (``--data`` is needed to measure activity).
    """
    if calib is None:
        raise UsageError(f"--objective {opts.objective} needs --data: the choice is priced by the activity "
                         "simulated on the calibration samples")
    n = min(OBJECTIVE_SAMPLES, calib.shape[1] if spikes else len(calib))
    x = calib[:, :n] if spikes else calib[:n]
    say(f"objective {opts.objective}: activity of {n} calibration samples, candidate mappings")
    res = base.run(x, batch_size=opts.batch_size, device=resolve_device(opts.device))
    chips = opts.max_chips if opts.max_chips is not None else base.config["mapping"]["chips"]
    fmts = ("discrete",) if opts.formats == "discrete" else ("auto", "discrete")
    cands, best = [], None
    for fmt in fmts:
        for cap in OBJECTIVE_NEURON_CAPS:
            row = {"formats": fmt, "neurons_per_core": cap}
            try:
                config, arrays, _ = compile_graph(compiled, tgt, max_cores=opts.max_cores, max_chips=chips,
                                                  formats=fmt, neurons_per_core=cap)
            except DesignRuleError as e:
                cands.append(dict(row, fits=False, reason="; ".join(sorted({v.rule for v in e.violations}))))
                continue
            program = Program(config, arrays, tgt)
            mt = measure(program, res, slice_counts_for(program))
            row.update(fits=True, cores=len(config["cores"]), chips=config["mapping"]["chips"],
                       time_per_inference_s=mt["per_inference"]["time_per_inference_s"],
                       time_per_step_s=mt["per_inference"]["time_per_step_s_mean"],
                       energy_per_inference_pJ=mt["energy"]["per_inference_pJ"])
            key = (row["time_per_inference_s"] if opts.objective == "latency" else row["energy_per_inference_pJ"],
                   row["cores"])
            if best is None or key < best[0]:
                best = (key, len(cands), config, arrays, program)
            cands.append(row)
    _, idx, config, arrays, program = best
    config["mapping"]["objective"] = {
        "objective": opts.objective, "chosen": idx, "candidates": cands,
        "activity": f"the first {n} calibration samples, simulated once (loihi-sim)",
        "rule": "least " + ("time per inference (time model: busiest core per step + barrier)"
                            if opts.objective == "latency" else "energy per inference")
                + "; ties to fewer cores; no more chips than the fewest-cores mapping unless --max-chips says"}
    c = cands[idx]
    say(f"objective {opts.objective}: {c['formats']} synapse formats, at most "
        f"{c['neurons_per_core'] or tgt['core']['neurons']} compartments per core: {c['cores']} cores, "
        f"{c['time_per_inference_s'] * 1e3:.3f} ms and {c['energy_per_inference_pJ'] / 1e6:.2f} µJ per inference")
    return config, arrays, program


def measure_model(loaded: Loaded, data: Data, passed: Passed, program, opts: CompileOptions, progress, say):
    """Stage 7: float (source semantics, :mod:`snnc.ir.readout`) and compiled (bit-accurate simulation)
    accuracy on the test split by one readout rule, with activity and energy; ``(None, None)`` without data."""
    if data.x_test is None:
        return None, None
    xte, yte, T, spikes = data.x_test, data.y_test, loaded.T, loaded.spikes
    rule = R.readout_rule(loaded.graph)
    dev = resolve_device(opts.device)
    say(f"float model on {len(yte):,} test samples ({dev.type})")
    f_scores = R.scores(loaded.graph, xte, T, rule["rule"], spikes, opts.batch_size, module=loaded.module,
                        progress=(lambda n: progress("float model", n, len(yte))) if progress else None, device=dev)
    cb = (lambda n: progress("simulate", n, len(yte))) if progress else None
    say(f"bit-accurate simulation on {len(yte):,} test samples ({dev.type})")
    sim = simulate(program, xte, yte, opts.batch_size, cb, device=dev)
    accuracy = {"source": _dataset_source(opts.data, "test", len(yte), opts.data_dir, opts.encode),
                "samples": int(len(yte)), "float": float((f_scores.argmax(1) == yte).mean()),
                "compiled": sim["accuracy"], "readout": rule["description"], "device": dev.type,
                "agreement": float((f_scores.argmax(1) == sim["result"].scores().reshape(len(yte), -1)
                                    .argmax(1)).mean()),
                "agreement_against": (f"snnc's float reading of the NIR file: {loaded.info['reading']}"
                                      if loaded.info.get("reading") else
                                      "the source model's float reference (snnc's executor, the framework's semantics)")}
    if passed.pruning is not None:
        say(f"float model after pruning on {len(yte):,} test samples")
        pf = R.scores(passed.structural, xte, T, rule["rule"], spikes, opts.batch_size,
                      progress=(lambda n: progress("float model after pruning", n, len(yte))) if progress else None)
        accuracy["float_pruned"] = float((pf.argmax(1) == yte).mean())
    return sim["metrics"], accuracy


#: compiled accuracy this far below the source model's float accuracy (fraction) gets ACCURACY_DROP (issue 19)
ACCURACY_DROP_LIMIT = 0.10


def accuracy_drop(accuracy: dict | None, passed) -> dict | None:
    """The ``ACCURACY_DROP`` check when the compiled accuracy is more than :data:`ACCURACY_DROP_LIMIT` below the
    float accuracy of the source model (before any pass), else None; the message says which passes ran and
    what usually recovers accuracy (fine-tuning after a cut, a looser budget, more weight bits)."""
    if not accuracy or accuracy.get("float") is None:
        return None
    f, c = float(accuracy["float"]), float(accuracy["compiled"])
    if f - c <= ACCURACY_DROP_LIMIT:
        return None
    hints = ["a looser --budget or a higher keep ratio", "--train-epochs N (fine-tune after the cut)"] \
        if passed.pruning is not None else []
    hints.append("more weight bits (--weight-bits)")
    return {"check": "ACCURACY_DROP", "value": round(c, 6), "limit": round(f - ACCURACY_DROP_LIMIT, 6),
            "message": f"compiled accuracy {100 * c:.2f}% is {100 * (f - c):.1f} pp below the source model's float "
                       f"accuracy {100 * f:.2f}% (more than {100 * ACCURACY_DROP_LIMIT:.0f} pp) after passes "
                       f"{', '.join(n for n, _ in passed.pipe.passes)}; try "
                       + ", or ".join(hints)}


def make_report(model, loaded: Loaded, data: Data, passed: Passed, config, arrays, tgt, metrics, accuracy,
                semantic_checks: list) -> dict:
    """Stage 8: report.json (README "Contract"): cores, totals, energy, accuracy, checks, quantization,
    pruning, pipeline."""
    info = loaded.info
    model_info = {"path": info["path"], "kind": info.get("kind"), "num_steps": loaded.T,
                  "framework": info.get("framework"), "notes": list(info.get("notes", []))}
    if info.get("dt_source"):  # a NIR file: where its dt came from, whose conventions its neurons were read by
        model_info["dt_source"] = info["dt_source"]
    if info.get("reading"):
        model_info["reading"] = info["reading"]
        model_info["semantics"] = info.get("semantics")
    if info.get("meta"):
        model_info["card"] = {k: info["meta"][k] for k in sorted(info["meta"]) if k in (
            "float_test_accuracy", "seed", "epochs", "dt", "command")}
    report = build_report(config, tgt, metrics, accuracy, passed.ctx.log, model_info)
    for g in report["groups"]:  # readable names: a Sequential index gets its module class (2 -> 2:Leaky)
        node = loaded.graph.nodes.get(g["name"])
        src = S.NeuronSemantics.of(node).source if node is not None else ""
        if src and g["name"].replace(".", "").isdigit():
            g["label"] = f"{g['name']}:{src.rsplit('.', 1)[-1]}"

    if semantic_checks or data.checks:
        report["checks"] = list(report.get("checks", [])) + _plain(semantic_checks + data.checks)
    drop = accuracy_drop(accuracy, passed)
    if drop:
        report["checks"] = list(report.get("checks", [])) + [drop]
    calib = data.calib
    n_cal = 0 if calib is None else (calib.shape[1] if loaded.spikes else len(calib))
    report = dict(report, quantization=quantization_section(config, arrays, tgt, passed.ctx.log, metrics, n_cal))
    if passed.pruning is not None:
        report = dict(report, pruning=_plain(passed.pruning))
    if data.splits:
        report = dict(report, data=_plain(data.splits))
    return report


def write(out_dir, config, arrays, compiled, report, extra: dict, opts: CompileOptions, inputs: list, say) -> None:
    """Stage 9: write the output folder atomically (:func:`snnc.io.files.write_output_folder`)."""
    files = output_files(config, arrays, compiled, report)
    files.update(extra)
    for line in write_output_folder(out_dir, files, opts.force, inputs):
        say(line)


def check_semantics(loaded: Loaded, data: Data, pipe: Pipeline, program, opts: CompileOptions, say,
                    progress=None) -> list:
    """Stage 6: SEMANTIC_CHANGE checks with the measured source-vs-compiled agreement
    (:mod:`snnc.ir.semantics`); refuses a change the target forces unless ``allow_semantic_change``.

    Raises:
        SemanticChangeError: the target cannot keep the source's semantics and the change was not allowed.
    """
    diffs, T, spikes = loaded.diffs, loaded.T, loaded.spikes
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
    x_ag, where = _agreement_inputs(data.calib, loaded.graph, T, spikes, opts.seed)
    say(f"measuring source vs compiled agreement on {where}")
    n_ag = x_ag.shape[1] if spikes else x_ag.shape[0]
    agree = R.agreement(loaded.source_graph, program, x_ag, T, spikes,
                        progress=(lambda n: progress("agreement (source model)", n, n_ag)) if progress else None,
                        device=resolve_device(opts.device))
    for d in measured:
        checks.append({"check": "SEMANTIC_CHANGE", "node": d["node"], "what": d["what"], "source": d["source"],
                       "source_semantics": d["source_semantics"], "target_semantics": d["target_semantics"],
                       "agreement": agree, "agreement_samples": where,
                       "message": f"{d['node']} ({d['source']}): {d['source_semantics']} -> {d['target_semantics']}; "
                                  f"prediction agreement source vs compiled {100 * agree:.1f}% on {where}"})
    if diffs and not opts.allow_semantic_change:
        raise S.SemanticChangeError(
            f"{program.target.name} cannot keep the model's neuron semantics ({S.describe(diffs)}); compiled with "
            f"them converted, source and compiled predictions agree on {100 * agree:.1f}% of {where}; pass "
            "--allow-semantic-change to accept, or fine-tune the converted model with --allow-semantic-change "
            "--passes 'adapt_semantics:finetune_epochs=2,fold_bn,quantize' (both are needed)")
    return checks


def inexact_bias(loaded: Loaded, data: Data, passed: Passed, program, opts: CompileOptions, say,
                 measured: list) -> list:
    """``INEXACT_BIAS`` checks (issue 19): a neuron group with current memory (CubaLIF, tau_syn > dt) fed an
    on-chip weighted layer's bias gets that bias as its steady-state voltage bias (:mod:`snnc.ir.lowering`: Loihi adds a bias to v, not to the synaptic current u),
    which the source reaches only after the current has built up. Each check names the group and carries the
    source-vs-compiled prediction agreement (reused from a ``SEMANTIC_CHANGE`` measurement, else measured on
    the calibration data, else on 64 random inputs)."""
    groups = [name for name, node in passed.compiled.nodes.items()
              if ((node.metadata or {}).get("snnc.quant") or {}).get("bias_through_current")]
    if not groups:
        return []
    prior = [c for c in measured if c.get("agreement") is not None]
    if prior:
        agree, where = prior[0]["agreement"], prior[0]["agreement_samples"]
    else:
        x_ag, where = _agreement_inputs(data.calib, loaded.graph, loaded.T, loaded.spikes, opts.seed)
        say(f"measuring source vs compiled agreement on {where} (bias through a synaptic current)")
        agree = R.agreement(loaded.source_graph, program, x_ag, loaded.T, loaded.spikes,
                            device=resolve_device(opts.device))
    return [{"check": "INEXACT_BIAS", "node": g, "agreement": agree, "agreement_samples": where,
             "message": f"{g}: a layer bias reaches a synaptic current "
                        "with memory (tau_syn > dt); Loihi adds biases to the voltage, so it is applied as its "
                        f"steady-state voltage bias from the first step; prediction agreement source vs compiled "
                        f"{100 * agree:.1f}% on {where}"} for g in groups]


def _same_reading(a: nir.NIRGraph, b: nir.NIRGraph) -> bool:
    """True when two readings of one file give the same neurons (parameters and ``snnc.*`` semantics keys)."""
    if set(a.nodes) != set(b.nodes):
        return False
    keys = set(S.NeuronSemantics.KEYS.values()) - {"snnc.source"}
    for name, na in a.nodes.items():
        nb = b.nodes[name]
        if type(na) is not type(nb):
            return False
        ma, mb = na.metadata or {}, nb.metadata or {}
        if any(ma.get(k) != mb.get(k) for k in keys):
            return False
        for k in ("tau", "tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold", "v_reset"):
            va, vb = getattr(na, k, None), getattr(nb, k, None)
            if (va is None) != (vb is None) or (va is not None and not np.array_equal(np.asarray(va), np.asarray(vb))):
                return False
    return True


def undeclared_semantics(loaded: Loaded, data: Data, opts: CompileOptions, say) -> list:
    """The ``UNDECLARED_SEMANTICS`` check (issue 19) for a NIR model read without ``--semantics`` whose file does
    not carry snnc's own semantics keys: every other framework's reading (:data:`snnc.frontends.nir_file.SEMANTICS`)
    that gives different neurons is run (float, snnc's reference executor) on the calibration data (else 64 random
    inputs) and its prediction agreement with NIR's reading is measured; readings a framework refuses are named
    with the reason. Empty list when declared, not NIR, or when no other reading differs."""
    from snnc.frontends import ModelLoadError
    from snnc.frontends.nir_file import SEMANTICS, SEMANTICS_SUMMARY
    from snnc.ir import UnsupportedNodeError
    info = loaded.info
    if loaded.raw is None or info.get("semantics_declared", True) or opts.semantics is not None:
        return []
    T, spikes = loaded.T, loaded.spikes
    x_ag, where = _agreement_inputs(data.calib, loaded.graph, T, spikes, opts.seed)
    dev = resolve_device(opts.device)
    base = None
    differ, refused = [], []
    for sem in SEMANTICS:
        if sem == "nir":
            continue
        raw = copy_graph(loaded.raw) if isinstance(loaded.raw, nir.NIRGraph) else loaded.raw
        try:
            g, _, _ = load_model(raw, dt=opts.dt, input_shape=opts.input_shape, num_steps=opts.num_steps,
                                 reset=opts.reset, semantics=sem)
        except (ModelLoadError, UnsupportedNodeError, SnncError) as e:
            refused.append(f"{sem} ({str(e).splitlines()[0]})")
            continue
        g.metadata = dict(g.metadata or {}, **{"snnc.num_steps": T,
                                                "snnc.input_encoding": loaded.graph.metadata.get("snnc.input_encoding")})
        if _same_reading(g, loaded.source_graph):
            continue
        if base is None:
            say(f"measuring the other frameworks' readings of the NIR file on {where}")
            rule = R.readout_rule(loaded.source_graph)["rule"]
            base = R.scores(loaded.source_graph, x_ag, T, rule, spikes, opts.batch_size, device=dev).argmax(1)
        pred = R.scores(g, x_ag, T, R.readout_rule(g)["rule"], spikes, opts.batch_size, device=dev).argmax(1)
        differ.append((sem, float((pred == base).mean())))
    if not differ:
        return []
    parts = [f"{SEMANTICS_SUMMARY[s].split(' (')[0]} ({s}) {100 * a:.1f}%" for s, a in differ]
    return [{"check": "UNDECLARED_SEMANTICS", "reading": SEMANTICS_SUMMARY["nir"],
             "alternatives": {s: round(a, 6) for s, a in differ}, "agreement_samples": where,
             "refused_by": refused,
             "message": f"the NIR file does not say whose conventions its neurons follow (NIR cannot state a "
                        f"subtractive reset, several spikes per step, v >= v_th, a voltage floor or dt); read by "
                        f"NIR's specification. Prediction agreement of other readings with it on {where}: "
                        + "; ".join(parts) + (f" (not readable as {', '.join(r.split(' (')[0] for r in refused)})"
                                              if refused else "")
                        + ". Declare the exporter with --semantics " + "|".join(s for s, _ in differ)}]


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
    npz, png, plan = io.BytesIO(), io.BytesIO(), io.BytesIO()
    save_npz(npz, arrays)
    plot_utilisation(report, png)
    plot_floorplan(report, load_target(config["target"]).data["chip"], plan)
    return {"config.json": (json.dumps(config, indent=1, sort_keys=True) + "\n").encode(),
            "weights.npz": npz.getvalue(), "graph.nir": nir_bytes(graph),
            "report.json": dumps(report).encode(), "cores.png": png.getvalue(), "floorplan.png": plan.getvalue()}


def simulate_output(out_dir, data: str, data_dir=None, limit: int | None = None, batch_size: int = 500,
                    progress=None, target: str | None = None, engine: str = "loihi-sim", encode: str | None = None,
                    seed: int = 1, device: str = "auto") -> dict:
    """Re-run the simulation of a compile output folder; returns the ``snnc simulate --json`` object.

    ``data`` as in :func:`compile_model` (``events:PATH`` or an image dataset with ``encode`` for
    spike-input folders; the default ``seed`` 1 gives the same rate-coded test spikes as the compile).
    ``engine="lava"`` runs the configuration in Lava (:mod:`snnc.backends.lava.engine`) and
    compares it with loihi-sim on the same samples, step by step; the object then has
    ``engine`` and ``lava_vs_loihi_sim`` (see :func:`snnc.backends.lava.compare_with_loihi_sim`).
    ``device`` (``auto``, ``cpu``, ``cuda``): where loihi-sim runs (:mod:`snnc.ir.device`).
    """
    dev = resolve_device(device)

    if engine not in ("loihi-sim", "lava"):
        raise SnncError(f"unknown engine {engine!r}; known: loihi-sim, lava")
    program = load_program(out_dir, load_target(target) if target else None)
    spikes = program.config["input"]["encoding"] == "spikes"
    x, y, _ = read_split(data, "test", data_dir, limit, spikes=spikes, num_steps=program.T, encode_method=encode,
                        seed=seed)
    x = fit_input(x, tuple(program.config["input"]["shape"]), spikes, data)[0]
    out_group = next(g for g in program.config["groups"] if g["name"] == program.config["outputs"][0]["group"])
    check_classes(y, int(out_group["size"]), f"dataset {data!r} (test split)")
    cb = (lambda n: progress("simulate", n, len(y))) if progress else None
    extra = {}
    if engine == "lava":
        from snnc.backends.lava import compare_with_loihi_sim
        res, cmp = compare_with_loihi_sim(program, x, batch_size=batch_size, progress=cb)
        sim = {"result": res, "metrics": measure(program, res, slice_counts_for(program)),
               "accuracy": float((res.scores().reshape(len(y), -1).argmax(1) == y).mean())}
        extra = {"engine": "lava", "lava_vs_loihi_sim": cmp}
    else:
        sim = simulate(program, x, y, batch_size, cb, device=dev)
    m = sim["metrics"]
    return {**extra, "accuracy": sim["accuracy"], "samples": int(len(y)),
            "source": _dataset_source(data, "test", len(y), data_dir, encode),
            "synops_per_inference": m["per_inference"]["synops"],
            "spikes_per_inference": m["per_inference"]["spikes"],
            "energy_per_inference_pJ": m["energy"]["per_inference_pJ"],
            "energy_breakdown_pJ": m["energy"]["breakdown"],
            "latency_steps": program.L, "cores": len(program.config["cores"]), "target": program.target.name,
            "compiled_for": program.config["target"]}
