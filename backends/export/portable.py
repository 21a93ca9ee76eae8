"""A portable NIR graph of the compiled model, for other tools' NIR importers.

snnc's own ``graph.nir`` keeps snnc's meaning (time constants in s at ``snnc.dt``, biases in
``v_leak``, a ``nir.I`` readout, Flatten without batch dim), which snnTorch's
``import_from_nir``, Norse's ``from_nir`` and Sinabs' ``from_nir`` do not read as meant. The
portable graph is the same quantized network in the conventions those importers share:

* **one neuron convention, unit input gain, at a documented dt** ``D = 1e-4`` s (graph metadata
  ``snnc.portable_dt``; snnTorch's importer hard-codes it, Norse takes it: ``from_nir(g, dt=1e-4)``).
  With snnc's per-step decays alpha (current) and beta (voltage):

  - no current memory (alpha = 0): ``nir.LIF(tau = D/(1-beta), r = 1, v_leak = 0,
    v_threshold = (1-beta) v_th)`` — NIR's Euler step ``v' = beta v' + (1-beta) x`` is snnc's
    ``v = beta v + x`` scaled by (1-beta), so spikes are the same; snnTorch rescales the
    threshold by r D / tau (its ``hack_w_scale``), Norse ignores r (it assumes r = 1);
  - current memory (alpha > 0): ``nir.CubaLIF(tau_syn = D/(1-alpha), tau_mem = D/(1-beta),
    w_in = 1/(1-alpha), r = 1/(1-beta), v_leak = 0, v_threshold = v_th)`` (snnTorch asserts
    r = tau_mem/D; Norse multiplies by w_in and r);
  - no leak (beta = 1): ``nir.IF(r = 1)``.

* **biases where importers read them**: the per-step voltage bias goes into the Conv2d/Affine
  bias (exact without current memory; with it, the steady-state equivalent ``b (1 - alpha)``).
* **a readout they support**: snnTorch's and Norse's importers read no ``I``/``LI``/``CubaLI``, so
  the non-spiking readout is dropped; its Affine feeds the Output, and the class scores are the
  output summed over the T steps, each step weighted by how much it adds to the readout's final
  voltage (:func:`readout_kernel`): an integrator (``nir.I``) weighs every step 1
  (``snnc.readout = "sum_over_steps"``); a leaky readout (``LI``, ``CubaLI``: Norse's ``LICell``)
  ``k_t`` (``snnc.readout = "weighted_sum_over_steps"``, the weights in ``snnc.readout_weights``).
  Exact: the readout is linear; its voltage bias enters the Affine bias scaled to the same final
  value.
* **pooling folded** into the next Conv2d (kernel k*K, stride k*s) or Affine (repeated
  columns), as on the chip (snnTorch reads AvgPool2d only, Norse and Sinabs SumPool2d only), and
  **Flatten(start_dim=-3, end_dim=-1)**, which means the same with or without a batch dim.
* weights are the quantized (fake-quant) values loihi-sim's integers represent, times each
  group's gain.

``portable-sinabs.nir`` is the same graph in Sinabs' convention: ``nir.LIF`` ``tau`` in time
steps with exponential decay ``exp(-1/tau)`` (``tau = -1/ln(beta)``), ``r = 1``,
``v_threshold = v_th`` (parameters of shape (1,), broadcast: sinabs 3.1.3's importer fails on
multi-dimensional ones; read it with ``nir.read(path, type_check=False)``); Sinabs has no CubaLIF (groups with current memory: not written). Two
differences NIR cannot carry remain: Sinabs' ``LIFSqueeze`` resets by subtraction and fires on
``v >= v_th`` (snnc: reset to zero, ``v > v_th``), so its spikes, and sometimes its predictions,
differ (the test measures the agreement).
"""
from __future__ import annotations

import math
from pathlib import Path

import nir
import numpy as np

from snnc.errors import SnncError
from snnc.backends.lava.engine import LavaMappingError, fold_pooling
from snnc.ir.lowering import lower
from snnc.ir import UnsupportedNodeError

