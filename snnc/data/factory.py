"""``--data path/to/file.py:factory``: a trusted Python file whose ``factory()`` returns the dataset.

The file is imported and ``factory()`` called (it runs code: give only files you trust, as with model
factories). It returns :class:`snnc.data.python.Splits`, or a pair ``(train, test)`` (or a triple with a
validation split) of Datasets, DataLoaders or ``(x, y)`` arrays (:mod:`snnc.data.python`). This is the
route for tonic event datasets (``tonic.datasets.*`` with ``transforms.ToFrame``), torchvision
datasets and anything else.
"""
from __future__ import annotations

from pathlib import Path

from snnc.data.checks import DataFormatError
from snnc.data.python import Splits
from snnc.io.trusted import call_factory


def is_factory(spec) -> bool:
    """``spec`` names ``file.py:function`` of an existing file."""
    if not isinstance(spec, str):
        return False
    path, sep, fn = spec.rpartition(":")
    return bool(sep and fn and path.endswith(".py") and Path(path).is_file())


def load_factory_data(spec: str) -> Splits:
    """Import the file and call its factory (module docstring).

    Raises:
        DataFormatError: the file cannot be imported, has no such function, the function fails or returns
            something else than the forms above (one line naming the file).
    """
    out, _ = call_factory(spec, DataFormatError)
    if isinstance(out, Splits):
        return out
    if isinstance(out, (tuple, list)) and len(out) in (2, 3):
        return Splits(train=out[0], test=out[1], val=out[2] if len(out) == 3 else None, name=spec)
    raise DataFormatError(f"{spec}: the factory returned {type(out).__name__}; expected snnc.data.Splits or "
                          "(train, test) Datasets, DataLoaders or (x, y) arrays")
