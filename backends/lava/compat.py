"""Import Lava (lava-nc 0.10.0, lava-dl 0.6.0) on this project's Python and numpy.

The two wheels declare ``Requires-Python >=3.10,<3.11`` and ``numpy<2``; they are
installed with ``pip install --no-deps --ignore-requires-python`` (``make
setup-lava``). Checked here: both run on Python 3.11 with numpy 2.4.6 and torch
2.13 once the two import-time problems below are handled. Every workaround
lives in this module; nothing in site-packages is edited.

1. ``lava.magma.compiler.var_model`` declares dataclass fields whose default is
   an instance of the (unhashable, non-frozen) dataclass ``ByteEncoder``
   (``x: ByteEncoder = ByteEncoder()``). Python 3.11 rejects mutable defaults
   detected by ``__hash__ is None`` (``ValueError: mutable default ... use
   default_factory``). While that one module is imported, ``dataclasses.dataclass``
   is wrapped so that ``ByteEncoder`` alone is built with ``unsafe_hash=True``;
   the defaults stay what Python 3.10 made of them (one shared instance).
2. ``lava.lib.dl.netx.hdf5`` imports ``lava.lib.dl.slayer.neuron.rf``, and
   ``lava.lib.dl.slayer/__init__`` imports ``object_detection``, which imports
   ``cv2`` and ``torchvision`` (not installable next to torch 2.13 here, see
   ARCHITECTURE.md). netx never uses object detection: an empty module is put in
   ``sys.modules`` under that name before netx is imported.
3. ``lava.magma.core.process.ports.ports.ReshapePort`` (behind a virtual port's ``.flatten()`` or
   ``.reshape()``, which netx uses from a conv block into a dense block) transforms data with
   ``functools.partial(np.reshape, newshape=...)``; numpy 2 removed ``newshape`` (deprecated in 2.1),
   so the first message raised ``TypeError`` inside the runtime's process and the run hung. Its two
   transform functions are replaced by ones passing the shape positionally (numpy 1 and 2 alike).
4. ``lava.magma.runtime.message_infrastructure.multiprocessing`` calls ``multiprocessing.set_start_method('fork')``
   when imported, which raises ``RuntimeError: context has already been set`` once anything in the process has
   fixed the start method -- numba's parallel backend does (``get_start_method()``), so a Lava run after a
   loihi-sim run failed. While that module is imported, a request for the method already in force is a no-op
   (any other request still raises).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import types

from snnc.errors import SnncError

#: What to run when Lava is missing (the Makefile target installs both wheels).
INSTALL_HINT = ("Lava is not installed: run `make setup-lava` (pip install --no-deps --ignore-requires-python "
                "lava-nc==0.10.0 lava-dl==0.6.0, then pip install -e '.[lava]')")


class LavaNotInstalledError(SnncError):
    """lava-nc (or lava-dl for netx) cannot be imported."""


_done = {"nc": False, "dl": False}


def _patch_var_model() -> None:
    if "lava.magma.compiler.var_model" in sys.modules:
        return
    original = dataclasses.dataclass

    def dataclass(cls=None, /, **kw):
        def wrap(c):
            if c.__name__ == "ByteEncoder" and c.__module__ == "lava.magma.compiler.var_model":
                kw2 = dict(kw, unsafe_hash=True)
                return original(c, **kw2)
            return original(c, **kw)
        return wrap if cls is None else wrap(cls)

    dataclasses.dataclass = dataclass
    try:
        importlib.import_module("lava.magma.compiler.var_model")
    finally:
        dataclasses.dataclass = original


def _reshape_to(shape):
    """``x -> np.reshape(x, shape)``, the shape passed positionally (numpy 2 has no ``newshape``)."""
    import functools

    import numpy as np

    def reshape(x, shape=tuple(shape)):
        return np.reshape(x, shape)
    return functools.partial(reshape)


def _patch_reshape_port() -> None:
    from lava.magma.core.process.ports import ports

    port = ports.ReshapePort
    if getattr(port, "_snnc_patched", False):
        return
    port.get_transform_func_fwd = lambda self: _reshape_to(self.shape)
    port.get_transform_func_bwd = lambda self: _reshape_to(self.old_shape)
    port._snnc_patched = True


def _import_message_infrastructure() -> None:
    name = "lava.magma.runtime.message_infrastructure.multiprocessing"
    if name in sys.modules:
        return
    import multiprocessing
    original = multiprocessing.set_start_method

    def set_start_method(method, force=False):
        if not force and multiprocessing.get_start_method(allow_none=True) == method:
            return
        original(method, force=force)

    multiprocessing.set_start_method = set_start_method
    try:
        importlib.import_module(name)
    finally:
        multiprocessing.set_start_method = original


def import_lava_nc() -> None:
    """Make ``lava`` (lava-nc) importable and runnable on numpy 2 (module docstring). Raises
    LavaNotInstalledError."""
    if _done["nc"]:
        return
    try:
        found = importlib.util.find_spec("lava.magma.compiler.var_model") is not None
    except ImportError:
        found = False
    if not found:
        raise LavaNotInstalledError(INSTALL_HINT)
    _patch_var_model()
    _import_message_infrastructure()
    _patch_reshape_port()
    _done["nc"] = True


def import_netx():
    """Return ``lava.lib.dl.netx.hdf5`` (lava-dl). Raises LavaNotInstalledError."""
    import_lava_nc()
    if not _done["dl"]:
        name = "lava.lib.dl.slayer.object_detection"
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__doc__ = "placeholder set by snnc.backends.lava.compat: object detection needs cv2/torchvision"
            sys.modules[name] = stub
        _done["dl"] = True
    try:
        return importlib.import_module("lava.lib.dl.netx.hdf5")
    except ImportError as e:
        raise LavaNotInstalledError(f"{INSTALL_HINT} ({e})") from None


def lava_available(netx: bool = False) -> bool:
    """True when lava-nc (and, with ``netx``, lava-dl) can be imported."""
    try:
        import_netx() if netx else import_lava_nc()
        return True
    except LavaNotInstalledError:
        return False
