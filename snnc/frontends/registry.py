"""The framework frontends snnc knows, by name.

Each module has ``SUPPORTED`` (layer names), ``node_maps(tc, base_maps)`` (module type -> NIR
mapper), ``stateful_types()``, ``available()`` and ``DEFAULT_DT`` (s).
"""
from __future__ import annotations

from snnc.frontends import norse, sinabs, snntorch, spikingjelly

#: framework modules, each with SUPPORTED, node_maps(tc, base_maps), stateful_types(), available()
FRAMEWORKS = {"snntorch": snntorch, "norse": norse, "spikingjelly": spikingjelly, "sinabs": sinabs}
