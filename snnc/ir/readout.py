"""The readout rule: how a class is read from a model, the same rule for the float model and the
compiled one (one implementation, used by the compile driver, ``--budget``, fine-tuning, the
semantics check and ``fold_timesteps``).

The readout is the graph's Output node (with several, the first by name, and the rule's description
says so), fed by one node. A non-spiking readout (``nir.I``,
``nir.LI``, ``nir.CubaLI``) is read as its voltage after the T steps (``"membrane"``); a spiking
node as its spike counts over the T steps (``"spike_count"``); a node that is not a neuron (an
``Affine`` tail after the last spiking group) as its output summed over the T steps (the
``"spike_count"`` reduction; the ``quantize`` pass adds an integrator that sums it on the chip,
:func:`snnc.ir.lowering.prepare_graph`). The class is the argmax; ties go to
the lowest class index (numpy/torch ``argmax``).

Tensors: per-step outputs are time-major ``[T, B, *output_shape]``; class scores ``[B, classes]``.
Inputs are ``[N, *input_shape]`` direct (analog, the same every step) or, with ``spikes``,
time-major ``[T, N, *input_shape]``.
"""
from __future__ import annotations

import nir
import numpy as np
import torch

from snnc.ir import NEURON_TYPES, SPIKING_TYPES, predecessors
from snnc.ir.reference import run_graph
from snnc.neurons import reset_states

SPIKE_COUNT, MEMBRANE = "spike_count", "membrane"
RULES = (SPIKE_COUNT, MEMBRANE)


def readout_rule(graph: nir.NIRGraph) -> dict:
    """``{"rule": "spike_count" | "membrane", "node": name, "description": one line}`` (module docstring)."""
    outs = sorted(n for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    src = predecessors(graph, outs[0]) if outs else []
    node = graph.nodes[src[0]] if len(src) == 1 else None
    if isinstance(node, SPIKING_TYPES):
        return _first_of({"rule": SPIKE_COUNT, "node": src[0],
                          "description": f"argmax over classes of the spike counts of {src[0]!r} over the T time "
                                         "steps (ties: lowest class index)"}, outs)
    if src and not (len(src) == 1 and isinstance(node, NEURON_TYPES + (nir.Input,))):
        # a tail that is not one neuron node (an Affine after the last spiking group, or several nodes summed
        # into the Output): the Output's value summed over the steps (prepare_graph's added integrator on chip)
        names = ", ".join(repr(s) for s in src)
        return _first_of({"rule": SPIKE_COUNT, "node": outs[0],
                          "description": f"argmax over classes of the Output {outs[0]!r} (fed by {names}, not one "
                                         "neuron) summed over the T time steps (ties: lowest class index; on the chip "
                                         "an added integrator sums it)"}, outs)
    name = src[0] if src else None
    rule = {"rule": MEMBRANE, "node": name,
            "description": f"argmax over classes of the voltage of the non-spiking readout {name!r} after the T time "
                          "steps (ties: lowest class index)"}
    return _first_of(rule, outs)


def _first_of(rule: dict, outs: list) -> dict:
    """With several Output nodes the first by name is the readout; the description says so."""
    if len(outs) > 1:
        rule["description"] += (f"; the first of {len(outs)} Output nodes by name ({', '.join(map(repr, outs))}): "
                                "the others are compiled and not read")
    return rule


def reduce(seq, rule: str):
    """Class scores ``[B, classes]`` from per-step outputs ``[T, B, ...]`` (torch tensor or numpy array):
    the sum over T (``spike_count``) or the last step (``membrane``).

    Raises:
        ValueError: an unknown rule (a bug in the caller: rules come from :func:`readout_rule`).
    """
    if rule not in RULES:
        raise ValueError(f"unknown readout rule {rule!r}; known: {', '.join(RULES)}")
    seq = seq.reshape(seq.shape[0], seq.shape[1], -1)
    return seq.sum(0) if rule == SPIKE_COUNT else seq[-1]


def accumulate(acc, out, rule: str):
    """Streaming form of :func:`reduce`: fold one step's output ``[B, ...]`` into ``acc`` (None at step 0)."""
    o = out.reshape(out.shape[0], -1)
    return o if rule == MEMBRANE or acc is None else acc + o


def step_scores(model, x: torch.Tensor, num_steps: int, rule: str, spikes: bool = False) -> torch.Tensor:
    """Class scores ``[B, classes]`` of a single-step module (keeps the autograd graph, for training):
    T steps on direct input ``x`` ``[B, *input_shape]``, or along spike input ``[T, B, *input_shape]``."""
    reset_states(model)
    steps = list(x) if spikes else [x] * num_steps
    try:
        return reduce(torch.stack([model(xt) for xt in steps]), rule)
    finally:
        reset_states(model)


def scores(graph: nir.NIRGraph, x: np.ndarray, num_steps: int, rule: str | None = None, spikes: bool = False,
           batch_size: int = 500, module=None, dtype=torch.float64, progress=None, device=None) -> np.ndarray:
    """Float class scores ``[N, classes]`` (float64) by the readout ``rule`` (default: the graph's): the
    torch ``module`` when one is given (an snnc step module; direct input only), else snnc's NIR
    reference executor on ``graph`` (the source's semantics) in ``dtype``. ``progress(done)`` is called
    with the samples done after each batch. ``device``: torch device to run on (default CPU; the
    ``module`` is moved there and back)."""
    rule = rule or readout_rule(graph)["rule"]
    n = x.shape[1] if spikes else x.shape[0]
    out = []
    dev = torch.device("cpu") if device is None else torch.device(device)
    use_module = module is not None and not spikes
    if use_module and dev.type != "cpu":
        module.to(dev)
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[:, i:i + batch_size] if spikes else x[i:i + batch_size]))
                if use_module:
                    xb = xb.to(dev)
                    reset_states(module)
                    try:
                        seq = torch.stack([module(xb) for _ in range(num_steps)])
                    finally:
                        reset_states(module)
                else:
                    seq = run_graph(graph, xb, None if spikes else num_steps, dtype=dtype, device=dev)[0]
                out.append(reduce(seq.double(), rule).cpu().numpy())
                if progress:
                    progress(min(i + batch_size, n))
    finally:
        if use_module and dev.type != "cpu":
            module.cpu()
    return np.concatenate(out) if out else np.zeros((0, 0))


def accuracy(graph: nir.NIRGraph, x: np.ndarray, y: np.ndarray, num_steps: int, rule: str | None = None,
             spikes: bool = False, batch_size: int = 500, dtype=torch.float32) -> float:
    """Share of samples whose argmax class score (:func:`scores`) equals the label ``y`` ``[N]``."""
    s = scores(graph, x, num_steps, rule, spikes, batch_size, dtype=dtype)
    return float((s.argmax(1) == np.asarray(y)).mean()) if len(y) else float("nan")


def agreement(source_graph: nir.NIRGraph, program, x: np.ndarray, num_steps: int, spikes: bool,
              progress=None, device=None) -> float:
    """Share of samples where the float graph (source semantics) and a compiled ``program`` (any object
    whose ``run(x).scores()`` gives ``[N, classes]``, e.g. loihi-sim's ``Program``) predict the same class.
    ``device``: where both run (default CPU)."""
    a = scores(source_graph, x, num_steps, spikes=spikes, dtype=torch.float32, progress=progress,
               device=device).argmax(1)
    b = (program.run(x, device=device) if device is not None else program.run(x)).scores().reshape(len(a), -1).argmax(1)
    return float((a == b).mean())
