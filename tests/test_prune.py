"""prune_channels, compress-to-fit budgets and recovery fine-tuning (issue 6)."""
import copy
import json
from collections import OrderedDict

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from snnc.cli import main
from snnc.frontend import trace
from snnc.ir import graph_figures, infer_shapes
from snnc.neurons import CubaLIF, Integrator
from snnc.passes import PassContext, Pipeline, parse_pipeline
from snnc.passes.prune import channel_groups, prune
from snnc.ir.reference import run_graph

from conftest import TinySNN, digits_batch

CRITERIA = ("l1", "activity", "attention", "random")


def folded(model, shape=(1, 8, 8), T=4):
    return Pipeline("fold_bn").run(trace(model, shape, num_steps=T), PassContext())


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stderr, r.stdout


def test_pruning_dead_channels_changes_no_output():
    """Channels whose incoming weights and bias are all zero never fire: removing them is exact."""
    g = folded(TinySNN(channels=6))
    for name, dead in (("conv1", [1, 4]), ("conv2", [0, 3, 5])):
        node = g.nodes[name]
        node.weight[dead] = 0.0
        node.bias[dead] = 0.0
    x = digits_batch(64, seed=3)
    ref, rec = run_graph(g, x, 6, record=("lif1", "lif2"))
    assert rec["lif1"].sum() > 0 and rec["lif2"].sum() > 0
    ctx = PassContext(num_steps=6)
    g2 = Pipeline("prune_channels:criterion=l1;ratios=lif1=0.67 lif2=0.5").run(g, ctx)
    assert ctx.log[0]["notes"]["groups"] == {"lif1": "4/6", "lif2": "3/6"}
    out, rec2 = run_graph(g2, x, 6, record=("lif1", "lif2"))
    assert torch.equal(out, ref)  # float64 reference: bit-equal
    keep1 = [c for c in range(6) if c not in (1, 4)]
    assert torch.equal(rec2["lif1"], rec["lif1"][:, :, keep1])


@pytest.mark.parametrize("criterion", CRITERIA)
def test_pruning_equals_zeroing_in_the_unpruned_model(criterion):
    """Removing channels computes what the unpruned model computes with those channels zeroed."""
    g = folded(TinySNN(channels=6))
    x = digits_batch(48, seed=4)
    ctx = PassContext(calibration=digits_batch(32, seed=5), num_steps=6)
    g2 = Pipeline(f"prune_channels:criterion={criterion};ratio=0.5;repair=false").run(g, ctx)
    zeroed = copy.deepcopy(g)
    for group in channel_groups(g):
        if not group.prunable:
            continue
        kept = g2.nodes[group.producers[0]].metadata["snnc.pruned"]["indices"].tolist()
        gone = [c for c in range(group.channels) if c not in kept]
        assert len(kept) == group.channels // 2
        for p in group.producers:
            zeroed.nodes[p].weight[gone] = 0.0
            zeroed.nodes[p].bias[gone] = 0.0
        for c, block in group.consumers:
            cols = np.concatenate([np.arange(k * block, (k + 1) * block) for k in gone])
            zeroed.nodes[c].weight[:, cols] = 0.0
    a, _ = run_graph(g2, x, 6)
    b, _ = run_graph(zeroed, x, 6)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.lif1 = nn.Conv2d(1, 6, 3, padding=1), CubaLIF((6, 8, 8), threshold=0.5)
        self.pool = nn.AvgPool2d(2)
        self.conv2, self.bn2, self.lif2 = nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5), CubaLIF((5, 4, 4),
                                                                                                      threshold=0.5)
        self.conv3, self.short = nn.Conv2d(5, 5, 3, padding=1), nn.Conv2d(6, 5, 1)
        self.lif3 = CubaLIF((5, 4, 4), threshold=0.5)
        self.flat, self.fc, self.ro = nn.Flatten(), nn.Linear(80, 10), Integrator((10,))
        self.eval()

    def forward(self, x):
        p = self.pool(self.lif1(self.conv1(x)))
        s3 = self.lif3(self.conv3(self.lif2(self.bn2(self.conv2(p)))) + self.short(p))
        return self.ro(self.fc(self.flat(s3)))


