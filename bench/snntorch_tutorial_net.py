"""The snnTorch tutorial convolutional SNN (snnTorch tutorial 6, "Training Convolutional SNNs"), as users
write it: Conv2d -> MaxPool2d -> Leaky, default reset (subtract), fast-sigmoid surrogate (slope 25),
init_hidden=True, the last Leaky with output=True. For 28x28 inputs (Fashion-MNIST).

Used as ``snnc compile bench/snntorch_tutorial_net.py:make_model --weights STATE.pt ...`` (snnTorch modules
cannot be pickled: the surrogate gradient is a closure; a state dict and this factory can).
"""
import snntorch as snn
from snntorch import surrogate
from torch import nn

BETA = 0.5
NUM_STEPS = 10  # the tutorial uses 50 on MNIST; 10 keeps CPU training and simulation short


def make_model():
    sg = surrogate.fast_sigmoid(slope=25)
    return nn.Sequential(
        nn.Conv2d(1, 12, 5), nn.MaxPool2d(2), snn.Leaky(beta=BETA, spike_grad=sg, init_hidden=True),
        nn.Conv2d(12, 64, 5), nn.MaxPool2d(2), snn.Leaky(beta=BETA, spike_grad=sg, init_hidden=True),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
        snn.Leaky(beta=BETA, spike_grad=sg, init_hidden=True, output=True))


make_model.input_shape = (1, 28, 28)
make_model.num_steps = NUM_STEPS
