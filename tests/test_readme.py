"""README.md's commands and Python snippets, executed verbatim (issue 19), in order, from a temporary folder
outside the repository, as a newcomer would paste them.

Run: every fenced block that is ``python``, or whose lines are all ``snnc ...`` commands. Not run: the
``make run`` / ``make test`` blocks (they set up this checkout; CI runs ``make test`` itself, and
``make run`` is ``snnc compile models/fmnist_cnn.pt ...`` on the same data as the first command) and the
layout tree. The test fails if README has no such block left, so a renamed or reformatted block cannot
silently drop out.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"


def blocks():
    """``(language, text)`` of each fenced block of README.md."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README.read_text(),
                                                                  re.S | re.M)]


def _commands(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return bool(lines) and all(ln.startswith("snnc ") for ln in lines)


def runnable():
    return [("python" if lang == "python" else "shell", text) for lang, text in blocks()
            if lang == "python" or _commands(text)]


def test_readme_has_the_blocks_this_test_runs():
    kinds = [k for k, _ in runnable()]
    assert kinds.count("shell") >= 1 and kinds.count("python") >= 2, kinds
    rest = [text for lang, text in blocks() if not (lang == "python" or _commands(text))]
    assert all(text.split()[0] in ("make", "snnc/") for text in rest), rest  # the make blocks, the layout tree


def test_readme_runs_verbatim_from_a_temporary_folder(fmnist, tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    assert not tmp_path.resolve().is_relative_to(ROOT.resolve())
    for i, (kind, text) in enumerate(runnable()):
        if kind == "python":
            r = subprocess.run([sys.executable, "-c", text], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=900)
        else:
            r = subprocess.run(["bash", "-e", "-c", text], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=900)
        assert r.returncode == 0, f"README block {i} ({kind}) failed:\n{text}\n{r.stderr[-3000:]}"
    assert (tmp_path / "out" / "fmnist" / "report.json").is_file()
    assert (tmp_path / "out" / "api" / "report.json").is_file()