def test_residual_sums_are_pruned_together(tmp_path):
    g = folded(Residual())
    groups = {gr.name: gr for gr in channel_groups(g)}
    assert sorted(groups["lif3"].producers) == ["conv3", "short"] and groups["lif3"].consumers == [("fc", 16)]
    assert sorted(c for c, _ in groups["lif1"].consumers) == ["conv2", "short"]
    assert not groups["ro"].prunable and "never pruned" in groups["ro"].reason
    g2 = Pipeline("prune_channels:criterion=activity;ratio=0.4").run(g, PassContext(calibration=digits_batch(16),
                                                                               num_steps=4))
    assert g2.nodes["conv3"].weight.shape[0] == g2.nodes["short"].weight.shape[0] == 2
    assert g2.nodes["short"].weight.shape[1] == g2.nodes["conv2"].weight.shape[1] == 2
    assert g2.nodes["fc"].weight.shape == (10, 2 * 16) and g2.nodes["lif3"].tau_mem.shape == (2, 4, 4)
    nir.write(tmp_path / "r.nir", g2)
    g3 = nir.read(tmp_path / "r.nir")
    assert infer_shapes(g3)["fc"] == ((32,), (10,))
    out, _ = run_graph(g3, digits_batch(4), 4)
    assert out.shape == (4, 4, 10)


def test_recurrent_projection_loses_rows_and_columns(nir_fixtures):
    from snnc.frontend import load_model
    g, _, _ = load_model(nir_fixtures / "braille_noDelay_noBias_subtract.nir", dt=1e-4)
    x = (np.random.default_rng(0).random((20, 8, 12)) < 0.3).astype(np.float32)
    ctx = PassContext(calibration=x, num_steps=20)
    g2 = Pipeline("prune_channels:criterion=attention;ratio=0.25").run(g, ctx)
    assert g2.nodes["lif1.w_rec"].weight.shape == (10, 10) and g2.nodes["fc2"].weight.shape == (7, 10)
    assert g2.nodes["lif1.lif"].v_threshold.shape == (10,) and g2.nodes["lif2"].v_threshold.shape == (7,)
    out, _ = run_graph(g2, x, None)
    assert out.shape == (20, 8, 7)


def test_channels_that_cannot_be_removed_are_kept_with_a_reason():
    m = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("bn", nn.BatchNorm2d(4)),
                                   ("lif1", CubaLIF((4, 8, 8))), ("conv2", nn.Conv2d(4, 4, 3, padding=1, groups=2)),
                                   ("lif2", CubaLIF((4, 8, 8))), ("flat", nn.Flatten()), ("fc", nn.Linear(256, 3)),
                                   ("ro", Integrator((3,)))])).eval()
    g = trace(m, (1, 8, 8), num_steps=3)  # BatchNorm not folded
    ctx = PassContext(num_steps=3)
    Pipeline("prune_channels:criterion=l1;ratio=0.5").run(g, ctx)
    why = ctx.log[0]["notes"]["kept_whole"]
    assert "not folded" in why["lif1"] and "grouped convolution" in why["lif2"] and "never pruned" in why["ro"]
    assert ctx.log[0]["notes"]["groups"] == {}


@pytest.mark.parametrize("spec,needle", [
    ("prune_channels:criterion=magic", "is not one of l1, activity, attention, random"),
    ("prune_channels:criterion=sca", "snnc finetune --method sca"),
    ("prune_channels:ratio=0", "outside (0, 1]"),
    ("prune_channels:ratio=1.5", "outside (0, 1]"),
    ("prune_channels:ratios=lif1", "is not NAME=FRACTION"),
    ("prune_channels:ratios=lif1=2", "is not NAME=FRACTION"),
])
def test_option_errors(spec, needle):
    with pytest.raises(ValueError, match=None) as e:
        parse_pipeline(spec)
    assert needle in str(e.value)


def test_unknown_group_and_data_needed():
    g = folded(TinySNN())
    with pytest.raises(ValueError, match="no prunable group"):
        Pipeline("prune_channels:ratios=nope=0.5").run(g, PassContext(num_steps=4))
    with pytest.raises(ValueError, match="need calibration data"):
        Pipeline("prune_channels:criterion=activity").run(g, PassContext(num_steps=4))
    q = Pipeline("quantize").run(g, PassContext(num_steps=4))
    with pytest.raises(ValueError, match="before quantize"):
        prune(q, PassContext(num_steps=4), "l1", 0.5)


