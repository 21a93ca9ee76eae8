"""snnc command line (click).

Exit codes: 0 ok; 1 bad input or a broken limit (a one-line reason, or the list of
every design-rule violation); 2 usage error.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from snnc import __version__


def _fail(msg: str) -> None:
    click.echo(f"snnc: error: {msg}", err=True)
    sys.exit(1)


def _errors():
    from snnc.backends.loihi.compile import NotQuantizedError
    from snnc.backends.loihi.mapping import DesignRuleError
    from snnc.compiler import OutputExistsError
    from snnc.data import DataNotFoundError
    from snnc.frontend import ModelLoadError
    from snnc.ir import UnsupportedNodeError
    return (ModelLoadError, UnsupportedNodeError, DesignRuleError, DataNotFoundError, OutputExistsError,
            NotQuantizedError, ValueError, FileNotFoundError)


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
    """fashion-mnist | digits | events:PATH (event data for spike-input models, see snnc.events)."""
    name = "fashion-mnist|digits|events:PATH"

    def convert(self, value, param, ctx):
        if value in ("fashion-mnist", "digits") or (isinstance(value, str) and value.startswith("events:")
                                                    and len(value) > len("events:")):
            return value
        self.fail(f"{value!r} is not one of 'fashion-mnist', 'digits', 'events:PATH'", param, ctx)


DATA = _DataSpec()


def _shape(text):
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snnc")
def main():
    """snnc: compile trained spiking neural networks for neuromorphic targets.

    Trace a PyTorch SNN (snnc checkpoint; file.py:factory with --weights for snnTorch,
    Norse, SpikingJelly, Sinabs or plain torch models; a pickled module with --trust-pickle)
    or read a .nir file, run compression passes, map it onto cores, simulate it
    bit-accurately and report per-core resources and energy.
    """


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--target", default="loihi-sim", show_default=True, help="target name (see `snnc targets`) or TOML path")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--data", type=DATA, default=None,
              help="calibrate on 256 training samples and evaluate float and compiled accuracy on the test split; "
                   "events:PATH = event frames/lists (.npz or a folder) for spike-input models")
@click.option("--encode", type=click.Choice(["rate", "latency"]), default=None,
              help="spike encoder turning image data into spikes for a spike-input model")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="folder with the Fashion-MNIST IDX files [default: $SNNC_DATA_DIR, else "
                   "/usr/share/datasets/fashion-mnist]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="evaluate on the first N test samples")
@click.option("--passes", default=None, help="pass pipeline, e.g. 'fold_bn,quantize:weight_bits=8' (see `snnc "
                                             "passes`) [default: fold_bn,quantize]")
@click.option("--max-cores", type=click.IntRange(min=1), default=None, help="fail if the model needs more cores")
@click.option("--trust-pickle", is_flag=True, help="allow a fully pickled nn.Module (runs code from the file!)")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="state dict (read with weights_only=True) for a MODEL given as file.py:factory")
@click.option("--allow-semantic-change", is_flag=True,
              help="compile although the target cannot keep the model's neuron semantics (subtract reset, "
                   "several spikes per step, voltage floor); the measured agreement is reported")
@click.option("--dt", type=float, default=None, help="time step in s for models that do not record one")
@click.option("--num-steps", type=click.IntRange(min=1), default=None, help="time steps T per sample")
@click.option("--input-shape", default=None, help="input shape C,H,W (pickled modules without one)")
@click.option("--input-encoding", type=click.Choice(["direct", "spikes"]), default=None,
              help="direct: analog input injected as a per-sample bias by the host; spikes: events through "
                   "input axons [default: snnc checkpoints direct, .nir files spikes]")
@click.option("--reset", type=click.Choice(["zero", "subtract"]), default=None,
              help="reset mode of a .nir file's spiking neurons (NIR cannot say subtractive reset) "
                   "[default: zero when v_reset = 0]")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="replace a non-empty output folder")
@click.option("--json", "as_json", is_flag=True, help="print report.json instead of the table")
def compile_cmd(model, target, out, data, encode, data_dir, limit, passes, max_cores, trust_pickle, weights,
                allow_semantic_change, dt, num_steps, input_shape, input_encoding, reset, batch_size, seed, force,
                as_json):
    """Compile MODEL into OUT for a target.

    MODEL: an snnc checkpoint (.pt), a .nir file, or path/to/file.py:factory (a trusted Python
    file whose factory() returns the nn.Module; its weights from --weights).
    """
    from snnc.compiler import compile_model
    from snnc.passes import DEFAULT_PIPELINE
    from snnc.report import dumps, print_report
    try:
        with _Progress() as prog:
            rep = compile_model(model, out, target=target, passes=passes or DEFAULT_PIPELINE, data=data,
                                data_dir=data_dir, limit=limit, max_cores=max_cores, trust_pickle=trust_pickle, dt=dt,
                                num_steps=num_steps, input_shape=_shape(input_shape),
                                input_encoding=input_encoding, reset=reset, seed=seed,
                                batch_size=batch_size, force=force, progress=prog,
                                log=None if as_json else prog.log, weights=weights, encode=encode,
                                allow_semantic_change=allow_semantic_change)
    except _errors() as e:
        _fail(str(e))
    if as_json:
        click.echo(dumps(rep), nl=False)
    else:
        print_report(rep)
        click.echo(f"wrote {out}/ (config.json, weights.npz, graph.nir, report.json, cores.png)")


@main.command()
@click.argument("out", type=click.Path(file_okay=False, exists=True))
@click.option("--data", type=DATA, required=True, help="fashion-mnist, digits or events:PATH")
@click.option("--encode", type=click.Choice(["rate", "latency"]), default=None,
              help="spike encoder for image data and a spike-input folder")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--target", default=None, help="target name or TOML path [default: the one compiled for]")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def simulate(out, data, encode, data_dir, limit, batch_size, target, as_json):
    """Simulate a compiled OUT folder bit-accurately on a dataset's test split."""
    from snnc.compiler import simulate_output
    try:
        with _Progress() as prog:
            res = simulate_output(out, data, data_dir, limit, batch_size, progress=prog, target=target,
                                  encode=encode)
    except _errors() as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(res, sort_keys=True))
    else:
        click.echo(f"accuracy {100 * res['accuracy']:.2f}% on {res['samples']:,} samples ({res['source']})")
        click.echo(f"per inference: {res['synops_per_inference']:,.0f} SynOps, {res['spikes_per_inference']:,.0f} spikes, "
                   f"{res['energy_per_inference_pJ'] / 1e6:.3f} µJ, latency {res['latency_steps']} steps "
                   f"on {res['cores']} cores")