#: dt of the portable graph, s (snnTorch's import_from_nir hard-codes 1e-4).
PORTABLE_DT = 1e-4
#: what the portable export holds (the refusals name this list, not snnc's own supported nodes)
PORTABLE_SUPPORTED = ["spiking groups with one tau per group and reset to 0 (IF, LIF, CubaLIF)",
                      "a non-spiking readout (I, LI, CubaLI: scores weighted per step)", "feed-forward dense or conv projections (sum/avg pooling "
                      "folded into the weights)", "one bias per channel behind a conv"]
#: decays closer than this to 0 (current) or 1 (voltage) are taken as exact: the float32 time
#: constants of a NIR file give 1 - dt/tau_syn ~ 5e-8 for tau_syn == dt.
ALPHA_ZERO = 1e-6


def _scalar(a, what, name) -> float:
    a = np.asarray(a, np.float64).reshape(-1)
    if a.size and np.ptp(a) > 1e-12 * max(1.0, float(np.abs(a).max())):
        raise UnsupportedNodeError(name, "neuron group", f"per-neuron {what} (portable export needs one per group)",
                                           supported=PORTABLE_SUPPORTED)
    return float(a[0])


def build_portable(compiled: nir.NIRGraph, dialect: str = "nir") -> nir.NIRGraph:
    """The portable graph (``dialect="nir"``: snnTorch, Norse, NIR semantics at dt 1e-4 s) or the
    Sinabs one (``dialect="sinabs"``). ``compiled``: the graph after the passes (``graph.nir``).

    Raises:
        UnsupportedNodeError: a neuron group or readout with no portable form in that dialect.
    """
    return _build(compiled, dialect)[0]


