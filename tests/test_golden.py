"""Golden-graph tests: canonical JSON summaries under tests/golden/.

Regenerate on purpose (and review the diff before committing) with::

    make golden        # = SNNC_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py
"""
import difflib
import json
import os
from pathlib import Path

import nir
import pytest

from snnc.backends.loihi.compile import compile_graph
from snnc.frontend import load_model, normalize_nir
from snnc.ir import dumps_canonical, summarize
from snnc.passes import PassContext, Pipeline
from snnc.targets import load_target

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("SNNC_REGEN_GOLDEN") == "1"


def check(name: str, obj) -> None:
    text = dumps_canonical(obj)
    path = GOLDEN / name
    if REGEN:
        path.write_text(text)
        return
    if not path.is_file():
        pytest.fail(f"missing golden file {path}; create it with `make golden` and review it")
    want = path.read_text()
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), str(path), "now", n=2))
        pytest.fail(f"{name} differs from the golden file (regenerate on purpose with `make golden`):\n{diff[:6000]}")


def core_map(config: dict) -> dict:
    """The readable part of a loihi-sim config: groups, slices, projections and per-core figures."""
    return {
        "latency_steps": config["latency_steps"], "outputs": config["outputs"], "input": config["input"],
        "groups": [{k: g[k] for k in ("name", "kind", "shape", "du", "dv", "vth_mant", "bias_exp", "offset",
                                      "slices", "channel_block") if k in g} |
                   {"projections": [{k: p[k] for k in ("source", "ops", "weight_exp", "delay", "host", "synapses",
                                                       "format", "axon_type", "atoms") if k in p}
                                    for p in g["projections"]]} for g in config["groups"]],
        "cores": config["cores"], "mapping": config.get("mapping"),
    }


def test_bundled_traced_graph(bundled):
    g, _, _ = load_model(bundled)
    check("fmnist_cnn.traced.json", summarize(g))


def test_bundled_core_map(bundled):
    """Compiled without calibration data (worst-case bounds), so it needs no dataset."""
    g, _, _ = load_model(bundled)
    tgt = load_target("loihi-sim")
    q = Pipeline("fold_bn,quantize").run(g, PassContext(target=tgt, num_steps=8))
    check("fmnist_cnn.compiled.json", summarize(q))
    config, _, _ = compile_graph(q, tgt)
    check("fmnist_cnn.coremap.json", core_map(config))


@pytest.mark.parametrize("fname", ["lif_norse.nir", "braille_noDelay_noBias_subtract.nir"])
def test_nir_paper_fixtures(nir_fixtures, fname):
    g = normalize_nir(nir.read(str(nir_fixtures / fname)), dt=1e-4)
    check(fname.replace(".nir", ".json"), summarize(g))


@pytest.mark.parametrize("name", ["fmnist_cnn", "fmnist_wide", "fmnist_res"])
def test_pruned_zoo_graphs(name):
    """Pruned versions of the zoo's models (l1, keep 0.5: deterministic without data)."""
    import snnc.models
    if name not in snnc.models.BUNDLED or not snnc.models.BUNDLED[name].is_file():
        pytest.skip(f"shipped model {name} not present")
    g, _, info = load_model(snnc.models.path(name))
    q = Pipeline("fold_bn,prune_channels:criterion=l1;ratio=0.5").run(g, PassContext(num_steps=info["num_steps"]))
    check(f"{name}.pruned_l1_0.5.json", summarize(q))
