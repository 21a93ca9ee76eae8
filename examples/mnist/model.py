"""A convolutional SNN for MNIST written the way snnTorch's tutorials write it (a model snnc has never seen:
not in snnc's zoo, trained by ``train.py`` with plain PyTorch and snnTorch): ``forward()`` loops over the
time steps with explicit membrane state (``init_hidden=False``) and returns the output spikes and membranes
``[T, B, 10]``; the image is the input current at every step (direct input). ``Leaky`` neurons with the zero
reset (snnc keeps their semantics exactly; the default subtract reset would be refused without
``--allow-semantic-change``). The first max-pool acts on the host-computed first layer's currents, the
second pools binary spikes (an exact OR on the chip).

snnc compiles it through the factory ``make_model`` and the state dict ``train.py`` writes::

    snnc compile examples/mnist/model.py:make_model --weights mnist_snn.pt --data mnist.npz -o out/mnist

(snnTorch modules cannot be pickled, so a factory and a state dict are how they travel.)
"""
import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

BETA = 0.8
NUM_STEPS = 8


class Net(nn.Module):
    def __init__(self, num_steps: int = NUM_STEPS):
        super().__init__()
        sg = surrogate.fast_sigmoid(slope=25)
        self.num_steps = num_steps
        self.conv1 = nn.Conv2d(1, 16, 5)         # 28x28 -> 24x24
        self.pool1 = nn.MaxPool2d(2)              # -> 12x12
        self.lif1 = snn.Leaky(beta=BETA, spike_grad=sg, reset_mechanism="zero")
        self.conv2 = nn.Conv2d(16, 32, 5)         # -> 8x8
        self.lif2 = snn.Leaky(beta=BETA, spike_grad=sg, reset_mechanism="zero")
        self.pool2 = nn.MaxPool2d(2)              # spikes -> 4x4
        self.fc = nn.Linear(32 * 4 * 4, 10)
        self.lif3 = snn.Leaky(beta=BETA, spike_grad=sg, reset_mechanism="zero")

    def forward(self, x):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(self.pool1(self.conv1(x)), mem1)
            spk2, mem2 = self.lif2(self.conv2(spk1), mem2)
            spk3, mem3 = self.lif3(self.fc(self.pool2(spk2).flatten(1)), mem3)
            spk_rec.append(spk3)
            mem_rec.append(mem3)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def make_model():
    """The untrained network; snnc loads ``--weights`` into it."""
    return Net()