def _build(compiled: nir.NIRGraph, dialect: str) -> tuple[nir.NIRGraph, dict | None]:
    """:func:`build_portable`, and the host-computed first layer the graph starts after (``HOST_FILE``'s
    contents: ops, weight, bias, shape), or None."""
    low = lower(compiled)
    D = PORTABLE_DT
    nodes: dict = {}
    edges: list = []
    (in_name, in_shape), = low.inputs.items()
    nodes["input"] = nir.Input(input_type={"input": np.array(in_shape)})
    names = {in_name: "input"}
    readouts, kernels, host = set(), {}, None
    for name, g in low.groups.items():
        alpha = _scalar(g.alpha, "current decay", name)
        beta = _scalar(g.beta, "voltage decay", name)
        alpha = 0.0 if alpha < ALPHA_ZERO else alpha   # tau_syn == dt up to float32 rounding
        beta = 1.0 if beta > 1 - ALPHA_ZERO else beta
        n = g.shape
        if g.kind == "spiking":
            th = _scalar(g.threshold, "threshold", name)
            if g.reset != "zero":
                raise UnsupportedNodeError(name, g.nir_type, f"reset {g.reset!r} (importers reset to v_reset)",
                                           supported=PORTABLE_SUPPORTED)
            if dialect == "sinabs":
                if alpha > 0:
                    raise UnsupportedNodeError(name, g.nir_type, "current memory (tau_syn > dt): Sinabs has no CubaLIF",
                                           supported=PORTABLE_SUPPORTED)
                tau = -1.0 / math.log(beta) if 0 < beta < 1 else (math.inf if beta == 1 else 1e-9)
                one = (1,)  # sinabs 3.1.3 tests `any(node.v_leak)`, which fails on arrays of 2+ dims
                node = nir.LIF(tau=np.full(one, tau, np.float32), r=np.ones(one, np.float32),
                               v_leak=np.zeros(one, np.float32), v_threshold=np.full(one, th, np.float32),
                               v_reset=np.zeros(one, np.float32))
            elif beta >= 1.0:
                node = nir.IF(r=np.ones(n, np.float32), v_threshold=np.full(n, th, np.float32),
                              v_reset=np.zeros(n, np.float32))
            elif alpha == 0:
                node = nir.LIF(tau=np.full(n, D / (1 - beta), np.float32), r=np.ones(n, np.float32),
                               v_leak=np.zeros(n, np.float32), v_threshold=np.full(n, th * (1 - beta), np.float32),
                               v_reset=np.zeros(n, np.float32))
            else:
                node = nir.CubaLIF(tau_syn=np.full(n, D / (1 - alpha), np.float32),
                                   tau_mem=np.full(n, D / (1 - beta), np.float32),
                                   w_in=np.full(n, 1 / (1 - alpha), np.float32),
                                   r=np.full(n, 1 / (1 - beta), np.float32), v_leak=np.zeros(n, np.float32),
                                   v_threshold=np.full(n, th, np.float32), v_reset=np.zeros(n, np.float32))
            nodes[name] = node
            names[name] = name
        else:
            if not low.num_steps:
                raise UnsupportedNodeError(name, g.nir_type, "a readout without a known T (pass --num-steps)",
                                           supported=PORTABLE_SUPPORTED)
            kernels[name] = readout_kernel(alpha, beta, int(low.num_steps))
            readouts.add(name)
        v_bias = np.asarray(g.v_bias, np.float64).reshape(n)
        first = True
        for i, p in enumerate(g.projections):
            if p.recurrent:
                raise UnsupportedNodeError(name, g.nir_type, "a recurrent projection (not exported yet)",
                                           supported=PORTABLE_SUPPORTED)
            src = names[p.source]
            if p.host and any(op["op"] == "max_pool2d" for op in p.ops):
                # NIR 1.0 has no MaxPool node and the max of analog values has no form in NIR's primitives: the
                # host computes this layer (as it does for the chip); the portable graph starts at its values
                if len(g.projections) != 1:
                    raise UnsupportedNodeError(name, g.nir_type, "a max-pooled host layer beside other inputs",
                                               supported=PORTABLE_SUPPORTED)
                bias = np.zeros(n) if p.bias is None else np.asarray(p.bias, np.float64).reshape(n)
                host = {"group": name, "ops": p.ops, "weight": np.asarray(p.weight, np.float64),
                        "bias": (bias + v_bias) * (1 - alpha), "shape": list(n)}  # as a projection's bias
                nodes["input"] = nir.Input(input_type={"input": np.array(n)})
                edges.append(("input", name))
                first = False
                continue
            try:
                kind, params, w = fold_pooling(p.ops, np.asarray(p.weight, np.float64), p.source_shape)
            except LavaMappingError as e:  # the same synapse forms as Lava's: say it for the NIR export
                raise UnsupportedNodeError(name, g.nir_type, f"a projection from {p.source!r} with no single "
                                           f"dense/conv form ({str(e).replace('no Lava form', 'none')})",
                                           supported=PORTABLE_SUPPORTED) from None
            bias = np.zeros(n) if p.bias is None else np.asarray(p.bias, np.float64).reshape(n)
            if first:
                bias = bias + v_bias
                first = False
            if name in readouts:  # the voltage bias's share of the final voltage, as an input through the kernel
                bias = bias * float(np.sum(beta ** np.arange(int(low.num_steps)))) / float(kernels[name].sum())
            else:
                bias = bias * (1 - alpha)  # a voltage bias per step, as an input to the current
            wname = f"{name}.w{i}" if len(g.projections) > 1 else f"{name}.w"
            if kind == "conv":
                if np.ptp(bias.reshape(n[0], -1), axis=1).max(initial=0) > 1e-9 * max(1.0, np.abs(bias).max()):
                    raise UnsupportedNodeError(name, g.nir_type, "a per-position bias behind a conv",
                                           supported=PORTABLE_SUPPORTED)
                nodes[wname] = nir.Conv2d(input_shape=tuple(p.source_shape[1:]), weight=w.astype(np.float32),
                                          stride=tuple(params["stride"]), padding=tuple(params["padding"]),
                                          dilation=tuple(params["dilation"]), groups=params["groups"],
                                          bias=bias.reshape(n[0], -1)[:, 0].astype(np.float32))
                edges.append((src, wname))
            else:
                if len(p.source_shape) > 1:
                    fname = f"{wname}.flatten"
                    nodes[fname] = nir.Flatten(input_type={"input": np.array(p.source_shape)}, start_dim=-len(p.source_shape),
                                               end_dim=-1)
                    edges.append((src, fname))
                    src = fname
                nodes[wname] = nir.Affine(weight=w.astype(np.float32), bias=bias.reshape(-1).astype(np.float32))
                edges.append((src, wname))
            edges.append((wname, name if name not in readouts else "output"))
    if len(low.outputs) > 1:
        raise UnsupportedNodeError(sorted(low.outputs)[1], "Output", f"{len(low.outputs)} Output nodes (the portable "
                                   "graph has one Output)", supported=PORTABLE_SUPPORTED)
    outs = list(low.outputs.values())
    nodes["output"] = nir.Output(output_type={"output": np.array(low.groups[outs[0]].shape)})
    for o in outs:
        if o not in readouts:
            edges.append((o, "output"))
    k = kernels[outs[0]] if outs[0] in kernels else None
    meta = {"snnc.portable_dt": D if dialect == "nir" else 1.0, "snnc.num_steps": int(low.num_steps or 0),
            "snnc.readout": ("spikes" if k is None else "sum_over_steps" if np.all(k == 1.0) else
                             "weighted_sum_over_steps"),
            "snnc.input_encoding": low.encoding, "snnc.dialect": dialect}
    if k is not None and not np.all(k == 1.0):
        meta["snnc.readout_weights"] = np.asarray(k, np.float64)
    if host is not None:
        meta["snnc.host_preprocessing"] = (f"{HOST_FILE}: the graph's input is the host-computed first layer "
                                           f"{host['group']!r}, max_pool2d(conv(x)) + bias (NIR 1.0 has no MaxPool "
                                           "node; on the chip the host computes it too): snnc.backends.export."
                                           "portable.host_input")
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False), host


