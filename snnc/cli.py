"""snnc command line (click).

Exit codes: 0 ok; 1 bad input or a broken limit (one line ``snnc: error: <reason>``, or for
design-rule violations that line followed by every violation): an :class:`snnc.errors.SnncError`,
or an OS error on a file (its name and the system's reason); 2 usage error (click's message);
70 internal error (any other exception: a bug in snnc or in a library it calls; one line
``snnc: internal error (...)`` and "please report it"; ``SNNC_DEBUG=1`` shows the traceback);
130 interrupted (Ctrl-C), 143 terminated (SIGTERM). An interrupted or failed compile leaves the
previous output folder as it was and no temporary files.
"""
from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
from pathlib import Path

import click

from snnc import __version__
from snnc.errors import SnncError

#: exit codes (module docstring); 70 is EX_SOFTWARE of BSD sysexits.h (an internal software error)
EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 70, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that clean-up code runs as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _fail(msg: str) -> None:
    click.echo(f"snnc: error: {msg}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _internal(e: BaseException) -> None:
    """A bug (in snnc, or an unexpected failure inside a library it calls): one line and exit 70, or the
    traceback with ``SNNC_DEBUG=1``."""
    if os.environ.get("SNNC_DEBUG") == "1":
        raise e
    click.echo(f"snnc: internal error ({type(e).__name__}: {_one_line(e)[:300]}); please report it "
               "(SNNC_DEBUG=1 shows the traceback)", err=True)
    sys.exit(EXIT_INTERNAL)


class Finite(click.FloatRange):
    """A float range that also refuses ``nan`` and ``inf`` (click's range lets ``nan`` through: every
    comparison with it is false), as a usage error (exit 2)."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        rv = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(rv, param, ctx)


def _one_line(e: BaseException) -> str:
    from snnc.backends.loihi.rules import DesignRuleError
    text = str(e) or type(e).__name__
    if isinstance(e, DesignRuleError):
        return text  # a summary line, then one line per violation
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _guard(fn):
    """Run a command body: an :class:`SnncError` (or an OS error on a named file) -> one line and exit 1;
    Ctrl-C -> 130; SIGTERM -> 143; anything else -> "internal error" (exit 70; SNNC_DEBUG=1 shows the
    traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = signal.getsignal(signal.SIGTERM)
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread
            previous = None
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated); maybe after the output was in place
            cause = getattr(e, "interrupt", None) or e
            what = "terminated" if isinstance(cause, Terminated) else "interrupted"
            written = getattr(e, "out_dir", None)
            click.echo(f"snnc: {what}" + (f" after the output was complete: {written} holds the new output"
                                           if written is not None else ""), err=True)
            sys.exit(EXIT_TERMINATED if what == "terminated" else EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except SnncError as e:  # input snnc refuses (every user-facing error derives from it)
            _fail(_one_line(e))
        except OSError as e:
            if e.filename is None:  # not about a file the user named: a bug or the machine
                _internal(e)
            _fail(f"{e.filename}: {e.strerror or _one_line(e)}")
        except Exception as e:  # noqa: BLE001 - anything else is a bug: one line, exit 70
            _internal(e)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper


class _Progress:
    """rich progress bar on stderr for long stages (silent when stderr is not a terminal)."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=self.console, transient=True, disable=not self.console.is_terminal)
        self.tasks = {}

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *a):
        self.bar.__exit__(*a)

    def __call__(self, stage, done, total):
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done)

    def log(self, msg):
        self.console.print(f"[dim]snnc:[/dim] {msg}")


class _DataSpec(click.ParamType):
    """fashion-mnist | digits | PATH.npz | DIR (ImageFolder) | events:PATH (event data for spike-input models);
    see snnc.data and snnc.data.events."""
    name = "fashion-mnist|digits|PATH.npz|DIR|file.py:factory|events:PATH"

    def convert(self, value, param, ctx):
        if value in ("fashion-mnist", "digits") or (isinstance(value, str) and value.startswith("events:")
                                                    and len(value) > len("events:")):
            return value
        p = Path(str(value))
        if (p.suffix == ".npz" and p.is_file()) or ((p / "train").is_dir() and (p / "test").is_dir()):
            return value
        path, sep, fn = str(value).rpartition(":")
        if sep and fn and path.endswith(".py") and Path(path).is_file():  # file.py:factory (trusted code)
            return value
        self.fail(f"{value!r} is not 'fashion-mnist', 'digits', an existing PATH.npz (x_train, y_train, x_test, "
                  "y_test), a folder DIR with train/<class>/ and test/<class>/ images, file.py:factory, or "
                  "'events:PATH'", param, ctx)


DATA = _DataSpec()


def _shape(text):
    if text is None:
        return None
    from snnc.ir.validate import ValidationError, check_input_shape
    try:
        return check_input_shape(tuple(int(v) for v in text.split(",")), "--input-shape")
    except (ValueError, ValidationError):
        raise click.BadParameter(f"{text!r} is not a comma-separated list of 1 to 4 positive whole numbers "
                                 "(e.g. 1,28,28)", param_hint="--input-shape") from None


def _positive_time(ctx, param, value):
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise click.BadParameter(f"{value} is not a positive time in s")
    return value


class _OnceCommand(click.Command):
    """A command whose single-value options may be given once: ``--budget cores=1 --budget cores=200``
    is a usage error (exit 2) naming the option, not a silent pick of the last value."""

    def parse_args(self, ctx, args):
        if not args or any(a in ctx.help_option_names for a in args):
            return super().parse_args(ctx, args)
        try:  # click's own parser gives the order in which options were given (short forms and -oVALUE too)
            _, _, order = self.make_parser(ctx).parse_args(list(args))
        except click.UsageError:
            return super().parse_args(ctx, args)  # the real parse reports it
        for p in self.params:
            if isinstance(p, click.Option) and not p.multiple and not p.count and not p.is_flag:
                n = sum(1 for q in order if q is p)
                if n > 1:
                    raise click.UsageError(f"option {p.opts[-1] if p.opts else p.name} given {n} times; give it once",
                                           ctx=ctx)
        return super().parse_args(ctx, args)


class _Group(click.Group):
    command_class = _OnceCommand


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snnc")
def main():
    """snnc: compile trained spiking neural networks for neuromorphic targets.

    Trace a PyTorch SNN (snnc checkpoint; file.py:factory with --weights for snnTorch,
    Norse, SpikingJelly, Sinabs or plain torch models; a pickled module with --trust-pickle)
    or read a .nir file, run compression passes, map it onto cores, simulate it
    bit-accurately and report per-core resources and energy.
    """


@main.command("compile")
@click.argument("model")
@click.option("--target", default="loihi-sim", show_default=True,
              help="target name (see `snnc targets`) or TOML path; lava, nir, onnx compile for loihi-sim and also "
                   "write network.net (lava-dl netx; lava keeps every field on netx's grid, biases on from step "
                   "0: docs/lava.md), portable.nir (snnTorch/Norse/Sinabs) or model.onnx")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="output folder")
@click.option("--data", type=DATA, default=None,
              help="calibrate on 256 training samples and evaluate float and compiled accuracy on the test split: "
                   "fashion-mnist, digits, PATH.npz (arrays x_train, y_train, x_test, y_test), DIR (ImageFolder: "
                   "DIR/train/<class>/*.png, DIR/test/<class>/*.png), file.py:factory (a trusted file returning the "
                   "splits); events:PATH = event frames/lists (.npz, or a folder; train/ and test/ give both splits) "
                   "for spike-input models")
@click.option("--encode", type=click.Choice(["rate", "latency"]), default=None,
              help="spike encoder turning image data into spikes for a spike-input model")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="folder with the Fashion-MNIST IDX files [default: $SNNC_DATA_DIR, else "
                   "/usr/share/datasets/fashion-mnist]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="evaluate on the first N test samples")
@click.option("--passes", default=None, help="pass pipeline, e.g. 'fold_bn,quantize:weight_bits=8' (see `snnc "
                                             "passes`) [default: fold_bn,quantize]")
@click.option("--max-cores", type=click.IntRange(min=1), default=None, help="fail if the model needs more cores")
@click.option("--max-chips", type=click.IntRange(min=1), default=None,
              help="fail if the model needs more chips (128 cores each on loihi-sim)")
# the choices are backends.loihi.mapping.FORMAT_CHOICES, spelt out: importing it here would load torch for --help
@click.option("--formats", type=click.Choice(["auto", "discrete"]), default="auto", show_default=True,
              help="synapse formats: auto = per projection the one needing fewer cores (population axons share "
                   "a conv kernel); discrete = one input axon per source neuron and a weight per synapse "
                   "everywhere (no population axons: a neuron listens to at most 4,096 source neurons)")
@click.option("--objective", type=click.Choice(["cores", "latency", "energy"]), default="cores", show_default=True,
              help="what the mapping minimises: cores = the fewest cores; latency / energy = the least time / energy "
                   "per inference among candidate mappings (each synapse format x at most 1024, 512, 256, 128, 64 "
                   "compartments per core), priced by the activity of 128 calibration samples with the time model "
                   "and energy figures of the report; needs --data; report.json mapping.objective lists every "
                   "candidate")
@click.option("--budget", default=None, metavar="RESOURCE=VALUE",
              help="compress to fit: prune channels until the mapped model fits the target within the budget "
                   "(cores=K, synapses=N, synops=N or memory_bits=N); needs --data")
@click.option("--budget-criterion", type=click.Choice(["l1", "activity", "attention", "random"]), default=None,
              help="how --budget ranks channels [default: activity]")
@click.option("--train-epochs", type=click.IntRange(min=1), default=None, metavar="N",
              help="after the cut (--budget or a prune_channels pass) and its repair, fine-tune N epochs over the "
                   "training split, distilled from the model before the cut, then quantize: one command to a "
                   "deployable model; with --timesteps T' alone it trains the folded model at T'")
@click.option("--train-method", type=click.Choice(["plain", "spike-thrift"]), default="plain", show_default=True,
              help="with --train-epochs: plain distilled fine-tuning, or spike-thrift (attention transfer from the "
                   "model before the cut + thresholds and leaks trained on the target's du/dv grid)")
@click.option("--train-synops", type=Finite(min=0), default=0.0, show_default=True, metavar="LAMBDA",
              help="with --train-epochs: SynOps regulariser weight (LAMBDA x SynOps / SynOps at the start)")
@click.option("--weight-bits", type=click.IntRange(2, 8), default=None,
              help="synaptic weight bits (quantize weight_bits; 8, 6, 4, 2...) [default: 8]")
@click.option("--per-channel", is_flag=True,
              help="a scale per output channel, folded into that channel's thresholds and biases "
                   "(quantize per_channel=true)")
@click.option("--calibrate", type=click.IntRange(min=1), default=None, metavar="N",
              help="calibrate the quantization on the first N training images: clip levels that minimise each "
                   "projection's output error (quantize scales=mse); needs --data")
@click.option("--timesteps", type=click.IntRange(min=1), default=None, metavar="T'",
              help="run on T' coarser time steps (fold_timesteps:steps=T'; T' divides T; thresholds recalibrated "
                   "on the calibration images, needs --data)")
@click.option("--trust-pickle", is_flag=True, help="allow a fully pickled nn.Module (runs code from the file!)")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="state dict (read with weights_only=True) for a MODEL given as file.py:factory")
@click.option("--allow-semantic-change", is_flag=True,
              help="compile although the target cannot keep the model's neuron semantics (subtract reset, "
                   "several spikes per step, voltage floor); the measured agreement is reported")
@click.option("--dt", type=float, default=None, callback=_positive_time,
              help="time step in s for models that do not record one")
@click.option("--num-steps", type=click.IntRange(min=1), default=None, help="time steps T per sample")
@click.option("--input-shape", default=None, help="input shape C,H,W (pickled modules without one)")
@click.option("--input-encoding", type=click.Choice(["direct", "spikes"]), default=None,
              help="direct: analog input injected as a per-sample bias by the host; spikes: events through "
                   "input axons [default: snnc checkpoints direct, .nir files spikes]")
@click.option("--reset", type=click.Choice(["zero", "subtract"]), default=None,
              help="reset mode of a .nir file's spiking neurons (NIR cannot say subtractive reset) "
                   "[default: zero when v_reset = 0]")
@click.option("--semantics", type=click.Choice(["nir", "snntorch", "spikingjelly", "norse", "sinabs"]), default=None,
              help="whose conventions a .nir file's neurons follow, read as that framework's own NIR importer "
                   "does (sinabs: subtract reset, several spikes per step, v >= v_th, taus in steps; "
                   "spikingjelly: v >= v_th; norse: its to_nir taus, dt 1e-3 s) [default: NIR's specification, "
                   "with an UNDECLARED_SEMANTICS check measuring what the other readings change]")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="replace OUT when it is a previous snnc output (never another folder)")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
              help="where torch work runs: the float reference, adapt_semantics fine-tuning and loihi-sim (bit-identical on CUDA); auto = CUDA when available")
@click.option("--json", "as_json", is_flag=True, help="print report.json instead of the table")
@_guard
def compile_cmd(model, target, out, data, encode, data_dir, limit, passes, max_cores, max_chips, formats, objective,
                budget,
                budget_criterion, train_epochs, train_method, train_synops, weight_bits, per_channel, calibrate,
                timesteps, trust_pickle, weights, allow_semantic_change, dt, num_steps, input_shape, input_encoding, reset,
                semantics, batch_size, seed, force, device, as_json):
    """Compile MODEL into OUT for a target.

    MODEL: an snnc checkpoint (.pt), a .nir file, a shipped model's name (fmnist_cnn), or
    path/to/file.py:factory (a trusted Python file whose factory() returns the nn.Module; its
    weights from --weights).
    """
    from snnc.driver.compiler import compile_model
    from snnc.driver.options import CompileOptions
    from snnc.io.report import dumps, print_report
    opts = CompileOptions(target=target, data=data, data_dir=data_dir, limit=limit, max_cores=max_cores,
                          max_chips=max_chips, trust_pickle=trust_pickle, dt=dt, num_steps=num_steps,
                          input_shape=_shape(input_shape), input_encoding=input_encoding, reset=reset,
                          semantics=semantics, seed=seed,
                          batch_size=batch_size, force=force, weights=weights, encode=encode,
                          allow_semantic_change=allow_semantic_change, budget=budget,
                          budget_criterion=budget_criterion, train_epochs=train_epochs,
                          train_method=train_method, train_synops=train_synops, weight_bits=weight_bits,
                          per_channel=per_channel,
                          calibrate=calibrate, timesteps=timesteps, formats=formats, objective=objective,
                          device=device, **({"passes": passes} if passes else {})).checked()
    with _Progress() as prog:
        rep = compile_model(model, out, opts, progress=prog, log=None if as_json else prog.log)
    if as_json:
        click.echo(dumps(rep), nl=False)
    else:
        print_report(rep)
        extra = {"lava": ", network.net", "nir": ", portable.nir", "onnx": ", model.onnx"}.get(target, "")
        if target == "lava" and not rep.get("export", {}).get("netx", {}).get("written", True):
            extra = f"; no network.net: {rep['export']['netx']['reason']}"
        click.echo(f"wrote {out}/ (config.json, weights.npz, graph.nir, report.json, cores.png, floorplan.png{extra})")


@main.command()
@click.argument("out")
@click.option("--data", type=DATA, required=True,
              help="fashion-mnist, digits, PATH.npz, an ImageFolder DIR, file.py:factory, or events:PATH (its test "
                   "split)")
@click.option("--encode", type=click.Choice(["rate", "latency"]), default=None,
              help="spike encoder for image data and a spike-input folder")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--target", default=None, help="target name or TOML path [default: the one compiled for]")
@click.option("--engine", type=click.Choice(["loihi-sim", "lava"]), default="loihi-sim", show_default=True,
              help="loihi-sim: snnc's batched bit-accurate simulator; lava: run OUT in Lava (lava-nc fixed-point "
                   "models, CPU, much slower) and compare it with loihi-sim step by step")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
              help="where torch work runs: loihi-sim (bit-identical on CUDA); auto = CUDA when available")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@_guard
def simulate(out, data, encode, data_dir, limit, batch_size, target, engine, device, as_json):
    """Simulate a compiled OUT folder bit-accurately on a dataset's test split."""
    from snnc.driver.compiler import simulate_output
    if not Path(out).is_dir():
        _fail(f"{out}: no such folder (a compile output folder)")
    if engine == "lava" and batch_size == 500:
        batch_size = 16  # samples per Lava run
    with _Progress() as prog:
        res = simulate_output(out, data, data_dir, limit, batch_size, progress=prog, target=target, engine=engine,
                              encode=encode, device=device)
    if as_json:
        click.echo(json.dumps(res, sort_keys=True))
    else:
        click.echo(f"accuracy {100 * res['accuracy']:.2f}% on {res['samples']:,} samples ({res['source']})")
        click.echo(f"per inference: {res['synops_per_inference']:,.0f} SynOps, {res['spikes_per_inference']:,.0f} spikes, "
                   f"{res['energy_per_inference_pJ'] / 1e6:.3f} µJ, latency {res['latency_steps']} steps "
                   f"on {res['cores']} cores")
        if engine == "lava":
            c = res["lava_vs_loihi_sim"]
            verdict = "equal" if c["equal"] else "DIFFERENT"
            click.echo(f"Lava vs loihi-sim: {verdict} (u, v, spikes of every group at every step: "
                       f"{c['values_compared']:,} values; outputs {'equal' if c['outputs_equal'] else 'different'})")
    if engine == "lava" and not res["lava_vs_loihi_sim"]["equal"]:
        _fail("Lava and loihi-sim differ (see lava_vs_loihi_sim)")


@main.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True)
@click.option("--trust-pickle", is_flag=True, help="allow a fully pickled nn.Module (runs code from the file!)")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="state dict for a PATH given as file.py:factory")
@click.option("--dt", type=Finite(min=0, min_open=True), default=None,
              help="time step in s for models that do not record one")
