from collections import OrderedDict

import nir
import numpy as np
import pytest
import torch
from torch import nn

from snnc.frontend import ModelLoadError, load_model, normalize_nir, trace
from snnc.ir import UnsupportedNodeError, graph_figures, infer_shapes
from snnc.neurons import CubaLIF

from conftest import TinySNN


def test_trace_nodes_shapes_metadata(tiny):
    g = trace(tiny, (1, 8, 8), num_steps=5)
    types = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert types == {"input": "Input", "conv1": "Conv2d", "bn1": "Conv2d", "lif1": "CubaLIF", "pool1": "AvgPool2d",
                     "conv2": "Conv2d", "lif2": "CubaLIF", "flatten": "Flatten", "fc": "Affine",
                     "readout": "I", "output": "Output"}
    assert g.metadata["snnc.num_steps"] == 5 and g.metadata["snnc.input_encoding"] == "direct"
    assert g.nodes["lif1"].metadata == {"snnc.dt": 1e-3, "snnc.reset": "zero"}
    assert g.nodes["bn1"].metadata["snnc.op"] == "batchnorm2d"
    assert g.nodes["flatten"].start_dim == 0  # no batch dim in NIR
    assert infer_shapes(g)["flatten"] == ((6, 4, 4), (96,))
    # NIR CubaLIF parameters that make forward Euler equal the module
    lif = g.nodes["lif1"]
    np.testing.assert_allclose(lif.w_in, 1.0)  # tau_syn / dt
    np.testing.assert_allclose(lif.r, 5.0)     # tau_mem / dt
    assert graph_figures(g)["neurons"] == 4 * 64 + 6 * 16 + 10


def test_affine_bias_kept(tiny):
    g = trace(tiny, (1, 8, 8))
    np.testing.assert_allclose(g.nodes["fc"].bias, tiny.net.fc.bias.detach().numpy())


def test_nir_roundtrip(tiny, tmp_path):
    g = trace(tiny, (1, 8, 8), num_steps=5)
    nir.write(tmp_path / "g.nir", g)
    g2 = nir.read(tmp_path / "g.nir")
    assert set(g2.nodes) == set(g.nodes) and sorted(g2.edges) == sorted(g.edges)
    np.testing.assert_array_equal(g2.nodes["conv2"].weight, g.nodes["conv2"].weight)


def test_unsupported_layer_names_node_type_and_supported():
    m = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("up", nn.Upsample(scale_factor=2)),
                                   ("lif", CubaLIF())]))
    with pytest.raises(UnsupportedNodeError) as e:
        trace(m, (1, 8, 8))
    msg = str(e.value)
    assert "'up'" in msg and "Upsample" in msg and "Supported:" in msg and "MaxPool2d" in msg


def test_snntorch_leaky_both_resets():
    snn = pytest.importorskip("snntorch")
    for mech in ("subtract", "zero"):
        m = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, threshold=0.7, init_hidden=True,
                                                       reset_mechanism=mech))
        g = trace(m, (4,), dt=1e-4)
        lif = [n for n in g.nodes.values() if isinstance(n, nir.LIF)][0]
        np.testing.assert_allclose(lif.tau, 1e-4 / 0.1, rtol=1e-5)
        np.testing.assert_allclose(lif.r, 10.0, rtol=1e-5)
        np.testing.assert_allclose(lif.v_threshold, 0.7)
        assert lif.metadata["snnc.reset"] == mech and lif.metadata["snnc.dt"] == 1e-4


def test_load_checkpoint_and_errors(tmp_path, tiny):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        load_model(tmp_path / "corrupt.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="not an snnc checkpoint"):
        load_model(tmp_path / "other.pt")
    torch.save({"format": "snnc-checkpoint", "arch": "nope", "state_dict": {}}, tmp_path / "arch.pt")
    with pytest.raises(ModelLoadError, match="unknown architecture"):
        load_model(tmp_path / "arch.pt")
    (tmp_path / "bad.nir").write_bytes(b"\x89HDF garbage")
    with pytest.raises(ModelLoadError, match="cannot be read as NIR"):
        load_model(tmp_path / "bad.nir")


def test_pickle_needs_explicit_trust(tmp_path):
    m = TinySNN()
    m.input_shape = (1, 8, 8)
    m.num_steps = 4
    torch.save(m, tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError, match="--trust-pickle"):
        load_model(tmp_path / "whole.pt")
    g, mod, info = load_model(tmp_path / "whole.pt", trust_pickle=True)
    assert info["kind"] == "pickled-module" and "lif2" in g.nodes


def test_bundled_checkpoint_traces(bundled):
    g, mod, info = load_model(bundled)
    assert info["kind"] == "snnc-checkpoint" and info["num_steps"] == 8
    assert [n for n in g.nodes if isinstance(g.nodes[n], nir.CubaLIF)] == ["lif1", "lif2"] or \
        sorted(n for n in g.nodes if isinstance(g.nodes[n], nir.CubaLIF)) == ["lif1", "lif2"]


def test_foreign_nir_gets_dt_and_reset(nir_fixtures):
    g, _, info = load_model(nir_fixtures / "lif_norse.nir", dt=1e-4)
    lif = g.nodes["1"]
    assert lif.metadata["snnc.dt"] == 1e-4 and lif.metadata["snnc.reset"] == "zero"
    g2 = normalize_nir(nir.read(nir_fixtures / "braille_noDelay_noBias_subtract.nir"))
    assert g2.nodes["lif1.lif"].metadata["snnc.dt"] == 1e-4
