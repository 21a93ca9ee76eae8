"""Issue 19, "Bad input that still gets through": each case the audit found is a test with its exit code
(1 refused input, 2 usage error; snnc/cli.py's docstring) and its one-line message, and loses nothing.
"""
from __future__ import annotations

import errno
import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snnc.cli import main

sys.path.insert(0, os.path.dirname(__file__))
from test_hardening import assert_one_line_error, make_ckpt, snapshot  # noqa: E402

TINY = ["--data", "digits", "--epochs", "1", "--train-limit", "64", "--val-samples", "32", "--limit", "32",
        "--batch-size", "32"]


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stderr, r.stdout


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    return {"dir": d, "ckpt": make_ckpt(d / "small.pt"), "t6": make_ckpt(d / "t6.pt", config={"num_steps": 6})}


# ------------------------------------------------------------------ snnc finetune -o

def test_finetune_force_replaces_only_an_snnc_checkpoint(small, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    code, err, _ = cli("finetune", small["ckpt"], "-o", notes, "--force", *TINY)
    assert_one_line_error(code, err, "not an snnc checkpoint", "--force replaces only")
    assert notes.read_text() == "my notes"
    code, err, _ = cli("finetune", small["ckpt"], "-o", notes, *TINY)
    assert_one_line_error(code, err, "exists; pass --force")


def test_finetune_refuses_to_overwrite_its_own_input_or_the_data(small, tmp_path):
    before = small["ckpt"].read_bytes()
    code, err, _ = cli("finetune", small["ckpt"], "-o", small["ckpt"], "--force", *TINY)
    assert_one_line_error(code, err, "one of this run's inputs")
    assert small["ckpt"].read_bytes() == before
    data = tmp_path / "data"
    data.mkdir()
    labels = data / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(b"\x1f\x8b not really")
    code, err, _ = cli("finetune", small["ckpt"], "-o", labels, "--force", *TINY)
    assert code == 1 and labels.read_bytes() == b"\x1f\x8b not really", err


def test_finetune_force_replaces_an_earlier_checkpoint(small, tmp_path):
    out = tmp_path / "ft.pt"
    assert cli("finetune", small["ckpt"], "-o", out, *TINY)[0] == 0
    first = out.stat().st_mtime_ns
    code, err, _ = cli("finetune", small["ckpt"], "-o", out, "--force", "--seed", "1", *TINY)
    assert code == 0, err
    assert out.stat().st_mtime_ns != first
    assert [p.name for p in tmp_path.iterdir()] == ["ft.pt"]  # no temporary left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder (permissions do not bind)")
def test_finetune_into_a_read_only_folder_fails_before_training(small, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err, _ = cli("finetune", small["ckpt"], "-o", ro / "ft.pt", *TINY)
    finally:
        ro.chmod(0o755)
    assert_one_line_error(code, err, "cannot be written", "nothing was trained")
    assert list(ro.iterdir()) == []


def test_an_unwritable_place_is_refused_before_training(small, tmp_path, monkeypatch):
    """The write probe (the same check as the real read-only folder above, which root cannot run)."""
    import snnc.driver.finetune as FT

    def refuse(prefix="", dir=None, **k):
        raise PermissionError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(FT.tempfile, "mkstemp", refuse)
    trained = []
    monkeypatch.setattr(FT, "finetune", lambda *a, **k: trained.append(1))
    code, err, _ = cli("finetune", small["ckpt"], "-o", tmp_path / "ft.pt", *TINY)
    assert_one_line_error(code, err, "cannot be written", "Read-only file system", "nothing was trained")
    assert not trained and list(tmp_path.iterdir()) == []


def test_finetune_write_failure_is_one_line_and_leaves_nothing(small, tmp_path, monkeypatch):
    """torch.save reports an unwritable place as a RuntimeError (not an OSError): one line, exit 1, no
    temporary file and no folder the run created."""
    import snnc.driver.finetune as FT

    def refuse(obj, f, *a, **k):
        raise RuntimeError(f"File {f} cannot be opened.")

    monkeypatch.setattr(FT.torch, "save", refuse)
    out = tmp_path / "new" / "deeper" / "ft.pt"
    code, err, _ = cli("finetune", small["ckpt"], "-o", out, *TINY)
    assert_one_line_error(code, err, "cannot be written", "nothing was written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (["--lr", "inf"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "-1"], "--lr"),
    (["--distill", "nan"], "--distill"), (["--synops", "inf"], "--synops"),
])
def test_non_finite_numbers_are_usage_errors(small, tmp_path, args, needle):
    code, err, _ = cli("finetune", small["ckpt"], "-o", tmp_path / "ft.pt", *args, *TINY)
    assert code == 2 and needle in err, err
    assert not (tmp_path / "ft.pt").exists()


def test_a_diverging_training_writes_no_checkpoint(small, tmp_path):
    code, err, _ = cli("finetune", small["ckpt"], "-o", tmp_path / "ft.pt", "--lr", "1e38", *TINY)
    assert_one_line_error(code, err, "lower the learning rate", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_finetune_api_refuses_a_non_finite_learning_rate(small):
    from snnc.driver.finetune import finetune
    from snnc.errors import SnncError
    from snnc.frontends import load_model
    g, _, _ = load_model(small["ckpt"])
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(SnncError, match="finite number"):
        finetune(g, x, np.zeros(4, np.int64), 4, lr=float("inf"))


def test_a_teacher_with_another_T_is_refused(small, tmp_path):
    code, err, _ = cli("finetune", small["ckpt"], "-o", tmp_path / "ft.pt", "--teacher", small["t6"],
                       "--distill", "0.5", *TINY)
    assert_one_line_error(code, err, "over T = 6", "over T = 4")


# ------------------------------------------------------------------ snnc compile

def test_budget_given_twice_is_a_usage_error(small, tmp_path):
    code, err, _ = cli("compile", small["ckpt"], "-o", tmp_path / "o", "--budget", "cores=1", "--budget=cores=200")
    assert code == 2 and "--budget given 2 times" in err, err
    assert not (tmp_path / "o").exists()
    code, err, _ = cli("compile", small["ckpt"], "-o", tmp_path / "a", f"-o{tmp_path / 'b'}")  # short, attached
    assert code == 2 and "--out given 2 times" in err, err
    code, _, out = cli("compile", "--help", "-o", "a", "-o", "b")
    assert code == 0 and "Usage" in out


def test_finetune_force_never_replaces_a_shipped_model_named_as_input(small, tmp_path, monkeypatch):
    """The model given by its shipped name (fmnist_cnn) is its file: -o on that file is refused."""
    from snnc.driver.finetune import check_checkpoint_target
    from snnc.errors import SnncError
    from snnc.frontends import resolve_model_path
    shipped = resolve_model_path("fmnist_cnn")
    with pytest.raises(SnncError, match="one of this run's inputs"):
        check_checkpoint_target(shipped, True, ["fmnist_cnn", None])


def test_inspect_dt_must_be_a_positive_finite_time(small):
    for bad in ("nan", "inf", "-1"):
        code, err, _ = cli("inspect", small["ckpt"], "--dt", bad)
        assert code == 2 and "--dt" in err, (bad, err)


def test_empty_event_data_is_refused(small, tmp_path):
    np.savez(tmp_path / "empty.npz", frames=np.zeros((0, 4, 1, 8, 8), np.float32), labels=np.zeros(0, np.int64))
    code, err, _ = cli("compile", small["ckpt"], "-o", tmp_path / "o", "--input-encoding", "spikes",
                       "--data", f"events:{tmp_path}/empty.npz")
    assert_one_line_error(code, err, "empty.npz", "holds no samples")
    assert not (tmp_path / "o").exists()


def test_encode_with_event_data_is_refused(small, tmp_path):
    code, err, _ = cli("compile", small["ckpt"], "-o", tmp_path / "o", "--encode", "rate",
                       "--data", f"events:{tmp_path}/ev.npz")
    assert_one_line_error(code, err, "--encode", "event data")


RANDOM_FACTORY = """
import torch.nn as nn
from snnc.neurons import CubaLIF, Integrator

def make_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), Integrator((10,)))
make_model.input_shape = (1, 8, 8)
make_model.num_steps = 4

def seeded():
    import torch
    torch.manual_seed(0)
    return make_model()

def leaves():
    import sys
    sys.exit(3)
"""


def test_factory_without_weights_that_returns_random_weights_is_refused(tmp_path):
    (tmp_path / "net.py").write_text(RANDOM_FACTORY)
    code, err, _ = cli("compile", f"{tmp_path}/net.py:make_model", "-o", tmp_path / "o")
    assert_one_line_error(code, err, "different weights on every call", "--weights")
    code, err, _ = cli("compile", f"{tmp_path}/net.py:seeded", "-o", tmp_path / "o2", "--input-shape", "1,8,8",
                       "--num-steps", "4")
    assert code == 0, err


def test_factory_calling_sys_exit_is_refused_in_one_line(tmp_path):
    (tmp_path / "net.py").write_text(RANDOM_FACTORY)
    code, err, _ = cli("compile", f"{tmp_path}/net.py:leaves", "-o", tmp_path / "o")
    assert_one_line_error(code, err, "leaves()", "sys.exit(3)")
    (tmp_path / "top.py").write_text("import sys\nsys.exit(3)\n")
    code, err, _ = cli("compile", f"{tmp_path}/top.py:make", "-o", tmp_path / "o")
    assert_one_line_error(code, err, "importing it called sys.exit(3)")


def test_accuracy_drop_is_the_last_warning_and_a_check(bundled, fmnist, tmp_path):
    """A cut that loses most of the accuracy (keep 5% of the channels, no repair) exits 0 but says so, last."""
    import json
    code, err, out = cli("compile", bundled, "-o", tmp_path / "o", "--data", "fashion-mnist", "--limit", "200",
                         "--passes", "fold_bn,prune_channels:ratio=0.05;repair=false,quantize")
    assert code == 0, err
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    drop = [c for c in rep["checks"] if c["check"] == "ACCURACY_DROP"]
    assert len(drop) == 1 and drop[0]["value"] < drop[0]["limit"]
    assert rep["accuracy"]["float"] - rep["accuracy"]["compiled"] > 0.10
    tail = " ".join(out.split()).split("accuracy on 200 samples")[-1]  # after the accuracy line: the last words
    assert tail.count("warning") == 1 and "[ACCURACY_DROP]" in tail and "--train-epochs" in tail, out


def test_no_accuracy_drop_check_within_10_pp():
    from types import SimpleNamespace

    from snnc.driver.compiler import accuracy_drop
    passed = SimpleNamespace(pruning=None, pipe=SimpleNamespace(passes=[("quantize", {})]))
    assert accuracy_drop({"float": 0.9, "compiled": 0.81}, passed) is None
    assert accuracy_drop({"float": 0.9, "compiled": 0.79}, passed)["check"] == "ACCURACY_DROP"
    assert accuracy_drop(None, passed) is None


# ------------------------------------------------------------------ the output folder swap

def _first_output(work_dir, name="out"):
    from snnc.io.files import write_output_folder
    out = work_dir / name
    write_output_folder(out, {"config.json": b"{}", "report.json": b"{}"}, force=False)
    return out


def test_a_failed_first_rename_leaves_no_empty_sibling(tmp_path, monkeypatch):
    import snnc.io.files as F
    out = _first_output(tmp_path)
    before = snapshot(out)
    real = os.replace

    def exdev(a, b):
        if str(b).endswith(os.sep + "x"):  # moving OUT aside
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(a, b)

    monkeypatch.setattr(F.os, "replace", exdev)
    with pytest.raises(F.OutputError, match="nothing was changed"):
        F.write_output_folder(out, {"config.json": b"{\"new\": 1}"}, force=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_ctrl_c_after_the_second_rename_says_the_output_was_written(tmp_path, monkeypatch):
    import snnc.io.files as F
    out = _first_output(tmp_path)
    real = os.replace

    def interrupted_after(a, b):
        real(a, b)
        if ".tmp-" in str(a):  # the new output is in place when the interrupt arrives
            raise KeyboardInterrupt

    monkeypatch.setattr(F.os, "replace", interrupted_after)
    with pytest.raises(F.WrittenThenInterrupted):
        F.write_output_folder(out, {"config.json": b"{\"new\": 1}"}, force=True)
    assert (out / "config.json").read_bytes() == b"{\"new\": 1}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the previous output is not stranded


def test_ctrl_c_before_the_second_rename_puts_the_previous_output_back(tmp_path, monkeypatch):
    import snnc.io.files as F
    out = _first_output(tmp_path)
    before = snapshot(out)
    real = os.replace

    def interrupted_before(a, b):
        if ".tmp-" in str(a):
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(F.os, "replace", interrupted_before)
    with pytest.raises(KeyboardInterrupt) as e:
        F.write_output_folder(out, {"config.json": b"{\"new\": 1}"}, force=True)
    assert not isinstance(e.value, F.WrittenThenInterrupted)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_interrupt_message_tells_the_truth(small, tmp_path, monkeypatch):
    import snnc.io.files as F
    out = tmp_path / "o"
    assert cli("compile", small["ckpt"], "-o", out)[0] == 0
    real = os.replace

    def interrupted_after(a, b):
        real(a, b)
        if ".tmp-" in str(a):
            raise KeyboardInterrupt

    monkeypatch.setattr(F.os, "replace", interrupted_after)
    r = CliRunner().invoke(main, ["compile", str(small["ckpt"]), "-o", str(out), "--force"])
    assert r.exit_code == 130, r.output
    assert f"interrupted after the output was complete: {out} holds the new output" in " ".join(r.stderr.split())


def test_a_nir_file_without_dt_says_which_dt_was_assumed(tmp_path):
    import json

    import nir

    from conftest import TinySNN
    from snnc.frontend import trace
    g = trace(TinySNN(), (1, 8, 8), num_steps=4)
    for node in g.nodes.values():
        (node.metadata or {}).pop("snnc.dt", None)
    nir.write(tmp_path / "t.nir", g)
    code, err, _ = cli("compile", tmp_path / "t.nir", "-o", tmp_path / "o", "--num-steps", "4",
                       "--input-encoding", "direct")
    assert code == 0, err
    assert "dt = 0.0001 s assumed" in " ".join(err.split())
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["model"]["dt_source"].startswith("assumed 0.0001 s")
    code, err, _ = cli("compile", tmp_path / "t.nir", "-o", tmp_path / "o2", "--num-steps", "4",
                       "--input-encoding", "direct", "--dt", "0.001")
    assert code == 0, err
    assert json.loads((tmp_path / "o2" / "report.json").read_text())["model"]["dt_source"] == "--dt"


def test_semantic_change_warnings_of_one_kind_are_one_line():
    from snnc.io.report import check_lines
    checks = [{"check": "SEMANTIC_CHANGE", "node": f"layer{i}", "source": "sinabs.IAFSqueeze",
               "source_semantics": "subtract reset", "target_semantics": "reset to 0", "agreement": 0.9,
               "agreement_samples": "256 calibration samples", "message": f"layer{i} ..."} for i in range(15)]
    checks.append({"check": "HOST_BIAS_CLIPPED", "message": "3 biases clipped"})
    lines = check_lines(checks)
    assert len(lines) == 2
    assert lines[0].startswith("[SEMANTIC_CHANGE] 15 nodes (layer0, layer1") and "(15 in all)" in lines[0]
    assert "90.0% on 256 calibration samples" in lines[0] and lines[1] == "[HOST_BIAS_CLIPPED] 3 biases clipped"


def test_a_missing_temporary_at_the_second_rename_restores_the_previous_output(tmp_path, monkeypatch):
    """If the second rename fails with the new output not in place (its folder gone), the previous output is put
    back, never deleted."""
    import shutil as sh

    import snnc.io.files as F
    out = _first_output(tmp_path)
    before = snapshot(out)
    real = os.replace

    def vanish(a, b):
        if ".tmp-" in str(a):
            sh.rmtree(a)
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(a))
        return real(a, b)

    monkeypatch.setattr(F.os, "replace", vanish)
    with pytest.raises(F.OutputError, match="nothing was changed"):
        F.write_output_folder(out, {"config.json": b"{\"new\": 1}"}, force=True)
    assert snapshot(out) == before
