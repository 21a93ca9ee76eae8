"""Convolutional SNN for Fashion-MNIST (direct analog input over T time steps).

Layer stack (NIR shapes, no batch/time dims)::

    input 1x28x28 (pixel/255, the same current every step)
    conv1  Conv2d(1->16, 3x3, pad 1)  -> bn1 BatchNorm2d -> lif1 CubaLIF 16x28x28
    pool1  AvgPool2d(2)               -> 16x14x14
    conv2  Conv2d(16->20, 3x3, pad 1) -> bn2 BatchNorm2d -> lif2 CubaLIF 20x14x14
    pool2  AvgPool2d(2)               -> 20x7x7
    flatten                           -> 980
    fc     Linear(980->10)           -> readout Integrator 10 (class scores)

The prediction after T steps is ``argmax`` of the readout voltage (summed fc
input over the T steps). Neurons reset to zero (Loihi's only reset mode).

Sizes are chosen to map onto Loihi-1 cores: pooling is folded into the next
layer's synapses, so each readout neuron listens to all 20x14x14 = 3,920 lif2
neurons, within the 4,096 input axons of one core.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from snnc.neurons import CubaLIF, Integrator

DEFAULT_CONFIG = {
    "channels": [16, 20],   # 20 x 14 x 14 = 3,920 lif2 neurons <= 4,096 axons of the readout core
    "num_classes": 10,
    "input_shape": [1, 28, 28],
    "num_steps": 8,          # T
    "dt": 1e-3,              # s
    "tau_syn": 1e-3,         # s  (= dt: no current memory, so biases and the direct
                             #     input map exactly onto Loihi's v-bias; du = 4095)
    "tau_mem": 5e-3,         # s  (voltage decay 1 - dt/tau_mem = 0.8 per step)
    "threshold": 1.0,
}


class FMNISTConvSNN(nn.Module):
    """See module docstring. ``forward`` is one time step: ``[B,1,28,28] -> [B,10]``."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        self.config = cfg
        c1, c2 = cfg["channels"]
        cin, h, w = cfg["input_shape"]
        neuron = dict(tau_syn=cfg["tau_syn"], tau_mem=cfg["tau_mem"],
                      threshold=cfg["threshold"], dt=cfg["dt"], reset="zero")
        self.net = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(cin, c1, 3, padding=1)),
            ("bn1", nn.BatchNorm2d(c1)),
            ("lif1", CubaLIF((c1, h, w), **neuron)),
            ("pool1", nn.AvgPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1)),
            ("bn2", nn.BatchNorm2d(c2)),
            ("lif2", CubaLIF((c2, h // 2, w // 2), **neuron)),
            ("pool2", nn.AvgPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(c2 * (h // 4) * (w // 4), cfg["num_classes"])),
            ("readout", Integrator((cfg["num_classes"],), dt=cfg["dt"])),
        ]))

    def forward(self, x):
        return self.net(x)


def build_fmnist_cnn(config: dict | None = None) -> FMNISTConvSNN:
    return FMNISTConvSNN(config)