#: the host-computed first layer of a portable graph that starts after it (max pooling of analog values)
HOST_FILE = "portable-host.npz"


def host_input(folder, x: np.ndarray) -> np.ndarray:
    """The input of a portable graph with ``snnc.host_preprocessing``: the host's first layer (``HOST_FILE`` in
    ``folder``: its ops, weight and bias) applied to direct input ``x`` ``[B, *input_shape]``; float32
    ``[B, *first group shape]``."""
    import json

    import torch

    from snnc.ir.ops import host_current
    with np.load(Path(folder) / HOST_FILE) as f:
        ops, w, b, shape = json.loads(str(f["ops"])), f["weight"], f["bias"], [int(v) for v in f["shape"]]
    return host_current(torch.as_tensor(np.asarray(x, np.float64)), [(ops, torch.as_tensor(w), torch.as_tensor(b))],
                        shape).numpy().astype(np.float32)


def readout_kernel(alpha: float, beta: float, T: int) -> np.ndarray:
    """Weights ``k [T]`` (float64) with which a non-spiking readout's final voltage sums its per-step inputs
    ``x_t``: snnc's ``u_t = alpha u_{t-1} + x_t``, ``v_t = beta v_{t-1} + u_t`` gives
    ``v_{T-1} = sum_t k_t x_t``, ``k_t = sum_{j=t}^{T-1} beta^(T-1-j) alpha^(j-t)``. An integrator (alpha 0, beta 1)
    has ``k = 1``: the plain sum over steps. NIR's importers (snnTorch 1.0, Norse 1.1) read no ``LI``/``CubaLI``, so
    the portable graph ends in the readout's Affine and its scores are ``sum_t k_t output_t``."""
    t = np.arange(T)
    k = np.zeros(T, np.float64)
    for j in range(T):
        k[: j + 1] += beta ** (T - 1 - j) * alpha ** (j - t[: j + 1])
    return k


