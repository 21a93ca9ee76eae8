"""Data from Python: arrays, tensors, ``torch.utils.data.Dataset`` or ``DataLoader`` objects.

``snnc.compile(net, data=(x_train, y_train, x_test, y_test))`` or
``data=snnc.data.Splits(train=..., test=..., val=None, name="my data")``, each split one of

- a pair ``(x, y)`` of numpy arrays or torch tensors (``x`` ``[N, *shape]``, ``y`` ``[N]``);
- a ``Dataset`` whose items are ``(x, y)`` (a sample ``[*shape]`` and a class index), e.g. a tonic dataset
  with its ``ToFrame`` transform or torchvision's datasets;
- a ``DataLoader`` yielding batches ``(x [B, *shape], y [B])``.

Samples are read in the object's order into float32 ``[N, *shape]``: uint8 values are divided by 255 (as
every other form), floats kept; labels int64 ``[N]``. Everything goes through the checks of
:mod:`snnc.data.checks`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnc.data.checks import DataFormatError, check_labels, check_samples

SPLITS = ("train", "test", "val")


@dataclass(frozen=True)
class Splits:
    """A dataset's splits from Python (module docstring); ``val`` optional, ``name`` names it in reports."""
    train: object
    test: object
    val: object = None
    name: str = "in-memory data"

    def __repr__(self) -> str:
        return self.name

    @classmethod
    def of(cls, data) -> "Splits":
        """``data`` as Splits: a Splits, or a tuple ``(x_train, y_train, x_test, y_test)``.

        Raises:
            DataFormatError: anything else.
        """
        if isinstance(data, cls):
            return data
        if isinstance(data, tuple) and len(data) == 4:
            return cls(train=(data[0], data[1]), test=(data[2], data[3]))
        raise DataFormatError(f"data of type {type(data).__name__}: give a dataset name or path, a tuple (x_train, "
                              "y_train, x_test, y_test), or snnc.data.Splits(train=..., test=...)")


def _numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _pairs(obj, where: str, limit: int | None, progress=None):
    """The ``(x, y)`` arrays of one split object (module docstring), the first ``limit`` samples."""
    if isinstance(obj, tuple) and len(obj) == 2:
        x, y = _numpy(obj[0]), _numpy(obj[1])
        return (x, y) if limit is None else (x[:limit], y[:limit])
    if hasattr(obj, "batch_size") and hasattr(obj, "dataset") and hasattr(obj, "__iter__"):  # a DataLoader
        xs, ys, n = [], [], 0
        for batch in obj:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise DataFormatError(f"{where}: a DataLoader batch must be (x, y), got {type(batch).__name__}")
            xs.append(_numpy(batch[0]))
            ys.append(_numpy(batch[1]).reshape(-1))
            n += len(ys[-1])
            if limit is not None and n >= limit:
                break
        if not xs:
            raise DataFormatError(f"{where}: the DataLoader yields no batches")
        x, y = np.concatenate(xs), np.concatenate(ys)
        return (x, y) if limit is None else (x[:limit], y[:limit])
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):  # a map-style Dataset
        n = len(obj) if limit is None else min(limit, len(obj))
        xs, ys = [], []
        for i in range(n):
            if progress and i % 256 == 0:
                progress(i, n)
            item = obj[i]
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataFormatError(f"{where}: item {i} must be (sample, label), got {type(item).__name__}")
            xs.append(_numpy(item[0]))
            ys.append(_numpy(item[1]).reshape(-1)[:1])
        if not xs:
            raise DataFormatError(f"{where}: the Dataset is empty")
        if progress:
            progress(n, n)
        shapes = {x.shape for x in xs}
        if len(shapes) != 1:
            raise DataFormatError(f"{where}: samples of different shapes {sorted(shapes)[:3]}")
        return np.stack(xs), np.concatenate(ys)
    raise DataFormatError(f"{where}: a split must be (x, y) arrays or tensors, a Dataset or a DataLoader; got "
                          f"{type(obj).__name__}")


def load_splits(data: Splits, split: str, limit: int | None = None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """One split of Python data: ``(samples float32 [N, *shape], labels int64 [N])``; ``progress(done, total)``
    while a Dataset's items are read.

    Raises:
        DataFormatError: a missing split, an object of another kind, arrays that break the checks.
    """
    obj = getattr(data, split)
    where = f"{data.name} ({split} split)"
    if obj is None:
        raise DataFormatError(f"{where}: not given")
    x, y = _pairs(obj, where, limit, progress)
    y = check_labels(y, f"{where}: labels")
    if len(x) != len(y):
        raise DataFormatError(f"{where}: {len(x):,} samples but {len(y):,} labels")
    x = check_samples(x, f"{where}: samples")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0, y
    if x.dtype.kind in "iu":
        raise DataFormatError(f"{where}: integer samples must be uint8 (0..255); got {x.dtype}")
    return x.astype(np.float32), y