@click.option("--input-shape", default=None, help="input shape C,H,W (pickled modules without one)")
@_guard
def inspect(path, as_json, trust_pickle, weights, dt, input_shape):
    """Show a model's NIR graph (nodes, shapes, figures) or a compile output's report.

    PATH: a compile output folder, a model file, a shipped model's name, or path/to/file.py:factory."""
    from snnc.ir import SPIKING_TYPES, dumps_canonical, infer_shapes, summarize
    from snnc.ir.semantics import NeuronSemantics
    p = Path(path)
    shape = _shape(input_shape)
    if p.is_dir():
        from snnc.backends.loihi.report import load_report
        from snnc.io.report import print_report
        rep = load_report(p)
        if as_json:
            click.echo(json.dumps(rep, indent=2, sort_keys=True))
        else:
            print_report(rep)
        return
    from snnc.frontends import load_model, resolve_model_path
    is_factory = path.rpartition(":")[0].endswith(".py")
    graph, _, info = load_model(path if is_factory else resolve_model_path(path), trust_pickle=trust_pickle, dt=dt,
                                input_shape=shape, weights=weights)
    for note in info.get("notes", []):
        click.echo(f"note: {note}", err=True)
    summ = summarize(graph, digests=False)
    if as_json:
        click.echo(dumps_canonical(summ), nl=False)
        return
    shapes = infer_shapes(graph)
    click.echo(f"{path} ({info.get('kind')}), T = "
               f"{info.get('num_steps') or (graph.metadata or {}).get('snnc.num_steps') or 'not stated'}")
    for name, node in summ["nodes"].items():
        extra = ""
        if isinstance(graph.nodes[name], SPIKING_TYPES):
            sem = NeuronSemantics.of(graph.nodes[name])
            extra = f"  reset={sem.reset} dt={sem.dt}"
            for key in ("reset_timing", "threshold_op", "spikes", "v_min"):
                if getattr(sem, key) != getattr(NeuronSemantics(), key):
                    extra += f" {key}={getattr(sem, key)}"
        click.echo(f"  {name:<24} {node['type']:<10} {str(shapes[name][0]):>16} -> {str(shapes[name][1]):<16}{extra}")
    f = summ["figures"]
    click.echo(f"neurons {f['neurons']:,}  synapses {f['synapses']:,}  parameters {f['parameters']:,}")


