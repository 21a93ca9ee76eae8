"""snnc: a deployment compiler for spiking neural networks.

Trace a trained PyTorch SNN (or read a NIR file) into a NIR graph, run
compression passes, map it onto neuromorphic cores and report per-core
resources and energy. See README.md and docs/.

The distribution maps the repository's top-level ``passes/``, ``backends/`` and
``models/`` folders to ``snnc.passes``, ``snnc.backends`` and ``snnc.models``. An
installed wheel (or editable install) does that through its package layout; when
the source checkout is put on ``PYTHONPATH`` instead, the checkout's root is added
to this package's search path below, so the same imports work there too.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"


def compile(module, input_shape=None, num_steps=None, out_dir="out", data=None, target: str = "loihi-sim", **kwargs):
    """Compile an in-memory model (no pickling, no file): ``snnc.compile(net, input_shape=(1, 28, 28),
    num_steps=25, out_dir="out", data="fashion-mnist")``.

    Args:
        module: an ``nn.Module`` (snnc, snnTorch, Norse, SpikingJelly, Sinabs or plain torch layers;
            ``forward`` one time step, or a loop over time that snnc runs once to find the step),
            a ``nir.NIRGraph``, or anything :func:`snnc.driver.compiler.compile_model` takes (a path).
        input_shape: input shape without batch/time dims, e.g. ``(1, 28, 28)``.
        num_steps: T, time steps per sample.
        out_dir: output folder (config.json, weights.npz, graph.nir, report.json, cores.png, floorplan.png).
        data: ``"fashion-mnist"``, ``"digits"`` or ``"events:PATH"`` (calibration and accuracy).
        kwargs: the other fields of :class:`snnc.driver.options.CompileOptions` (``passes``, ``encode``,
            ``input_encoding``, ``allow_semantic_change``, ``limit``, ``force``, ``dt``, ``budget``, ...), and
            ``progress``/``log`` callables (see :func:`snnc.driver.compiler.compile_model`).

    Raises:
        snnc.errors.SnncError: input snnc refuses (one-line message).

    Returns:
        the report dict (``report.json``).
    """
    from snnc.driver.compiler import compile_model
    return compile_model(module, out_dir, target=target, data=data, input_shape=input_shape, num_steps=num_steps,
                         **kwargs)


def _source_checkout_path() -> None:
    root = _Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if (root / "passes" / "__init__.py").is_file() and pyproject.is_file():
        try:
            is_ours = 'name = "snnc"' in pyproject.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        if is_ours and str(root) not in __path__:
            __path__.append(str(root))


_source_checkout_path()
