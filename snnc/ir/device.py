"""Where torch work runs: ``--device auto|cpu|cuda`` (:func:`resolve`) and the settings that keep CUDA
results exact (:func:`exact_cuda`).

``auto`` is CUDA when ``torch.cuda.is_available()``, else the CPU. What runs on the device: ``snnc
finetune``'s training and evaluation, an ``adapt_semantics`` fine-tune, the float reference's scores, and
loihi-sim's integer steps (the host's first-layer currents stay on the CPU: they are the host's work).
"""
from __future__ import annotations

import contextlib

import torch

from snnc.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def resolve(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA if available else CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:N"``.

    Raises:
        UsageError: an unknown name, or CUDA asked for where torch has none (one line, naming why).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = "auto" if spec is None else str(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU visible"
            raise UsageError(f"--device {spec}: torch {torch.__version__} has no usable CUDA device ({build}); "
                             "use --device cpu or auto")
        try:
            dev = torch.device(spec)
        except RuntimeError:
            raise UsageError(f"--device {spec}: not a device name (auto, cpu, cuda, cuda:N)") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise UsageError(f"--device {spec}: unknown device; choose one of {', '.join(DEVICES)} (or cuda:N)")


@contextlib.contextmanager
def exact_cuda():
    """TF32 off for matmuls and cuDNN convolutions while the block runs (restored after): float32 products
    of integers then stay exact, as on the CPU."""
    m, c = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = m, c
