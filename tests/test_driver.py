"""The compile driver's stages, one test each (issue 16): CompileOptions shared by the CLI, the Python API and
``snnc finetune``; load -> check -> prepare_data -> run_passes -> map_model -> check_semantics ->
measure_model -> make_report -> write; ``--budget`` is a registered pass that logs like the others."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from snnc.driver import compiler as C
from snnc.driver.options import CompileOptions
from snnc.errors import SnncError, UsageError
from snnc.ir.validate import ValidationError
from snnc.passes import REGISTRY, PassContext, Pipeline
from snnc.targets import load_target

from conftest import TinySNN

TARGET = load_target("loihi-sim")


def say(_):
    pass


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinySNN(channels=4)


def opts(**kw):
    return CompileOptions(input_shape=(1, 8, 8), num_steps=4, **kw).checked()


def test_options_refuse_what_cannot_work():
    with pytest.raises(UsageError, match="--calibrate needs --data"):
        CompileOptions(calibrate=64).checked()
    with pytest.raises(UsageError, match="--budget needs --data"):
        CompileOptions(budget="cores=4").checked()
    with pytest.raises(UsageError, match="weight bits must be a whole number in 2..8"):
        CompileOptions(weight_bits=9).checked()
    with pytest.raises(SnncError, match="formats must be 'auto' or 'discrete'"):
        CompileOptions(formats="pop").checked()
    with pytest.raises(UsageError, match="unknown compile option.*colour"):
        CompileOptions.from_kwargs(colour="red")
    assert CompileOptions.from_kwargs(data="digits", limit=np.int64(5)).limit == 5


def test_load_records_T_and_the_source_semantics(tiny):
    loaded = C.load(tiny, opts(), [], say)
    assert loaded.T == 4 and loaded.graph.metadata["snnc.num_steps"] == 4 and not loaded.spikes
    assert loaded.diffs == [] and loaded.source_graph is not loaded.graph
    with pytest.raises(SnncError, match="T is unknown"):
        C.load(tiny, CompileOptions(input_shape=(1, 8, 8)), [], say)


def test_check_refuses_a_bad_graph_and_budget_with_spikes(tiny):
    loaded = C.load(tiny, opts(), [], say)
    loaded.graph.nodes["lif2"].tau_mem = -np.abs(loaded.graph.nodes["lif2"].tau_mem)
    with pytest.raises(ValidationError, match="tau_mem must be > 0"):
        C.check(loaded, opts())
    spiking = C.load(tiny, opts(input_encoding="spikes"), [], say)
    with pytest.raises(UsageError, match="direct \\(image\\) input"):
        C.check(spiking, opts(input_encoding="spikes", data="digits", budget="cores=2"))


def test_prepare_data_splits_calibration_held_out_and_test(tiny):
    loaded = C.load(tiny, opts(), [], say)
    assert C.prepare_data(loaded, opts()).x_test is None
    d = C.prepare_data(loaded, opts(data="digits", limit=30, calibrate=40, budget="cores=2"))
    assert d.calib.shape == (40, 1, 8, 8) and d.x_test.shape == (30, 1, 8, 8) and len(d.y_test) == 30
    x_ho, y_ho = d.held_out
    assert len(x_ho) == 150  # digits: 1,500 training images, 10% carved for validation
    seen = {x.tobytes() for x in d.calib}
    assert not any(x.tobytes() in seen for x in x_ho)  # validation and calibration samples are disjoint
    assert np.bincount(d.calib_labels, minlength=10).min() >= 3  # class-stratified: 40 of 10 classes
    assert {k: (v["split"], v["samples"]) for k, v in d.splits.items() if isinstance(v, dict) and "split" in v} \
        == {"calibration": ("train", 40), "held_out": ("validation", 150), "test": ("test", 30)}
    assert d.splits["splits"]["train"]["samples"] == 1350 and d.splits["splits"]["validation"]["samples"] == 150


def test_run_passes_budget_is_a_logged_pass(tiny):
    o = opts(data="digits", limit=20, budget="synapses=6000")
    loaded = C.load(tiny, o, [], say)
    passed = C.run_passes(loaded, C.prepare_data(loaded, o), o, TARGET, say)
    names = [e["pass"] for e in passed.ctx.log]
    assert names == ["fold_bn", "budget", "quantize"]
    entry = passed.ctx.log[1]
    assert entry["time_s"] > 0 and entry["after"]["synapses"] < entry["before"]["synapses"]
    assert entry["notes"]["budget"] == "synapses=6000" and entry["notes"]["search_steps"] >= 1
    assert passed.pruning["budget"]["reached"] <= 6000 and passed.pruning["after"]["fits"]
    assert "budget" in REGISTRY and passed.compiled.metadata["snnc.quantized"] == "loihi-sim"


def test_budget_pass_needs_the_drivers_measure():
    g = Pipeline("fold_bn").run(C.load(TinySNN(), opts(), [], say).graph, PassContext())
    with pytest.raises(SnncError, match="needs a measure of the mapped model"):
        Pipeline("budget:resource=cores;value=2").run(g, PassContext(target=TARGET, num_steps=4))
    with pytest.raises(SnncError, match="RESOURCE=VALUE"):
        Pipeline("budget:resource=wafers;value=2")


def test_map_model_points_to_budget_when_it_does_not_fit():
    torch.manual_seed(0)
    wide = TinySNN(channels=32)  # 2,048 neurons in lif1: more than one core's 1,024
    loaded = C.load(wide, opts(), [], say)
    passed = C.run_passes(loaded, C.prepare_data(loaded, opts()), opts(), TARGET, say)
    config, arrays, program = C.map_model(passed.compiled, TARGET, opts(), False, say)
    assert len(config["cores"]) >= 2 and program.T == 4
    with pytest.raises(SnncError, match="MAX_CORES.*\n.*|--budget cores=K") as e:
        C.map_model(passed.compiled, TARGET, opts(max_cores=1), False, say)
    assert "--budget cores=K" in str(e.value)


def test_measure_and_report_by_one_readout_rule(tiny):
    o = opts(data="digits", limit=25)
    loaded = C.load(tiny, o, [], say)
    data = C.prepare_data(loaded, o)
    passed = C.run_passes(loaded, data, o, TARGET, say)
    config, arrays, program = C.map_model(passed.compiled, TARGET, o, False, say)
    assert C.check_semantics(loaded, data, passed.pipe, program, o, say) == []
    metrics, acc = C.measure_model(loaded, data, passed, program, o, None, say)
    compiled = program.run(data.x_test).scores().argmax(1)
    assert acc["samples"] == 25 and acc["compiled"] == pytest.approx(float((compiled == data.y_test).mean()))
    assert "voltage of the non-spiking readout" in acc["readout"]
    report = C.make_report(tiny, loaded, data, passed, config, arrays, TARGET, metrics, acc, [])
    assert report["accuracy"] == json.loads(json.dumps(report["accuracy"])) and report["totals"]["cores"] == len(
        config["cores"])
    assert [e["pass"] for e in report["pipeline"]] == ["fold_bn", "quantize"]


def test_write_is_atomic_and_compile_model_takes_options_or_names(tiny, tmp_path):
    o = opts()
    loaded = C.load(tiny, o, [], say)
    passed = C.run_passes(loaded, C.prepare_data(loaded, o), o, TARGET, say)
    config, arrays, _ = C.map_model(passed.compiled, TARGET, o, False, say)
    data = C.prepare_data(loaded, o)
    report = C.make_report(tiny, loaded, data, passed, config, arrays, TARGET, None, None, [])
    C.write(tmp_path / "w", config, arrays, passed.compiled, report, {}, o, [], say)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        ".snnc-output", "config.json", "cores.png", "floorplan.png", "graph.nir", "report.json", "weights.npz"]
    assert nir.read(tmp_path / "w" / "graph.nir").metadata["snnc.num_steps"] == 4
    a = C.compile_model(tiny, tmp_path / "a", o)
    b = C.compile_model(tiny, tmp_path / "b", input_shape=(1, 8, 8), num_steps=4)
    assert (tmp_path / "a" / "report.json").read_bytes() == (tmp_path / "b" / "report.json").read_bytes()
    assert a == b


def test_python_api_refuses_an_unknown_option_in_one_line(tiny, tmp_path):
    import snnc
    with pytest.raises(UsageError, match="unknown compile option\\(s\\) colour"):
        snnc.compile(tiny, input_shape=(1, 8, 8), num_steps=4, out_dir=tmp_path / "o", colour="red")


def test_progress_reports_each_long_stage(tiny, tmp_path):
    """Issue 17 item 5: the float evaluation and the simulation report progress (stage, done, total)."""
    seen = {}
    C.compile_model(tiny, tmp_path / "o", opts(data="digits", limit=30),
                    progress=lambda stage, done, total: seen.__setitem__(stage, (done, total)))
    assert seen["float model"] == (30, 30) and seen["simulate"] == (30, 30)


def test_teacher_scores_cached_once_equal_the_per_batch_forward():
    """From TEACHER_CACHE_EPOCHS epochs on, finetune computes the teacher's scores once per image and its mirror;
    they equal the per-batch forward it replaces, and a distilled run with the cache trains like one without."""
    import snnc.driver.finetune as FT
    from conftest import TinySNN
    from snnc.frontend import trace
    from snnc.ir import readout as R
    from snnc.ir.trainable import GraphSNN
    g = trace(TinySNN(), (1, 8, 8), num_steps=4)
    teacher = GraphSNN(g).eval()
    rule = R.readout_rule(g)["rule"]
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    plain, mirrored = FT._teacher_cache(teacher, x, 4, rule, True, torch.device("cpu"), 16)
    with torch.no_grad():
        for idx in (np.arange(0, 7), np.arange(13, 40, 3)):
            xb = torch.from_numpy(x[idx])
            t, _ = FT.forward_counts(teacher, xb, 4, rule, [], False)
            tm, _ = FT.forward_counts(teacher, xb.flip(-1), 4, rule, [], False)
            assert torch.allclose(plain[idx], t.float(), rtol=1e-5, atol=1e-5)
            assert torch.allclose(mirrored[idx], tm.float(), rtol=1e-5, atol=1e-5)
    y = np.arange(40) % 10
    runs = []
    for limit in (FT.TEACHER_CACHE_EPOCHS, 10 ** 6):
        old, FT.TEACHER_CACHE_EPOCHS = FT.TEACHER_CACHE_EPOCHS, limit
        try:
            m, hist = FT.finetune(g, x, y, 4, epochs=3, batch_size=16, teacher=g, distill=0.5)
        finally:
            FT.TEACHER_CACHE_EPOCHS = old
        runs.append([h["loss"] for h in hist])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4)
