"""Bad input ends in one clear line (exit 1) and loses nothing; valid edge cases give correct results.

Each case here is one the issue lists (issue 5: defects 3-7). The CLI runs in-process
(click's runner) unless a case needs a real process (signals, resource limits).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snnc.cli import main
from snnc.frontend import trace
from snnc.io.files import MARKER, recover_stale

from conftest import ROOT, TinySNN

SMALL_CONFIG = {"channels": [2, 3], "input_shape": [1, 8, 8], "num_steps": 4}


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stderr, r.stdout


def assert_one_line_error(code, err, *needles):
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("snnc: error:"), err
    errors = [ln for ln in lines if ln.startswith("snnc: error:")]
    assert len(errors) == 1 and "internal error" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in errors[0], (n, err)


def make_ckpt(path: Path, config=None, state_dict=None, **extra) -> Path:
    from snnc.models import build_fmnist_cnn
    torch.manual_seed(0)
    cfg = dict(SMALL_CONFIG, **(config or {}))
    m = build_fmnist_cnn(dict(SMALL_CONFIG))
    with torch.no_grad():
        m.net.bn1.running_var.uniform_(0.5, 1.5)
    ck = {"format": "snnc-checkpoint", "version": 1, "arch": "fmnist_cnn", "config": cfg,
          "state_dict": state_dict if state_dict is not None else m.state_dict(), "meta": {}}
    ck.update(extra)
    torch.save(ck, path)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("hard")
    ck = make_ckpt(d / "small.pt")
    out = d / "out"
    code, err, _ = cli("compile", ck, "-o", out, "--data", "digits", "--limit", 40)
    assert code == 0, err
    g = trace(TinySNN(), (1, 8, 8), num_steps=4)
    nir.write(d / "tiny.nir", g)
    return {"dir": d, "ckpt": ck, "out": out, "nir": d / "tiny.nir"}


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def no_temporaries(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# ------------------------------------------------------------------ checkpoints (defects 3, 5, 6)

def _sd(mutate):
    from snnc.models import build_fmnist_cnn
    sd = build_fmnist_cnn(dict(SMALL_CONFIG)).state_dict()
    mutate(sd)
    return sd


@pytest.mark.parametrize("case,kwargs,needle", [
    ("channels-str", {"config": {"channels": "ab"}}, "config 'channels' must be a list of 2 positive"),
    ("tau-str", {"config": {"tau_mem": "fast"}}, "config 'tau_mem' must be a positive finite number"),
    ("tau-nan", {"config": {"tau_mem": float("nan")}}, "config 'tau_mem'"),
    ("shape-neg", {"config": {"input_shape": [-1, 8, 8]}}, "config 'input_shape'"),
    ("T-neg", {"config": {"num_steps": -3}}, "config 'num_steps' must be a positive whole number"),
    ("T-zero", {"config": {"num_steps": 0}}, "config 'num_steps'"),
    ("huge", {"config": {"channels": [100000, 100000]}}, "has shape [2, 1, 3, 3], the config's architecture needs"),
    ("unknown-key", {"config": {"chanels": [2, 3]}}, "unknown key(s) ['chanels']"),
    ("tau-below-dt", {"config": {"tau_mem": 1e-4}}, "shorter than dt"),
    ("bn-var-neg", {"state_dict": _sd(lambda s: s["net.bn1.running_var"].fill_(-1.0))}, "negative values"),
    ("bn-mean-nan", {"state_dict": _sd(lambda s: s["net.bn2.running_mean"].fill_(float("nan")))},
     "holds NaN or infinite values"),
    ("weight-inf", {"state_dict": _sd(lambda s: s["net.fc.weight"].fill_(float("inf")))}, "'net.fc.weight'"),
    ("version", {"version": 7}, "version 7"),
])
def test_bad_checkpoints(work, tmp_path, case, kwargs, needle):
    ck = make_ckpt(tmp_path / f"{case}.pt", **kwargs)
    code, err, _ = cli("compile", ck, "-o", tmp_path / "o")
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists() and no_temporaries(tmp_path)


def test_weights_too_large_for_fixed_point(tmp_path):
    ck = make_ckpt(tmp_path / "big.pt", state_dict=_sd(lambda s: [s[k].fill_(1e30) for k in s if k.endswith(
        "conv2.weight") or k.endswith("fc.weight")]))
    code, err, _ = cli("compile", ck, "-o", tmp_path / "o")
    assert_one_line_error(code, err, "rounds to 0 at the fixed-point scale")


def test_bitflip_in_checkpoint_is_detected(work, tmp_path):
    data = bytearray(work["ckpt"].read_bytes())
    with zipfile.ZipFile(work["ckpt"]) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    # flip a byte inside the first tensor's stored data, behind its local header (name and extra lengths
    # at offsets 26 and 28 of the header)
    n_name, n_extra = struct.unpack("<HH", bytes(data[info.header_offset + 26:info.header_offset + 30]))
    pos = info.header_offset + 30 + n_name + n_extra + 2
    data[pos] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(data))
    code, err, _ = cli("compile", tmp_path / "flip.pt", "-o", tmp_path / "o")
    assert_one_line_error(code, err, "fails its CRC check")


# ------------------------------------------------------------------ NIR graphs

def _nir_with(tmp_path, mutate, name="bad.nir", meta=None):
    g = trace(TinySNN(), (1, 8, 8), num_steps=4)
    mutate(g)
    if meta:
        g.metadata.update(meta)
    nir.write(tmp_path / name, g)
    return tmp_path / name


@pytest.mark.parametrize("case,mutate,meta,needle", [
    ("r-zero", lambda g: setattr(g.nodes["lif1"], "r", np.zeros_like(g.nodes["lif1"].r)), None, "r must be > 0"),
    ("vleak-nan", lambda g: g.nodes["lif2"].v_leak.fill(np.nan), None, "v_leak holds"),
    ("tau-neg", lambda g: g.nodes["lif2"].tau_mem.fill(-1e-3), None, "tau_mem = -0.001 s"),
    ("T-neg", lambda g: None, {"snnc.num_steps": -2}, "T must be a whole number"),
    ("T-zero", lambda g: None, {"snnc.num_steps": 0}, "T must be a whole number"),
    ("encoding", lambda g: None, {"snnc.input_encoding": "morse"}, "'snnc.input_encoding' is 'morse'"),
])
def test_bad_nir_graphs(tmp_path, case, mutate, meta, needle):
    p = _nir_with(tmp_path, mutate, meta=meta)
    enc = [] if meta and "snnc.input_encoding" in meta else ["--input-encoding", "direct"]
    code, err, _ = cli("compile", p, "-o", tmp_path / "o", *enc)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


def test_corrupt_nir_does_not_hang(work, tmp_path):
    data = bytearray(work["nir"].read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(8, len(data), 200):  # 200 flipped bytes after the HDF5 signature
        data[pos] ^= 0xFF
    (tmp_path / "flip.nir").write_bytes(bytes(data))
    t0 = time.monotonic()
    code, err, _ = cli("compile", tmp_path / "flip.nir", "-o", tmp_path / "o")
    assert time.monotonic() - t0 < 60
    # refused in one line naming the file (a corrupt file that compiled would be a silent acceptance)
    assert_one_line_error(code, err, "flip.nir", "cannot be read as NIR")
    assert not (tmp_path / "o").exists()


def test_read_nir_time_bound(monkeypatch, work):
    """A reader that never finishes is stopped at the bound (the HDF5 library can loop on corrupt files)."""
    import snnc.io.files as F

    def hang(conn, data):
        time.sleep(60)

    monkeypatch.setattr(F, "_nir_child", hang)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="did not finish within 1 s"):
        F.read_nir(work["nir"], timeout_s=1.0)
    assert time.monotonic() - t0 < 10


# ------------------------------------------------------------------ pass options, targets, CLI values

@pytest.mark.parametrize("spec,needle", [
    ("quantize:weight_bits=abc", "is not a whole number"),
    ("quantize:weight_bits=7.5", "is not a whole number"),
    ("quantize:weight_bits=1", "outside 2..8"),
    ("quantize:headroom=0", "outside 1..1e6"),
    ("quantize:headroom=nan", "not a finite number"),
    ("fold_bn:thresholds=maybe", "is not a boolean"),
    ("fold_bn,nosuchpass", "unknown pass 'nosuchpass'"),
    ("quantize:bits=4", "unknown option"),
])
def test_bad_pass_options(work, tmp_path, spec, needle):
    code, err, _ = cli("compile", work["ckpt"], "-o", tmp_path / "o", "--passes", spec)
    assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("edit,needle", [
    (("cores = 128", "cores = 0"), "[chip].cores = 0 is outside"),
    (("neurons = 1024", 'neurons = "many"'), "[core].neurons = 'many' is not a whole number"),
    (("synop = 23.6", "synop = -1.0"), "[energy_pJ].synop = -1.0 is outside"),
    (("weight_bits = 8", "weight_bits = 0"), "[synapse_format].weight_bits = 0"),
    (("backend = \"loihi\"", "backend = \"tpu\""), "backend 'tpu' is unknown"),
    (("[core]", "[core\n"), "not a valid TOML file"),
])
def test_bad_target_files(work, tmp_path, edit, needle):
    text = (ROOT / "snnc" / "targets" / "loihi-sim.toml").read_text().replace(*edit)
    (tmp_path / "t.toml").write_text(text)
    code, err, _ = cli("compile", work["ckpt"], "-o", tmp_path / "o", "--target", tmp_path / "t.toml")
    assert_one_line_error(code, err, needle)


@pytest.mark.parametrize("shape,code_want,needle", [
    ("1,2,3", 1, "input of shape [B, 1, 2, 3] failed"),
    ("1,8", 1, "input of shape [B, 1, 8] failed"),
    ("0,0,0", 2, "positive whole numbers"),
    ("-1,8,8", 2, "positive whole numbers"),
    ("a,b", 2, "positive whole numbers"),
])
def test_input_shape_values(tmp_path, shape, code_want, needle):
    p = tmp_path / "pick.pt"
    torch.save(TinySNN(), p)
    code, err, _ = cli("compile", p, "--trust-pickle", "--input-shape", shape, "--num-steps", 4, "-o", tmp_path / "o")
    assert code == code_want and needle in err, err
    if code_want == 1:
        assert_one_line_error(code, err)


# ------------------------------------------------------------------ datasets

def _idx(arr: np.ndarray, code=0x08) -> bytes:
    return bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(
        {0x08: np.uint8, 0x0D: ">f4"}[code]).tobytes()


def _fmnist_dir(d: Path, images=None, labels=None, raw=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 28, 28)) if images is None else images
    y = rng.integers(0, 10, 20) if labels is None else labels
    for split in ("train", "t10k"):
        (d / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(np.asarray(x))))
        (d / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.asarray(y))))
    for name, data in (raw or {}).items():
        (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("case,raw,needle", [
    ("not-gzip", {"t10k-images-idx3-ubyte.gz": b"plain bytes, no gzip"}, "not a readable gzip file"),
    ("truncated-gzip", {"t10k-labels-idx1-ubyte.gz": gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 40)[:20]},
     "not a readable gzip file"),
    ("bad-magic", {"t10k-images-idx3-ubyte.gz": gzip.compress(b"\x12\x34\x08\x03")}, "bad magic"),
    ("short-header", {"t10k-images-idx3-ubyte.gz": gzip.compress(b"\x00\x00\x08\x03\x00\x00")}, "truncated IDX header"),
    ("truncated-body", {"t10k-images-idx3-ubyte.gz": gzip.compress(_idx(np.zeros((20, 28, 28)))[:-5])},
     "truncated IDX file"),
    ("nan-images", {"t10k-images-idx3-ubyte.gz": gzip.compress(_idx(np.full((20, 28, 28), np.nan), 0x0D))},
     "expected unsigned-byte images"),
    ("wrong-size", {"t10k-images-idx3-ubyte.gz": gzip.compress(_idx(np.zeros((20, 8, 8))))}, "[N, 28, 28]"),
    ("count-mismatch", {"t10k-labels-idx1-ubyte.gz": gzip.compress(_idx(np.zeros(5)))}, "holds 20 images but"),
    ("label-range", {"t10k-labels-idx1-ubyte.gz": gzip.compress(_idx(np.full(20, 11)))}, "label 11 is outside"),
])
def test_bad_dataset_files(bundled, tmp_path, case, raw, needle):
    d = _fmnist_dir(tmp_path / "data", raw=raw)
    code, err, _ = cli("compile", bundled, "-o", tmp_path / "o", "--data", "fashion-mnist", "--data-dir", d)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ output folders (defects 4, 5, 7)

def test_force_refuses_a_folder_holding_the_model(work, tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(work["ckpt"], d / "m.pt")
    code, err, _ = cli("compile", d / "m.pt", "-o", d, "--force")
    assert_one_line_error(code, err, "holds an input of this run")
    assert (d / "m.pt").is_file()


def test_force_refuses_the_data_dir_and_foreign_folders(bundled, tmp_path):
    d = _fmnist_dir(tmp_path / "data")
    before = snapshot(d)
    code, err, _ = cli("compile", bundled, "-o", d, "--force", "--data", "fashion-mnist", "--data-dir", d)
    assert_one_line_error(code, err, "holds an input of this run")
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, err, _ = cli("compile", bundled, "-o", other, "--force")
    assert_one_line_error(code, err, "not a previous snnc output")
    assert snapshot(d) == before and (other / "notes.txt").read_text() == "keep me"


def test_force_replaces_a_previous_output_and_empty_out_is_fine(work, tmp_path):
    out = tmp_path / "o"
    out.mkdir()  # an existing empty folder is simply used
    code, err, _ = cli("compile", work["ckpt"], "-o", out)
    assert code == 0, err
    assert (out / MARKER).is_file()
    code, err, _ = cli("compile", work["ckpt"], "-o", out)
    assert_one_line_error(code, err, "--force")
    code, err, _ = cli("compile", work["ckpt"], "-o", out, "--force", "--passes", "fold_bn,quantize:weight_bits=6")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["groups"][1]["projections"][0]["weight_bits"] == 6
    assert no_temporaries(tmp_path)


def test_output_places_that_cannot_work(work, tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    code, err, _ = cli("compile", work["ckpt"], "-o", f)
    assert_one_line_error(code, err, "is a file")
    code, err, _ = cli("compile", work["ckpt"], "-o", f / "sub")
    assert_one_line_error(code, err, "is a file")
    prev = tmp_path / "prev"
    assert cli("compile", work["ckpt"], "-o", prev)[0] == 0
    monkeypatch.chdir(prev)
    code, err, _ = cli("compile", work["ckpt"], "-o", ".", "--force")
    assert_one_line_error(code, err, "is the current folder")
    assert (prev / "config.json").is_file()


def test_failed_writes_keep_the_previous_output(work, tmp_path, monkeypatch):
    """A full disk or a refused write at any file: a one-line error, the previous output intact,
    no temporary folder left."""
    import errno
    import snnc.io.files as F

    out = tmp_path / "o"
    assert cli("compile", work["ckpt"], "-o", out)[0] == 0
    before = snapshot(out)
    real = F._write_bytes
    for fail_at, err_no, text in ((1, errno.ENOSPC, "no space left"), (4, errno.EACCES, "permission denied"),
                                  (6, errno.EROFS, "read-only file system")):
        calls = {"n": 0}

        def flaky(path, data):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise OSError(err_no, os.strerror(err_no))
            return real(path, data)

        monkeypatch.setattr(F, "_write_bytes", flaky)
        code, err, _ = cli("compile", work["ckpt"], "-o", out, "--force")
        assert_one_line_error(code, err, text)
        assert snapshot(out) == before and no_temporaries(tmp_path)
    monkeypatch.setattr(F, "_write_bytes", real)

    def bad_replace(a, b, _real=os.replace):  # the swap itself fails: the previous output is put back
        if ".tmp-" in str(a):
            raise OSError(errno.EXDEV, "cross-device link")
        return _real(a, b)

    monkeypatch.setattr(F.os, "replace", bad_replace)
    code, err, _ = cli("compile", work["ckpt"], "-o", out, "--force")
    monkeypatch.undo()
    assert_one_line_error(code, err, "writing the output failed")
    assert snapshot(out) == before and no_temporaries(tmp_path)


def test_file_size_limit_in_a_real_process(work, tmp_path):
    """RLIMIT_FSIZE makes writes fail with EFBIG as a full disk would (no segfault, no traceback)."""
    out = tmp_path / "o"
    assert cli("compile", work["ckpt"], "-o", out)[0] == 0
    before = snapshot(out)
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000)); from snnc.cli import main; "
            "sys.argv = ['snnc'] + sys.argv[1:]; main()")
    r = subprocess.run([sys.executable, "-c", code, "compile", str(work["ckpt"]), "-o", str(out), "--force"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("snnc: error:"), r.stderr
    assert "file too large" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(out) == before and no_temporaries(tmp_path)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_killed_runs_are_recovered(work, tmp_path):
    out = tmp_path / "o"
    assert cli("compile", work["ckpt"], "-o", out)[0] == 0
    before = snapshot(out)
    pid = _dead_pid()
    stale_tmp = tmp_path / f".o.tmp-{pid}-abcd"
    stale_tmp.mkdir()
    (stale_tmp / "config.json").write_text("{}")
    # a run killed between its two renames: OUT moved aside, the new output not yet in place
    old = tmp_path / f".o.old-{pid}-beef"
    old.mkdir()
    os.replace(out, old / "x")
    lines = recover_stale(out)
    assert snapshot(out) == before and no_temporaries(tmp_path)
    assert any("restored" in ln for ln in lines) and any("removed" in ln for ln in lines)
    live = tmp_path / f".o.tmp-{os.getpid()}-live"  # a running process's temporary is left alone
    live.mkdir()
    recover_stale(out)
    assert live.is_dir()


def _default_sigint():
    """As at a terminal: a shell starts background jobs (``cmd &``, as CI runners may) with SIGINT
    ignored, and a child inherits that; Ctrl-C reaches snnc with the default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig,code_want,text", [(signal.SIGINT, 130, "snnc: interrupted"),
                                                (signal.SIGTERM, 143, "snnc: terminated")])
