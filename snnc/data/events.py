"""Spike-input data: event datasets, and spike encoders for image datasets.

``--data events:PATH`` reads labelled event data, binned to T frames (the tonic layout:
``tonic.transforms.ToFrame(sensor_size, n_time_bins=T)`` gives ``[T, P, H, W]`` per sample):

- an ``.npz`` with ``frames`` ``[N, T, *shape]`` (sample-major, as tonic stacks them) and
  ``labels`` ``[N]``; or ``events`` (a structured array with fields ``t, x, y, p``, tonic's
  dtype, or an ``[M, 4]`` array in that column order), ``sample`` ``[M]`` (which sample each event
  belongs to), ``labels`` ``[N]`` and ``sensor_size`` ``(W, H, P)`` (tonic's order);
- a folder of such ``.npz`` files, one sample each (``frames`` ``[T, *shape]`` or ``events``
  with ``sensor_size``, and ``label``), read in sorted file-name order.

Events are binned into T equal time bins over each sample's own time span (tonic's
``ToFrame(n_time_bins=T)``), giving ``[T, P, H, W]`` counts per sample. The result is time-major
``[T, N, *shape]``, what :class:`snnc.backends.loihi.sim.Program` takes. A Loihi input axon
carries one spike per step, so counts above 1 are binarised (clipped to 1) with a warning and
the number of events lost (``checks`` ``INPUT_EVENTS_BINARISED``).

Image datasets (``fashion-mnist``, ``digits``) become spikes with ``--encode``:

- ``rate``: each pixel value p in [0, 1] spikes with probability p at every step
  (Bernoulli, seeded: the same seed gives the same spikes);
- ``latency``: one spike per pixel at step ``round((1 - p) (T - 1))`` (brighter = earlier),
  none for p = 0 (time-to-first-spike coding as snnTorch's ``spikegen.latency(linear=True)``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snnc.errors import SnncError
from snnc import data as D
from snnc.data.checks import check_labels, check_samples

ENCODERS = ("rate", "latency")


class EventDataError(SnncError):
    """An event file or folder that cannot be read (one line naming it and what is wrong)."""


class NoSplitError(EventDataError):
    """Event data without the split asked for (a single set is the test split: never calibrated or trained on)."""


def event_splits(path: str | os.PathLike) -> dict:
    """The splits of event data at ``path``: a folder with ``train`` and ``test`` (each a folder of per-sample
    ``.npz`` files or one ``.npz``, optionally ``val`` too) gives those; anything else is one set, the test
    split only (``{"test": path}``), so that no test sample is ever used for calibration or training."""
    p = Path(path)
    out = {}
    if p.is_dir():
        for split in ("train", "test", "val"):
            for cand in (p / split, p / f"{split}.npz"):
                if cand.exists():
                    out[split] = cand
                    break
    return out if "train" in out and "test" in out else {"test": p}


def split_path(path: str | os.PathLike, split: str) -> Path:
    """The file or folder of ``split`` of the event data at ``path`` (:func:`event_splits`).

    Raises:
        NoSplitError: no such split (a single set is the test split only).
    """
    splits = event_splits(path)
    if split not in splits:
        raise NoSplitError(f"event data {path} has no {split} split (a folder with train/ and test/ gives one); its "
                           "samples are the test split, never used for calibration, fine-tuning or --budget")
    return splits[split]


def encode_rate(x: np.ndarray, num_steps: int, seed: int = 0) -> np.ndarray:
    """``[N, *shape]`` values in [0, 1] -> ``[T, N, *shape]`` float32 0/1 spikes (Bernoulli(p) per step)."""
    rng = np.random.default_rng(seed)
    p = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return (rng.random((int(num_steps),) + p.shape, dtype=np.float32) < p[None]).astype(np.float32)


def encode_latency(x: np.ndarray, num_steps: int) -> np.ndarray:
    """``[N, *shape]`` values in [0, 1] -> ``[T, N, *shape]`` one spike at ``round((1 - p)(T - 1))`` (none if p = 0)."""
    p = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    t = np.rint((1.0 - p) * (num_steps - 1)).astype(np.int64)
    out = np.zeros((int(num_steps),) + p.shape, np.float32)
    idx = np.nonzero(p > 0)
    out[(t[idx],) + idx] = 1.0
    return out


def encode(x: np.ndarray, method: str, num_steps: int, seed: int = 0) -> np.ndarray:
    if method == "rate":
        return encode_rate(x, num_steps, seed)
    if method == "latency":
        return encode_latency(x, num_steps)
    raise SnncError(f"unknown spike encoder {method!r}; known: {', '.join(ENCODERS)}")


def bin_events(events: np.ndarray, sensor_size, num_steps: int) -> np.ndarray:
    """Events ``t, x, y, p`` (structured or ``[M, 4]``) -> ``[T, P, H, W]`` counts in T equal time bins
    over the events' time span; ``sensor_size`` is tonic's ``(W, H, P)``."""
    W, H, P = (int(v) for v in sensor_size)
    if events.dtype.names:
        t, xs, ys, ps = (np.asarray(events[k]) for k in ("t", "x", "y", "p"))
    else:
        ev = np.asarray(events)
        if ev.ndim != 2 or ev.shape[1] != 4:
            raise EventDataError(f"events of shape {ev.shape}: expected fields t, x, y, p or an [M, 4] array")
        t, xs, ys, ps = ev.T
    out = np.zeros((int(num_steps), P, H, W), np.float32)
    if len(t) == 0:
        return out
    xs, ys, ps = xs.astype(np.int64), ys.astype(np.int64), ps.astype(np.int64)
    if xs.min() < 0 or xs.max() >= W or ys.min() < 0 or ys.max() >= H or ps.min() < 0 or ps.max() >= P:
        raise EventDataError(f"event coordinates outside sensor_size (W, H, P) = {(W, H, P)}")
    t = np.asarray(t, np.float64)
    span = t.max() - t.min()
    b = np.zeros(len(t), np.int64) if span == 0 else np.minimum(((t - t.min()) / span * num_steps).astype(np.int64),
                                                                num_steps - 1)
    np.add.at(out, (b, ps, ys, xs), 1.0)
    return out


def _one_file(path: Path, num_steps: int):
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        raise EventDataError(f"{path}: cannot be read as .npz ({type(e).__name__})") from None
    return d


def load_events(path: str | os.PathLike, num_steps: int, limit: int | None = None,
                progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Read event data (see module docstring) -> ``(counts [T, N, *shape] float32, labels [N] int64)``.

    Raises:
        EventDataError: a missing path, unknown layout, frames with another T, no labels.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.npz"))
        if not files:
            raise EventDataError(f"{p}: a folder without .npz files")
        if limit is not None:
            files = files[:limit]
        xs, ys = [], []
        for i, f in enumerate(files):
            if progress and i % 256 == 0:
                progress(i, len(files))
            d = _one_file(f, num_steps)
            if "label" not in d and "labels" not in d:
                raise EventDataError(f"{f}: no 'label'")
            ys.append(np.asarray(d.get("label", d.get("labels"))).reshape(-1)[:1])
            if "frames" in d:
                xs.append(check_samples(d["frames"], f"{f}: frames").astype(np.float32))
            elif "events" in d and "sensor_size" in d:
                xs.append(bin_events(d["events"], d["sensor_size"], num_steps))
            else:
                raise EventDataError(f"{f}: needs 'frames' [T, ...] or 'events' with 'sensor_size'")
        shapes = {x.shape for x in xs}
        if len(shapes) != 1:
            raise EventDataError(f"{p}: samples of different shapes {sorted(shapes)}")
        x = np.stack(xs, axis=1)
        y = check_labels(np.concatenate(ys), f"{p}: labels")
    elif p.is_file():
        d = _one_file(p, num_steps)
        if "labels" not in d:
            raise EventDataError(f"{p}: no 'labels' array")
        y = check_labels(np.asarray(d["labels"]).reshape(-1), f"{p}: labels")
        n = len(y) if limit is None else min(limit, len(y))
        if n == 0:
            raise EventDataError(f"{p}: holds no samples (its 'labels' array is empty)")
        if "frames" in d:
            fr = check_samples(d["frames"], f"{p}: frames").astype(np.float32)
            if fr.shape[0] != len(y):
                raise EventDataError(f"{p}: frames {fr.shape} are not [N = {len(y)}, T, ...]")
            x = np.ascontiguousarray(np.swapaxes(fr[:n], 0, 1))
        elif "events" in d and "sample" in d and "sensor_size" in d:
            ev, sample = d["events"], np.asarray(d["sample"], np.int64)
            x = np.stack([bin_events(ev[sample == i], d["sensor_size"], num_steps) for i in range(n)], axis=1)
        else:
            raise EventDataError(f"{p}: needs 'frames' [N, T, ...], or 'events' with 'sample' and 'sensor_size'")
        y = y[:n]
    else:
        raise EventDataError(f"{p}: no such file or folder")
    if x.shape[0] != num_steps:
        raise EventDataError(f"{p}: {x.shape[0]} time bins, the model runs T = {num_steps} steps (re-bin the "
                             "frames, or pass --num-steps)")
    return x, y


def binarise(x: np.ndarray) -> tuple[np.ndarray, dict | None]:
    """Clip event counts to 0/1 (one spike per input axon and step). Returns the spikes and a
    check dict (``INPUT_EVENTS_BINARISED``) when events were lost, else None."""
    if x.size == 0 or (np.all((x == 0) | (x == 1))):
        return x, None
    if np.any(x < 0) or np.any(x != np.floor(x)):
        raise EventDataError("event frames hold negative or non-integer values; expected event counts")
    total = float(x.sum())
    xb = (x > 0).astype(np.float32)
    lost = total - float(xb.sum())
    return xb, {"check": "INPUT_EVENTS_BINARISED", "value": int(lost), "limit": 0,
                "message": f"input frames held up to {int(x.max())} events per pixel and step; a Loihi input axon "
                           f"carries one spike per step: binarised, {int(lost):,} of {int(total):,} events "
                           f"({100 * lost / total:.1f}%) lost"}


def load_data(spec: str, split: str, data_dir=None, limit: int | None = None, *, spikes: bool = False,
              num_steps: int | None = None, encode_method: str | None = None, seed: int = 0, progress=None):
    """Load ``spec`` (``fashion-mnist``, ``digits`` or ``events:PATH``) for a model.

    Returns ``(x, y, checks)``: ``x`` ``[N, *shape]`` for direct input, ``[T, N, *shape]`` 0/1 for
    spike input; ``checks`` a list of check dicts (events lost to binarisation).

    Raises:
        ValueError: image data for a spike-input model without ``encode_method``, event data for a
            direct-input model, bad encoder; EventDataError; DataNotFoundError.
    """

    if isinstance(spec, str) and spec.startswith("events:"):
        if not spikes:
            raise SnncError(f"{spec}: event data needs a spike-input model (pass --input-encoding spikes)")
        if num_steps is None:
            raise SnncError("event data needs T: pass --num-steps")
        x, y = load_events(split_path(spec[len("events:"):], split), num_steps, limit, progress)
        x, check = binarise(x)
        return x, y, [check] if check else []
    x, y = D.load(spec, split, data_dir, limit=limit, progress=progress)
    if not spikes:
        if encode_method:
            raise SnncError(f"--encode {encode_method} is for spike-input models; this model takes direct input")
        return x, y, []
    if not encode_method:
        raise SnncError(f"the model takes spike input, and dataset {spec!r} holds analog images: pass --encode "
                         f"rate|latency to turn them into spikes, or --data events:PATH")
    return encode(x, encode_method, num_steps, seed), y, []
