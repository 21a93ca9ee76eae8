"""``network.net`` as its users run it: lava-dl's own netx loader (``lava.lib.dl.netx.hdf5.Network``) in a separate
Lava process that imports Lava, lava-dl and only snnc's standalone import fixes (``examples/netx_run.py``), on 20
Fashion-MNIST test images. Every layer's spikes and voltage, the readout's included, equal loihi-sim's at every step
(issue 20). Skips without Lava (``make setup-lava``) or Fashion-MNIST.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snnc.backends.lava.compat import lava_available

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "examples" / "netx_run.py"
IMAGES = 20
needs_lava = pytest.mark.skipif(not lava_available(netx=True), reason="lava-nc/lava-dl not installed (make setup-lava)")


def _netx_equals_loihi_sim(out: Path, x: np.ndarray, tmp_path: Path) -> dict:
    """Run ``out/network.net`` in lava-dl (subprocess) and loihi-sim on ``x``; assert equality at every step of every
    layer; returns loihi-sim's totals for the caller's own checks."""
    from snnc.backends.lava.netx import netx_inputs
    from snnc.backends.loihi.sim import load_program

    prog = load_program(out)
    np.savez(tmp_path / "in.npz", **netx_inputs(prog, x))
    r = subprocess.run([sys.executable, str(RUNNER), str(out / "network.net"), str(tmp_path / "in.npz"),
                        str(tmp_path / "trace.npz")], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    got = np.load(tmp_path / "trace.npz")
    assert sorted(got["snnc_modules"].tolist()) == ["snnc", "snnc.backends", "snnc.backends.lava",
                                                    "snnc.backends.lava.compat", "snnc.errors"]
    ref = prog.run(torch.as_tensor(x), record=True)
    totals = {}
    for k, g in enumerate(prog.config["groups"]):
        for key, rk in (("s", "spikes"), ("v", "v")):
            a = np.asarray(ref.trace[g["name"]][rk]).astype(np.int64)      # [N, L, *shape], snnc's (C, H, W)
            b = got[f"{key}{k}"]                                          # [N, L, *shape], Lava's (W, H, C)
            if b.ndim == 5:
                b = b.transpose(0, 1, 4, 3, 2)
            assert b.shape == a.shape, (g["name"], key, a.shape, b.shape)
            assert np.array_equal(a, b), (g["name"], key, int((a != b).sum()), "values differ of", a.size)
            totals[(g["name"], key)] = int(np.abs(a).sum())
    out_v = ref.outputs[prog.config["outputs"][0]["name"]].numpy()
    read = prog.config["outputs"][0]["read_step"]
    last = got[f"v{len(prog.config['groups']) - 1}"][:, read]
    assert np.array_equal(out_v.reshape(last.shape), last)
    return totals


@needs_lava
@pytest.mark.parametrize("case", ["bundled", "pruned_4bit"])
def test_network_net_runs_in_lava_dl_exactly(case, fmnist, tmp_path):
    """The bundled model, and the same pruned to half its channels with 4-bit weights, compiled with --target lava:
    lava-dl loads network.net (netx's input, conv, flatten and dense layers) and runs it exactly as loihi-sim."""
    import h5py

    import snnc
    from snnc.data import load_fashion_mnist
    extra = {} if case == "bundled" else {"passes": "fold_bn,prune_channels:ratio=0.5,quantize", "weight_bits": 4}
    out = tmp_path / "o"
    rep = snnc.compile("fmnist_cnn", out_dir=out, target="lava", data="fashion-mnist", limit=IMAGES, **extra)
    assert rep["export"]["netx"]["written"] and rep["export"]["netx"]["exact"]
    with h5py.File(out / "network.net") as f:
        types = [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "flatten", "dense"], types
        assert f["layer/1/bias"].ndim == 1 and f["layer/1/bias"].shape[0] == f["layer/1/shape"][0]  # per channel
    x, _ = load_fashion_mnist("test", limit=IMAGES)
    totals = _netx_equals_loihi_sim(out, x, tmp_path)
    assert totals[("lif1", "s")] > 0 and totals[("lif2", "s")] > 0 and totals[("readout", "v")] > 0
    if case == "pruned_4bit":
        assert rep["quantization"]["weight_bits"] == 4 and rep["pruning"]["after"]["synapses"] < \
            rep["pruning"]["before"]["synapses"]


@needs_lava
def test_the_runner_imports_no_snnc_beyond_the_fixes():
    """``import snnc.backends.lava.compat`` in a fresh process loads snnc's Lava fixes and nothing else of snnc (no
    torch): a user's own Lava process can use them."""
    r = subprocess.run([sys.executable, "-c", "import sys, snnc.backends.lava.compat as c; c.import_lava_nc(); "
                        "print(sorted(m for m in sys.modules if m.startswith('snnc')), 'torch' in sys.modules)"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("] ")[1].strip() == "False" and "'snnc.backends.lava.engine'" not in r.stdout


def test_write_netx_refuses_fields_off_netx_grid(tmp_path):
    """A program compiled for plain loihi-sim (biases enabled at each group's offset, bias exponents below 6) is
    refused by the netx writer with the group and field named, and no file is left."""
    from snnc.backends.lava.engine import LavaMappingError
    from snnc.backends.lava.netx import write_netx
    from snnc.backends.loihi.sim import load_program
    bundled = ROOT / "models" / "fmnist_cnn.pt"
    if not bundled.is_file():
        pytest.skip("bundled model missing")
    import snnc
    snnc.compile("fmnist_cnn", out_dir=tmp_path / "o", limit=8, data="fashion-mnist") if _has_fmnist() else \
        pytest.skip("Fashion-MNIST not installed")
    prog = load_program(tmp_path / "o")
    with pytest.raises(LavaMappingError, match=r"group '(lif2|readout)': (bias|host bias)"):
        write_netx(tmp_path / "n.net", prog.config, prog.arrays)
    assert not (tmp_path / "n.net").exists()


def _has_fmnist() -> bool:
    from snnc.data import DataNotFoundError, find_fashion_mnist
    try:
        find_fashion_mnist()
        return True
    except DataNotFoundError:
        return False


@needs_lava
def test_spike_input_flattened_into_dense_runs_in_lava_dl(tmp_path):
    """Spike input (1, 4, 4) -> Flatten -> Affine -> CubaLIF -> Affine -> LI readout, compiled with --target lava:
    netx has no layer to flatten the network's input (net.inp is the first dense layer's flat C-order vector), so
    the file has no flatten layer there and netx_inputs flattens the spikes; lava-dl's run equals loihi-sim's."""
    import h5py
    import nir

    import snnc
    rng = np.random.default_rng(3)

    def lif(n, th):
        return nir.CubaLIF(tau_syn=np.full(n, 2e-3, np.float32), tau_mem=np.full(n, 5e-3, np.float32),
                           r=np.full(n, 5.0, np.float32), v_leak=np.zeros(n, np.float32),
                           v_reset=np.zeros(n, np.float32), v_threshold=np.full(n, th, np.float32),
                           w_in=np.ones(n, np.float32))
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1, 4, 4])), nir.Flatten(input_type={"input": np.array([1, 4, 4])}, start_dim=0),
        nir.Affine(weight=(2 * rng.standard_normal((12, 16)) + 0.5).astype(np.float32),
                   bias=(0.3 * rng.standard_normal(12)).astype(np.float32)),
        lif(12, 1.0),
        nir.Affine(weight=rng.standard_normal((5, 12)).astype(np.float32), bias=np.zeros(5, np.float32)),
        nir.LI(tau=np.full(5, 1e-2, np.float32), r=np.ones(5, np.float32), v_leak=np.zeros(5, np.float32)))
    out = tmp_path / "o"
    snnc.compile(g, num_steps=8, out_dir=out, target="lava", dt=1e-3)
    with h5py.File(out / "network.net") as f:
        assert [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))] == ["input", "dense", "dense"]
    x = (rng.random((8, 6, 1, 4, 4)) < 0.4).astype(np.float32)
    totals = _netx_equals_loihi_sim(out, x, tmp_path)
    assert sum(v for (g_, k), v in totals.items() if k == "s") > 0
