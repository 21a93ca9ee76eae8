"""More zoo architectures: a wide Fashion-MNIST SNN and a small residual SNN.

Both use direct analog input (pixel/255, the same current every step), CUBA-LIF
neurons that reset to zero, and an integrator readout whose voltage after T steps
gives the class scores, like :mod:`snnc.models.fmnist_cnn`. NIR shapes (no
batch/time dims) are given per layer.

``fmnist_wide`` (``models/fmnist_wide.pt``)::

    conv1  Conv2d(1->64, 3x3, pad 1)            -> bn1 -> lif1 CubaLIF 64x28x28
    pool1  AvgPool2d(2)                         -> 64x14x14
    conv2  Conv2d(64->128, 4x4, stride 2, pad 1) -> bn2 -> lif2 CubaLIF 128x7x7
    flatten                                     -> 6,272
    fc     Linear(6272->10)                     -> readout Integrator 10

    (a 4x4 stride-2 convolution is what a 3x3 convolution followed by 2x2 average pooling
    computes, composed into one linear map, with more freedom; it keeps the readout's fan-in
    at 49 source neurons per lif2 channel.)

    About 15x the bundled model's parameters. With discrete axons (one input axon per source
    neuron) it does not fit Loihi 1: each readout neuron listens to 6,272 lif2 neurons (a core
    has 4,096 input axons) and the per-synapse conv weights need 497 cores. With population
    axons (shared kernels, one axon per source position) it maps to 57 cores (lower bound 56):
    more than the bundled model's 17. ``prune_channels`` and ``--budget cores=K`` make it
    smaller.

``fmnist_res`` (shipped: ``models/fmnist_res.pt``, 89.09% float / 89.01% compiled on the 10,000 test
images, 20 cores; card ``models/fmnist_res.md``), a residual block with a projection shortcut::

    conv1  Conv2d(1->16, 3x3, pad 1)   -> bn1 -> lif1 CubaLIF 16x28x28
    pool1  AvgPool2d(2)                -> 16x14x14
    conv2  Conv2d(16->20, 3x3, pad 1)  -> bn2 -> lif2 CubaLIF 20x14x14
    conv3  Conv2d(20->20, 3x3, pad 1)  -> bn3 ─┐
    short  Conv2d(16->20, 1x1) on pool1 -> bn_s ┴─ summed -> lif3 CubaLIF 20x14x14
    pool3  AvgPool2d(2)                -> 20x7x7
    flatten -> fc Linear(980->10) -> readout Integrator 10

    On loihi-sim the shortcut is a projection from lif1 into lif3 with a one-step synaptic
    delay (lif3 is two hops from lif1 through the block). Pruning ties conv3's and the
    shortcut's output channels (both feed lif3).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from snnc.neurons import CubaLIF, Integrator

_NEURON = {"tau_syn": 1e-3, "tau_mem": 5e-3, "threshold": 1.0, "dt": 1e-3}

WIDE_CONFIG = {"channels": [64, 128], "num_classes": 10, "input_shape": [1, 28, 28], "num_steps": 8, **_NEURON}
RES_CONFIG = {"channels": [16, 20], "num_classes": 10, "input_shape": [1, 28, 28], "num_steps": 8, **_NEURON}


def _neuron(cfg, shape):
    return CubaLIF(shape, tau_syn=cfg["tau_syn"], tau_mem=cfg["tau_mem"], threshold=cfg["threshold"],
                   dt=cfg["dt"], reset="zero")


class FMNISTWideSNN(nn.Module):
    """See module docstring. ``forward`` is one time step: ``[B,1,28,28] -> [B,10]``."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = dict(WIDE_CONFIG, **(config or {}))
        self.config = cfg
        c1, c2 = cfg["channels"]
        cin, h, w = cfg["input_shape"]
        self.net = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(cin, c1, 3, padding=1)),
            ("bn1", nn.BatchNorm2d(c1)),
            ("lif1", _neuron(cfg, (c1, h, w))),
            ("pool1", nn.AvgPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 4, stride=2, padding=1)),
            ("bn2", nn.BatchNorm2d(c2)),
            ("lif2", _neuron(cfg, (c2, h // 4, w // 4))),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(c2 * (h // 4) * (w // 4), cfg["num_classes"])),
            ("readout", Integrator((cfg["num_classes"],), dt=cfg["dt"])),
        ]))

    def forward(self, x):
        return self.net(x)


class FMNISTResSNN(nn.Module):
    """See module docstring. ``forward`` is one time step: ``[B,1,28,28] -> [B,10]``."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = dict(RES_CONFIG, **(config or {}))
        self.config = cfg
        c1, c2 = cfg["channels"]
        cin, h, w = cfg["input_shape"]
        self.conv1 = nn.Conv2d(cin, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.lif1 = _neuron(cfg, (c1, h, w))
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.lif2 = _neuron(cfg, (c2, h // 2, w // 2))
        self.conv3 = nn.Conv2d(c2, c2, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(c2)
        self.short = nn.Conv2d(c1, c2, 1)
        self.bn_s = nn.BatchNorm2d(c2)
        self.lif3 = _neuron(cfg, (c2, h // 2, w // 2))
        self.pool3 = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c2 * (h // 4) * (w // 4), cfg["num_classes"])
        self.readout = Integrator((cfg["num_classes"],), dt=cfg["dt"])

    def forward(self, x):
        p1 = self.pool1(self.lif1(self.bn1(self.conv1(x))))
        s2 = self.lif2(self.bn2(self.conv2(p1)))
        s3 = self.lif3(self.bn3(self.conv3(s2)) + self.bn_s(self.short(p1)))
        return self.readout(self.fc(self.flatten(self.pool3(s3))))


def build_fmnist_wide(config: dict | None = None) -> FMNISTWideSNN:
    return FMNISTWideSNN(config)


def build_fmnist_res(config: dict | None = None) -> FMNISTResSNN:
    return FMNISTResSNN(config)
