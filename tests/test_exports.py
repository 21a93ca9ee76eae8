"""Exports: the portable NIR graph in snnTorch's, Norse's and Sinabs' importers (predictions
against loihi-sim), and the one-step ONNX model in onnxruntime (against the float-equivalent run
of the compiled graph). Importers that are not installed skip (`make setup-exports`)."""
from __future__ import annotations

import json
import logging
import warnings

import nir
import numpy as np
import pytest
import torch

from snnc.backends.export.portable import build_portable, run_importer, write_portable
from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.sim import Program
from snnc.frontend import trace
from snnc.ir import UnsupportedNodeError
from snnc.passes import PassContext, Pipeline
from snnc.ir.reference import run_graph
from snnc.targets import load_target

from conftest import TinySNN, digits_batch

TARGET = load_target("loihi-sim")


def _quiet():
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)


@pytest.fixture(scope="module")
def bundled_compiled(bundled, fmnist):
    """The bundled model compiled for loihi-sim (calibrated), its loihi-sim predictions on 40 test images."""
    from snnc.frontend import load_model
    xtr, _, xte, yte = fmnist
    graph, _, info = load_model(bundled)
    T = info["num_steps"]
    q = Pipeline("fold_bn,quantize").run(graph, PassContext(target=TARGET, calibration=xtr, num_steps=T))
    cfg, arrays, _ = compile_graph(q, TARGET)
    x = xte[:40]
    pred = Program(cfg, arrays, TARGET).run(x).scores().argmax(1)
    return q, x, pred, T


def _tiny(tau_syn):
    x = digits_batch(48, seed=4)
    g = trace(TinySNN(tau_syn=tau_syn), (1, 8, 8), num_steps=6)
    q = Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=x[:32], num_steps=6))
    return q, x[32:]


# ------------------------------------------------------------------ portable NIR
def test_portable_graph_is_nir_and_batch_agnostic(tmp_path):
    q, _ = _tiny(1e-3)
    info = write_portable(tmp_path, q)
    g = nir.read(str(tmp_path / "portable.nir"))          # type-checked by nir
    assert info["readout"] == "sum_over_steps" and g.metadata["snnc.portable_dt"] == pytest.approx(1e-4)
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert "I" not in kinds and "AvgPool2d" not in kinds and "SumPool2d" not in kinds
    flat = [n for n in g.nodes.values() if isinstance(n, nir.Flatten)]
    assert flat and all(n.start_dim == -3 and n.end_dim == -1 for n in flat)
    assert all(not np.any(getattr(n, "v_leak", 0)) for n in g.nodes.values())
    assert info["sinabs_file"] == "portable-sinabs.nir"
    with pytest.raises(UnsupportedNodeError, match="no CubaLIF"):
        build_portable(_tiny(2e-3)[0], "sinabs")


@pytest.mark.parametrize("importer", ["snntorch", "norse"])
def test_portable_equals_float_reference(importer, tmp_path):
    """The importer's run equals snnc's float reference run of the compiled graph (the graph
    loihi-sim's integers represent): LIF, and CubaLIF with current memory. A voltage bias of a
    group with current memory becomes an input bias with the same steady state only (importers
    have no v_leak): exact without it, close with it."""
    pytest.importorskip(importer)
    _quiet()
    for tau_syn, drop_v_bias, exact in ((1e-3, False, True), (2e-3, True, True), (2e-3, False, False)):
        q, x = _tiny(tau_syn)
        if drop_v_bias:
            for n in q.nodes.values():
                if isinstance(n, nir.CubaLIF):
                    n.v_leak = np.zeros_like(n.v_leak)
        write_portable(tmp_path, q)
        ref = run_graph(q, x, 6)[0][-1].numpy()   # the readout voltage after T steps
        got = run_importer(importer, tmp_path / "portable.nir", x, 6)
        case = (importer, tau_syn, drop_v_bias)
        if exact:  # v == threshold ties may flip a spike: 90% of samples equal to 1e-4
            close = np.isclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max()).all(1)
            assert close.mean() >= 0.9, (case, close.mean())
            assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9, case
        else:  # the bias reaches the same steady state only: close (measured 15% mean error, r = 0.99), not equal
            rel = float(np.abs(got - ref).mean() / np.abs(ref).mean())
            r = float(np.corrcoef(got.ravel(), ref.ravel())[0, 1])
            assert rel <= 0.25 and r >= 0.95 and (got.argmax(1) == ref.argmax(1)).mean() >= 0.75, (case, rel, r)


