import math

import nir
import numpy as np
import pytest
import torch

from snnc.frontend import trace
from snnc.ir import summarize
from snnc.passes import REGISTRY, PassContext, Pipeline, parse_pipeline, register
from snnc.ir.quant import is_quantized
from snnc.ir.reference import run_graph
from snnc.targets import load_target

from conftest import TinySNN, digits_batch


def test_parse_pipeline_options_and_errors():
    assert parse_pipeline("fold_bn, quantize:weight_bits=6;headroom=1.5") == [
        ("fold_bn", {}), ("quantize", {"weight_bits": 6, "headroom": 1.5})]
    with pytest.raises(ValueError, match="unknown pass 'prune'"):
        parse_pipeline("prune")
    with pytest.raises(ValueError, match="unknown option"):
        parse_pipeline("quantize:bits=4")
    with pytest.raises(ValueError, match="key=value"):
        parse_pipeline("quantize:bits")


def test_custom_pass_registered_and_logged():
    name = "test_scale_fc"
    if name not in REGISTRY:
        @register(name, "scale fc weights (test)", factor=2.0)
        def _scale(graph, ctx, factor):
            graph.nodes["fc"].weight = graph.nodes["fc"].weight * factor
            ctx.note(scaled="fc")
            return graph
    g = trace(TinySNN(), (1, 8, 8), num_steps=4)
    ctx = PassContext()
    g2 = Pipeline(f"{name}:factor=3").run(g, ctx)
    np.testing.assert_allclose(g2.nodes["fc"].weight, 3 * g.nodes["fc"].weight, rtol=1e-6)
    entry = ctx.log[0]
    assert entry["pass"] == name and entry["options"] == {"factor": 3} and entry["notes"] == {"scaled": "fc"}
    assert set(entry["before"]) == {"neurons", "synapses", "parameters"}


@pytest.fixture
def quantized():
    m = TinySNN()
    g = trace(m, (1, 8, 8), num_steps=6)
    ctx = PassContext(target=load_target("loihi-sim"), calibration=digits_batch(64, seed=5), num_steps=6)
    return g, Pipeline("fold_bn,quantize").run(g, ctx), ctx


def test_quantize_fields_in_range(quantized):
    g, q, ctx = quantized
    assert is_quantized(q) and not is_quantized(g)
    fp = load_target("loihi-sim")["fixed_point"]
    for name in ("lif1", "lif2", "readout"):
        md = q.nodes[name].metadata["snnc.quant"]
        assert 1 <= md["vth_mant"] <= 131071 and 0 <= md["du"] <= 4095 and 0 <= md["dv"] <= 4095
        assert md["du"] == 4095  # tau_syn == dt: no current memory
        assert 0 <= md["bias_exp"] <= 7 and np.abs(md["bias_mant"]).max() <= 4095
    assert q.nodes["lif1"].metadata["snnc.quant"]["dv"] == round(4096 * 1e-3 / 5e-3)
    assert q.nodes["readout"].metadata["snnc.quant"]["dv"] == 0
    for name in ("conv2", "fc"):
        qm = q.nodes[name].metadata["snnc.quant"]
        assert fp["weight_exp_min"] <= qm["weight_exp"] <= fp["weight_exp_max"]
    assert q.nodes["conv1"].metadata["snnc.quant"]["host"] is True  # direct input computed on the host


def test_quantized_weights_on_integer_grid(quantized):
    from snnc.ir.lowering import lower
    _, q, _ = quantized
    low = lower(q)
    for gname, grp in low.groups.items():
        s = q.nodes[gname].metadata["snnc.quant"]["scale"]
        for p in grp.projections:
            if p.host:
                continue
            e = q.nodes[p.weighted].metadata["snnc.quant"]["weight_exp"]
            ints = p.weight * s / 2 ** (6 + e)
            np.testing.assert_allclose(ints, np.rint(ints), atol=1e-3)
            assert np.all(np.rint(ints) % 2 == 0) and ints.max() <= 254.001 and ints.min() >= -256.001


def test_quantize_keeps_float_behaviour_close(quantized):
    g, q, _ = quantized
    x = digits_batch(200, seed=9)
    a, _ = run_graph(g, x, 6)
    b, _ = run_graph(q, x, 6)
    agree = (a[-1].argmax(1) == b[-1].argmax(1)).double().mean().item()
    assert agree > 0.9


