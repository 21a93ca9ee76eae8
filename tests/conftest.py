"""Shared fixtures. Tests needing Fashion-MNIST, the bundled checkpoint or ../shared fixtures
skip with a reason when those are absent (scripts/get-data.sh installs the data)."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from snnc.neurons import CubaLIF, Integrator

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "nir-paper"
BUNDLED = ROOT / "models" / "fmnist_cnn.pt"


@pytest.fixture(scope="session")
def nir_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"NIR paper fixtures not found at {FIXTURES} (../shared is not checked out beside the repo)")
    return FIXTURES


@pytest.fixture(scope="session")
def fmnist():
    from snnc.data import DataNotFoundError, load_fashion_mnist
    try:
        xtr, ytr = load_fashion_mnist("train", limit=256)
        xte, yte = load_fashion_mnist("test", limit=300)
    except DataNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    return xtr, ytr, xte, yte


@pytest.fixture(scope="session")
def bundled() -> Path:
    if not BUNDLED.is_file():
        pytest.skip(f"bundled checkpoint {BUNDLED} missing")
    return BUNDLED


class TinySNN(nn.Module):
    """Small conv SNN for 1x8x8 inputs (digits-sized): conv-BN-LIF-pool-fc-readout. One step per forward."""

    def __init__(self, tau_syn=1e-3, tau_mem=5e-3, reset="zero", seed=0, channels=4):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, channels, 3, padding=1)),
            ("bn1", nn.BatchNorm2d(channels)),
            ("lif1", CubaLIF((channels, 8, 8), tau_syn=tau_syn, tau_mem=tau_mem, threshold=0.5, reset=reset)),
            ("pool1", nn.AvgPool2d(2)),
            ("conv2", nn.Conv2d(channels, 6, 3, padding=1)),
            ("lif2", CubaLIF((6, 4, 4), tau_syn=tau_syn, tau_mem=tau_mem, threshold=0.5, reset=reset)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(96, 10)),
            ("readout", Integrator((10,))),
        ]))
        bn = self.net.bn1
        with torch.no_grad():
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.2, 0.2)
            for m in (self.net.conv1, self.net.conv2, self.net.fc):
                m.weight.mul_(2.0)
        self.eval()

    def forward(self, x):
        return self.net(x)


@pytest.fixture
def tiny():
    return TinySNN()


def digits_batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8)).astype(np.float32)
