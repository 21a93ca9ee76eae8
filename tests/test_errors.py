"""The CLI tells a refusal from a bug (issue 16, defect 3): an :class:`snnc.errors.SnncError` or an OS
error on a named file is one ``snnc: error:`` line with exit 1; any other exception -- a ``ValueError``
from inside numpy or torch included -- is an internal error, exit 70, with "please report"."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import snnc.driver.compiler as C
from snnc.cli import EXIT_INTERNAL, main
from snnc.errors import SnncError


def run(*args, env=None):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True, env=env or {})
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stderr


def _numpy_bug(*a, **k):
    np.ones(3) + np.ones(4)  # ValueError raised inside numpy: a bug, not the user's input


def test_library_value_error_is_internal(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "compile_model", _numpy_bug)
    code, err = run("compile", "fmnist_cnn", "-o", tmp_path / "o")
    assert code == EXIT_INTERNAL == 70, err
    assert err.startswith("snnc: internal error (ValueError: operands could not be broadcast"), err
    assert "please report" in err and "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "compile_model", _numpy_bug)
    r = CliRunner().invoke(main, ["compile", "fmnist_cnn", "-o", str(tmp_path / "o")], env={"SNNC_DEBUG": "1"})
    assert isinstance(r.exception, ValueError) and "broadcast" in str(r.exception)


@pytest.mark.parametrize("exc, needle", [
    (SnncError("node 'x': refused for a reason"), "snnc: error: node 'x': refused for a reason"),
    (FileNotFoundError(2, "No such file or directory", "/nowhere/data.npz"),
     "snnc: error: /nowhere/data.npz: No such file or directory"),
])
def test_refusals_are_one_line_exit_1(monkeypatch, tmp_path, exc, needle):
    def refuse(*a, **k):
        raise exc
    monkeypatch.setattr(C, "compile_model", refuse)
    code, err = run("compile", "fmnist_cnn", "-o", tmp_path / "o")
    assert code == 1 and err.strip() == needle, err


def test_os_error_without_a_file_is_internal(monkeypatch, tmp_path):
    def broken(*a, **k):
        raise OSError("something in the machine")
    monkeypatch.setattr(C, "compile_model", broken)
    code, err = run("compile", "fmnist_cnn", "-o", tmp_path / "o")
    assert code == 70 and "internal error (OSError" in err, err


def test_real_bad_input_is_exit_1(tmp_path):
    code, err = run("compile", tmp_path / "missing.pt", "-o", tmp_path / "o")
    assert code == 1 and err.startswith("snnc: error:") and "missing.pt" in err, err


def test_report_figure_that_cannot_be_computed_is_null_with_a_reason():
    """Issue 16, defect 5: NaN/inf in a report is null with a reason beside it, never a silent null."""
    from snnc.io.report import _plain
    out = _plain({"ratio": float("nan"), "energy": np.float64("inf"), "ok": 1.5,
                  "known": float("nan"), "known_reason": "no test samples"})
    assert out["ratio"] is None and "not computable (nan" in out["ratio_reason"]
    assert out["energy"] is None and "inf" in out["energy_reason"]
    assert out["ok"] == 1.5 and "ok_reason" not in out
    assert out["known"] is None and out["known_reason"] == "no test samples"


def test_missing_dataset_is_a_refusal_not_a_bug(tmp_path):
    """DataNotFoundError is an SnncError: one line, exit 1 (as an OSError without a file name it would read
    as an internal error)."""
    (tmp_path / "empty").mkdir()
    code, err = run("compile", "fmnist_cnn", "-o", tmp_path / "o", "--data", "fashion-mnist", "--data-dir",
                    tmp_path / "empty", "--limit", "10")
    assert code == 1 and err.startswith("snnc: error: --data-dir") and "lacks" in err, err
