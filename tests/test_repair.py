"""Repair after a channel cut (issue 18, part 1): the layers that read cut channels are refitted in closed
form to reproduce the unpruned network's layer outputs; on by default, ``repair=false`` switches it off, no
data means no repair and the log says so."""
from __future__ import annotations

import copy
from collections import OrderedDict

import nir
import numpy as np
import torch
from torch import nn

from snnc import data as D
from snnc.frontends import load_model
from snnc.ir import readout as R
from snnc.ir.reference import GraphExecutor
from snnc.neurons import CubaLIF, Integrator
from snnc.passes import PassContext, Pipeline
from snnc.passes.prune import prune
from snnc.passes.repair import repair

from conftest import TinySNN, digits_batch


def folded(module, shape=(1, 8, 8), T=6):
    g = load_model(module, input_shape=shape, num_steps=T)[0]
    return Pipeline("fold_bn").run(g, PassContext(num_steps=T))


class Dense(nn.Module):
    """64 -> 24 (LIF) -> 10 (Linear, no bias) -> integrator readout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(OrderedDict([
            ("flat", nn.Flatten()), ("fc1", nn.Linear(64, 24)),
            ("lif1", CubaLIF((24,), tau_syn=1e-3, tau_mem=5e-3, threshold=0.3)),
            ("fc2", nn.Linear(24, 10, bias=False)), ("ro", Integrator((10,)))]))
        with torch.no_grad():
            self.net.fc1.weight.mul_(3.0)
        self.eval()

    def forward(self, x):
        return self.net(x)


def test_refit_is_the_ridge_least_squares_solution():
    """The repaired readout weights equal numpy's least squares on the same rows (sums over the T steps,
    since fc2 feeds an integrator; bias column = T), up to the small ridge."""
    g = folded(Dense())
    orig = copy.deepcopy(g)
    x = digits_batch(400, seed=2)
    ctx = PassContext(calibration=x, num_steps=6)
    pruned = Pipeline("prune_channels:criterion=l1;ratio=0.5;repair=false").run(g, ctx)
    fit = copy.deepcopy(pruned)
    log = repair(fit, orig, ["fc2"], x, 6, ridge=1e-12)
    assert isinstance(fit.nodes["fc2"], nir.Affine)  # a Linear gains the fitted bias
    # the same rows by hand: pruned lif1 spikes summed over steps -> unpruned fc2 outputs summed
    ex_p, ex_o = GraphExecutor(pruned, torch.float32), GraphExecutor(orig, torch.float32)
    xs, ys = 0, 0
    for _ in range(6):
        ex_p.step(torch.from_numpy(x))
        ex_o.step(torch.from_numpy(x))
        xs = xs + ex_p.values["lif1"].double().numpy()
        ys = ys + ex_o.values["fc2"].double().numpy()
    A = np.concatenate([xs, np.full((len(xs), 1), 6.0)], 1)
    sol, *_ = np.linalg.lstsq(A, ys, rcond=None)
    np.testing.assert_allclose(fit.nodes["fc2"].weight, sol[:-1].T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fit.nodes["fc2"].bias, sol[-1], rtol=1e-3, atol=1e-4)
    assert log["fc2"]["error_after"] < log["fc2"]["error_before"]


def test_repair_on_by_default_brings_the_cut_model_back():
    """TinySNN on scikit-learn's digits at keep 0.5, repaired on the 1,500 training images: on the 297 test
    images its scores are far closer to the unpruned model's than the cut model's (relative error 0.28 vs
    0.63 when written) and it agrees with the unpruned predictions more often; each refit lowered its layer's
    output error."""
    g = folded(TinySNN(channels=8))
    xtr, _ = D.load("digits", "train")
    xte, _ = D.load("digits", "test")
    ref = R.scores(g, xte, 6)
    ctx = PassContext(calibration=xtr[:64], num_steps=6, fit_samples=lambda n: xtr[:n])
    rep = Pipeline("prune_channels:criterion=l1;ratio=0.5").run(copy.deepcopy(g), ctx)
    cut = Pipeline("prune_channels:criterion=l1;ratio=0.5;repair=false").run(copy.deepcopy(g), PassContext(num_steps=6))
    notes = ctx.log[0]["notes"]["repair"]
    assert notes["samples"] == 1500 and notes["data"] == "training split (fitting samples)"
    layers = notes["layers"]
    assert set(layers) == {"conv2", "fc"}
    assert all(v["output_error_after"] < v["output_error_before"] for v in layers.values())
    s_rep, s_cut = R.scores(rep, xte, 6), R.scores(cut, xte, 6)
    err = [np.linalg.norm(s - ref) / np.linalg.norm(ref) for s in (s_rep, s_cut)]
    assert err[0] < 0.6 * err[1], err
    agree = [float((s.argmax(1) == ref.argmax(1)).mean()) for s in (s_rep, s_cut)]
    assert agree[0] > agree[1] + 0.1, agree
    assert rep.metadata["snnc.pruning"]["repair"]["layers"] == layers
    choice = notes["choice"]  # two candidates: the kept one reproduces the readout input better on the fit data
    errs = choice["readout_error"]
    assert set(errs) == {"all layers", "readout only"} and errs[choice["kept"]] == min(errs.values())
    assert choice["kept"] == "all layers"  # conv2 was refit (above)


def test_without_data_the_cut_is_kept_and_the_log_says_why():
    g = folded(TinySNN(channels=6))
    ctx = PassContext(num_steps=6)
    out = Pipeline("prune_channels:criterion=l1;ratio=0.5").run(copy.deepcopy(g), ctx)
    assert ctx.log[0]["notes"]["repair"] == {"not_run": "no data (compile with --data, or PassContext(calibration=...))"}
    off = Pipeline("prune_channels:criterion=l1;ratio=0.5;repair=false").run(copy.deepcopy(g), PassContext(num_steps=6))
    for name in ("conv2", "fc"):
        np.testing.assert_array_equal(out.nodes[name].weight, off.nodes[name].weight)


def test_budget_search_ranks_refitted_candidates_by_the_measured_resource():
    """search_budget with a stand-in mapper (cores = ceil(neurons / 100), bound unrounded): each candidate's
    readout is refitted before its accuracy is measured; a step that leaves the core count unchanged is
    costed by the bound; the step that meets the budget is shrunk to the largest count that meets it."""
    from snnc.passes.budget import search_budget
    from snnc.passes.repair import ReadoutRefit
    g = folded(TinySNN(channels=8))
    xtr, ytr = D.load("digits", "train")
    ctx = PassContext(calibration=xtr[:64], num_steps=6)
    seen = []

    def measure(graph, x_sim):
        n = sum(int(np.prod(np.asarray(next(iter(node.output_type.values()))))) for node in graph.nodes.values()
                if type(node).__name__ in ("CubaLIF", "LIF"))
        seen.append(n)
        return {"cores": int(np.ceil(n / 100)), "cores_bound": n / 100, "fits": True, "violations": []}

    class Counting(ReadoutRefit):
        applied = 0

        def apply(self, pruned):
            Counting.applied += 1
            return super().apply(pruned)

    refit = Counting(g, xtr[:512], 6)
    assert refit.layer == "fc"
    full = measure(g, None)["cores"]
    keep, log = search_budget(g, ctx, measure, ("cores", full - 2), "l1", xtr[1000:1200], ytr[1000:1200], refit=refit)
    assert Counting.applied >= len(seen) - 2  # every candidate was refitted (not the two unpruned measures)
    assert log["reached"] <= full - 2 and "readout refitted" in log["method"]
    last = log["steps"][-1]["group"]  # shrunk: one more channel in the last step's group breaks the budget
    more = prune(copy.deepcopy(g), ctx, "l1", dict(keep, **{last: keep[last] + 1}))[0]
    assert measure(more, None)["cores"] > full - 2


def test_train_epochs_fine_tunes_the_cut_model_in_one_compile(tmp_path):
    """snnc compile --budget ... --train-epochs 1: cut, repair, one epoch of distilled fine-tuning on the
    fitting samples, quantize; the report says so and the compiled model is the trained one."""
    import json
    from click.testing import CliRunner
    from snnc.cli import main
    torch.save(TinySNN(channels=8), tmp_path / "t.pt")
    base = ["compile", str(tmp_path / "t.pt"), "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", "4",
            "--data", "digits", "--limit", "100", "--passes", "fold_bn,prune_channels:ratio=0.5,quantize", "--json"]
    runner = CliRunner()
    a = runner.invoke(main, base + ["-o", str(tmp_path / "a")])
    b = runner.invoke(main, base + ["-o", str(tmp_path / "b"), "--train-epochs", "1"])
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    tr = rb["pruning"]["training"]
    assert tr["epochs"] == 1 and tr["samples"] == 1350 and tr["val_samples"] == 150 and len(tr["history"]) == 1
    assert [e["pass"] for e in rb["pipeline"]] == ["fold_bn", "prune_channels", "train", "quantize"]
    assert "training" not in ra["pruning"] and tr["history"][0]["loss"] > 0
    wa, wb = np.load(tmp_path / "a" / "weights.npz"), np.load(tmp_path / "b" / "weights.npz")
    assert any(not np.array_equal(wa[k], wb[k]) for k in wa.files if k.endswith(".weight"))  # the trained model
    c = runner.invoke(main, ["compile", str(tmp_path / "t.pt"), "--trust-pickle", "--input-shape", "1,8,8",
                             "--num-steps", "4", "--data", "digits", "-o", str(tmp_path / "c"), "--train-epochs", "1"])
    assert c.exit_code == 2 or c.exit_code == 1
    assert "--train-epochs trains a cut or folded model" in c.output
    # spike-thrift on the cut model: thresholds and leaks trained, attention maps matched, reported
    d = runner.invoke(main, base + ["-o", str(tmp_path / "d"), "--train-epochs", "1", "--train-method", "spike-thrift"])
    assert d.exit_code == 0, d.output
    md = json.loads(d.stdout)["pruning"]["training"]["method"]
    assert md["method"] == "spike-thrift" and md["attention_layers"] == ["lif1", "lif2"]
    assert md["neurons"]["lif1"]["threshold_gain"] != 1.0


def test_train_epochs_with_timesteps_trains_at_the_folded_t(tmp_path):
    import json
    from click.testing import CliRunner
    from snnc.cli import main
    torch.save(TinySNN(channels=8), tmp_path / "t.pt")
    base = ["compile", str(tmp_path / "t.pt"), "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", "4",
            "--data", "digits", "--limit", "100", "--timesteps", "2", "--json"]
    runner = CliRunner()
    a = runner.invoke(main, base + ["-o", str(tmp_path / "a"), "--train-epochs", "1"])
    assert a.exit_code == 0, a.output
    ra = json.loads(a.stdout)
    train = next(e for e in ra["pipeline"] if e["pass"] == "train")
    assert train["notes"]["num_steps"] == 2 and [e["pass"] for e in ra["pipeline"]] == [
        "fold_bn", "fold_timesteps", "train", "quantize"]
    # folded, then cut: the teacher (the model before the cut) is already at T' = 2, and runs at it
    b = runner.invoke(main, base + ["-o", str(tmp_path / "b"), "--train-epochs", "1", "--passes",
                                    "fold_bn,prune_channels:ratio=0.5,quantize"])
    assert b.exit_code == 0, b.output
    rb = json.loads(b.stdout)
    assert [e["pass"] for e in rb["pipeline"]] == ["fold_bn", "fold_timesteps", "prune_channels", "train", "quantize"]
    assert rb["pruning"]["training"]["num_steps"] == 2
    c = runner.invoke(main, base + ["-o", str(tmp_path / "c"), "--train-method", "spike-thrift"])
    assert c.exit_code in (1, 2) and "--train-method and --train-synops shape the training" in c.output
