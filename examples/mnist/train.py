"""Train ``model.py``'s network on ``mnist.npz`` with plain PyTorch and snnTorch (backpropagation through
time, cross-entropy on the output spike counts, Adam), as a user trains before reaching for snnc.
Writes the state dict. Usage::

    python examples/mnist/train.py data/mnist.npz mnist_snn.pt [--epochs 1] [--samples N] [--seed 0]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import Net  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--samples", type=int, default=None, help="train on the first N training images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    with np.load(a.data) as z:
        x = torch.from_numpy(z["x_train"][:a.samples]).float().div(255).unsqueeze(1)
        y = torch.from_numpy(z["y_train"][:a.samples]).long()
        xt = torch.from_numpy(z["x_test"]).float().div(255).unsqueeze(1)
        yt = torch.from_numpy(z["y_test"]).long()
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    t0 = time.time()
    for epoch in range(a.epochs):
        net.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), a.batch_size):
            idx = perm[i:i + a.batch_size]
            spk, _ = net(x[idx])
            loss = F.cross_entropy(spk.sum(0), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xt[i:i + 1000])[0].sum(0).argmax(1) == yt[i:i + 1000]).sum())
                          for i in range(0, len(yt), 1000))
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {100 * correct / len(yt):.2f}% "
              f"(spike count), {time.time() - t0:.0f} s")
    torch.save(net.state_dict(), a.out)


if __name__ == "__main__":
    main()
