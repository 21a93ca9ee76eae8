"""Lava backend: the compiled configuration run in Lava (lava-nc fixed-point models) equals
loihi-sim step by step (u, v, spikes of every group); netx file layout and loading; pooling folds.

Lava tests skip with a reason when lava-nc is not installed (`make setup-lava`; `make test` runs it).
"""
from __future__ import annotations

import signal

import nir
import numpy as np
import pytest
import torch

from snnc.backends.lava.compat import lava_available
from snnc.backends.lava.engine import fold_pooling, unroll
from snnc.backends.loihi.compile import compile_graph
from snnc.ir.ops import apply_ops
from snnc.backends.loihi.sim import Program
from snnc.frontend import trace
from snnc.passes import PassContext, Pipeline
from snnc.targets import load_target

from conftest import TinySNN, digits_batch

TARGET = load_target("loihi-sim")
needs_lava = pytest.mark.skipif(not lava_available(), reason="lava-nc not installed (make setup-lava)")


@pytest.fixture
def deadline():
    """Turn a hung Lava runtime into a test failure instead of a stuck CI job."""
    def _raise(*_):
        raise TimeoutError("Lava run did not finish within 180 s")
    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(180)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ synapse forms (no Lava needed)
@pytest.mark.parametrize("pool,stride,pad", [([2, 2], [1, 1], [1, 1]), ([1, 1], [2, 1], [0, 1]), ([2, 1], [1, 1], [0, 0])])
def test_fold_pooling_conv_is_exact(pool, stride, pad):
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (5, 3, 3, 3))
    ops = ([{"op": "sum_pool2d", "kernel": pool}] if pool != [1, 1] else []) + [
        {"op": "conv2d", "stride": stride, "padding": pad, "dilation": [1, 1], "groups": 1}]
    x = torch.as_tensor(rng.random((4, 3, 8, 8)) < 0.5, dtype=torch.float64)
    ref = apply_ops(x, ops, torch.as_tensor(w, dtype=torch.float64))
    kind, params, wf = fold_pooling(ops, w, (3, 8, 8))
    got = torch.nn.functional.conv2d(x, torch.as_tensor(wf, dtype=torch.float64), None, params["stride"],
                                     params["padding"])
    assert kind == "conv" and torch.equal(ref, got)


def test_fold_pooling_dense_and_unroll_are_exact():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (7, 3 * 4 * 4))
    ops = [{"op": "sum_pool2d", "kernel": [2, 2]}, {"op": "flatten", "start_dim": 0, "end_dim": -1}, {"op": "dense"}]
    x = torch.as_tensor(rng.random((4, 3, 8, 8)) < 0.5, dtype=torch.float64)
    ref = apply_ops(x, ops, torch.as_tensor(w, dtype=torch.float64))
    kind, _, wf = fold_pooling(ops, w, (3, 8, 8))
    assert kind == "dense" and torch.equal(ref, x.reshape(4, -1) @ torch.as_tensor(wf, dtype=torch.float64).T)
    assert np.array_equal(unroll(ops, w, (3, 8, 8)), wf)


# ------------------------------------------------------------------ nets
def _compile(graph, calib=None, T=6, target=TARGET):
    ctx = PassContext(target=target, calibration=calib, num_steps=T)
    q = Pipeline("fold_bn,quantize").run(graph, ctx)
    cfg, arrays, _ = compile_graph(q, target)
    return Program(cfg, arrays, TARGET), q


def _spiking_skip_net(T=8, seed=0):
    """Spike input -> dense -> LIF a (CUBA) -> dense -> LIF b -> dense -> LI readout, plus a skip a -> readout
    (delay 1 on chip: a is 2 hops ahead of the readout's other input). Mixed-sign weights (inhibition),
    non-zero biases, tau_syn > dt (du < 4095)."""
    rng = np.random.default_rng(seed)
    dt = 1e-3

    def cuba(n, ts, tm, th):
        return nir.CubaLIF(tau_syn=np.full(n, ts), tau_mem=np.full(n, tm), r=np.full(n, tm / dt),
                           v_leak=rng.uniform(-0.3, 0.6, n) * tm / dt, v_threshold=np.full(n, th),
                           v_reset=np.zeros(n), w_in=np.full(n, ts / dt),
                           metadata={"snnc.dt": dt, "snnc.reset": "zero"})

    nodes = {
        "input": nir.Input(input_type={"input": np.array([12])}),
        "fc1": nir.Affine(weight=rng.normal(0, 0.8, (16, 12)), bias=np.zeros(16)),
        "a": cuba(16, 3e-3, 5e-3, 1.0),
        "fc2": nir.Affine(weight=rng.normal(0, 0.6, (9, 16)), bias=rng.normal(0, 0.1, 9)),
        "b": cuba(9, 1e-3, 4e-3, 0.8),
        "fc3": nir.Linear(weight=rng.normal(0, 1.0, (4, 9))),
        "skip": nir.Linear(weight=rng.normal(0, 1.0, (4, 16))),
        "readout": nir.I(r=np.full(4, 1 / dt), metadata={"snnc.dt": dt, "snnc.readout": True}),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "fc1"), ("fc1", "a"), ("a", "fc2"), ("fc2", "b"), ("b", "fc3"), ("fc3", "readout"),
             ("a", "skip"), ("skip", "readout"), ("readout", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"snnc.num_steps": T, "snnc.input_encoding": "spikes"},
                     type_check=False)
    from snnc.frontend import set_types
    return set_types(g), (rng.random((T, 5, 12)) < 0.35).astype(np.float32)