def test_pruning_is_deterministic():
    g = folded(TinySNN(channels=8))
    from snnc.ir import summarize

    def once():
        ctx = PassContext(calibration=digits_batch(16), num_steps=4, seed=3)
        return summarize(Pipeline("prune_channels:criterion=random;ratio=0.5").run(g, ctx))
    assert once() == once()


# ------------------------------------------------------------------ through the compiler

@pytest.fixture(scope="module")
def tiny_pickle(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "tiny.pt"
    torch.save(TinySNN(channels=8), p)
    return p


def test_report_pruning_section(tiny_pickle, tmp_path):
    code, err, _ = run("compile", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4, "-o",
                       tmp_path / "o", "--data", "digits", "--limit", 60,
                       "--passes", "fold_bn,prune_channels:criterion=activity;ratio=0.5,quantize")
    assert code == 0, err
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    pr = rep["pruning"]
    assert pr["criterion"] == "activity" and pr["layers"] == {"lif1": {"kept": 4, "total": 8},
                                                         "lif2": {"kept": 3, "total": 6}}
    for key in ("neurons", "synapses", "graph_synapses", "synops", "cores", "memory_bits", "energy_pJ"):
        assert pr["after"][key] <= pr["before"][key], key
    assert pr["after"]["neurons"] < pr["before"]["neurons"]
    assert pr["after"]["synapses"] == rep["totals"]["synapses"]
    assert "float_pruned" in rep["accuracy"]
    entry = next(e for e in rep["pipeline"] if e["pass"] == "prune_channels")
    assert entry["after"]["synapses"] < entry["before"]["synapses"]


def test_budget_is_met_or_refused_with_the_reachable_minimum(tiny_pickle, tmp_path):
    base = ["compile", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4, "--data", "digits",
            "--limit", 40]
    code, err, _ = run(*base, "-o", tmp_path / "u")
    assert code == 0, err
    full = json.loads((tmp_path / "u" / "report.json").read_text())["totals"]["synapses"]
    budget = int(full * 0.4)
    code, err, _ = run(*base, "-o", tmp_path / "b", "--budget", f"synapses={budget}")
    assert code == 0, err
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["totals"]["synapses"] <= budget and rep["pruning"]["budget"]["reached"] <= budget
    code, err, _ = run(*base, "-o", tmp_path / "x", "--budget", "synapses=10")
    assert code == 1 and "cannot be met" in err and "the smallest reachable is" in err
    code, err, _ = run(*base, "-o", tmp_path / "y", "--budget", "wafers=2")
    assert code == 1 and "RESOURCE=VALUE" in err
    assert not (tmp_path / "x").exists()


class WideReadoutSNN(nn.Module):
    """conv 1->72 on 8x8 (4,608 LIF neurons) -> flatten -> dense readout: each readout neuron listens to
    4,608 neurons, more than a core's 4,096 input axons with discrete axons (population axons: 64)."""

    def __init__(self, channels=72):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, channels, 3, padding=1)),
            ("lif1", CubaLIF((channels, 8, 8), tau_syn=1e-3, tau_mem=5e-3, threshold=0.5)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(channels * 64, 10)),
            ("readout", Integrator((10,))),
        ]))
        with torch.no_grad():
            self.net.conv1.weight.mul_(3.0)
        self.eval()

    def forward(self, x):
        return self.net(x)


