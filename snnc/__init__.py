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
