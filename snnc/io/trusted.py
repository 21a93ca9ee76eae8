"""``path/to/file.py:function``: import a trusted Python file and call one of its functions.

The file's code runs (give only files you trust, as with any script): the route for model factories
(:func:`snnc.frontends.load_factory`) and dataset factories (:mod:`snnc.data.factory`). Every failure is
one line naming the file, raised as the caller's error class.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def call_factory(spec: str, error: type[Exception]):
    """Import ``file.py`` of ``spec`` (``file.py:function``) and return ``(function(), function)``.

    Raises:
        ``error``: a malformed spec, a missing file or function, an import or a call that fails (the
            exception's type and first line are kept in the message).
    """
    file, _, func = str(spec).rpartition(":")
    path = Path(file)
    if not file or not func or path.suffix != ".py":
        raise error(f"{spec}: expected path/to/file.py:function")
    if not path.is_file():
        raise error(f"{path}: no such file")
    mod_name = f"snnc_user_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    try:
        sp = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(sp)
        sys.modules[mod_name] = module
        sp.loader.exec_module(module)
    except SystemExit as e:  # sys.exit() at import: refused like any failure, not snnc's exit
        raise error(f"{path}: importing it called sys.exit({e.code!r})") from None
    except Exception as e:  # noqa: BLE001 - the user's file fails: one line naming it
        raise error(f"{path}: importing it failed ({_first_line(e)})") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise error(f"{path}: has no function {func!r}")
    return call_again(fn, spec, error), fn


def call_again(fn, spec: str, error: type[Exception]):
    """``fn()`` of :func:`call_factory` (again): its failure, or a ``sys.exit()`` inside it, becomes ``error``."""
    try:
        return fn()
    except SystemExit as e:
        raise error(f"{spec}: calling {fn.__name__}() called sys.exit({e.code!r})") from None
    except Exception as e:  # noqa: BLE001 - the user's function fails: one line naming it
        raise error(f"{spec}: calling {fn.__name__}() failed ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