def test_discrete_formats_break_the_fan_in_and_budget_makes_the_model_fit(tmp_path):
    """--formats discrete: a readout over 4,608 neurons breaks GROUP_FAN_IN (the error says so and
    points to --budget, nothing is written); --budget prunes lif1 until it fits with discrete axons, and no
    further."""
    p = tmp_path / "wide.pt"
    torch.save(WideReadoutSNN(), p)
    base = ["compile", p, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4, "--data", "digits",
            "--limit", 40]
    code, err, _ = run(*base, "-o", tmp_path / "auto")
    assert code == 0, err
    auto = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert auto["mapping"]["formats"] == "auto"
    code, err, _ = run(*base, "-o", tmp_path / "disc", "--formats", "discrete")
    assert code == 1 and "[GROUP_FAN_IN] group readout" in err and "--budget cores=K" in err
    assert not (tmp_path / "disc").exists()
    code, err, _ = run(*base, "-o", tmp_path / "fit", "--formats", "discrete", "--budget", "cores=64")
    assert code == 0, err
    rep = json.loads((tmp_path / "fit" / "report.json").read_text())
    pr = rep["pruning"]
    assert rep["mapping"]["formats"] == "discrete" and pr["budget"]["formats"] == "discrete"
    assert not pr["before"]["fits"] and "GROUP_FAN_IN" in pr["before"]["violations"] and pr["after"]["fits"]
    # the search removes no more channels than the budget needs: with 71 of 72 channels the readout's single
    # neuron fits a core (72 breaks GROUP_FAN_IN), so the first 10% step (to 64) is shrunk back to 71
    assert pr["layers"]["lif1"]["kept"] == pr["layers"]["lif1"]["total"] - 1 == 71
    assert all(c["axons_in"] <= 4096 for c in rep["cores"]) and rep["totals"]["cores"] <= 64
    code, err, out = run("simulate", tmp_path / "fit", "--data", "digits", "--limit", 40, "--json")
    assert code == 0, err
    # both figures against the written configuration run on digits read with scikit-learn directly
    from sklearn.datasets import load_digits
    from snnc.backends.loihi.sim import load_program
    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))[-297:][:40]   # snnc's fixed digits test split
    x = (d.images[perm] / 16.0).astype(np.float32)[:, None]
    acc = float((load_program(tmp_path / "fit").run(x).scores().argmax(1) == d.target[perm]).mean())
    assert json.loads(out)["accuracy"] == pytest.approx(acc) and rep["accuracy"]["compiled"] == pytest.approx(acc)
    code, err, _ = run(*base, "-o", tmp_path / "bad", "--formats", "pop")
    assert code == 2 and "--formats" in err


def test_finetune_writes_a_checkpoint_compile_takes(tiny_pickle, tmp_path):
    ck = tmp_path / "ft.pt"
    code, err, out = run("finetune", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4,
                         "--data", "digits",
                         "--val-samples", 300, "--epochs", 1, "--passes",
                         "fold_bn,prune_channels:criterion=l1;ratio=0.5", "--distill", 0.5, "-o", ck)
    assert code == 0, err
    assert "float test accuracy" in out
    meta = torch.load(ck, weights_only=True)["meta"]
    assert meta["epochs"] == 1 and len(meta["history"]) == 1 and "val_accuracy" in meta["history"][0]
    code, err, _ = run("compile", ck, "-o", tmp_path / "o", "--data", "digits", "--limit", 40)
    assert code == 0, err
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert [g["shape"][0] for g in cfg["groups"]] == [4, 3, 10]
    code, err, _ = run("finetune", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4,
                       "--data", "digits", "-o", ck, "--val-samples", 300)
    assert code == 1 and "--force" in err


def test_finetune_from_a_compile_output_folder_writes_a_safe_checkpoint(tiny_pickle, tmp_path):
    # a compile output's graph.nir, read back by nir.read, holds numpy scalars in its metadata
    # (e.g. the readout flag); the checkpoint must still load with weights_only=True
    code, err, _ = run("compile", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4,
                       "--data", "digits", "--limit", 40, "-o", tmp_path / "out")
    assert code == 0, err
    ck = tmp_path / "ft.pt"
    code, err, _ = run("finetune", tmp_path / "out", "--data", "digits", "--val-samples", 300, "--limit", 40,
                       "--passes", "prune_channels:criterion=l1;ratio=0.5", "-o", ck)
    assert code == 0, err
    loaded = torch.load(ck, weights_only=True)
    assert loaded["arch"] == "nir_graph" and loaded["meta"]["source_model"] == str(tmp_path / "out")
    code, err, _ = run("compile", ck, "-o", tmp_path / "again", "--data", "digits", "--limit", 40)
    assert code == 0, err
    cfg = json.loads((tmp_path / "again" / "config.json").read_text())
    assert [g["shape"][0] for g in cfg["groups"]] == [4, 3, 10]
    # an already pruned model distils from another teacher (e.g. the unpruned one) with --teacher
    common = ["--data", "digits", "--val-samples", 300, "--limit", 40]
    code, err, _ = run("finetune", ck, "--teacher", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8",
                       "--distill", 0.5, *common, "-o", tmp_path / "t.pt")
    assert code == 0, err
    assert torch.load(tmp_path / "t.pt", weights_only=True)["meta"]["teacher"] == str(tiny_pickle)
    code, err, _ = run("finetune", ck, "--teacher", "fmnist_cnn", "--distill", 0.5, *common, "-o", tmp_path / "u.pt")
    assert code == 1 and "teacher fmnist_cnn takes input [1, 28, 28]" in err and not (tmp_path / "u.pt").exists()
    code, err, _ = run("finetune", ck, "--teacher", tiny_pickle, *common, "-o", tmp_path / "v.pt")
    assert code == 1 and "give --distill" in err


