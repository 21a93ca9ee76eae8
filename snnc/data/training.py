"""The training side of a dataset, split by the one sampling rule (:mod:`snnc.data.sampling`): the
validation samples and the fitting samples (calibration, fine-tuning), in model form.

:func:`load_training` reads the whole training split (and the ``val`` split if the dataset has one),
orders it by the rule and keeps the raw samples; :meth:`TrainingData.fit` and
:meth:`TrainingData.val` return a prefix of the order in the form the model takes (images
``[N, *shape]``; spikes ``[T, N, *shape]``, encoded or binarised only for the samples asked for).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnc import data as D
from snnc.data.factory import load_factory_data
from snnc.data.events import binarise, encode, event_splits, load_events, split_path
from snnc.data.sampling import stratified_order, validation_size
from snnc.errors import SnncError

#: seed offsets of the spike encoder per part, so fitting and validation spikes are drawn independently
_ENCODE_SEED = {"fit": 0, "val": 3}


@dataclass
class TrainingData:
    """A training split ordered by the rule. ``raw_fit``/``raw_val``: sample-major ``[N, *shape]`` (event
    frames ``[N, T, *shape]``) in the rule's order; ``val_source``: ``"val split"`` (the dataset's own) or
    ``"carved"`` (the first samples of the training split's order); ``checks``: data checks raised while
    reading (events lost to binarisation)."""
    name: str
    raw_fit: np.ndarray
    y_fit: np.ndarray
    raw_val: np.ndarray | None
    y_val: np.ndarray | None
    val_source: str
    train_count: int
    spikes: bool = False
    events: bool = False
    num_steps: int | None = None
    encode_method: str | None = None
    seed: int = 0
    checks: list = field(default_factory=list)

    def _model_form(self, raw: np.ndarray, part: str) -> np.ndarray:
        if self.events:
            x, check = binarise(np.ascontiguousarray(np.swapaxes(raw, 0, 1)))
            if check and check not in self.checks:
                self.checks.append(check)
            return x
        if self.spikes:
            return encode(raw, self.encode_method, self.num_steps, self.seed + _ENCODE_SEED[part])
        return raw

    def fit(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` (default all) fitting samples by the rule: ``(x, labels int64 [n])``."""
        k = len(self.y_fit) if n is None else min(int(n), len(self.y_fit))
        return self._model_form(self.raw_fit[:k], "fit"), self.y_fit[:k]

    def val(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """The first ``n`` (default all) validation samples by the rule, or None when there are none."""
        if self.y_val is None or not len(self.y_val):
            return None
        k = len(self.y_val) if n is None else min(int(n), len(self.y_val))
        return self._model_form(self.raw_val[:k], "val"), self.y_val[:k]

    @property
    def fit_count(self) -> int:
        return int(len(self.y_fit))

    @property
    def val_count(self) -> int:
        return 0 if self.y_val is None else int(len(self.y_val))


def _raw(spec, split: str, data_dir, num_steps, progress=None):
    """One split, sample-major, before encoding: ``(x [N, *shape] or frames [N, T, *shape], y)``."""
    if isinstance(spec, str) and spec.startswith("events:"):
        x, y = load_events(split_path(spec[len("events:"):], split), num_steps, progress=progress)
        return np.swapaxes(x, 0, 1), y
    return D.load(spec, split, data_dir, progress=progress)


def has_split(spec, split: str) -> bool:
    """Whether dataset ``spec`` (a name, path, ``events:PATH`` or :class:`~snnc.data.python.Splits`) has a
    ``split`` split; ``val`` is optional in every form, the built-in datasets have none."""
    if isinstance(spec, str) and spec.startswith("events:"):
        return split in event_splits(spec[len("events:"):])
    form = D.form_of(spec)
    if form == "python":
        return getattr(spec, split, None) is not None
    if form == "factory":
        return getattr(load_factory_data(spec), split, None) is not None
    if form == "npz":
        with np.load(spec, allow_pickle=False) as z:
            return f"x_{split}" in z.files
    if form == "imagefolder":
        return (Path(spec) / split).is_dir()
    return split in ("train", "test")


def load_training(spec, data_dir=None, *, spikes: bool = False, num_steps: int | None = None,
                  encode_method: str | None = None, seed: int = 0, val_samples: int | None = None,
                  progress=None) -> TrainingData:
    """Read dataset ``spec``'s training split (and ``val`` split) and split it by the rule
    (:mod:`snnc.data.sampling`). ``val_samples`` overrides how many are carved for validation when the
    dataset has no ``val`` split (default :func:`~snnc.data.sampling.validation_size`), or caps the ``val`` split's samples.
    ``progress(stage, done, total)`` is called while samples are read one by one.

    Raises:
        NoSplitError: event data without a training split; DataNotFoundError, DataFormatError,
        EventDataError; SnncError: image data for a spike-input model without an encoder (or the reverse),
        or ``val_samples`` that leaves no training samples.
    """
    events = isinstance(spec, str) and spec.startswith("events:")
    if events and not spikes:
        raise SnncError(f"{spec}: event data needs a spike-input model (pass --input-encoding spikes)")
    if spikes and not events and not encode_method:
        raise SnncError(f"the model takes spike input, and dataset {spec!r} holds analog images: pass --encode "
                        f"rate|latency to turn them into spikes, or --data events:PATH")
    if not spikes and encode_method:
        raise SnncError(f"--encode {encode_method} is for spike-input models; this model takes direct input")
    name = str(spec)
    if not events and D.form_of(spec) == "factory":  # call the trusted factory once
        spec = load_factory_data(spec)
    cb = (lambda stage: (lambda n, tot: progress(stage, n, tot))) if progress else (lambda stage: None)
    x, y = _raw(spec, "train", data_dir, num_steps, cb("reading the training split"))
    order = stratified_order(x, y, seed)
    x, y = x[order], y[order]
    if has_split(spec, "val"):
        xv, yv = _raw(spec, "val", data_dir, num_steps, cb("reading the val split"))
        ov = stratified_order(xv, yv, seed)[:val_samples]
        xv, yv, source, xf, yf = xv[ov], yv[ov], "val split", x, y
    else:
        k = validation_size(len(y)) if val_samples is None else int(val_samples)
        if k >= len(y):
            raise SnncError(f"{name}: {len(y):,} training samples leave none to fit on after carving {k:,} for "
                            "validation")
        xv, yv, source, xf, yf = x[:k], y[:k], "carved", x[k:], y[k:]
    return TrainingData(name=name, raw_fit=xf, y_fit=yf, raw_val=xv, y_val=yv, val_source=source,
                        train_count=int(len(y)), spikes=spikes, events=events, num_steps=num_steps,
                        encode_method=encode_method, seed=seed)