def _assert_equal_traces(ref, got):
    assert set(ref.trace) == set(got.trace)
    for g in ref.trace:
        for k in ("u", "v", "spikes"):
            a, b = ref.trace[g][k].numpy().astype(np.int64), got.trace[g][k].numpy().astype(np.int64)
            assert a.shape == b.shape, (g, k)
            assert np.array_equal(a, b), f"{g}.{k}: {(a != b).sum()} of {a.size} values differ"
    for k in ref.outputs:
        assert torch.equal(ref.outputs[k].to(torch.int64), got.outputs[k].to(torch.int64))


@needs_lava
@pytest.mark.parametrize("tau_syn", [1e-3, 2e-3])
def test_lava_equals_loihi_sim_conv_net(tau_syn, deadline):
    """Host-driven conv layer, pooling folded into a conv, flatten into a dense readout; tau_syn > dt
    gives du < 4095 (current memory, ramping host bias)."""
    from snnc.backends.lava.engine import LavaProgram
    x = digits_batch(24, seed=3)
    graph = trace(TinySNN(tau_syn=tau_syn, channels=4), (1, 8, 8), num_steps=6)
    prog, _ = _compile(graph, x[:16])
    du = {g["name"]: g["du"] for g in prog.config["groups"]}
    if tau_syn > 1e-3:
        assert du["lif1"] < 4095 and du["lif2"] < 4095
    assert any(np.any(prog.arrays[f"{g['name']}.bias_mant"]) for g in prog.config["groups"])
    xs = x[16:20]
    ref = prog.run(xs, record=True)
    got = LavaProgram(prog, chunk=3).run(xs, record=True)   # 2 chunks: state reset between runs too
    _assert_equal_traces(ref, got)
    assert sum(float(v.sum()) for v in got.spikes.values()) > 0


@needs_lava
def test_lava_equals_loihi_sim_spike_input_skip_with_delay(deadline):
    from snnc.backends.lava.engine import LavaProgram
    graph, spikes = _spiking_skip_net()
    prog, _ = _compile(graph, None, T=8)
    delays = {(g["name"], p["source"]): p["delay"] for g in prog.config["groups"] for p in g["projections"]}
    assert delays[("readout", "a")] == 1 and delays[("readout", "b")] == 0
    assert prog.config["groups"][0]["du"] < 4095
    ref = prog.run(spikes, record=True)
    got = LavaProgram(prog, chunk=8).run(spikes, record=True)
    _assert_equal_traces(ref, got)
    assert float(got.spikes["a"].sum()) > 0 and float(got.spikes["b"].sum()) > 0


@needs_lava
def test_bundled_model_in_lava(bundled, fmnist, tmp_path, deadline):
    """The Done-when check on 2 images: compile --target lava, then simulate --engine lava."""
    import json

    from click.testing import CliRunner

    from snnc.cli import main
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compile", str(bundled), "--target", "lava", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["export"]["netx"]["written"] and (out / "network.net").is_file()
    r = CliRunner().invoke(main, ["simulate", str(out), "--engine", "lava", "--data", "fashion-mnist",
                                  "--limit", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["engine"] == "lava" and res["lava_vs_loihi_sim"]["equal"]
    assert res["lava_vs_loihi_sim"]["values_compared"] == 2 * 10 * 3 * (12544 + 3920 + 10)
    r2 = CliRunner().invoke(main, ["simulate", str(out), "--data", "fashion-mnist", "--limit", "2", "--json"])
    ref = json.loads(r2.output)
    for key in ("accuracy", "spikes_per_inference", "synops_per_inference", "energy_per_inference_pJ"):
        assert res[key] == ref[key], key


# ------------------------------------------------------------------ netx
def _dense_chain(T=8, seed=2):
    """Spike input -> 2 dense CUBA layers -> readout, zero biases: a chain netx holds exactly."""
    graph, spikes = _spiking_skip_net(T, seed)
    for n in ("a", "b"):
        graph.nodes[n].v_leak = np.zeros_like(graph.nodes[n].v_leak)
    graph.nodes["fc2"].bias = np.zeros_like(graph.nodes["fc2"].bias)
    del graph.nodes["skip"]
    graph.edges = [e for e in graph.edges if "skip" not in e]
    return graph, spikes


def test_netx_file_layout(tmp_path):
    import h5py

    from snnc.backends.lava.engine import LavaMappingError
    from snnc.backends.lava.netx import write_netx
    from snnc.backends.export import export_target
    graph, _ = _dense_chain()
    with pytest.raises(LavaMappingError, match="group 'a': dense weights outside -256..254 at weight_exp 4"):
        write_netx(tmp_path / "n.net", _compile(graph, None, T=8)[0].config, _compile(graph, None, T=8)[0].arrays)
    assert not (tmp_path / "n.net").exists()  # compiled for loihi-sim: refused, nothing left
    prog, _ = _compile(graph, None, T=8, target=export_target("lava", TARGET))
    assert all(p["weight_exp"] == 0 for g in prog.config["groups"] for p in g["projections"])
    assert all(g["bias_from"] == 0 for g in prog.config["groups"])
    notes = write_netx(tmp_path / "n.net", prog.config, prog.arrays)
    with h5py.File(tmp_path / "n.net") as f:
        assert [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))] == ["input", "dense", "dense", "dense"]
        g0 = prog.config["groups"][0]
        assert f["layer/1/neuron/iDecay"][()] == g0["du"] + 1 and f["layer/1/neuron/vDecay"][()] == g0["dv"]
        assert f["layer/1/neuron/vThMant"][()] == g0["vth_mant"]
        assert list(f["layer/1/shape"][()]) == [16]
    assert [n["type"] for n in notes] == ["input", "dense", "dense", "dense"]
    skip_graph, _ = _spiking_skip_net()
    prog2, _ = _compile(skip_graph, None, T=8)
    with pytest.raises(LavaMappingError, match="chain"):
        write_netx(tmp_path / "skip.net", prog2.config, prog2.arrays)


