"""Chip figures of a graph, for compress-to-fit: what the ``budget`` pass measures each candidate with.

:func:`chip_figures` measures a graph (before quantization) the way ``snnc compile`` would
build it: the remaining passes (``quantize``), the real loihi-sim mapper (cores, mapped
synapses, synaptic memory, every design rule) and, with inputs, the bit-accurate simulator
(SynOps and energy per inference on those inputs). A mapping that breaks limits is still
measured (with ``fits = False`` and the violated rules). The compile driver hands it to the
``budget`` pass (:mod:`snnc.passes.budget`, the search) as ``PassContext.measure``.
"""
from __future__ import annotations

import numpy as np

from snnc.backends.loihi.compile import compile_graph
from snnc.backends.loihi.energy import measure
from snnc.backends.loihi.sim import Program, slice_counts_for
from snnc.ir import graph_figures
from snnc.passes import PassContext


def chip_figures(graph, post_passes, target, ctx, x_sim: np.ndarray | None = None, batch_size: int = 256,
                 formats: str = "auto", max_cores: int | None = None, max_chips: int | None = None,
                 device=None) -> dict:
    """Figures of ``graph`` compiled for ``target`` after ``post_passes`` (a Pipeline, e.g. quantize).

    ``formats``, ``max_cores`` and ``max_chips`` are those of
    :func:`snnc.backends.loihi.compile.compile_graph` (``"discrete"``: one input axon per source
    neuron and a weight per synapse; needing more cores or chips than the limits is a violation).

    Returns ``neurons``, ``graph_synapses`` (as the pipeline log counts them), ``synapses`` (mapped),
    ``memory_bits``, ``cores``, ``cores_bound`` (the mapper's lower bound on cores before rounding up),
    ``chips``, ``fits`` and ``violations`` (rule names), and with
    ``x_sim`` (``[N, *input_shape]`` direct input) ``synops`` and ``energy_pJ`` per inference.
    """

    fig = graph_figures(graph)
    q = post_passes.run(graph, PassContext(target=target, calibration=ctx.calibration, num_steps=ctx.num_steps,
                                           seed=ctx.seed))
    config, arrays, violations = compile_graph(q, target, raise_on_violation=False, formats=formats,
                                               max_cores=max_cores, max_chips=max_chips)
    out = {"neurons": fig["neurons"], "graph_synapses": fig["synapses"], "parameters": fig["parameters"],
           "synapses": int(sum(c["synapses"] for c in config["cores"])),
           "memory_bits": int(sum(c["memory_bits"] for c in config["cores"])),
           "cores": len(config["cores"]), "chips": max(c["chip"] for c in config["cores"]) + 1,
           "fits": not violations, "violations": sorted({v.rule for v in violations})}
    lb, lim = config["mapping"]["lower_bound"]["totals"], target["core"]
    # the lower bound on cores before rounding up: it moves with every channel, the placed count in steps
    out["cores_bound"] = max(lb["neurons"] / lim["neurons"], lb["memory_bits"] / lim["synapse_memory_bits"],
                             lb["axons_in"] / lim["axons_in"], lb["axons_out_slots"] / lim["axons_out"])
    if x_sim is not None:
        prog = Program(config, arrays, target, core_limits=False)
        res = prog.run(x_sim, batch_size=batch_size, device=device)
        m = measure(prog, res, slice_counts_for(prog))
        out["synops"] = float(m["per_inference"]["synops"])
        out["energy_pJ"] = float(m["energy"]["per_inference_pJ"])
    return out
