"""snnc: a deployment compiler for spiking neural networks.

Trace a trained PyTorch SNN (or read a NIR file) into a NIR graph, run
compression passes, map it onto neuromorphic cores and report per-core
resources and energy. See README.md and docs/.
"""
__version__ = "0.1.0"