def test_quantize_deterministic():
    def once():
        g = trace(TinySNN(), (1, 8, 8), num_steps=6)
        ctx = PassContext(target=load_target("loihi-sim"), calibration=digits_batch(64, seed=5), num_steps=6)
        return summarize(Pipeline("fold_bn,quantize").run(g, ctx))
    assert once() == once()


def test_lower_weight_bits_coarser_grid():
    g = trace(TinySNN(), (1, 8, 8), num_steps=6)
    ctx = PassContext(target=load_target("loihi-sim"), calibration=digits_batch(64), num_steps=6)
    q = Pipeline("fold_bn,quantize:weight_bits=4").run(g, ctx)
    from snnc.ir.lowering import lower
    grp = lower(q).groups["lif2"]
    s = q.nodes["lif2"].metadata["snnc.quant"]["scale"]
    p = grp.projections[0]
    e = q.nodes[p.weighted].metadata["snnc.quant"]["weight_exp"]
    ints = np.rint(p.weight * s / 2 ** (6 + e))
    assert np.all(ints % 32 == 0)  # 4-bit mixed sign: step 2^(8-4+1)


def test_two_weighted_nodes_in_a_row_fold_into_one_exact_product():
    """Issue 19 (NIR's test architectures): Affine -> Affine (and Linear -> Affine) is one map; fold_bn makes it
    one node, the float reference gives the same output (to float32 rounding), and loihi-sim compiles it."""
    from snnc.backends.loihi.compile import compile_graph
    from snnc.ir.reference import run_graph
    from snnc.passes import PassContext, Pipeline
    from snnc.targets import load_target
    rng = np.random.default_rng(0)
    for first in ("Affine", "Linear"):
        n1 = (nir.Affine(weight=rng.normal(size=(8, 6)).astype(np.float32), bias=rng.normal(size=8).astype(np.float32))
              if first == "Affine" else nir.Linear(weight=rng.normal(size=(8, 6)).astype(np.float32)))
        g = nir.NIRGraph(nodes={
            "input": nir.Input(input_type={"input": np.array([6])}), "a1": n1,
            "a2": nir.Affine(weight=rng.normal(size=(5, 8)).astype(np.float32), bias=rng.normal(size=5).astype(np.float32)),
            "lif": nir.LIF(tau=np.full(5, 0.02, np.float32), r=np.full(5, 20.0, np.float32),
                           v_leak=np.zeros(5, np.float32), v_threshold=np.ones(5, np.float32),
                           metadata={"snnc.dt": 1e-3}),
            "output": nir.Output(output_type={"output": np.array([5])})},
            edges=[("input", "a1"), ("a1", "a2"), ("a2", "lif"), ("lif", "output")])
        g.metadata = {"snnc.num_steps": 6, "snnc.input_encoding": "direct"}
        x = torch.rand(6, 16, 6, generator=torch.Generator().manual_seed(1)) * 2
        before, _ = run_graph(g, x, None)
        ctx = PassContext(num_steps=6)
        folded = Pipeline("fold_bn").run(g, ctx)
        assert set(folded.nodes) == {"input", "a2", "lif", "output"}
        assert isinstance(folded.nodes["a2"], nir.Affine) and folded.nodes["a2"].metadata["snnc.folded_affine"] == "a1"
        after, _ = run_graph(folded, x, None)
        assert before.sum() > 0 and (before != after).float().mean() < 0.01  # same map; float32 rounding only
        tgt = load_target("loihi-sim")
        q = Pipeline("quantize").run(folded, PassContext(target=tgt, calibration=x[0].numpy(), num_steps=6))
        config, _, _ = compile_graph(q, tgt)
        assert [g["name"] for g in config["groups"]] == ["lif"]