def _netx_chain():
    """A hand-made spike-input chain whose every field netx holds: weight_exp 0 and -1 (mantissas
    multiples of 2), mixed signs, du < 4095, zero biases."""
    from test_loihi import _hand_config
    rng = np.random.default_rng(5)
    layers = [((2 * rng.integers(-60, 128, (16, 12))), 0, 3000, 500, np.zeros(16, np.int64), 300),
              ((4 * rng.integers(-40, 64, (8, 16))), -1, 4095, 200, np.zeros(8, np.int64), 200),
              ((2 * rng.integers(-128, 128, (5, 8))), 0, 4095, 0, np.zeros(5, np.int64), 131071)]
    cfg, arrays = _hand_config(layers, 12, 10)
    return Program(cfg, arrays, TARGET), (rng.random((10, 1, 12)) < 0.5).astype(np.float32)


@needs_lava
def test_netx_network_loads_and_equals_loihi_sim(tmp_path, deadline):
    """lava-dl's own loader (lava.lib.dl.netx.hdf5.Network) runs network.net in Lava: its voltages
    equal loihi-sim's at every step."""
    from snnc.backends.lava.compat import import_netx
    from snnc.backends.lava.netx import write_netx
    hdf5 = import_netx()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer

    prog, x = _netx_chain()
    notes = write_netx(tmp_path / "n.net", prog.config, prog.arrays)
    assert all(n["exact"] for n in notes), notes
    ref = prog.run(x, record=True)
    assert float(ref.spikes["g0"].sum()) > 0 and float(ref.spikes["g1"].sum()) > 0
    net = hdf5.Network(net_config=str(tmp_path / "n.net"))
    assert len(net) == 3
    src = RingBuffer(data=np.concatenate([x[:, 0].T, np.zeros((12, prog.L - prog.T))], 1).astype(np.int32))
    src.s_out.connect(net.inp)
    vs = []
    try:
        for _ in range(prog.L):
            net.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            vs.append([np.rint(layer.neuron.v.get()).astype(np.int64) for layer in net.layers])
    finally:
        net.stop()
    for li, g in enumerate(prog.config["groups"]):
        got = np.stack([v[li] for v in vs])
        assert np.array_equal(got, ref.trace[g["name"]]["v"][0].numpy()), g["name"]


@needs_lava
def test_virtual_flatten_port_runs_on_numpy_2(tmp_path):
    """A virtual port's ``.flatten()`` (netx's conv -> dense connection) runs in Lava: lava-nc's ReshapePort used
    ``np.reshape(..., newshape=)``, removed in numpy 2, and the run hung (issue 20); compat's import-time fix
    passes the shape positionally. Run in a subprocess with a timeout so a regression fails instead of hanging."""
    import subprocess
    import sys
    script = tmp_path / "vp.py"
    script.write_text(
        "import numpy as np\n"
        "from snnc.backends.lava.compat import import_lava_nc\n"
        "import_lava_nc()\n"
        "from lava.proc.io.source import RingBuffer as Src\n"
        "from lava.proc.io.sink import RingBuffer as Snk\n"
        "from lava.magma.core.run_conditions import RunSteps\n"
        "from lava.magma.core.run_configs import Loihi1SimCfg\n"
        "data = np.arange(12).reshape(2, 2, 3) % 2\n"
        "src, snk = Src(data=data), Snk(shape=(4,), buffer=3)\n"
        "src.s_out.flatten().connect(snk.a_in)\n"
        "src.run(condition=RunSteps(num_steps=3), run_cfg=Loihi1SimCfg())\n"
        "got = snk.data.get()\n"
        "src.stop()\n"
        "print('EQUAL' if np.array_equal(got, data.reshape(4, 3)) else 'DIFFERENT')\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("EQUAL"), r.stdout + r.stderr
