"""Drivers: what runs the stages for a user (compile, ``--budget``, fine-tuning, simulate).

The top layer (docs/architecture.md): it may import every layer below it; nothing below imports it.
A pass that needs training gets it through the pass context the driver fills (``PassContext.trainer``).
"""
