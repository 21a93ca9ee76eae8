"""Compression passes (``snnc.passes``): pure graph -> graph functions with a name and options.

Built-in passes: ``fold_bn`` (exact BatchNorm and per-channel threshold folding),
``prune_channels`` (structured channel pruning), ``fold_timesteps`` (fewer, coarser time steps),
``quantize`` (Loihi fixed-point formats), ``budget`` (prune until the mapped model fits a resource
budget) and ``adapt_semantics`` (convert neuron semantics the
target cannot keep, optionally fine-tune). See :mod:`snnc.passes.manager`.
"""
from snnc.passes.manager import REGISTRY, Pass, PassContext, Pipeline, get_pass, parse_pipeline, register
from snnc.passes import fold_bn as _fold_bn  # noqa: F401  (registers)
from snnc.passes import quantize as _quantize  # noqa: F401  (registers)
from snnc.passes import prune as _prune  # noqa: F401  (registers)
from snnc.passes import adapt as _adapt  # noqa: F401  (registers)
from snnc.passes import fold_timesteps as _fold_timesteps  # noqa: F401  (registers)
from snnc.passes import budget as _budget  # noqa: F401  (registers)

DEFAULT_PIPELINE = "fold_bn,quantize"

__all__ = ["REGISTRY", "Pass", "PassContext", "Pipeline", "get_pass", "parse_pipeline", "register",
           "DEFAULT_PIPELINE"]
