"""snnc's model zoo: architectures, training recipes and shipped checkpoints.

An *snnc checkpoint* is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)`` (no code is unpickled)::

    {"format": "snnc-checkpoint", "version": 1,
     "arch": "fmnist_cnn", "config": {...},   # rebuilds the module via ARCHITECTURES
     "state_dict": {...}, "meta": {...}}       # meta: T, dt, seed, accuracy, command
"""
from __future__ import annotations

from pathlib import Path

from snnc.models.fmnist_cnn import DEFAULT_CONFIG, FMNISTConvSNN, build_fmnist_cnn
from snnc.models.zoo import RES_CONFIG, WIDE_CONFIG, build_fmnist_res, build_fmnist_wide

from snnc.ir.trainable import build_nir_graph  # noqa: E402  (a NIR graph as a trainable module)

ARCHITECTURES = {
    "fmnist_cnn": build_fmnist_cnn,
    "fmnist_wide": build_fmnist_wide,
    "fmnist_res": build_fmnist_res,
    "nir_graph": build_nir_graph,   # what `snnc finetune` writes: any NIR graph with its weights
}
DEFAULT_CONFIGS = {"fmnist_cnn": DEFAULT_CONFIG, "fmnist_wide": WIDE_CONFIG, "fmnist_res": RES_CONFIG}

MODELS_DIR = Path(__file__).resolve().parent
#: Shipped checkpoints by name (``snnc compile fmnist_cnn`` works from any folder).
BUNDLED = {
    "fmnist_cnn": MODELS_DIR / "fmnist_cnn.pt",
    "fmnist_wide": MODELS_DIR / "fmnist_wide.pt",
    "fmnist_res": MODELS_DIR / "fmnist_res.pt",
}


def path(name: str) -> Path:
    """Path of the shipped checkpoint ``name`` (a key of :data:`BUNDLED`), inside the installed package.

    Raises:
        FileNotFoundError: unknown name, or the file is missing from this installation.
    """
    if name not in BUNDLED:
        raise FileNotFoundError(f"no shipped model {name!r}; shipped: {', '.join(sorted(BUNDLED))}")
    p = BUNDLED[name]
    if not p.is_file():
        raise FileNotFoundError(f"shipped model {name!r} is missing from this installation ({p})")
    return p


__all__ = ["ARCHITECTURES", "BUNDLED", "DEFAULT_CONFIGS", "FMNISTConvSNN", "build_fmnist_cnn", "MODELS_DIR", "path"]
