"""Packaging: every module folder is declared (a built wheel holds it), shipped files are package
data, the source checkout works on PYTHONPATH, and the README's Python snippet runs from any folder.

The full check (build a wheel, install it in a fresh virtual environment, compile the bundled model
from outside the repository) is ``scripts/check-wheel.sh``, run by ``make test`` after the suite.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _setuptools():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_module_folder_is_a_declared_package():
    st = _setuptools()
    declared = set(st["packages"])
    dirs = st["package-dir"]
    found = {}
    for top, pkg in (("snnc", "snnc"), ("passes", "snnc.passes"), ("backends", "snnc.backends"),
                     ("models", "snnc.models")):
        for d in sorted((ROOT / top).rglob("*")):
            if d.is_dir() and any(d.glob("*.py")) and "__pycache__" not in d.parts:
                rel = d.relative_to(ROOT / top)
                found[".".join((pkg,) + rel.parts)] = d
        found[pkg] = ROOT / top
    assert set(found) <= declared, f"undeclared packages: {sorted(set(found) - declared)}"
    for name, d in found.items():
        assert (d / "__init__.py").is_file(), f"{d} has no __init__.py"
        parts = name.split(".")
        # the folder a package is taken from: its own package-dir entry, or its parent's + its name
        for i in range(len(parts), 0, -1):
            base = ".".join(parts[:i])
            if base in dirs:
                src = Path(dirs[base]).joinpath(*parts[i:])
                break
        assert (ROOT / src).resolve() == d.resolve(), (name, src, d)


def test_shipped_files_are_package_data():
    data = _setuptools()["package-data"]
    assert "*.pt" in data["snnc.models"] and "*.md" in data["snnc.models"] and "*.toml" in data["snnc.targets"]
    import snnc.models
    for name in snnc.models.BUNDLED:
        assert snnc.models.path(name).is_file()


def test_source_checkout_on_pythonpath(tmp_path):
    """``PYTHONPATH=<repo>`` resolves snnc.passes/backends/models to the checkout's folders."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in "
            "getattr(f, '__module__', '') and '__editable__' not in getattr(f, '__name__', '')]; "
            "import snnc.passes, snnc.backends.loihi.sim, snnc.models; "
            "print(snnc.passes.__file__); print(snnc.models.path('fmnist_cnn'))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(ROOT / "passes") in r.stdout


def test_readme_python_snippet_runs_from_any_folder(fmnist, tmp_path):
    text = (ROOT / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "compiled accuracy" in b)
    r = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"compiled accuracy ([0-9.]+)", r.stdout).group(1))
    assert acc > 0.8
