import gzip
import struct

import numpy as np
import pytest
import torch

from snnc import data as D
from snnc.neurons import CubaLIF, Integrator, run_float


def test_cubalif_lif_dynamics_reset_zero():
    n = CubaLIF(tau_syn=1e-3, tau_mem=2e-3, threshold=1.0, dt=1e-3)  # alpha 0, beta 0.5
    x = torch.tensor([[0.6]])
    out = run_float(n, x, 4)[:, 0, 0].tolist()
    # v: 0.6, 0.9, 1.05 -> spike, reset 0, 0.6
    assert out == [0.0, 0.0, 1.0, 0.0]


def test_cubalif_strict_threshold_and_subtract_reset():
    n = CubaLIF(tau_syn=1e-3, tau_mem=1e9, threshold=1.0, dt=1e-3, reset="subtract")  # beta ~ 1
    out = run_float(n, torch.tensor([[0.5]]), 4)[:, 0, 0].tolist()
    # v = 0.5, 1.0 (not > 1: no spike), 1.5 -> spike, v 0.5, 1.0
    assert out == [0.0, 0.0, 1.0, 0.0]


def test_cubalif_current_memory():
    n = CubaLIF(tau_syn=2e-3, tau_mem=1e9, threshold=10.0, dt=1e-3)  # alpha 0.5
    run_float(n, torch.tensor([[1.0]]), 3)  # run_float resets the module (itself included) afterwards
    assert n.i is None
    n(torch.tensor([[1.0]]))
    n(torch.tensor([[1.0]]))
    n(torch.tensor([[0.0]]))
    assert float(n.i) == pytest.approx(0.75)


def test_cubalif_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reset"):
        CubaLIF(reset="hard")
    with pytest.raises(ValueError, match="tau_mem"):
        CubaLIF(tau_mem=1e-4, dt=1e-3)


def test_integrator_sums():
    out = run_float(Integrator(), torch.tensor([[1.0, -2.0]]), 3)
    assert out[-1].tolist() == [[3.0, -6.0]]


def _write_idx(path, arr, code=0x08):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


def test_read_idx_roundtrip_and_errors(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="not an IDX"):
        D.read_idx(tmp_path / "bad")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00\x01")
    with pytest.raises(ValueError, match="truncated"):
        D.read_idx(tmp_path / "short.gz")


def test_fashion_mnist_from_data_dir(tmp_path):
    for split, n in (("train", 5), ("t10k", 3)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.full((n, 28, 28), 255, np.uint8))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8))
    x, y = D.load_fashion_mnist("test", data_dir=tmp_path)
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.float32 and float(x.max()) == 1.0
    assert y.tolist() == [0, 1, 2]


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "envdir"))
    with pytest.raises(D.DataNotFoundError) as e:
        D.find_fashion_mnist()
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "SNNC_DATA_DIR" in msg and "envdir" in msg
    with pytest.raises(D.DataNotFoundError, match="--data-dir .*empty lacks t10k-images"):
        D.find_fashion_mnist(tmp_path / "empty")  # an explicit folder: no silent fall-back


def test_digits_split():
    xtr, ytr = D.load_digits("train")
    xte, yte = D.load_digits("test")
    assert xtr.shape == (1500, 1, 8, 8) and xte.shape == (297, 1, 8, 8)
    assert 0 <= xte.min() and xte.max() <= 1