def test_adapt_semantics_fine_tunes_toward_the_source_model():
    """Issue 19: the fine-tune after a semantic conversion optimises agreement with the source (its predictions
    as labels, its scores distilled), not accuracy on the labels; the notes give both agreements."""
    from conftest import TinySNN
    from snnc.driver.finetune import finetune
    from snnc.frontend import trace
    from snnc.passes import PassContext, Pipeline
    g = trace(TinySNN(reset="subtract"), (1, 8, 8), num_steps=4)
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 64)  # random labels: a label-driven fine-tune would chase them
    seen = {}

    def trainer(graph, xs, ys, T, **kw):
        seen.update(labels=np.asarray(ys).copy(), teacher=kw.get("teacher"), distill=kw.get("distill"))
        return finetune(graph, xs, ys, T, **kw)

    ctx = PassContext(num_steps=4, seed=0, trainer=trainer)
    ctx.train_data = (x, y)
    Pipeline("adapt_semantics:finetune_epochs=1;batch_size=16").run(g, ctx)
    note = [e for e in ctx.log if e.get("pass") == "adapt_semantics"][0]
    assert seen["teacher"] is not None and 0 < seen["distill"] < 1
    assert not np.array_equal(seen["labels"], y[:48])  # the source's predictions, not the dataset's labels
    for k in ("agreement_converted", "agreement_finetuned", "finetune_objective"):
        assert k in str(note), note


def _lif(n, thr=None):
    thr = np.full(n, 0.5) if thr is None else np.asarray(thr, float)
    return nir.LIF(tau=np.full(n, 4e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=thr, v_reset=np.zeros(n),
                   metadata={"snnc.dt": 1e-3, "snnc.reset": "zero"})


def _aff(rng, o, i):
    return nir.Affine(rng.normal(0.3, 1, (o, i)).astype(np.float32), rng.normal(0, 0.1, o).astype(np.float32))


def _same_after_fold_bn(nodes, edges, x, record):
    from snnc.ir import set_types
    g = set_types(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    g.metadata = {"snnc.num_steps": 8}
    before = run_graph(g, x, None, record=record)[1]
    folded = Pipeline("fold_bn").run(g, PassContext(num_steps=8))
    after = run_graph(folded, x, None, record=record)[1]
    for k in record:
        assert before[k].sum() > 20 and torch.equal(before[k], after[k]), k
    return folded


def test_fold_bn_rewrites_keep_every_spike():
    """fold_bn's exact rewrites leave every spike as it was: an Affine composed into an Affine that also reads a
    recurrent neuron is not split across the back edge (its share would arrive a step early), and per-neuron
    thresholds folded into a weighted node shared by two chains into one neuron and by another neuron scale
    one copy once (review of issue 19's rewrites: 155 -> 151 and 109 -> 229 spikes before the fixes)."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy((np.random.default_rng(1).random((8, 64, 4)) < 0.5).astype(np.float32))
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}), "a_in": _aff(rng, 6, 4), "b": _lif(6),
             "p": _aff(rng, 6, 4), "n": _aff(rng, 6, 6), "out": _aff(rng, 3, 6), "o": _lif(3),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "a_in"), ("a_in", "b"), ("input", "p"), ("p", "n"), ("b", "n"), ("n", "b"), ("b", "out"),
             ("out", "o"), ("o", "output")]
    _same_after_fold_bn(nodes, edges, x, ("b", "o"))
    rng = np.random.default_rng(2)
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}), "a": _aff(rng, 6, 4),
             "d1": nir.Delay(np.zeros(6)), "d2": nir.Delay(np.zeros(6)), "lif": _lif(6, [0.5, 1, 1.5, 0.5, 1, 2]),
             "lif2": _lif(6), "out": _aff(rng, 3, 12), "o": _lif(3),
             "output": nir.Output(output_type={"output": np.array([3])})}
    for n in ("d1", "d2"):
        nodes[n].metadata = {"snnc.delay_steps": [0] * 6}
    edges = [("input", "a"), ("a", "d1"), ("a", "d2"), ("d1", "lif"), ("d2", "lif"), ("a", "lif2"),
             ("lif", "cat"), ("lif2", "cat")]
    nodes["cat"] = _aff(rng, 6, 6)
    edges = edges + [("cat", "out2"), ("out2", "o2"), ("o2", "output")]
    nodes.pop("out"), nodes.pop("o")
    nodes["out2"], nodes["o2"] = _aff(rng, 3, 6), _lif(3)
    folded = _same_after_fold_bn(nodes, edges, x, ("lif", "lif2"))
    assert np.ptp(folded.nodes["lif"].v_threshold) == 0  # folded: one threshold
