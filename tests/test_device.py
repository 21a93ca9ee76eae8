"""``--device auto|cpu|cuda`` (issue 17): CUDA when present, refused in one line when asked for and absent, and
loihi-sim bit-identical on CUDA and CPU (outputs, spike and activity counts, overflow counters). The CUDA
tests run where torch sees a GPU and skip with the reason elsewhere."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snnc.backends.loihi.sim import load_program
from snnc.cli import main
from snnc.driver.finetune import finetune
from snnc.errors import UsageError
from snnc.ir import readout as R
from snnc.ir.device import resolve
from snnc.passes import PassContext, Pipeline

from conftest import digits_batch

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = (f"no CUDA device: torch {torch.__version__} "
           + ("is a CPU-only build" if torch.version.cuda is None else f"(CUDA {torch.version.cuda}) sees no GPU"))


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def test_resolve_names_and_refusals():
    assert resolve("cpu") == torch.device("cpu")
    assert resolve("auto") == torch.device("cuda" if HAS_CUDA else "cpu") == resolve(None)
    with pytest.raises(UsageError, match="unknown device; choose one of auto, cpu, cuda"):
        resolve("tpu")
    if not HAS_CUDA:
        with pytest.raises(UsageError, match="--device cuda: torch .* has no usable CUDA device"):
            resolve("cuda")


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present: the refusal is for machines without it")
def test_cuda_refused_in_one_line_without_it(tmp_path):
    r = run("compile", "fmnist_cnn", "-o", tmp_path / "o", "--data", "digits", "--device", "cuda")
    assert r.exit_code == 1 and "has no usable CUDA device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cpu_device_is_the_default_result(tmp_path, tiny):
    torch.save(tiny, tmp_path / "t.pt")
    common = ["--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4, "--data", "digits", "--limit", 60, "--json"]
    a = run("compile", tmp_path / "t.pt", "-o", tmp_path / "a", *common, "--device", "cpu")
    assert a.exit_code == 0, a.output
    ra = json.loads(a.stdout)
    assert ra["accuracy"]["device"] == "cpu"
    if not HAS_CUDA:  # auto is the CPU here: the same report
        b = run("compile", tmp_path / "t.pt", "-o", tmp_path / "b", *common)
        assert json.loads(b.stdout)["accuracy"] == ra["accuracy"]


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_loihi_sim_bit_identical_on_cuda(tmp_path, fmnist):
    """The bundled model on 300 Fashion-MNIST test images (direct input: host bias + integer steps) and the
    same program's spike counts: every output, spike and activity count and overflow counter equal."""
    x = fmnist[2]
    r = run("compile", "fmnist_cnn", "-o", tmp_path / "o", "--data", "fashion-mnist", "--limit", 64, "--device", "cpu")
    assert r.exit_code == 0, r.output
    prog = load_program(tmp_path / "o")
    cpu = prog.run(x[:300], batch_size=128, device="cpu")
    gpu = prog.run(x[:300], batch_size=128, device="cuda")
    for k in cpu.outputs:
        assert torch.equal(cpu.outputs[k], gpu.outputs[k])
    for k in cpu.spikes:
        assert torch.equal(cpu.spikes[k], gpu.spikes[k]) and torch.equal(cpu.active[k], gpu.active[k])
    assert cpu.overflow == gpu.overflow and cpu.max_abs_input == gpu.max_abs_input
    assert cpu.host_bias_clipped == gpu.host_bias_clipped
    rec_c, rec_g = prog.run(x[:16], record=True, device="cpu"), prog.run(x[:16], record=True, device="cuda")
    for g in rec_c.trace:
        for key in ("u", "v", "spikes"):
            assert torch.equal(rec_c.trace[g][key], rec_g.trace[g][key]), (g, key)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_spike_input_program_bit_identical_on_cuda(tmp_path, tiny):
    torch.save(tiny, tmp_path / "t.pt")
    r = run("compile", tmp_path / "t.pt", "-o", tmp_path / "o", "--trust-pickle", "--input-shape", "1,8,8",
            "--num-steps", 6, "--input-encoding", "spikes", "--data", "digits", "--encode", "rate", "--limit", 40)
    assert r.exit_code == 0, r.output
    prog = load_program(tmp_path / "o")
    spikes = (np.random.default_rng(0).random((6, 200, 1, 8, 8)) < 0.3).astype(np.float32)
    a, b = prog.run(spikes, device="cpu"), prog.run(spikes, device="cuda")
    assert all(torch.equal(a.outputs[k], b.outputs[k]) for k in a.outputs)
    assert all(torch.equal(a.spikes[k], b.spikes[k]) for k in a.spikes)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_float_reference_and_finetune_on_cuda(tiny):
    from snnc.frontends import load_model
    g = Pipeline("fold_bn").run(load_model(tiny, input_shape=(1, 8, 8), num_steps=4)[0], PassContext(num_steps=4))
    x = digits_batch(256)
    y = np.arange(256) % 10
    a = R.scores(g, x, 4, device="cpu")
    b = R.scores(g, x, 4, device="cuda")
    assert np.allclose(a, b, atol=1e-9) and (a.argmax(1) == b.argmax(1)).all()
    model, hist = finetune(g, x, y, 4, epochs=1, batch_size=64, device="cuda")
    assert next(model.parameters()).device.type == "cpu" and len(hist) == 1