@main.command()
@click.argument("model")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="checkpoint file to write (.pt)")
@click.option("--data", type=DATA, default="fashion-mnist", show_default=True,
              help="fashion-mnist, digits, PATH.npz (x_train, y_train, x_test, y_test), an ImageFolder DIR or "
                   "file.py:factory")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--passes", default=None, help="passes to run before fine-tuning, e.g. "
              "'fold_bn,prune_channels:criterion=activity;ratio=0.25' (no quantize) [default: fold_bn]")
@click.option("--lr", type=Finite(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--train-limit", type=click.IntRange(min=2), default=None,
              help="train on N training samples (a class-stratified sample by snnc's sampling rule; default all)")
@click.option("--val-samples", type=click.IntRange(min=1), default=None,
              help="validation samples for the per-epoch accuracy, carved from the training split by the "
                   "sampling rule [default: the dataset's val split, else 10% of the training split, at most 5000]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="test images for the before/after accuracy")
@click.option("--distill", type=Finite(0, 1, max_open=True), default=0.0, show_default=True,
              help="knowledge-distillation weight (0 = labels only); the teacher is the model before the passes, "
              "or --teacher")
@click.option("--teacher", default=None, metavar="MODEL",
              help="with --distill or attention transfer: distil from this model (file or shipped name), e.g. the "
              "unpruned model when "
              "MODEL is already pruned (a --budget output or an earlier fine-tuned checkpoint)")
@click.option("--method", type=click.Choice(["plain", "sca", "minimax", "spike-thrift"]), default="plain",
              show_default=True,
              help="training method: plain fine-tuning; sca = Li et al.'s spiking-channel-activity pruning with "
              "regeneration during training (needs --keep); minimax = resource-constrained primal-dual pruning "
              "adapted from Chen et al. to channels and synapses (needs --keep); spike-thrift = attention transfer "
              "from the uncompressed model + thresholds and leaks trained on the target's grid (Kundu et al.)")
@click.option("--keep", type=Finite(0, 1, min_open=True), default=None, metavar="F",
              help="with --method sca or minimax: the fraction of the prunable channels to keep (sca: of all "
              "layers' channels together, ranked globally, at least one per layer; minimax: the graph synapses a "
              "uniform cut to F keeps, distributed over the layers by the method)")
@click.option("--attention", type=Finite(min=0), default=None, metavar="BETA",
              help="attention-transfer weight (Zagoruyko & Komodakis' beta; spike-thrift: 1000; 0 = off)")
@click.option("--synops", type=Finite(min=0), default=0.0, show_default=True, metavar="LAMBDA",
              help="spike-rate regulariser: LAMBDA x SynOps per sample / SynOps at the start")
@click.option("--train-thresholds/--no-train-thresholds", default=None,
              help="train one threshold and one leak per layer, the leak on the target's du/dv grid "
              "[default: on for spike-thrift]")
@click.option("--qat", is_flag=True, help="quantization-aware training: straight-through fake quantization of the "
              "weights with the quantize pass's formats (--weight-bits, --per-channel, --calibrate)")
@click.option("--weight-bits", type=click.IntRange(2, 8), default=8, show_default=True,
              help="with --qat: synaptic weight bits")
@click.option("--per-channel", is_flag=True, help="with --qat: per-channel scales")
@click.option("--calibrate", type=click.IntRange(min=1), default=None, metavar="N",
              help="with --qat: MSE-calibrated scales on the first N training images")
@click.option("--num-steps", type=click.IntRange(min=1), default=None, help="time steps T per sample")
@click.option("--input-shape", default=None, help="input shape C,H,W (pickled modules without one)")
@click.option("--trust-pickle", is_flag=True, help="allow a fully pickled nn.Module (runs code from the file!)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True,
              help="replace OUT when it is an earlier snnc checkpoint (never another file, nor the model, teacher or "
                   "data)")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
              help="where torch work runs: training and evaluation; auto = CUDA when available")
@_guard
def finetune(model, out, data, data_dir, epochs, passes, lr, batch_size, train_limit, val_samples, limit, distill,
             teacher, method, keep, attention, synops, train_thresholds, qat, weight_bits, per_channel, calibrate, num_steps, input_shape, trust_pickle, seed, force,
             device):
    """Fine-tune MODEL (model file, shipped name, or a compile output folder) after passes such as
    pruning, with surrogate gradients on a dataset, or compress it while training (--method); write an snnc
    checkpoint that `snnc compile` takes. With fold_timesteps in --passes the model trains at the folded T'."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from snnc.driver.finetune import finetune_model
    from snnc.driver.methods import Recipe
    from snnc.driver.options import CompileOptions
    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                   TimeElapsedColumn(), console=console, transient=True)
    tasks = {}

    def progress(epoch, step, steps, loss):
        if epoch not in tasks:
            tasks[epoch] = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=steps, loss=loss)
        bar.update(tasks[epoch], completed=step, loss=loss)

    recipe = Recipe(method=method, keep=keep, attention=attention, synops=synops, thresholds=train_thresholds)
    with bar:
        opts = CompileOptions(data=data, data_dir=data_dir, limit=limit, seed=seed, force=force,
                              trust_pickle=trust_pickle, num_steps=num_steps, input_shape=_shape(input_shape),
                              weight_bits=weight_bits, per_channel=per_channel, calibrate=calibrate,
                              device=device).checked()
        meta = finetune_model(model, out, opts, epochs=epochs, passes=passes, lr=lr, batch_size=batch_size,
                              train_limit=train_limit, val_samples=val_samples, distill=distill, teacher=teacher,
                              recipe=recipe, qat=qat, progress=progress, log=lambda m: console.print(f"snnc: {m}"))
    click.echo(f"wrote {out}: float test accuracy {100 * meta['float_test_accuracy_before']:.2f}% -> "
               f"{100 * meta['float_test_accuracy']:.2f}% on {meta['test_samples']:,} images "
               f"({meta['epochs']} epoch(s) at T = {meta['num_steps']}, passes {meta['passes']}, "
               f"method {meta['method']['method']})")
    if meta["method"].get("pruning"):
        click.echo(f"kept channels: {meta['method']['pruning']['kept']}")
    if "qat" in meta:
        qm = meta["qat"]
        click.echo(f"quantization-aware ({qm['weight_bits']}-bit, {qm['scales']} scales"
                   f"{', per-channel' if qm['per_channel'] else ''}): fake-quantized test accuracy "
                   f"{100 * qm['fake_quant_test_accuracy_before']:.2f}% -> {100 * qm['fake_quant_test_accuracy']:.2f}%")


@main.command()
def targets():
    """List the bundled targets with their per-core limits."""
    from snnc.targets import available, load_target
    for name in available():
        t = load_target(name)
        c = t["core"]
        click.echo(f"{name}: {t.description}")
        click.echo(f"  per core: {c['neurons']} neurons, {c['axons_in']} input axons, {c['axons_out']} output axons, "
                   f"{c['synapse_memory_bits'] // 8192} KiB synaptic memory; {t['chip']['cores']} cores per chip")
        click.echo(f"  source: {t.sources.get('core')}")


@main.command()
def passes():
    """List the registered passes with their options."""
    from snnc.passes import DEFAULT_PIPELINE, REGISTRY
    for name in sorted(REGISTRY):
        p = REGISTRY[name]
        opts = ", ".join(f"{k}={v}" for k, v in p.options.items()) or "no options"
        click.echo(f"{name}: {p.description}\n  options: {opts}")
    click.echo(f"default pipeline: {DEFAULT_PIPELINE}")


if __name__ == "__main__":
    main()
