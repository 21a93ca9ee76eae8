"""The command line: the report contract, simulate --json, determinism, and bad input."""
import json
from collections import OrderedDict
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from snnc.cli import main
from snnc.neurons import CubaLIF

from conftest import TinySNN


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def compiled(bundled, fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "out"
    r = run("compile", bundled, "--target", "loihi-sim", "-o", out, "--data", "fashion-mnist", "--limit", 200)
    assert r.exit_code == 0, r.output
    return out, r


def test_report_contract(compiled):
    out, r = compiled
    rep = json.loads((out / "report.json").read_text())
    assert rep["target"] == "loihi-sim"
    core_keys = {"core", "neurons", "axons_in", "axons_out", "synapses", "memory_bits"}
    assert rep["cores"] and all(core_keys <= set(c) for c in rep["cores"])
    assert core_keys - {"core"} | {"cores"} <= set(rep["totals"])
    assert rep["totals"]["cores"] == len(rep["cores"])
    for k in core_keys - {"core"}:
        assert rep["totals"][k] == sum(c[k] for c in rep["cores"])
    e = rep["energy"]
    assert e["per_inference_pJ"] > 0 and set(e["breakdown"]) == {"synops_pJ", "neuron_updates_pJ",
                                                                  "spike_messages_pJ"}
    assert abs(sum(e["breakdown"].values()) - e["per_inference_pJ"]) < 1e-3 * e["per_inference_pJ"]
    assert "Davies" in e["sources"]["energy_per_event"]
    acc = rep["accuracy"]
    assert acc["samples"] == 200 and "Fashion-MNIST test split" in acc["source"] and 0.5 < acc["compiled"] <= 1
    assert abs(acc["compiled"] - acc["float"]) <= 0.03
    lim = rep["limits"]["core"]
    for c in rep["cores"]:
        assert c["neurons"] <= lim["neurons"] and c["axons_in"] <= lim["axons_in"]
        assert c["axons_out"] <= lim["axons_out"] and c["memory_bits"] <= lim["synapse_memory_bits"]
    assert "compiled" in r.output and "energy per inference" in r.output  # the terminal report


def test_graph_nir_loads(compiled):
    out, _ = compiled
    g = nir.read(str(out / "graph.nir"))
    assert "lif2" in g.nodes and "bn1" not in g.nodes
    assert g.nodes["lif2"].metadata["snnc.quant"]["target"] == "loihi-sim"


def _fmnist_test_split(n):
    """The first ``n`` Fashion-MNIST test images and labels read straight from the IDX files (gzip +
    numpy, not snnc's loader): float32 [n, 1, 28, 28] in [0, 1], int64 [n]."""
    import gzip
    from snnc.data import find_fashion_mnist
    root = find_fashion_mnist()
    with gzip.open(root / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return x.astype(np.float32) / 255.0, y.astype(np.int64)


def test_simulate_json_matches_report(compiled):
    """simulate --json and report.json against figures recomputed from the written folder: the accuracy of
    the configuration on images and labels read without snnc's loader, and the energy from the activity
    counts times the target file's pJ per event (Davies et al. 2018, Table 2)."""
    out, _ = compiled
    r = run("simulate", out, "--data", "fashion-mnist", "--limit", 200, "--json")
    assert r.exit_code == 0
    res = json.loads(r.stdout.strip().splitlines()[-1])
    rep = json.loads((out / "report.json").read_text())
    from snnc.backends.loihi.sim import load_program
    from snnc.targets import load_target
    x, y = _fmnist_test_split(200)
    acc = float((load_program(out).run(x).scores().argmax(1) == y).mean())
    assert res["samples"] == rep["accuracy"]["samples"] == 200
    assert res["accuracy"] == pytest.approx(acc) and rep["accuracy"]["compiled"] == pytest.approx(acc)
    pj = load_target("loihi-sim")["energy_pJ"]
    assert res["energy_breakdown_pJ"]["synops_pJ"] == pytest.approx(res["synops_per_inference"] * pj["synop"])
    assert res["energy_per_inference_pJ"] == pytest.approx(sum(res["energy_breakdown_pJ"].values()))
    assert rep["energy"]["per_inference_pJ"] == pytest.approx(res["energy_per_inference_pJ"], rel=1e-6)


def test_compile_is_byte_deterministic(compiled, bundled, tmp_path):
    out, _ = compiled
    again = tmp_path / "again"
    assert run("compile", bundled, "-o", again, "--data", "fashion-mnist", "--limit", 200).exit_code == 0
    for f in ("config.json", "weights.npz", "graph.nir", "report.json", "cores.png", "floorplan.png"):
        assert (out / f).read_bytes() == (again / f).read_bytes(), f


def test_inspect_targets_passes(compiled, bundled):
    out, _ = compiled
    r = run("inspect", bundled)
    assert r.exit_code == 0 and "lif1" in r.output and "CubaLIF" in r.output
    r = run("inspect", out)
    assert r.exit_code == 0 and "cores" in r.output
    r = run("targets")
    assert "loihi-sim" in r.output and "4096 input axons" in r.output
    r = run("passes")
    assert "fold_bn" in r.output and "quantize" in r.output


def _pickled(tmp_path, model, name="m.pt"):
    p = tmp_path / name
    torch.save(model, p)
    return p


def test_bad_input_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    r = run("compile", corrupt, "-o", tmp_path / "o")
    assert r.exit_code == 1 and r.stderr.startswith("snnc: error:") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()

    p = _pickled(tmp_path, TinySNN())
    r = run("compile", p, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "--trust-pickle" in r.stderr

    # max pooling of membrane currents on the chip has no exact form: refused, naming the layer and the fix
    bad = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("lif", CubaLIF()), ("conv2", nn.Conv2d(2, 2, 3)),
                                     ("mp", nn.MaxPool2d(2)), ("lif2", CubaLIF())]))
    r = run("compile", _pickled(tmp_path, bad, "bad.pt"), "-o", tmp_path / "o", "--trust-pickle",
            "--input-shape", "1,8,8", "--num-steps", 4)
    assert r.exit_code == 1 and "'mp'" in r.stderr and "MaxPool2d" in r.stderr and "AvgPool2d" in r.stderr
    assert len(r.stderr.strip().splitlines()[-1:]) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_max_cores_and_existing_output(tmp_path):
    from conftest import TinySNN
    m = TinySNN(channels=8)
    p = _pickled(tmp_path, m)
    out = tmp_path / "o"
    r = run("compile", p, "-o", out, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4)
    assert r.exit_code == 0, r.output
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    r = run("compile", p, "-o", out, "--trust-pickle", "--input-shape", "1,8,8", "--num-steps", 4)
    assert r.exit_code == 1 and "--force" in r.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    rep = json.loads((out / "report.json").read_text())
    assert rep["energy"]["per_inference_pJ"] is None and "--data" in rep["energy"]["note"]
    assert not [f for f in tmp_path.iterdir() if ".tmp-" in f.name]