@pytest.mark.parametrize("importer,minimum", [("snntorch", 0.95), ("norse", 0.95), ("sinabs", 0.7)])
def test_portable_bundled_predictions_equal_loihi_sim(importer, minimum, bundled_compiled, tmp_path):
    """Predictions of each importer on 40 test images against loihi-sim's. snnTorch and Norse:
    equal (40 of 40 here; 199 of 200 measured: float vs integer arithmetic). Sinabs resets by subtraction and fires on v >= v_th (NIR cannot say otherwise): it
    agrees on most images only (0.88 measured on 100)."""
    pytest.importorskip(importer)
    _quiet()
    q, x, pred, T = bundled_compiled
    write_portable(tmp_path, q)
    f = tmp_path / ("portable-sinabs.nir" if importer == "sinabs" else "portable.nir")
    got = run_importer(importer, f, x, T).argmax(1)
    assert (got == pred).mean() >= minimum


# ------------------------------------------------------------------ ONNX
def test_onnx_step_equals_float_reference(tmp_path):
    pytest.importorskip("onnxruntime")
    from snnc.backends.export.onnx_step import run_onnx, write_onnx
    q, x = _tiny(1e-3)
    info = write_onnx(tmp_path / "m.onnx", q)
    assert info["inputs"][0] == "input" and "lif1.v" in info["inputs"] and "lif1.v.next" in info["outputs"]
    got = run_onnx(str(tmp_path / "m.onnx"), x, 6)
    ref = run_graph(q, x, 6, dtype=torch.float32)[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    q2, x2 = _tiny(2e-3)                                   # CubaLIF with current memory
    write_onnx(tmp_path / "m2.onnx", q2)
    got2 = run_onnx(str(tmp_path / "m2.onnx"), x2, 6)
    ref2 = run_graph(q2, x2, 6)[0].numpy()
    close = np.isclose(got2, ref2, rtol=1e-4, atol=1e-4 * np.abs(ref2).max()).reshape(6, len(x2), -1).all((0, 2))
    assert close.mean() >= 0.9                             # v == threshold ties may flip a spike


def test_onnx_bundled_equals_float_reference(bundled_compiled, tmp_path):
    pytest.importorskip("onnxruntime")
    from snnc.backends.export.onnx_step import run_onnx, write_onnx
    q, x, pred, T = bundled_compiled
    write_onnx(tmp_path / "m.onnx", q)
    got = run_onnx(str(tmp_path / "m.onnx"), x[:8], T)[-1]
    ref = run_graph(q, x[:8], T, dtype=torch.float32)[0][-1].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert (got.argmax(1) == pred[:8]).all()


def test_onnx_records_its_readout_rule_and_agrees_with_loihi_sim(bundled_compiled, tmp_path):
    """model.onnx states how class scores are read (metadata ``snnc.readout``: the readout rule of snnc's float and
    compiled accuracies); onnxruntime under that rule predicts as loihi-sim on the 40 test images (the float
    graph vs the integer chip: the differences are counted, and bounded). Issue 20: on a Norse conv net with a
    leaky readout, summing the outputs agreed 91.0% and the last step 99.0%, and the file did not say which."""
    pytest.importorskip("onnxruntime")
    from snnc.backends.export.onnx_step import onnx_scores, run_onnx, write_onnx
    q, x, pred, T = bundled_compiled
    info = write_onnx(tmp_path / "m.onnx", q)
    assert info["readout"]["readout"] == "last_step", info["readout"]
    assert "voltage of the non-spiking readout 'readout'" in info["readout"]["readout_rule"]
    got = onnx_scores(tmp_path / "m.onnx", x).argmax(1)
    differ = int((got != pred).sum())
    assert differ <= 2, f"{differ} of {len(x)} predictions differ from loihi-sim"
    assert got.shape == pred.shape
    rng = np.random.default_rng(0)                         # a spiking output: spike counts over the steps
    g = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([6])),
        nir.Affine(weight=(3 * rng.standard_normal((4, 6))).astype(np.float32), bias=np.zeros(4, np.float32)),
        nir.LIF(tau=np.full(4, 5e-3, np.float32), r=np.full(4, 5.0, np.float32), v_leak=np.zeros(4, np.float32),
                v_reset=np.zeros(4, np.float32), v_threshold=np.ones(4, np.float32)),
        nir.Output(output_type=np.array([4])))
    from snnc.frontends import load_model
    g, _, _ = load_model(g, dt=1e-3, num_steps=6)
    x2 = (rng.random((6, 32, 6)) < 0.5).astype(np.float32)
    q2 = Pipeline("fold_bn,quantize").run(g, PassContext(target=TARGET, calibration=x2, num_steps=6))
    info2 = write_onnx(tmp_path / "t.onnx", q2)
    assert info2["readout"]["readout"] == "sum_over_steps" and "spike counts" in info2["readout"]["readout_rule"]
    s2 = onnx_scores(tmp_path / "t.onnx", x2)
    np.testing.assert_array_equal(s2, run_onnx(str(tmp_path / "t.onnx"), x2, None).sum(0))
    assert s2.shape == (32, 4) and s2.sum() > 0