def test_interrupt_exits_cleanly_and_keeps_the_output(bundled, fmnist, tmp_path, sig, code_want, text):
    out = tmp_path / "o"
    assert cli("compile", bundled, "-o", out)[0] == 0
    before = snapshot(out)
    p = subprocess.Popen([sys.executable, "-m", "snnc.cli", "compile", str(bundled), "-o", str(out), "--force",
                          "--data", "fashion-mnist", "--limit", "1000", "--batch-size", "10"],
                         stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    seen = ""
    t0 = time.monotonic()
    while "simulation" not in seen and time.monotonic() - t0 < 120:  # wait until it is busy simulating
        line = p.stderr.readline()
        if not line:
            break
        seen += line
    p.send_signal(sig)
    rest = p.communicate(timeout=120)[1]
    assert p.returncode == code_want and text in rest and "Traceback" not in rest, seen + rest
    assert snapshot(out) == before and no_temporaries(tmp_path)


# ------------------------------------------------------------------ compile outputs read back (simulate/inspect)

def _edit(work, tmp_path, cfg_edit=None, arr_edit=None, raw=None):
    d = tmp_path / "edited"
    shutil.copytree(work["out"], d)
    if cfg_edit:
        cfg = json.loads((d / "config.json").read_text())
        cfg = cfg_edit(cfg) or cfg
        (d / "config.json").write_text(json.dumps(cfg))
    if arr_edit:
        with np.load(d / "weights.npz") as z:
            arrays = {k: z[k] for k in z.files}
        arr_edit(arrays)
        np.savez(d / "weights.npz", **arrays)
    for name, data in (raw or {}).items():
        (d / name).write_bytes(data)
    return d


def _g(i):
    return lambda cfg: cfg["groups"][i]


def _set(path, value):
    def edit(cfg):
        obj = cfg
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return edit


SIM_CASES = [
    ("list", {"raw": {"config.json": b"[1, 2]"}}, "must hold a JSON object"),
    ("empty", {"raw": {"config.json": b"{}"}}, "format is None"),
    ("not-json", {"raw": {"config.json": b"{nope"}}, "not readable JSON"),
    ("no-groups", {"cfg_edit": lambda c: c.pop("groups") and None}, "groups must be a non-empty list"),
    ("no-target", {"cfg_edit": lambda c: c.pop("target") and None}, "names no target"),
    ("vth", {"cfg_edit": _set(["groups", 0, "vth_mant"], 200000)}, "vth_mant = 200000 is outside"),
    ("du", {"cfg_edit": _set(["groups", 0, "du"], 5000)}, "du = 5000 is outside 0..4095"),
    ("dv", {"cfg_edit": _set(["groups", 1, "dv"], -1)}, "dv = -1 is outside"),
    ("bias_exp", {"cfg_edit": _set(["groups", 0, "bias_exp"], 70)}, "bias_exp = 70 is outside"),
    ("weight_exp", {"cfg_edit": _set(["groups", 1, "projections", 0, "weight_exp"], 40)}, "weight_exp 40"),
    ("delay", {"cfg_edit": _set(["groups", 1, "projections", 0, "delay"], 500)}, "delay 500 is outside 0..62"),
    ("core-neurons", {"cfg_edit": _set(["cores", 0, "neurons"], 5000)}, "neurons = 5000 is outside 0..1024"),
    ("shape", {"cfg_edit": _set(["groups", 1, "shape"], [3, 3, 3])}, "size"),
    ("source", {"cfg_edit": _set(["groups", 1, "projections", 0, "source"], "ghost")}, "unknown source 'ghost'"),
    ("weight-key", {"cfg_edit": _set(["groups", 1, "projections", 0, "weight_key"], "nope")}, "weights lack 'nope'"),
    ("reset", {"cfg_edit": _set(["groups", 0, "reset"], "subtract")}, "reset 'subtract'"),
    ("fraction", {"arr_edit": lambda a: a.__setitem__("lif2.p0.weight", a["lif2.p0.weight"] + 0.5)},
     "weight mantissas must be whole numbers"),
    ("1e5x", {"arr_edit": lambda a: a.__setitem__("lif2.p0.weight", a["lif2.p0.weight"] * 100000)},
     "weight mantissas must be multiples of 2 in -256..254"),
    ("bias-1e9", {"arr_edit": lambda a: a.__setitem__("lif1.bias_mant", a["lif1.bias_mant"] * 0 + 10 ** 9)},
     "bias_mant outside the 13-bit range"),
    ("host-nan", {"arr_edit": lambda a: a["lif1.p0.weight"].fill(np.nan)}, "host weights must be finite"),
    ("missing-key", {"arr_edit": lambda a: a.pop("readout.p0.weight")}, "weights lack 'readout.p0.weight'"),
    ("wrong-shape", {"arr_edit": lambda a: a.__setitem__("readout.p0.weight", a["readout.p0.weight"][:, :5])},
     "do not apply to source shape"),
    ("npz-empty", {"raw": {"weights.npz": b""}}, "not a readable .npz file"),
    ("npz-truncated", {"raw": {"weights.npz": b"PK\x03\x04garbage"}}, "not a readable .npz file"),
]


@pytest.mark.parametrize("case,edit,needle", SIM_CASES, ids=[c[0] for c in SIM_CASES])
def test_simulate_and_inspect_refuse_bad_outputs(work, tmp_path, case, edit, needle):
    d = _edit(work, tmp_path, **edit)
    code, err, _ = cli("simulate", d, "--data", "digits", "--limit", 5)
    assert_one_line_error(code, err, needle)
    code, err, _ = cli("inspect", d)
    assert_one_line_error(code, err, needle)


def test_inspect_refuses_a_bad_report(work, tmp_path):
    for raw in (b"[]", b"{}", b'{"target": "loihi-sim", "cores": []}'):
        d = _edit(work, tmp_path / raw.hex()[:8], raw={"report.json": raw})
        code, err, _ = cli("inspect", d)
        assert_one_line_error(code, err, "not an snnc report")


def test_simulate_missing_folder_and_valid_output(work):
    code, err, _ = cli("simulate", work["dir"] / "nope", "--data", "digits")
    assert_one_line_error(code, err, "no such folder")
    code, err, out = cli("simulate", work["out"], "--data", "digits", "--limit", 10, "--json")
    assert code == 0, err
    assert json.loads(out)["samples"] == 10


def test_emitted_fields_are_checked_before_anything_is_written(work, tmp_path, monkeypatch):
    """A field outside the target's range (as a faulty pass would leave it) stops the compile before OUT."""
    import snnc.backends.loihi.compile as C
    real = C.check_program

    def tampered(config, arrays, target, *a, **k):
        config["groups"][0]["du"] = 5000
        return real(config, arrays, target, *a, **k)

    monkeypatch.setattr(C, "check_program", tampered)
    code, err, _ = cli("compile", work["ckpt"], "-o", tmp_path / "o")
    assert_one_line_error(code, err, "the compiled configuration: invalid loihi-sim configuration", "du = 5000")
    assert not (tmp_path / "o").exists() and no_temporaries(tmp_path)


class _MulNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from snnc.neurons import CubaLIF, Integrator
        self.fc, self.lif = torch.nn.Linear(4, 3), CubaLIF((3,))
        self.fc2, self.ro = torch.nn.Linear(3, 2), Integrator((2,))

    def forward(self, x):
        return self.ro(self.fc2(self.lif(self.fc(x) * 2.0)))  # a product nirtorch cannot trace


class _ControlFlowNet(_MulNet):
    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:  # data-dependent control flow: torch.fx refuses it
            h = h + 1
        return self.ro(self.fc2(self.lif(h)))


def test_third_party_tracer_messages_are_explained(tmp_path):
    """nirtorch's "only supported function is addition" / torch.fx failures end in one line that says
    what snnc tried and where it stopped."""
    torch.save(_MulNet(), tmp_path / "m.pt")
    code, err, _ = cli("compile", tmp_path / "m.pt", "--trust-pickle", "--input-shape", "4", "--num-steps", 3,
                       "-o", tmp_path / "o")
    assert_one_line_error(code, err, "torch.fx cannot trace forward()", "cannot follow the data into layer 'lif'")


def test_trace_by_running_refuses_a_path_the_first_run_did_not_take(tmp_path):
    """Issue 16, defect 2: ``h + 1`` only where ``h.sum() > 0``. The first run (inputs in [0, 1), negative
    weights) never takes the branch; before, the compile succeeded and silently dropped the ``+ 1`` (the
    module's readout and the compiled graph's differ). Now the probe inputs take it and the compile is
    refused in one line naming the layer whose input the chain does not explain."""
    torch.manual_seed(0)
    net = _ControlFlowNet()
    with torch.no_grad():
        net.fc.weight.copy_(-net.fc.weight.abs())
        net.fc.bias.fill_(-0.1)
        assert net.fc(torch.rand(64, 4)).sum() < 0  # the branch is not taken on inputs in [0, 1)
    torch.save(net, tmp_path / "c.pt")
    code, err, _ = cli("compile", tmp_path / "c.pt", "--trust-pickle", "--input-shape", "4", "--num-steps", 3,
                       "-o", tmp_path / "c")
    assert_one_line_error(code, err, "on probe input", "the input of layer 'lif' at step 0 is not what the chain feeds it")
    assert not (tmp_path / "c").exists()


def test_unpickling_errors_name_the_missing_module_and_class(tmp_path, monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "snnc_test_userclasses.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(2, 2)\n    def forward(self, x):\n        return self.fc(x)\n")
    monkeypatch.syspath_prepend(str(mods))
    import importlib
    mod = importlib.import_module("snnc_test_userclasses")
    torch.save(mod.Net(), tmp_path / "n.pt")
    (mods / "snnc_test_userclasses.py").write_text("# the class is gone\n")
    monkeypatch.delitem(sys.modules, "snnc_test_userclasses")
    code, err, _ = cli("compile", tmp_path / "n.pt", "--trust-pickle", "--input-shape", "2", "-o", tmp_path / "o")
    assert_one_line_error(code, err, "cannot be unpickled", "'Net'")
    (mods / "snnc_test_userclasses.py").unlink()
    monkeypatch.delitem(sys.modules, "snnc_test_userclasses", raising=False)
    code, err, _ = cli("compile", tmp_path / "n.pt", "--trust-pickle", "--input-shape", "2", "-o", tmp_path / "o")
    assert_one_line_error(code, err, "module 'snnc_test_userclasses' is not installed")
