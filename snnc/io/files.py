"""Files: the output folder written atomically, and NIR files read with a time bound.

Output folders
--------------
:func:`write_output_folder` takes every file's bytes (made in memory first: HDF5 and
PNG writers never touch the disk, so a full disk or a read-only place is one clean
``OSError`` from a plain write), writes them into a temporary sibling
``.OUT.tmp-<pid>-<random>`` and renames it into place. A previous output is first
moved aside into ``.OUT.old-<pid>-<random>/x`` and removed after the swap (put back if
the swap fails). A folder is only ever replaced when it is empty, or when ``force``
is given and it is a previous snnc output (it holds the marker file
:data:`MARKER`, or, for outputs of snnc 0.1.0 that predate the marker, only the known
output files with a ``config.json`` of snnc's format) that holds none of the inputs.

A run killed at any point (SIGKILL included) leaves at worst such hidden siblings;
:func:`recover_stale` (called before every write) removes temporary folders of dead
processes and, if OUT is missing while a dead process's ``.OUT.old-*`` holds the
previous output, puts that output back.

NIR files
---------
:func:`read_nir` reads a ``.nir`` (HDF5) file in a forked child process and gives up
after a time bound, because a corrupt HDF5 file can make the HDF5 library loop forever
(uninterruptibly, in C code).
"""
from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
from pathlib import Path

from snnc.errors import SnncError

#: Marker file in every output folder snnc writes (JSON: format, version, files).
MARKER = ".snnc-output"
#: Files of an snnc 0.1.0 output folder (which had no marker).
LEGACY_FILES = {"config.json", "weights.npz", "graph.nir", "report.json", "cores.png"}


class OutputError(SnncError):
    """The output folder cannot be written or must not be replaced; nothing was changed."""


class OutputExistsError(OutputError, FileExistsError):
    """OUT exists, is not empty, and may not be replaced."""


class WrittenThenInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) arrived after the new output was in place: OUT holds the complete new output
    (the previous one is removed); the command line says so instead of "nothing was changed"."""

    def __init__(self, out_dir, interrupt: BaseException | None = None):
        super().__init__(f"{out_dir} was written completely before the interrupt")
        self.out_dir, self.interrupt = out_dir, interrupt


# --------------------------------------------------------------------------- stale siblings

def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sibling_pid(name: str, prefix: str) -> int | None:
    rest = name[len(prefix):]
    pid, _, _ = rest.partition("-")
    return int(pid) if pid.isdigit() else None


def recover_stale(out_dir: Path) -> list[str]:
    """Clean up after killed runs that wrote ``out_dir``; returns what was done (one line each).

    ``.OUT.tmp-<pid>-*`` of a dead pid is removed. ``.OUT.old-<pid>-*`` of a dead pid: its
    ``x`` is put back as OUT when OUT is missing, else the folder is removed.
    """
    parent = out_dir.parent
    done = []
    if not parent.is_dir():
        return done
    tmp_prefix, old_prefix = f".{out_dir.name}.tmp-", f".{out_dir.name}.old-"
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return done
    for e in entries:
        for prefix, kind in ((tmp_prefix, "tmp"), (old_prefix, "old")):
            if not e.name.startswith(prefix) or not e.is_dir() or e.is_symlink():
                continue
            pid = _sibling_pid(e.name, prefix)
            if pid is None or _pid_alive(pid):
                continue
            if kind == "old" and (e / "x").is_dir() and not out_dir.exists():
                os.replace(e / "x", out_dir)
                done.append(f"restored the previous output {out_dir} from {e.name} (a killed run had moved it)")
            shutil.rmtree(e, ignore_errors=True)
            if kind == "tmp":
                done.append(f"removed {e.name}, left by a killed run")
    return done


# --------------------------------------------------------------------------- output folder

def is_snnc_output(folder: Path) -> bool:
    """True for a folder snnc wrote (marker file, or a marker-less snnc 0.1.0 output)."""
    marker = folder / MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text()).get("format") == "snnc-output"
        except (OSError, ValueError, AttributeError):
            return False
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    if not names or not names <= LEGACY_FILES or "config.json" not in names:
        return False
    try:
        return str(json.loads((folder / "config.json").read_text()).get("format", "")).startswith("snnc-")
    except (OSError, ValueError, AttributeError):
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def check_output_target(out_dir, force: bool, inputs=()) -> Path:
    """Decide, before any work, whether ``out_dir`` may be written. Returns it as a Path.

    Args:
        inputs: paths the run reads (model, data folder, target file, ...); none may lie
            inside ``out_dir`` (``--force`` would delete it).

    Raises:
        OutputExistsError: OUT exists, is not empty, and is not a replaceable previous snnc output.
        OutputError: OUT is a file, its parent is a file or not writable, OUT holds an input,
            OUT is the current folder or one of its parents.
    """
    out_dir = Path(out_dir)
    if str(out_dir) in ("", "."):
        out_dir = Path(".")
    for p in [out_dir, *out_dir.absolute().parents]:
        if p.exists() and not p.is_dir():
            raise OutputError(f"{out_dir}: {p} is a file, not a folder")
    for inp in inputs:
        if inp is not None and Path(inp).exists() and _inside(Path(inp), out_dir):
            raise OutputError(f"{out_dir} holds an input of this run ({inp}); choose another output folder")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(f"{out_dir} exists and is not a folder")
        if _inside(Path.cwd(), out_dir):
            raise OutputError(f"{out_dir} is the current folder or holds it; choose another output folder")
        try:
            empty = not any(out_dir.iterdir())
        except OSError as e:
            raise OutputError(f"{out_dir}: cannot be read ({e.strerror or e})") from None
        if not empty:
            if not force:
                raise OutputExistsError(f"{out_dir} exists and is not empty; pass --force to replace a previous "
                                        "snnc output")
            if not is_snnc_output(out_dir):
                raise OutputExistsError(f"{out_dir} is not a previous snnc output (no {MARKER} marker); --force "
                                        "replaces only snnc's own outputs")
    parent = out_dir.absolute().parent
    existing = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: cannot create files in {existing} (permission denied)")
    return out_dir


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_output_folder(out_dir, files: dict[str, bytes], force: bool, inputs=()) -> list[str]:
    """Write ``files`` (name -> bytes) as the folder ``out_dir``, atomically (see module docstring).

    Returns the lines of :func:`recover_stale` (what was cleaned up first).

    Raises:
        OutputError, OutputExistsError: as :func:`check_output_target`, or OUT appeared
            (non-empty) while the run was working.
        OSError is never raised raw: a failed write (full disk, permissions) becomes
            ``OutputError`` naming the file and the reason; the previous output is intact
            and no temporary folder is left.
    """
    out_dir = Path(out_dir)
    notes = recover_stale(out_dir.absolute())
    out_dir = check_output_target(out_dir, force, inputs)
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot create {parent} ({e.strerror or e})") from None
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = parent / f".{out_dir.name}.tmp-{tag}"
    try:
        os.mkdir(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        marker = {"format": "snnc-output", "version": 1, "files": sorted(files)}
        for name in sorted(files):
            _write_bytes(tmp / name, files[name])
        _write_bytes(tmp / MARKER, (json.dumps(marker, sort_keys=True) + "\n").encode())
        _swap_into_place(tmp, out_dir, parent, tag, force)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EFBIG: "file too large"}.get(e.errno, e.strerror or str(e))
        raise OutputError(f"{out_dir}: writing the output failed ({what}); nothing was changed") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return notes


def _swap_into_place(tmp: Path, out_dir: Path, parent: Path, tag: str, force: bool) -> None:
    if out_dir.exists():
        # checked again: it may have appeared (or been filled) while we worked
        if any(out_dir.iterdir()) and not (force and is_snnc_output(out_dir)):
            raise OutputExistsError(f"{out_dir} appeared (not empty) while compiling; nothing was written")
        old = parent / f".{out_dir.name}.old-{tag}"
        os.mkdir(old)
        try:
            os.replace(out_dir, old / "x")
        except BaseException:  # OUT not moved (read-only, another device, Ctrl-C): no empty sibling left
            if (old / "x").exists():  # moved after all (interrupted right after the rename): put it back
                os.replace(old / "x", out_dir)
            shutil.rmtree(old, ignore_errors=True)
            raise
        try:
            os.replace(tmp, out_dir)
        except BaseException as e:
            if tmp.exists() or not out_dir.exists():  # the new output is not in place: put the previous one back
                os.replace(old / "x", out_dir)
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)  # the rename completed before the interrupt
            if isinstance(e, KeyboardInterrupt):
                raise WrittenThenInterrupted(out_dir, e) from None
            raise
        try:
            shutil.rmtree(old, ignore_errors=True)
        except KeyboardInterrupt as e:
            shutil.rmtree(old, ignore_errors=True)
            raise WrittenThenInterrupted(out_dir, e) from None
    else:
        try:
            os.replace(tmp, out_dir)
        except KeyboardInterrupt as e:
            if tmp.exists():
                raise
            raise WrittenThenInterrupted(out_dir, e) from None


def nir_bytes(graph) -> bytes:
    """A NIR graph serialised with ``nir.write`` into memory (HDF5 bytes)."""
    import nir

    buf = io.BytesIO()
    nir.write(buf, graph)
    return buf.getvalue()


# --------------------------------------------------------------------------- NIR reading

def _nir_child(conn, data: bytes) -> None:  # pragma: no cover - runs in the forked child
    try:
        import nir
        g = nir.read(io.BytesIO(data), type_check=False)  # read_nir's docstring says why
        conn.send(("ok", g))
    except BaseException as e:  # report every failure as text
        conn.send(("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
    finally:
        conn.close()


def _names_node(graph, name: str) -> bool:
    """``name`` is a node of ``graph`` or a port of one of its subgraphs (``"g.bi"``: node ``bi`` of subgraph ``g``,
    NIR's way to wire into a subgraph)."""
    if name in graph.nodes:
        return True
    parent, _, rest = name.partition(".")
    sub = graph.nodes.get(parent)
    return bool(rest) and hasattr(sub, "nodes") and _names_node(sub, rest)


def read_nir(path, timeout_s: float | None = None):
    """``nir.read`` of ``path`` in a forked child, killed after ``timeout_s`` seconds
    (default: 30 s + 1 s per MB). NIR's own type check is off: nir 1.0's ``Conv2d`` type ignores
    ``groups``, so it refuses every grouped (depthwise) convolution, e.g. the OR-pool snnc writes for a
    max-pool of spikes; the loaders check every edge's shape with :func:`snnc.ir.infer_shapes` instead,
    which knows groups.

    Raises:
        ValueError: the file cannot be read, is not NIR, or reading did not finish in time.
    """
    import multiprocessing as mp

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SnncError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise SnncError(f"{path}: cannot be read as NIR (not an HDF5 file)")
    if timeout_s is None:
        timeout_s = 30.0 + len(data) / 1e6
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_nir_child, args=(send, data), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout_s):
            raise SnncError(f"{path}: cannot be read as NIR (reading did not finish within {timeout_s:.0f} s; "
                             "a corrupt HDF5 file?)")
        try:
            status, payload = recv.recv()
        except (EOFError, OSError):
            raise SnncError(f"{path}: cannot be read as NIR (the reader crashed; a corrupt HDF5 file?)") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        recv.close()
    if status != "ok":
        raise SnncError(f"{path}: cannot be read as NIR ({payload})")
    missing = sorted({n for e in payload.edges for n in e if not _names_node(payload, n)})
    if missing:  # nir.read's type check used to catch these; they must not reach the loaders as KeyErrors
        raise SnncError(f"{path}: cannot be read as NIR (edges name node(s) the file does not have: "
                        f"{', '.join(map(repr, missing[:5]))})")
    return payload