# ------------------------------------------------------------------ CLI
@pytest.mark.parametrize("target,files", [("nir", ["portable.nir"]), ("onnx", ["model.onnx"])])
def test_cli_export_targets(target, files, bundled, tmp_path):
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from snnc.cli import main
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compile", str(bundled), "--target", target, "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["export"]["target"] == target and rep["target"] == "loihi-sim"
    for f in files + ["config.json", "weights.npz", "graph.nir", "report.json"]:
        assert (out / f).is_file(), f
    assert json.loads((out / "report.json").read_text())["export"] == rep["export"]


def test_target_lava_refuses_what_netx_cannot_hold_before_simulating(tmp_path):
    """`--target lava` on a network netx cannot describe (the shipped residual model: lif3 is fed by lif2 and lif1,
    netx holds a chain of layers) exits 1 with the reason in one line and writes nothing (issue 20: it exited 0
    without network.net, the reason only in report.json)."""
    from click.testing import CliRunner

    from snnc.cli import main
    r = CliRunner().invoke(main, ["compile", "fmnist_res", "--target", "lava", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1, r.output
    msg = " ".join(r.stderr.split())
    assert "--target lava: network.net cannot hold this network: group 'lif3' is fed by ['lif2', 'lif1']" in msg
    assert "snnc simulate OUT --engine lava" in msg and "simulation" not in r.stderr
    assert not (tmp_path / "o").exists()
    # right after tracing, before the data: with a dataset whose images do not fit the model the refusal is still
    # the export's (the data check would come next)
    r = CliRunner().invoke(main, ["compile", "fmnist_res", "--target", "lava", "--data", "digits", "-o",
                                  str(tmp_path / "o")])
    assert r.exit_code == 1 and "network.net cannot hold this network" in " ".join(r.stderr.split()), r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("importer,minimum", [("snntorch", 0.99), ("norse", 0.99), ("sinabs", 0.0)])
def test_norse_conv_net_with_leaky_readout_exports_and_runs_in_importers(importer, minimum, tmp_path):
    """The Norse tutorial pattern (SequentialState: Conv2d, LIFCell, Flatten, Linear, LICell readout) exports with
    --target nir (issue 20: refused as "a leaky readout", after the whole compile): the LICell becomes per-step
    readout weights (snnc.readout_weights; the importers read no LI/CubaLI), and each importer's run of
    portable.nir predicts as loihi-sim on the compile's test images (snnTorch, Norse >= 99%; Sinabs: its file
    is not written for current memory, the reason recorded)."""
    pytest.importorskip(importer)
    nt = pytest.importorskip("norse.torch")
    import snnc
    from snnc.backends.loihi.sim import load_program
    from snnc.data import load_digits
    _quiet()
    torch.manual_seed(0)
    m = nt.SequentialState(torch.nn.Conv2d(1, 4, 3), nt.LIFCell(), torch.nn.Flatten(), torch.nn.Linear(144, 10),
                           nt.LICell())
    with torch.no_grad():
        m[0].weight.mul_(6.0)
    out = tmp_path / "o"
    rep = snnc.compile(m, input_shape=(1, 8, 8), num_steps=8, out_dir=out, target="nir", data="digits", limit=200)
    ex = rep["export"]
    assert ex["readout"] == "weighted_sum_over_steps" and len(ex["readout_weights"]) == 8, ex
    prog = load_program(out)
    x, _ = load_digits("test", limit=200)
    pred = np.asarray(prog.run(x).scores()).argmax(1)
    if importer == "sinabs":
        assert ex["sinabs_file"] is None and "no CubaLIF" in ex["sinabs_reason"]
        return
    got = run_importer(importer, out / "portable.nir", x, 8).argmax(1)
    assert (got == pred).mean() >= minimum, (got == pred).mean()


def test_snntorch_conv_maxpool_net_exports_and_runs_in_importers(tmp_path):
    """The snnTorch tutorial pattern Conv2d -> MaxPool2d -> Leaky (direct input): NIR 1.0 has no MaxPool node and
    the max of analog currents has no form in NIR's primitives, so portable.nir starts after the host-computed
    first layer (as the chip does: the host computes it) and portable-host.npz holds that layer
    (snnc.host_preprocessing; run_importer applies it). Measured on 200 digits test images against loihi-sim:
    snnTorch and Norse 99.0% of predictions, Sinabs 62.5% (subtractive reset and v >= v_th, which NIR cannot
    say; issue 20: the export failed with "no Lava form for synapse op 'max_pool2d'")."""
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("norse")
    import snnc
    from snnc.backends.loihi.sim import load_program
    from snnc.data import load_digits
    _quiet()
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.MaxPool2d(2),
                            snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"), torch.nn.Flatten(),
                            torch.nn.Linear(8 * 4 * 4, 10),
                            snn.Leaky(beta=0.9, init_hidden=True, output=True, reset_mechanism="zero"))
    with torch.no_grad():
        m[0].weight.mul_(4.0)
        m[4].weight.mul_(3.0)
    out = tmp_path / "o"
    rep = snnc.compile(m, input_shape=(1, 8, 8), num_steps=8, out_dir=out, target="nir", data="digits", limit=200)
    assert rep["export"]["host_file"] == "portable-host.npz" and (out / "portable-host.npz").is_file()
    g = nir.read(str(out / "portable.nir"))
    assert "max_pool2d(conv(x))" in g.metadata["snnc.host_preprocessing"]
    assert tuple(g.nodes["input"].output_type["output"]) == (8, 4, 4)
    x, _ = load_digits("test", limit=200)
    res = load_program(out).run(x)
    pred = np.asarray(res.scores()).argmax(1)
    assert len(set(pred.tolist())) >= 3 and all(float(v.sum()) > 0 for v in res.spikes.values())
    for importer in ("snntorch", "norse"):
        got = run_importer(importer, out / "portable.nir", x, 8).argmax(1)
        assert (got == pred).mean() >= 0.99, (importer, (got == pred).mean())


def test_early_export_check_leaves_semantic_conversion_to_the_passes(tmp_path):
    """An snnTorch Leaky net (subtractive reset) compiled with --allow-semantic-change: adapt_semantics converts its
    reset to zero, which the portable export holds; the early (right-after-tracing) check must not refuse the
    traced, unconverted graph."""
    snn = pytest.importorskip("snntorch")
    import snnc
    _quiet()
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), snn.Leaky(beta=0.9, init_hidden=True),
                            torch.nn.Linear(16, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    rep = snnc.compile(m, input_shape=(1, 8, 8), num_steps=6, out_dir=tmp_path / "o", target="nir", data="digits",
                       limit=40, allow_semantic_change=True)
    assert rep["export"]["file"] == "portable.nir" and (tmp_path / "o" / "portable.nir").is_file()
