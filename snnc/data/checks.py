"""Checks on the arrays of every dataset form, where they enter (one line each: where, what was found,
what is allowed). Used by the ``.npz``, ImageFolder and event loaders and by the drivers (labels
against the model's classes)."""
from __future__ import annotations

import numpy as np

from snnc.errors import SnncError


class DataFormatError(SnncError):
    """A dataset file that is corrupt or holds something else than the form says (names the file)."""


def check_labels(y, where: str) -> np.ndarray:
    """Class labels: ``[N]`` whole numbers >= 0 (integer dtype, or floats that are whole numbers).
    Returns int64 ``[N]``.

    Raises:
        DataFormatError: another shape, a complex/boolean/object dtype, NaN, a fraction or a negative label.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataFormatError(f"{where}: labels must be one whole number per sample, shape [N]; got shape "
                              f"{list(y.shape)}")
    if y.dtype.kind not in "iuf":
        raise DataFormatError(f"{where}: labels must be whole numbers; got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.floor(y))
        if bad.any():
            raise DataFormatError(f"{where}: label {y[bad][0].item()!r} is not a whole number")
    if y.size and y.min() < 0:
        raise DataFormatError(f"{where}: label {y.min().item()!r} is negative; labels are class indices 0..classes-1")
    return y.astype(np.int64)


def check_samples(x, where: str) -> np.ndarray:
    """Samples of a real numeric dtype (unsigned/signed integers, floats, booleans), finite.

    Raises:
        DataFormatError: a complex or object dtype, NaN or infinite values.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataFormatError(f"{where}: samples must be real numbers; got dtype {x.dtype}")
    if x.dtype.kind == "f" and x.size and not np.all(np.isfinite(x)):
        raise DataFormatError(f"{where}: samples hold {int((~np.isfinite(x)).sum())} NaN or infinite value(s)")
    return x


def images_as_float(x: np.ndarray, where: str) -> np.ndarray:
    """Images ``[N, C, H, W]`` or ``[N, H, W]`` (one channel) as float32 ``[N, C, H, W]``: uint8 pixels are
    divided by 255 (as the built-in datasets), floats are kept.

    Raises:
        DataFormatError: another number of dimensions, or integer pixels that are not uint8.
    """
    x = check_samples(x, where)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataFormatError(f"{where}: images must be [N, C, H, W] or [N, H, W]; got shape {list(x.shape)}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype.kind in "iub":
        raise DataFormatError(f"{where}: integer images must be uint8 (0..255); got {x.dtype} (store floats instead)")
    return x.astype(np.float32)


def check_classes(y: np.ndarray, classes: int, where: str) -> None:
    """Every label is one of the model's ``classes`` outputs.

    Raises:
        DataFormatError: a label >= classes.
    """
    if y.size and int(y.max()) >= classes:
        raise DataFormatError(f"{where}: label {int(y.max())} on a model with {classes} outputs (labels are class "
                              f"indices 0..{classes - 1})")


def fit_input(x: np.ndarray, want: tuple, spikes: bool, data: str):
    """Samples ``x`` (``[N, *shape]``, spikes ``[T, N, *shape]``) for a model whose input is ``want``: as they
    are, or flattened when the model takes the same number of values as one flat vector (a model that
    flattens outside ``forward()``, snnTorch tutorial 5), with an ``INPUT_FLATTENED`` check for the report.

    Raises:
        DataFormatError: another sample shape.
    """
    lead = 2 if spikes else 1
    got = tuple(x.shape[lead:])
    if got == tuple(want):
        return x, None
    if len(want) == 1 and int(np.prod(got)) == want[0]:
        return x.reshape(x.shape[:lead] + tuple(want)), {
            "check": "INPUT_FLATTENED", "value": list(got), "limit": list(want),
            "message": f"samples of {data!r} of shape {got} flattened to the model's input {tuple(want)}"}
    raise DataFormatError(f"dataset {data!r} has samples of shape {got}, the model's input is {tuple(want)}")
