"""Float equivalence: torch module == traced NIR graph (snnc reference executor) == after nir.write/read;
fold_bn and threshold folding are exact."""
from collections import OrderedDict

import nir
import numpy as np
import pytest
import torch
from torch import nn

from snnc.frontend import trace
from snnc.ir import summarize
from snnc.neurons import CubaLIF, Integrator, run_float
from snnc.passes import PassContext, Pipeline
from snnc.ir.reference import run_graph

from conftest import TinySNN, digits_batch


def _torch_out(m, x, T):
    with torch.no_grad():
        return run_float(m, torch.from_numpy(x), T).double()


@pytest.mark.parametrize("tau_syn,reset", [(1e-3, "zero"), (2e-3, "zero"), (2e-3, "subtract")])
def test_torch_equals_nir_graph(tau_syn, reset, tmp_path):
    m = TinySNN(tau_syn=tau_syn, reset=reset)
    x = digits_batch(32)
    g = trace(m, (1, 8, 8), num_steps=6)
    ref = _torch_out(m, x, 6)
    out, rec = run_graph(g, x, 6, record=("lif1", "lif2"))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert rec["lif2"].sum() > 0  # the comparison covers spiking activity
    nir.write(tmp_path / "g.nir", g)
    out2, _ = run_graph(nir.read(tmp_path / "g.nir"), x, 6)
    torch.testing.assert_close(out2, out, rtol=0, atol=0)


def test_fold_bn_is_exact_and_pure(tiny):
    x = digits_batch(32, seed=1)
    g = trace(tiny, (1, 8, 8), num_steps=6)
    before = summarize(g)
    ctx = PassContext(num_steps=6)
    g2 = Pipeline("fold_bn").run(g, ctx)
    assert summarize(g) == before  # input graph untouched
    assert "bn1" not in g2.nodes and ("conv1", "lif1") in g2.edges
    a, ra = run_graph(g, x, 6, record=("lif1",))
    b, rb = run_graph(g2, x, 6, record=("lif1",))
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert torch.equal(ra["lif1"], rb["lif1"])
    assert ctx.log[0]["notes"]["batchnorm_folded"] == ["bn1"]
    assert ctx.log[0]["after"]["parameters"] < ctx.log[0]["before"]["parameters"]


def test_threshold_folding_keeps_spikes():
    torch.manual_seed(3)
    lif = CubaLIF((5,), tau_syn=1e-3, tau_mem=4e-3, threshold=torch.tensor([0.5, 1.0, 1.5, 2.0, 0.8]))
    m = nn.Sequential(OrderedDict([("fc1", nn.Linear(6, 5)), ("lif", lif), ("fc2", nn.Linear(5, 3)),
                                   ("readout", Integrator((3,)))]))
    with torch.no_grad():
        m.fc1.weight.mul_(3)
    x = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    g = trace(m, (6,), num_steps=8)
    g2 = Pipeline("fold_bn").run(g, PassContext())
    assert np.ptp(g2.nodes["lif"].v_threshold) == 0
    a, ra = run_graph(g, x, 8, record=("lif",))
    b, rb = run_graph(g2, x, 8, record=("lif",))
    assert ra["lif"].sum() > 0 and torch.equal(ra["lif"], rb["lif"])
    torch.testing.assert_close(a, b)


def test_snntorch_zero_reset_matches_reference():
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True, reset_mechanism="zero"),
                      nn.Linear(8, 4), snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True, reset_mechanism="zero"))
    x = torch.rand(16, 6)
    with torch.no_grad():
        for mod in m.modules():
            if hasattr(mod, "reset_mem"):
                mod.reset_mem()
        ref = torch.stack([m(x) for _ in range(10)]).double()
    g = trace(m, (6,), dt=1e-3)
    out, _ = run_graph(g, x, 10)
    assert ref.sum() > 0
    torch.testing.assert_close(out, ref)


def test_braille_fixture_runs_recurrent(nir_fixtures):
    from snnc.frontend import load_model
    g, _, _ = load_model(nir_fixtures / "braille_noDelay_noBias_subtract.nir", dt=1e-4)
    x = (np.random.default_rng(0).random((20, 4, 12)) < 0.3).astype(np.float32)  # [T, B, 12] spikes
    out, rec = run_graph(g, x, None, record=("lif1.lif",))
    assert out.shape == (20, 4, 7)
    assert rec["lif1.lif"].sum() > 0
