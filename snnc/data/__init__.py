"""Datasets: the forms ``--data`` takes (:func:`load`): the built-in Fashion-MNIST (from its IDX files) and
scikit-learn's 8x8 digits, a ``.npz`` of arrays (:mod:`snnc.data.npz`), an ImageFolder folder of images
(:mod:`snnc.data.imagefolder`); event data for spike-input models is :mod:`snnc.data.events`.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence; 60,000 training and
10,000 test images, 28x28 grey, 10 classes) is read from the four gzipped IDX
files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. Where the loader
looks, first hit wins:

1. the ``data_dir`` argument (CLI: ``--data-dir``),
2. the ``SNNC_DATA_DIR`` environment variable,
3. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).

Images come back as float32 ``[N, 1, 28, 28]`` in [0, 1] (pixel / 255), labels
as int64 ``[N]``.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from snnc.data.checks import DataFormatError
from snnc.data.imagefolder import is_image_folder, load_image_folder
from snnc.data.factory import is_factory, load_factory_data
from snnc.data.npz import load_npz
from snnc.data.python import Splits, load_splits
from snnc.errors import SnncError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "SNNC_DATA_DIR"
FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DATASETS = ("fashion-mnist", "digits")


class DataNotFoundError(SnncError):
    """The dataset files are not where the loader looks."""


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder that holds the Fashion-MNIST IDX files.

    Raises:
        DataNotFoundError: with the folders searched and how to install the data.
    """
    candidates = []
    if data_dir:  # an explicit folder must hold the files: no silent fall-back
        d = Path(data_dir)
        if all((d / f).is_file() for f in FILES.values()):
            return d
        missing = [f for f in sorted(FILES.values()) if not (d / f).is_file()]
        raise DataNotFoundError(f"--data-dir {d} lacks {', '.join(missing)}")
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(DEBIAN_DIR)
    for c in candidates:
        if all((c / f).is_file() for f in FILES.values()):
            return c
    raise DataNotFoundError(
        "Fashion-MNIST not found (looked in: " + ", ".join(str(c) for c in candidates) + "). "
        "Install it with `apt-get install dataset-fashion-mnist` (files land in "
        f"{DEBIAN_DIR}), or put {', '.join(sorted(FILES.values()))} in a folder and pass "
        f"--data-dir DIR or set {ENV_VAR}=DIR."
    )




IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in ``.gz``, else plain) into a numpy array.

    IDX (LeCun et al., the MNIST file format): two zero bytes, an element-type byte, the
    number of dimensions, then one big-endian uint32 per dimension, then the elements.

    Raises:
        DataFormatError: unreadable or corrupt gzip stream, bad magic, unknown element type,
            a header or element block shorter than the header says, or trailing bytes.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        kind = "gzip file" if opener is gzip.open else "file"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataFormatError(f"{path}: not a readable {kind} ({reason})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFormatError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in IDX_TYPES:
        raise DataFormatError(f"{path}: unknown IDX element type 0x{dtype_code:02x}")
    if len(data) < 4 + 4 * ndim:
        raise DataFormatError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions)")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_TYPES[dtype_code])
    want = int(np.prod(shape, dtype=np.float64)) if shape else 1
    have = (len(data) - 4 - 4 * ndim) // dtype.itemsize
    if have != want or (len(data) - 4 - 4 * ndim) % dtype.itemsize:
        what = "truncated" if have < want else "longer than its header says"
        raise DataFormatError(f"{path}: {what} IDX file ({have:,} of {want:,} elements)")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def _check_split(root: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """Fashion-MNIST's own format: uint8 images [N, 28, 28], uint8 labels [N] in 0..9."""
    fx, fy = root / FILES[(split, "images")], root / FILES[(split, "labels")]
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataFormatError(f"{fx}: expected unsigned-byte images of shape [N, 28, 28], got {x.dtype} "
                              f"{list(x.shape)}")
    if y.dtype != np.uint8 or y.ndim != 1:
        raise DataFormatError(f"{fy}: expected unsigned-byte labels of shape [N], got {y.dtype} {list(y.shape)}")
    if len(x) != len(y):
        raise DataFormatError(f"{fx} holds {len(x):,} images but {fy} {len(y):,} labels")
    if len(y) == 0:
        raise DataFormatError(f"{fx}: holds no images")
    if y.size and int(y.max()) >= len(CLASSES):
        raise DataFormatError(f"{fy}: label {int(y.max())} is outside 0..{len(CLASSES) - 1}")


def load_fashion_mnist(split: str = "test", data_dir=None, limit: int | None = None):
    """Load a Fashion-MNIST split.

    Args:
        split: ``"train"`` (60,000) or ``"test"`` (10,000).
        data_dir: folder with the IDX files (see module docstring for the search order).
        limit: keep the first ``limit`` samples (file order).

    Returns:
        ``(images float32 [N, 1, 28, 28] in [0, 1], labels int64 [N])``.

    Raises:
        DataNotFoundError: the files are not found (see :func:`find_fashion_mnist`).
        DataFormatError: a file is corrupt or holds something else than Fashion-MNIST's format.
    """
    if split not in ("train", "test"):
        raise SnncError(f"split must be 'train' or 'test', got {split!r}")
    root = find_fashion_mnist(data_dir)
    x = read_idx(root / FILES[(split, "images")])
    y = read_idx(root / FILES[(split, "labels")])
    _check_split(root, split, x, y)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return (x.astype(np.float32)[:, None] / 255.0), y.astype(np.int64)


def load_digits(split: str = "test", limit: int | None = None, seed: int = 0):
    """scikit-learn's 8x8 digits (1,797 images, 10 classes) for fast tests.

    A fixed split (seeded permutation): the last 297 samples are the test split.
    Returns ``(images float32 [N, 1, 8, 8] in [0, 1], labels int64 [N])``.
    """
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    idx = perm[:1500] if split == "train" else perm[1500:]
    x, y = x[idx], y[idx]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


#: the forms ``--data`` takes (besides ``events:PATH`` for spike-input models, :mod:`snnc.data.events`)
FORMS = ("fashion-mnist, digits, PATH.npz (x_train, y_train, x_test, y_test), DIR (DIR/train/<class>/*.png, "
         "DIR/test/...), file.py:factory (a trusted file returning the splits)")


def form_of(spec) -> str:
    """Which form dataset ``spec`` is: ``"builtin"``, ``"npz"``, ``"imagefolder"``, ``"factory"`` or
    ``"python"`` (:class:`~snnc.data.python.Splits`).

    Raises:
        SnncError: none of them (lists the forms).
    """
    if isinstance(spec, Splits):
        return "python"
    if not isinstance(spec, str):
        raise SnncError(f"data of type {type(spec).__name__}: give a dataset name or path ({FORMS}), a tuple "
                        "(x_train, y_train, x_test, y_test) or snnc.data.Splits(train=..., test=...)")
    if spec in DATASETS:
        return "builtin"
    if is_factory(spec):
        return "factory"
    p = Path(spec)
    if p.suffix == ".npz" and p.is_file():
        return "npz"
    if is_image_folder(p):
        return "imagefolder"
    if p.exists():
        raise SnncError(f"{spec}: not a dataset snnc reads ({FORMS})")
    raise SnncError(f"unknown dataset {spec!r}: not a built-in name nor an existing file or folder; known forms: "
                    f"{FORMS}")


def load(name: str, split: str = "test", data_dir=None, limit: int | None = None, progress=None):
    """Load a split of dataset ``name``: a built-in name (:data:`DATASETS`), a ``.npz`` file
    (:mod:`snnc.data.npz`) or an ImageFolder folder (:mod:`snnc.data.imagefolder`). ``progress(done,
    total)`` is called while samples are read one by one (ImageFolder images, a Dataset's items).

    Returns:
        ``(images float32 [N, C, H, W], labels int64 [N])``, the first ``limit`` samples.

    Raises:
        SnncError: an unknown name or form; DataNotFoundError, DataFormatError.
    """
    form = form_of(name)
    if form == "python":
        return load_splits(name, split, limit, progress)
    if form == "factory":
        return load_splits(load_factory_data(name), split, limit, progress)
    if form == "npz":
        return load_npz(name, split, limit)
    if form == "imagefolder":
        return load_image_folder(name, split, limit, progress)
    if name == "fashion-mnist":
        return load_fashion_mnist(split, data_dir, limit)
    return load_digits(split, limit)


def sample_shape(name: str, data_dir=None) -> tuple[int, ...]:
    """The shape of one sample of dataset ``name`` (no batch dim), read from its first test sample.

    Raises:
        as :func:`load`.
    """
    return tuple(int(v) for v in load(name, "test", data_dir, limit=1)[0].shape[1:])


def describe(name: str, split: str, n: int, data_dir=None) -> str:
    """One line naming a split's source and sample count, for reports."""
    form = form_of(name)
    if form in ("python", "factory"):
        return f"{name!r} ({'Python objects' if form == 'python' else 'factory'}) {split} split, first {n:,} samples"
    if form == "npz":
        return f"{name} (.npz) {split} split, first {n:,} samples"
    if form == "imagefolder":
        return f"{name} (ImageFolder) {split} split, first {n:,} images in class and file-name order"
    if name == "fashion-mnist":
        return f"Fashion-MNIST {split} split, first {n:,} images ({find_fashion_mnist(data_dir)})"
    return f"scikit-learn digits {split} split, first {n:,} images"
