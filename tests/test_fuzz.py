"""Fuzz tests (hypothesis, derandomized so CI sees the same cases every run): random small NIR
graphs and random corruptions of a valid ``.nir``, ``.pt``, ``config.json`` and ``weights.npz``.

Every case must end in success (exit 0, and then the written folder reads back) or in one
``snnc: error: ...`` line with exit 1 (design-rule violations: that line plus one line per
violation); never a traceback, an internal error (exit 70: an exception that is not an
``SnncError``, e.g. a ValueError from inside numpy) or a hang (each case runs under an alarm).
``SNNC_FUZZ_EXAMPLES=N`` runs N cases per test instead of the default; ``SNNC_FUZZ_LOG=FILE``
appends each random graph's exit code and last stderr line to FILE (to see what the cases cover).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snnc.cli import main
from snnc.frontend import trace

from conftest import TinySNN

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("SNNC_FUZZ_EXAMPLES", "0"))
CASE_TIMEOUT_S = 60
COUNT = {"cases": 0}


def fuzz_settings(n):
    return settings(max_examples=EXAMPLES or n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


@contextmanager
def alarm(seconds=CASE_TIMEOUT_S):
    def on_alarm(signum, frame):
        raise TimeoutError(f"case did not finish within {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_cli(*args):
    COUNT["cases"] += 1
    with alarm():
        r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"uncaught {type(r.exception).__name__}: {r.exception}") from r.exception
    return r.exit_code, r.stderr


def check_outcome(code, err):
    assert code in (0, 1), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 1:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        first = next(i for i, ln in enumerate(lines) if ln.startswith("snnc: error:"))
        tail = lines[first + 1:]
        if "design-rule violation" in lines[first]:
            assert tail and all(ln.startswith("  [") for ln in tail), err
        else:
            assert not tail, err


# ------------------------------------------------------------------ random graphs

BAD_VALUES = [0.0, -1.0, 1e30, -1e30, float("nan"), float("inf")]


def _arr(data, shape):
    """Normal weights at a random magnitude (1e-3 .. 1e3)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), label="seed"))
    scale = 10.0 ** data.draw(st.integers(-3, 3), label="scale")
    return (rng.normal(0, 1, shape) * scale).astype(np.float32)


def _neuron(data, shape):
    kind = data.draw(st.sampled_from(["CubaLIF", "LIF", "IF", "LI", "I", "CubaLI"]), label="neuron")
    dt = data.draw(st.sampled_from([1e-3, 1e-4]), label="dt")

    def tau():
        return np.full(shape, dt * data.draw(st.sampled_from([1, 2, 5, 50, 10 ** 5]), label="tau/dt"), np.float32)
    thr = np.full(shape, 10.0 ** data.draw(st.integers(-2, 2), label="thr"), np.float32)
    r = np.full(shape, data.draw(st.sampled_from([1.0, 5.0, 10.0, 1e3]), label="r"), np.float32)
    leak = np.zeros(shape, np.float32) if data.draw(st.booleans(), label="noleak") else _arr(data, shape)
    if kind == "CubaLIF":
        n = nir.CubaLIF(tau_syn=tau(), tau_mem=tau(), r=r, v_leak=leak, v_threshold=thr,
                        v_reset=np.zeros(shape, np.float32), w_in=np.ones(shape, np.float32))
    elif kind == "LIF":
        n = nir.LIF(tau=tau(), r=r, v_leak=leak, v_threshold=thr, v_reset=np.zeros(shape, np.float32))
    elif kind == "IF":
        n = nir.IF(r=r, v_threshold=thr, v_reset=np.zeros(shape, np.float32))
    elif kind == "LI":
        n = nir.LI(tau=tau(), r=r, v_leak=leak)
    elif kind == "CubaLI":
        n = nir.CubaLI(tau_syn=tau(), tau_mem=tau(), r=r, v_leak=leak, w_in=np.ones(shape, np.float32))
    else:
        n = nir.I(r=r)
    n.metadata = {"snnc.dt": dt, "snnc.reset": "zero"}
    return n


