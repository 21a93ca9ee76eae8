"""``--data DIR``: images in torchvision's ImageFolder layout, read with Pillow.

::

    DIR/train/<class>/*.png      training images (any format Pillow reads: PNG, JPEG, BMP, ...)
    DIR/test/<class>/*.png       test images
    DIR/val/<class>/*.png        optional validation split

The classes are the sorted names of ``DIR/train``'s sub-folders (index 0, 1, ... in that order, as
torchvision's ``ImageFolder``); a class folder of another split must be one of them. Within a split the
samples are in class order, then sorted file-name order. Grey images (mode ``L``) give one channel,
everything else is converted to RGB (three channels); every image of the dataset must have the same size
and channels. Pixels are divided by 255: float32 ``[N, C, H, W]`` in [0, 1], labels int64 ``[N]``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from snnc.data.checks import DataFormatError

SPLITS = ("train", "test", "val")


def is_image_folder(path: str | os.PathLike) -> bool:
    """A folder with ``train`` and ``test`` sub-folders."""
    p = Path(path)
    return p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir()


def classes_of(root: str | os.PathLike) -> list[str]:
    """The class names: sorted sub-folders of ``root/train``.

    Raises:
        DataFormatError: ``root/train`` has no class folders.
    """
    names = sorted(d.name for d in (Path(root) / "train").iterdir() if d.is_dir())
    if not names:
        raise DataFormatError(f"{Path(root) / 'train'}: no class folders (expected train/<class>/<image files>)")
    return names


def _read(f: Path) -> np.ndarray:
    try:
        with Image.open(f) as img:
            img = img.convert("L") if img.mode in ("L", "1", "I;16", "I", "F") else img.convert("RGB")
            a = np.asarray(img, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(f"{f}: not an image Pillow can read ({type(e).__name__})") from None
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


def load_image_folder(root: str | os.PathLike, split: str, limit: int | None = None,
                      progress=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` of an ImageFolder dataset (module docstring): ``(images float32 [N, C, H, W], labels int64
    [N])``, the first ``limit`` samples in the module docstring's order. ``progress(done, total)`` is called
    every 256 images and at the end.

    Raises:
        DataFormatError: no such split, an unknown class folder, an unreadable image, images of different
            sizes or channels, an empty split.
    """
    root = Path(root)
    classes = classes_of(root)
    d = root / split
    if not d.is_dir():
        raise DataFormatError(f"{root}: no {split}/ folder (ImageFolder layout: {root}/{split}/<class>/<images>)")
    files: list[tuple[Path, int]] = []
    for cdir in sorted(c for c in d.iterdir() if c.is_dir()):
        if cdir.name not in classes:
            raise DataFormatError(f"{cdir}: class {cdir.name!r} is not one of train/'s classes ({', '.join(classes)})")
        files += [(f, classes.index(cdir.name)) for f in sorted(cdir.iterdir()) if f.is_file()]
    if limit is not None:
        files = files[:limit]
    if not files:
        raise DataFormatError(f"{d}: no images")
    xs, first = [], None
    for i, (f, _) in enumerate(files):
        if progress and (i % 256 == 0):
            progress(i, len(files))
        a = _read(f)
        if first is None:
            first = (a.shape, f)
        elif a.shape != first[0]:
            raise DataFormatError(f"{f}: image of shape [C, H, W] = {list(a.shape)}; {first[1]} is "
                                  f"{list(first[0])} (every image must have the same size and channels)")
        xs.append(a)
    if progress:
        progress(len(files), len(files))
    return np.stack(xs).astype(np.float32) / 255.0, np.asarray([c for _, c in files], np.int64)
