"""``--data PATH.npz``: a dataset kept as numpy arrays in one ``.npz`` file.

Arrays (read with ``numpy.load(allow_pickle=False)``: an ``.npz`` never runs code):

===================  ==========================================================================
``x_train, y_train``  training images and labels (calibration, fine-tuning and, without a val
                      split, the validation samples: :mod:`snnc.data.sampling`)
``x_test, y_test``    test images and labels (accuracy)
``x_val, y_val``      optional validation split (``--budget``'s held-out accuracy, fine-tuning's
                      per-epoch accuracy)
===================  ==========================================================================

Images are ``[N, C, H, W]`` or ``[N, H, W]`` (one channel), uint8 (divided by 255, as the built-in
datasets) or float; labels ``[N]`` whole numbers 0..classes-1. Samples are read in the file's order (the training
split is then ordered by content: :mod:`snnc.data.sampling`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from snnc.data.checks import DataFormatError, check_labels, images_as_float

SPLITS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test"), "val": ("x_val", "y_val")}


def load_npz(path: str | os.PathLike, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` (``train``, ``test`` or ``val``) of an ``.npz`` dataset: ``(images float32 [N, C, H, W],
    labels int64 [N])``, the first ``limit`` samples.

    Raises:
        DataFormatError: unreadable file, the split's arrays missing, samples and labels of different
            counts, or arrays that break :mod:`snnc.data.checks`.
    """
    p = Path(path)
    xk, yk = SPLITS[split]
    try:
        with np.load(p, allow_pickle=False) as z:
            names = set(z.files)
            if xk not in names or yk not in names:
                have = ", ".join(sorted(names)) or "nothing"
                raise DataFormatError(f"{p}: no {split} split (arrays {xk!r} and {yk!r}); the file holds {have}")
            x, y = z[xk], z[yk]
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not an npz, truncated, pickled objects
        raise DataFormatError(f"{p}: cannot be read as .npz ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    y = check_labels(y, f"{p}: {yk}")
    if len(x) != len(y):
        raise DataFormatError(f"{p}: {xk} holds {len(x):,} samples but {yk} {len(y):,} labels")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return images_as_float(x, f"{p}: {xk}"), y