def write_portable(folder, compiled: nir.NIRGraph) -> dict:
    """Write ``portable.nir`` (and ``portable-sinabs.nir`` where Sinabs can hold it) into ``folder``."""
    info = {"file": "portable.nir", "dt": PORTABLE_DT, "readout": None,
            "load": {"snntorch": "snntorch.import_nir.import_from_nir(nir.read(f))",
                     "norse": "norse.torch.from_nir(nir.read(f), dt=1e-4)",
                     "sinabs": "sinabs.from_nir(nir.read('portable-sinabs.nir', type_check=False), batch_size=B)"}}
    g, h = _build(compiled, "nir")
    nir.write(str(folder / "portable.nir"), g)
    if h is not None:
        import json
        with open(folder / HOST_FILE, "wb") as f:
            np.savez(f, ops=np.array(json.dumps(h["ops"])), weight=h["weight"], bias=h["bias"],
                     shape=np.array(h["shape"]))
        info["host_file"] = HOST_FILE
    info["readout"] = g.metadata["snnc.readout"]
    if "snnc.readout_weights" in g.metadata:
        info["readout_weights"] = [float(v) for v in g.metadata["snnc.readout_weights"]]
    try:
        nir.write(str(folder / "portable-sinabs.nir"), build_portable(compiled, "sinabs"))
        info["sinabs_file"] = "portable-sinabs.nir"
    except UnsupportedNodeError as e:
        info["sinabs_file"] = None
        info["sinabs_reason"] = str(e)
    return info


def run_importer(importer: str, path, x: np.ndarray, num_steps: int):
    """Load ``path`` with ``importer``'s NIR importer and run it on direct input ``x``
    (``[B, *input_shape]``, the same every step) for ``num_steps`` steps.

    Returns ``[B, *output_shape]``: the class scores, the output summed over the steps with the file's
    ``snnc.readout_weights`` (1 per step without them).

    Raises:
        ImportError: the importer is not installed.
    """
    import torch
    g = nir.read(str(path), type_check=importer != "sinabs")  # sinabs: (1,)-shaped neuron parameters
    if "snnc.host_preprocessing" in g.metadata:
        x = host_input(Path(path).parent, x)
    xt = torch.as_tensor(np.asarray(x, np.float32))
    k = np.asarray(g.metadata.get("snnc.readout_weights", np.ones(num_steps)), np.float32).reshape(-1)
    if len(k) != num_steps:
        raise SnncError(f"{path}: readout weights for {len(k)} steps, run for {num_steps}")
    with torch.no_grad():
        if importer == "snntorch":
            from snntorch import utils as sut
            from snntorch.import_nir import import_from_nir
            net = import_from_nir(g)
            sut.reset(net)
            out = 0
            for t in range(num_steps):
                y = net(xt)
                out = out + float(k[t]) * (y[0] if isinstance(y, tuple) else y)   # (output, state dict)
        elif importer == "norse":
            from norse.torch import from_nir
            net = from_nir(g, dt=PORTABLE_DT)
            state, out = None, 0
            for t in range(num_steps):
                y, state = net(xt, state)
                out = out + float(k[t]) * y
        elif importer == "sinabs":
            import sinabs
            B = xt.shape[0]
            net = sinabs.from_nir(g, batch_size=B)
            xs = xt.unsqueeze(1).expand(B, num_steps, *xt.shape[1:]).reshape(B * num_steps, *xt.shape[1:])
            y = net(xs)
            y = y[0] if isinstance(y, tuple) else y
            y = y.reshape(B, num_steps, *y.shape[1:])
            out = (y * torch.as_tensor(k).reshape((1, num_steps) + (1,) * (y.ndim - 2))).sum(1)
        else:
            raise SnncError(f"unknown importer {importer!r}; known: snntorch, norse, sinabs")
    return out.numpy()