def build_graph(data) -> tuple[nir.NIRGraph, dict]:
    """A valid random feed-forward (sometimes recurrent) graph; then, in about a third of the cases,
    one mutation from a list of bad inputs."""
    conv = data.draw(st.booleans(), label="conv")
    shape = (data.draw(st.integers(1, 3), label="c"), data.draw(st.integers(2, 8), label="h"),
             data.draw(st.integers(2, 8), label="w")) if conv else (data.draw(st.integers(1, 12), label="n"),)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    edges = []
    prev, cur = "input", shape
    for li in range(data.draw(st.integers(1, 3), label="layers")):
        if len(cur) == 3 and data.draw(st.integers(0, 3), label="stay-conv") > 0:
            if cur[1] % 2 == 0 and cur[2] % 2 == 0 and data.draw(st.booleans(), label="pool"):
                nodes[f"pool{li}"] = (nir.SumPool2d if data.draw(st.booleans(), label="sum") else nir.AvgPool2d)(
                    kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
                edges.append((prev, f"pool{li}"))
                prev, cur = f"pool{li}", (cur[0], cur[1] // 2, cur[2] // 2)
            cout = data.draw(st.integers(1, 4), label="cout")
            k = data.draw(st.sampled_from([1, 3]), label="k")
            nodes[f"w{li}"] = nir.Conv2d(input_shape=cur[1:], weight=_arr(data, (cout, cur[0], k, k)),
                                         stride=1, padding=k // 2, dilation=1, groups=1, bias=_arr(data, (cout,)))
            out = (cout,) + cur[1:]
        else:
            if len(cur) > 1:
                nodes[f"flat{li}"] = nir.Flatten(input_type={"input": np.array(cur)}, start_dim=0, end_dim=-1)
                edges.append((prev, f"flat{li}"))
                prev, cur = f"flat{li}", (int(np.prod(cur)),)
            nout = data.draw(st.integers(1, 10), label="nout")
            if data.draw(st.booleans(), label="affine"):
                nodes[f"w{li}"] = nir.Affine(weight=_arr(data, (nout, cur[0])), bias=_arr(data, (nout,)))
            else:
                nodes[f"w{li}"] = nir.Linear(weight=_arr(data, (nout, cur[0])))
            out = (nout,)
        edges.append((prev, f"w{li}"))
        nodes[f"n{li}"] = _neuron(data, out)
        edges.append((f"w{li}", f"n{li}"))
        if len(out) == 1 and data.draw(st.integers(0, 4), label="recurrent") == 0:
            nodes[f"rec{li}"] = nir.Linear(weight=_arr(data, (out[0], out[0])))
            edges += [(f"n{li}", f"rec{li}"), (f"rec{li}", f"n{li}")]
        prev, cur = f"n{li}", out
    nodes["output"] = nir.Output(output_type={"output": np.array(cur)})
    edges.append((prev, "output"))
    meta = {"snnc.num_steps": data.draw(st.integers(1, 12), label="T"),
            "snnc.input_encoding": data.draw(st.sampled_from(["direct", "spikes"]), label="enc")}
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    if data.draw(st.integers(0, 2), label="mutate?") == 0:
        _mutate(data, g)
    return g, meta


def _mutate(data, g):
    """One bad input: a parameter set to a bad value, bad metadata, a shape bug or a foreign edge."""
    how = data.draw(st.sampled_from(["param", "meta", "node-meta", "shape", "edge", "drop-node"]), label="mutation")
    names = sorted(k for k in g.nodes if k not in ("input", "output"))
    name = names[data.draw(st.integers(0, len(names) - 1), label="node")]
    node = g.nodes[name]
    if how == "param":
        arrays = sorted(k for k, v in vars(node).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                        and k not in ("input_type", "output_type"))
        if arrays:
            key = arrays[data.draw(st.integers(0, len(arrays) - 1), label="param")]
            getattr(node, key).fill(data.draw(st.sampled_from(BAD_VALUES), label="bad"))
    elif how == "meta":
        key = data.draw(st.sampled_from(["snnc.num_steps", "snnc.input_encoding"]), label="key")
        g.metadata[key] = data.draw(st.sampled_from([0, -1, 10 ** 6, "analog?", 2.5, None]), label="bad")
    elif how == "node-meta":
        key = data.draw(st.sampled_from(["snnc.dt", "snnc.reset"]), label="key")
        node.metadata = dict(node.metadata or {}, **{key: data.draw(st.sampled_from(
            [0, -1e-3, float("nan"), "subtract", "bogus", None]), label="bad")})
    elif how == "shape" and hasattr(node, "weight"):
        w = node.weight
        node.weight = np.concatenate([w, w[..., :1]], axis=-1) if w.ndim == 2 else w[:, :, :1, :1]
    elif how == "edge":
        g.edges.append((data.draw(st.sampled_from(names + ["output"]), label="src"),
                        data.draw(st.sampled_from(names + ["input"]), label="dst")))
    elif how == "drop-node":
        del g.nodes[name]


@fuzz_settings(100)
@given(data=st.data())
def _random_nir_graphs(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("g")
    g, meta = build_graph(data)
    try:
        nir.write(d / "g.nir", g)
    except Exception:  # nir itself cannot store it: not a file snnc will ever see
        assume(False)
    code, err = run_cli("compile", d / "g.nir", "-o", d / "out")
    if os.environ.get("SNNC_FUZZ_LOG"):
        with open(os.environ["SNNC_FUZZ_LOG"], "a") as f:
            f.write(f"{code}\t{err.strip().splitlines()[-1][:150] if err.strip() else ''}\n")
    check_outcome(code, err)
    if code == 0:
        code2, err2 = run_cli("inspect", d / "out")
        assert code2 == 0, err2
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ corruptions

@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    from snnc.models import build_fmnist_cnn
    d = tmp_path_factory.mktemp("valid")
    torch.manual_seed(0)
    cfg = {"channels": [2, 3], "input_shape": [1, 8, 8], "num_steps": 4}
    m = build_fmnist_cnn(cfg)
    torch.save({"format": "snnc-checkpoint", "version": 1, "arch": "fmnist_cnn", "config": cfg,
                "state_dict": m.state_dict(), "meta": {}}, d / "m.pt")
    nir.write(d / "m.nir", trace(TinySNN(), (1, 8, 8), num_steps=4))
    r = CliRunner().invoke(main, ["compile", str(d / "m.pt"), "-o", str(d / "out")])
    assert r.exit_code == 0, r.output
    return d


def corrupt(data, raw: bytes) -> bytes:
    b = bytearray(raw)
    how = data.draw(st.sampled_from(["flip", "flip", "truncate", "append", "zero-run"]), label="how")
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 200), label="flips")):
            pos = data.draw(st.integers(0, len(b) - 1), label="pos")
            b[pos] ^= data.draw(st.integers(1, 255), label="mask")
    elif how == "truncate":
        b = b[:data.draw(st.integers(0, len(b) - 1), label="len")]
    elif how == "append":
        b += bytes(data.draw(st.binary(min_size=1, max_size=64), label="tail"))
    else:
        pos = data.draw(st.integers(0, len(b) - 1), label="pos")
        n = data.draw(st.integers(1, 512), label="run")
        b[pos:pos + n] = bytes(len(b[pos:pos + n]))
    return bytes(b)


@fuzz_settings(50)
@given(data=st.data(), which=st.sampled_from(["m.nir", "m.pt"]))
def _corrupt_model_files(valid, tmp_path_factory, data, which):
    d = tmp_path_factory.mktemp("c")
    p = d / which
    p.write_bytes(corrupt(data, (valid / which).read_bytes()))
    args = ["--input-encoding", "direct"] if which.endswith(".nir") else []
    code, err = run_cli("compile", p, "-o", d / "out", *args)
    check_outcome(code, err)
    shutil.rmtree(d, ignore_errors=True)


JSON_VALUES = st.sampled_from([None, -1, 0, 1, 2 ** 40, 0.5, "x", [], {}, [1, 2], {"a": 1}, True, -1e300])


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k in obj:
            yield from _paths(obj[k], prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@fuzz_settings(60)
@given(data=st.data(), which=st.sampled_from(["config.json", "weights.npz", "config-values", "report.json"]))
def _corrupt_compile_outputs(valid, tmp_path_factory, data, which):
    d = tmp_path_factory.mktemp("o") / "out"
    shutil.copytree(valid / "out", d)
    if which == "config-values":  # a structurally valid JSON file with one value replaced
        cfg = json.loads((d / "config.json").read_text())
        paths = [p for p in _paths(cfg) if p]
        path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
        obj = cfg
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = data.draw(JSON_VALUES, label="value")
        (d / "config.json").write_text(json.dumps(cfg))
    else:
        (d / which).write_bytes(corrupt(data, (d / which).read_bytes()))
    for cmd in (["simulate", d, "--data", "digits", "--limit", "8"], ["inspect", d]):
        code, err = run_cli(*cmd)
        check_outcome(code, err)


def _ran(fn, minimum, *args):
    """Run a hypothesis test body and check it ran its cases (each test on its own: no order needed)."""
    before = COUNT["cases"]
    fn(*args)
    ran = COUNT["cases"] - before
    print(f"{fn.__name__}: {ran} CLI runs")
    assert ran >= (minimum if not EXAMPLES else 1), (fn.__name__, ran)


def test_random_nir_graphs(tmp_path_factory):
    _ran(_random_nir_graphs, 100, tmp_path_factory)


def test_corrupt_model_files(valid, tmp_path_factory):
    _ran(_corrupt_model_files, 50, valid, tmp_path_factory)


def test_corrupt_compile_outputs(valid, tmp_path_factory):
    _ran(_corrupt_compile_outputs, 2 * 60, valid, tmp_path_factory)   # simulate and inspect per case