def test_max_cores_too_small(bundled, tmp_path):
    r = run("compile", bundled, "-o", tmp_path / "o", "--max-cores", 5)
    assert r.exit_code == 1 and "MAX_CORES" in r.stderr and "short by" in r.stderr and "limit is 5" in r.stderr
    assert not (tmp_path / "o").exists()


def test_nir_file_reset_option(nir_fixtures, tmp_path):
    braille = nir_fixtures / "braille_noDelay_noBias_subtract.nir"
    r = run("compile", braille, "-o", tmp_path / "ok", "--num-steps", 50)
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert cfg["input"]["encoding"] == "spikes" and any(p["recurrent"] for g in cfg["groups"] for p in g["projections"])
    # subtractive reset (the source model's semantics) is refused without the flag, with the measured agreement
    r = run("compile", braille, "-o", tmp_path / "sub", "--num-steps", 50, "--reset", "subtract")
    assert r.exit_code == 1 and "cannot keep" in r.stderr and "lif1.lif" in r.stderr and "agree on" in r.stderr
    assert "--allow-semantic-change" in r.stderr and not (tmp_path / "sub").exists()
    r = run("compile", braille, "-o", tmp_path / "sub", "--num-steps", 50, "--reset", "subtract",
            "--allow-semantic-change")
    assert r.exit_code == 0, r.output
    checks = json.loads((tmp_path / "sub" / "report.json").read_text())["checks"]
    sem = [c for c in checks if c["check"] == "SEMANTIC_CHANGE"]
    assert {c["node"] for c in sem} == {"lif1.lif", "lif2"}
    # the reported agreement is the share of the 64 random spike inputs (seed 0) on which the source graph
    # (subtract reset, snnc's float executor) and the written configuration (loihi-sim) pick the same class
    assert {c["agreement_samples"] for c in sem} == {"64 random spike inputs (p = 0.2 per step; no --data given)"}
    from snnc.backends.loihi.sim import load_program
    from snnc.frontends import load_model
    from snnc.ir.readout import scores
    src, _, _ = load_model(braille, num_steps=50, reset="subtract")
    shape = tuple(int(v) for v in src.nodes["input"].input_type["input"])
    xs = (np.random.default_rng(0).random((50, 64) + shape) < 0.2).astype(np.float32)
    a = scores(src, xs, 50, spikes=True).argmax(1)
    b = load_program(tmp_path / "sub").run(xs).scores().reshape(64, -1).argmax(1)
    assert all(c["agreement"] == pytest.approx(float((a == b).mean())) for c in sem), (sem[0]["agreement"], (a == b).mean())
    r = run("compile", braille, "-o", tmp_path / "d", "--num-steps", 50, "--data", "fashion-mnist")
    assert r.exit_code == 1 and "spike input" in r.stderr


def test_incomplete_target_file(bundled, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nbackend = "loihi"\n[core]\nneurons = 10\n')
    r = run("compile", bundled, "-o", tmp_path / "o", "--target", bad)
    assert r.exit_code == 1 and "lacks" in r.stderr and "[core].axons_in" in r.stderr
    assert not (tmp_path / "o").exists()