@main.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True)
@click.option("--trust-pickle", is_flag=True, help="allow a fully pickled nn.Module (runs code from the file!)")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="state dict for a PATH given as file.py:factory")
@click.option("--dt", type=float, default=None, help="time step in s for models that do not record one")
@click.option("--input-shape", default=None, help="input shape C,H,W (pickled modules without one)")
def inspect(path, as_json, trust_pickle, weights, dt, input_shape):
    """Show a model's NIR graph (nodes, shapes, figures) or a compile output's report.

    PATH: a compile output folder, a model file, or path/to/file.py:factory."""
    from snnc.ir import dumps_canonical, infer_shapes, summarize
    p = Path(path)
    is_factory = path.rpartition(":")[0].endswith(".py")
    if not is_factory and not p.exists():
        raise click.BadParameter(f"{path!r} does not exist", param_hint="PATH")
    try:
        if p.is_dir():
            rep_path = p / "report.json"
            if not rep_path.is_file():
                _fail(f"{p}: not a compile output folder (no report.json)")
            rep = json.loads(rep_path.read_text())
            if as_json:
                click.echo(json.dumps(rep, indent=2, sort_keys=True))
            else:
                from snnc.report import print_report
                print_report(rep)
            return
        from snnc.frontend import load_model
        graph, _, info = load_model(path if is_factory else p, trust_pickle=trust_pickle, dt=dt,
                                    input_shape=_shape(input_shape), weights=weights)
        for note in info.get("notes", []):
            click.echo(f"note: {note}", err=True)
        summ = summarize(graph, digests=False)
        if as_json:
            click.echo(dumps_canonical(summ), nl=False)
            return
        shapes = infer_shapes(graph)
        click.echo(f"{p} ({info.get('kind')}), T = {info.get('num_steps')}")
        for name, node in summ["nodes"].items():
            extra = ""
            if "snnc.reset" in str(node.get("metadata", "")):
                md = node["metadata"]
                extra = f"  reset={md.get('snnc.reset')} dt={md.get('snnc.dt')}"
                for key in ("snnc.reset_timing", "snnc.threshold_op", "snnc.spikes", "snnc.v_min"):
                    if key in md:
                        extra += f" {key[5:]}={md[key]}"
            click.echo(f"  {name:<24} {node['type']:<10} {str(shapes[name][0]):>16} -> {str(shapes[name][1]):<16}{extra}")
        f = summ["figures"]
        click.echo(f"neurons {f['neurons']:,}  synapses {f['synapses']:,}  parameters {f['parameters']:,}")
    except _errors() as e:
        _fail(str(e))


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