def test_training_methods_prune_while_training(tiny_pickle, tmp_path):
    # sca and minimax start from the unpruned graph and end with the target: the model comes back pruned
    from snnc.driver.finetune import finetune
    from snnc.driver.methods import Recipe, SynapseCount, minimax_budget
    from snnc.data import load_digits
    g = folded(TinySNN(channels=8))  # the module tiny_pickle holds
    x, y = load_digits("train")
    model, hist = finetune(g, x[:640], y[:640], 4, epochs=2, batch_size=64, recipe=Recipe("sca", keep=0.5))
    out = model.to_nir()
    rep = model.method_report["pruning"]
    # one global ranking: 7 of the 14 channels kept, split over the layers by activity (at least one each)
    kept = out.nodes["conv1"].weight.shape[0] + out.nodes["conv2"].weight.shape[0]
    assert kept == 7 and min(rep["kept"].values()) >= 1 and rep["updates"][-1]["kept_fraction_target"] == 0.5
    assert rep["updates"][0]["kept_fraction_target"] > 0.5 and sum(u["regrown"] for u in rep["updates"]) > 0
    assert len(hist) == 2 and all("kept" in h for h in hist)
    # minimax: the synapse budget of a uniform cut to 0.5, met (or forced) by the end, and exact synapse counts
    budget = minimax_budget(g, 0.5)
    assert 0.2 < budget < 0.6
    model, _ = finetune(g, x[:640], y[:640], 4, epochs=2, batch_size=64, recipe=Recipe("minimax", keep=0.5))
    out = model.to_nir()
    rep = model.method_report["pruning"]
    assert rep["reached_at_batch"] is not None and rep["trace"]
    assert graph_figures(out)["synapses"] <= budget * graph_figures(g)["synapses"] + 1
    groups = [gr for gr in channel_groups(g) if gr.prunable]
    count = SynapseCount(g, groups)
    assert count.total == graph_figures(g)["synapses"]
    half = {gr.name: torch.tensor([1.0] * (gr.channels // 2) + [0.0] * (gr.channels - gr.channels // 2))
            for gr in groups}
    cut, _ = prune(copy.deepcopy(g), PassContext(), "l1", {gr.name: gr.channels // 2 for gr in groups})
    # any masks: the count equals the synapses of the graph cut to those channels (here the l1 cut's sizes)
    assert count(half) == graph_figures(cut)["synapses"]


def test_spike_thrift_trains_thresholds_and_leaks_on_the_grid(tiny_pickle):
    from snnc.driver.finetune import finetune
    from snnc.driver.methods import Recipe, attention_map
    from snnc.data import load_digits
    g = folded(TinySNN(channels=8))
    cut, _ = prune(copy.deepcopy(g), PassContext(), "l1", 0.5)
    x, y = load_digits("train")
    model, hist = finetune(cut, x[:384], y[:384], 4, epochs=1, batch_size=64, teacher=g,
                           recipe=Recipe("spike-thrift", synops=0.1))
    rep = model.method_report
    assert rep["attention_layers"] == ["lif1", "lif2"] and rep["thresholds"] and rep["attention"] == 1000.0
    out = model.to_nir()
    for name in ("lif1", "lif2"):
        gain = rep["neurons"][name]["threshold_gain"]
        assert gain != 1.0
        np.testing.assert_allclose(out.nodes[name].v_threshold, cut.nodes[name].v_threshold * gain, rtol=1e-5)
        # the leak sits on the 12-bit du/dv grid: dt/tau_mem = (dv + 0) / 4096 exactly
        c = float(out.nodes[name].metadata["snnc.dt"]) / out.nodes[name].tau_mem
        np.testing.assert_allclose(c * 4096, np.round(c * 4096), atol=1e-3)
    assert "synops_per_sample" in hist[0] and hist[0]["synop_energy_uJ"] > 0
    # attention maps: unit norm per sample, invariant to the number of channels summed
    a = torch.rand(3, 4, 5, 5)
    q = attention_map(a)
    np.testing.assert_allclose(q.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(attention_map(torch.cat([a, a], 1)).numpy(), q.numpy(), rtol=1e-5)


def test_finetune_trains_at_the_folded_t(tiny_pickle, tmp_path):
    ck = tmp_path / "ft.pt"
    code, err, out = run("finetune", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4,
                         "--data", "digits", "--val-samples", 300, "--epochs", 1, "--limit", 40,
                         "--passes", "fold_bn,fold_timesteps:steps=2", "--distill", 0.5, "-o", ck)
    assert code == 0, err
    assert "at T = 2" in out
    loaded = torch.load(ck, weights_only=True)
    assert loaded["config"]["metadata"]["snnc.num_steps"] == 2 and loaded["meta"]["num_steps_before_folding"] == 4
    code, err, out = run("finetune", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4,
                         "--data", "digits", "--method", "sca", "-o", tmp_path / "x.pt")
    assert code == 1 and "give the keep target" in err
    code, err, out = run("finetune", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4,
                         "--data", "digits", "--method", "sca", "--keep", 0.5, "--passes",
                         "fold_bn,prune_channels:ratio=0.5", "-o", tmp_path / "x.pt")
    assert code == 1 and "leave prune_channels out" in err and not (tmp_path / "x.pt").exists()



def test_finetune_method_minimax_from_the_cli(tiny_pickle, tmp_path):
    ck = tmp_path / "mm.pt"
    code, err, out = run("finetune", tiny_pickle, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4,
                         "--data", "digits", "--val-samples", 300, "--epochs", 1, "--limit", 40,
                         "--method", "minimax", "--keep", 0.5, "--distill", 0.5, "--synops", 0.05, "-o", ck)
    assert code == 0, err
    assert "method minimax" in out and "kept channels" in out
    meta = torch.load(ck, weights_only=True)["meta"]
    assert meta["method"]["method"] == "minimax" and meta["method"]["synops"] == 0.05
    assert "synops_per_sample" in meta["history"][0]
    reg = meta["method"]["synops_regulariser"]
    assert reg["weight"] == 0.05 and reg["synops_first_batch"] > 0 and "energy_saved_uJ" in reg
    code, err, _ = run("compile", ck, "-o", tmp_path / "o", "--data", "digits", "--limit", 40)
    assert code == 0, err
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    kept = meta["method"]["pruning"]["kept"]
    assert [g["shape"][0] for g in cfg["groups"]][:2] == [kept["lif1"], kept["lif2"]]


def test_sca_regrowth_score_is_the_batchnorm_scale_gradient():
    # the probe on the folded conv gives dL/ds of the BatchNorm's eval scale s, as the unfolded graph's own gradient
    from snnc.driver.methods import ProbedMasks, batchnorm_affines
    from snnc.ir import readout as R
    from snnc.ir.trainable import GraphSNN
    m = TinySNN(channels=8)
    g = trace(m, (1, 8, 8), num_steps=4)
    f = Pipeline("fold_bn").run(g, PassContext(num_steps=4))
    x = torch.as_tensor(digits_batch(16, seed=2))
    y = torch.arange(16) % 10
    bn = batchnorm_affines(g)
    assert set(bn) == {"conv1"}
    unf = GraphSNN(g)
    loss = torch.nn.functional.cross_entropy(R.step_scores(unf, x, 4, R.readout_rule(g)["rule"]), y)
    loss.backward()
    want = torch.diagonal(unf.weights["bn1::weight"].grad[:, :, 0, 0]).detach()
    model = GraphSNN(f)
    group = next(gr for gr in channel_groups(f) if gr.name == "lif1")
    masks = ProbedMasks(model, [group], bn)
    masks.apply()
    loss = torch.nn.functional.cross_entropy(R.step_scores(model, x, 4, R.readout_rule(f)["rule"]), y)
    loss.backward()
    got = masks.grads()["lif1"]
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3, atol=1e-6)
    # a closed channel keeps a score (its conv output still exists): the gate is shut, the probe is not
    masks.set("lif1", np.arange(4))
    masks.apply()
    loss = torch.nn.functional.cross_entropy(R.step_scores(model, x, 4, R.readout_rule(f)["rule"]), y)
    loss.backward()
    assert masks.grads()["lif1"][4:].abs().sum() > 0
