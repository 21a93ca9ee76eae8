"""The one sampling rule for the training split, the same for every data form (built-in, ``.npz``,
ImageFolder, factory, Python objects, event data).

snnc orders a training split once, by the samples' content, not by their position in the file:

1. every sample gets a key, the BLAKE2b digest (8 bytes) of its values as stored in model form
   (float32 ``[*shape]``, images already divided by 255; event frames ``[T, *shape]``), salted with
   the seed (``--seed``, default 0);
2. within each class the samples are ranked by key;
3. the classes are interleaved in proportion to their size: the sample of rank ``r`` in a class of
   ``n_c`` samples takes the position ``(r + 0.5) / n_c``, ties broken by key.

Every prefix of that order is then a seeded, class-stratified sample (each class within one sample
of its share), and the same images in any file order (an ``.npz`` in IDX order, the PNGs of an
ImageFolder in class/file-name order) give the same order. The uses take prefixes:

- **validation** = the dataset's own ``val`` split if it has one (``x_val``/``y_val``, ``DIR/val/``,
  ``Splits(val=...)``), else the first :func:`validation_size` samples of the order (10% of the
  training split, at most 5,000);
- **fitting** = the rest of the training split in the same order: calibration takes its first N
  (``--calibrate N``, default 256), fine-tuning its first N (``--train-limit``, ``finetune_samples``)
  or all of it;
- ``--budget``'s held-out accuracy and fine-tuning's per-epoch accuracy come from the validation
  samples; the test split is only ever used for the accuracy (``--limit N``: its first N in file
  order).
"""
from __future__ import annotations

import hashlib

import numpy as np

#: The rule in one line, for reports (report.json ``data.rule``, a fine-tuned checkpoint's ``meta.data.rule``).
RULE = ("training split ordered by content (BLAKE2b of each sample, salted with the seed) within each class, "
        "classes interleaved by size; validation = the val split or the first 10% (at most 5,000) of that order, "
        "fitting = the rest; calibration and fine-tuning take prefixes of the fitting samples, --budget's "
        "held-out accuracy a prefix of the validation samples; the test split is used only for the accuracy")
#: Fraction of the training split carved off as validation when the dataset has no ``val`` split.
VALIDATION_FRACTION = 0.1
#: At most this many validation samples are carved (snnc's previous fixed hold-out for fine-tuning).
VALIDATION_MAX = 5000


def validation_size(n_train: int) -> int:
    """How many of ``n_train`` training samples the rule carves off for validation:
    ``min(5000, n_train // 10)`` (0 for fewer than 10 samples)."""
    return int(min(VALIDATION_MAX, int(n_train * VALIDATION_FRACTION)))


def content_keys(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """One key per sample of ``x`` ``[N, *shape]`` (sample-major): the first 8 bytes of
    BLAKE2b(seed, float32 bytes of the sample) as uint64 ``[N]``; identical samples get equal keys."""
    salt = int(seed).to_bytes(8, "little", signed=True)
    xs = np.ascontiguousarray(np.asarray(x, np.float32))
    flat = xs.reshape(len(xs), -1)
    out = np.empty(len(xs), np.uint64)
    for i in range(len(xs)):
        out[i] = int.from_bytes(hashlib.blake2b(flat[i].tobytes(), digest_size=8, key=salt).digest(), "little")
    return out


def stratified_order(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """The rule's order (module docstring) of the samples ``x`` ``[N, *shape]`` with labels ``y`` ``[N]``:
    an index array ``[N]`` whose every prefix is a class-stratified sample. Same content and seed give
    the same samples in the same order whatever their order in ``x``."""
    y = np.asarray(y).reshape(-1)
    keys = content_keys(x, seed)
    pos = np.empty(len(y), np.float64)
    for c in np.unique(y):
        members = np.nonzero(y == c)[0]
        ranked = members[np.argsort(keys[members], kind="stable")]
        pos[ranked] = (np.arange(len(ranked)) + 0.5) / len(ranked)
    return np.lexsort((keys, pos))
