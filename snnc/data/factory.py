"""``--data path/to/file.py:factory``: a trusted Python file whose ``factory()`` returns the dataset.

The file is imported and ``factory()`` called (it runs code: give only files you trust, as with model
factories). It returns :class:`snnc.data.python.Splits`, or a pair ``(train, test)`` (or a triple with a
validation split) of Datasets, DataLoaders or ``(x, y)`` arrays (:mod:`snnc.data.python`). This is the
route for tonic event datasets (``tonic.datasets.*`` with ``transforms.ToFrame``), torchvision
datasets and anything else.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from snnc.data.checks import DataFormatError
from snnc.data.python import Splits


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
    path, _, fn = spec.rpartition(":")
    p = Path(path)
    name = f"snnc_data_factory_{abs(hash(str(p.resolve())))}"
    try:
        spec_obj = importlib.util.spec_from_file_location(name, p)
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[name] = module
        spec_obj.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file: one line naming it
        raise DataFormatError(f"{p}: cannot be imported ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") \
            from None
    factory = getattr(module, fn, None)
    if not callable(factory):
        raise DataFormatError(f"{p}: has no function {fn!r}")
    try:
        out = factory()
    except Exception as e:  # noqa: BLE001 - the user's code: one line naming it
        raise DataFormatError(f"{spec}: the factory failed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(out, Splits):
        return out
    if isinstance(out, (tuple, list)) and len(out) in (2, 3):
        return Splits(train=out[0], test=out[1], val=out[2] if len(out) == 3 else None, name=spec)
    raise DataFormatError(f"{spec}: the factory returned {type(out).__name__}; expected snnc.data.Splits or "
                          "(train, test) Datasets, DataLoaders or (x, y) arrays")
