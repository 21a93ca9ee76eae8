"""Compatibility module: the frontends live in :mod:`snnc.frontends` (one module per source).

``snnc.frontend`` re-exports what other code and older scripts import from here.
"""
from __future__ import annotations

from snnc.frontends import (DEFAULT_DT, FRAMEWORKS, ModelLoadError, check_zip_integrity, load_checkpoint,
                            load_factory, load_model, normalize_nir, repair_graph, resolve_model_path, run_steps,
                            set_types, supported_list, trace, trace_module)

SUPPORTED_MODULES = supported_list()

__all__ = ["DEFAULT_DT", "FRAMEWORKS", "ModelLoadError", "SUPPORTED_MODULES", "check_zip_integrity",
           "resolve_model_path", "load_checkpoint", "load_factory",
           "load_model", "normalize_nir", "repair_graph", "run_steps", "set_types", "supported_list", "trace",
           "trace_module"]
