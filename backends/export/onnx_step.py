"""One time step of the compiled (fake-quantized) NIR graph as a stateful ONNX model.

``model.onnx`` maps ``(input, state) -> (output, state)``:

* inputs: ``input`` ``[B, *input_shape]`` float32 (the analog sample, or the step's 0/1 spikes),
  then per neuron node ``<node>.i`` (synaptic current; CubaLIF/CubaLI only) and ``<node>.v``
  ``[B, *shape]`` float32 — zeros at the first step;
* outputs: ``output`` ``[B, *output_shape]`` (what the graph's Output node gets this step: the
  readout's voltage, or spikes; with several Output nodes the first by name, the others
  ``output.<name>``), then ``<node>.i.next`` / ``<node>.v.next`` to feed back.

Run it T times (graph metadata ``snnc.num_steps``, also in the model's ``metadata_props``). The class
scores follow the readout rule recorded in ``metadata_props`` (``snnc.readout``, :func:`readout_props`):
``last_step`` -- ``output`` after the last step (a non-spiking readout's voltage; the bundled model),
``sum_over_steps`` -- ``output`` summed over the T steps (spike counts); :func:`onnx_scores` applies it. The semantics are
snnc's float reference executor (:mod:`snnc.ir.reference`, forward Euler at each node's
``snnc.dt``) on the graph after the passes, whose weights, thresholds, decays and biases are the
values loihi-sim's integers represent — "loihi-sim's float-equivalent run":

    CubaLIF  i' = i + dt/tau_syn (w_in x - i);  v' = v + dt/tau_mem (v_leak - v + r i')
    LIF      v' = v + dt/tau (v_leak - v + r x);   IF  v' = v + r x;   I  v' = v + dt r x
    spike  s = v' > v_threshold;  v' <- v_reset where s (reset "zero"), or v' - v_threshold s ("subtract")

Built with ``onnx.helper`` (opset 17: Gemm, Conv, AveragePool, Reshape, Add, Sub, Mul, Greater,
Cast, Where). Not supported: recurrent edges (a graph with a cycle), Conv1d.
"""
from __future__ import annotations

import nir
import numpy as np

from snnc.ir.readout import MEMBRANE, SPIKE_COUNT, readout_rule
from snnc.ir.semantics import NeuronSemantics
from snnc.ir import (NEURON_TYPES, UnsupportedNodeError, _pair, back_edges, conv_padding, infer_shapes,
                     predecessors, topological_order)

OPSET = 17


class _Builder:
    def __init__(self):
        from onnx import helper
        self.h = helper
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name: str, value, dtype=np.float32) -> str:
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype)), name))
        return name

    def op(self, kind: str, inputs: list, out: str | None = None, **attrs) -> str:
        self.n += 1
        out = out or f"t{self.n}"
        self.nodes.append(self.h.make_node(kind, inputs, [out], name=f"{kind}_{self.n}", **attrs))
        return out


def _params(node, shape) -> dict:
    return {k: np.broadcast_to(np.asarray(v, np.float64), shape).astype(np.float32)
            for k, v in vars(node).items() if isinstance(v, np.ndarray) and v.dtype.kind == "f" and
            k in ("tau_syn", "tau_mem", "tau", "r", "w_in", "v_leak", "v_threshold", "v_reset")}


def build_onnx(graph: nir.NIRGraph):
    """The ONNX ``ModelProto`` of one step of ``graph``; see the module docstring.

    Raises:
        UnsupportedNodeError: a recurrent graph or a node type with no ONNX form here.
    """
    from onnx import TensorProto, helper

    if back_edges(graph):
        raise UnsupportedNodeError("graph", "NIRGraph", "recurrent edges have no ONNX step export yet")
    shapes = infer_shapes(graph)
    order = topological_order(graph)
    first_out = min((n for n in order if isinstance(graph.nodes[n], nir.Output)), default=None)
    b = _Builder()
    inputs, outputs = [], []
    vals: dict[str, str] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            inputs.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", *shapes[name][1]]))
            vals[name] = "input"
            continue
        srcs = [vals[p] for p in predecessors(graph, name)]
        x = srcs[0]
        for extra in srcs[1:]:
            x = b.op("Add", [x, extra])
        osh = list(shapes[name][1])
        if isinstance(node, nir.Output):  # the first Output by name is "output" (the readout), others output.<name>
            oname = "output" if name == first_out else f"output.{name}"
            vals[name] = b.op("Identity", [x], oname)
            outputs.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, ["B", *osh]))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            ins = [x, b.const(f"{name}.weight", node.weight)]
            if isinstance(node, nir.Affine):
                ins.append(b.const(f"{name}.bias", node.bias))
            vals[name] = b.op("Gemm", ins, transB=1)
        elif isinstance(node, nir.Conv2d):
            p = conv_padding(node)
            vals[name] = b.op("Conv", [x, b.const(f"{name}.weight", node.weight), b.const(f"{name}.bias", node.bias)],
                              strides=list(_pair(node.stride)), pads=[p[0], p[1], p[0], p[1]],
                              dilations=list(_pair(node.dilation)), group=int(node.groups))
        elif isinstance(node, nir.Flatten):
            vals[name] = b.op("Reshape", [x, b.const(f"{name}.shape", [-1, *osh], np.int64)])
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            k, s, pd = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            y = b.op("AveragePool", [x], kernel_shape=list(k), strides=list(s), pads=[pd[0], pd[1], pd[0], pd[1]],
                     count_include_pad=1)
            if isinstance(node, nir.SumPool2d):
                y = b.op("Mul", [y, b.const(f"{name}.area", np.float32(k[0] * k[1]))])
            vals[name] = y
        elif isinstance(node, NEURON_TYPES):
            vals[name] = _neuron(b, name, node, x, osh, inputs, outputs)
        else:
            raise UnsupportedNodeError(name, type(node).__name__, "no ONNX step export")
    g = helper.make_graph(b.nodes, "snnc_step", inputs, outputs, b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="snnc")
    model.ir_version = 8
    meta = dict(graph.metadata or {})
    props = {key: str(meta[key]) for key in ("snnc.num_steps", "snnc.input_encoding", "snnc.quantized") if key in meta}
    props.update(readout_props(graph))
    helper.set_model_props(model, props)
    return model


#: ``snnc.readout`` in model.onnx's metadata: how class scores come from the ``output`` of the T steps
READOUTS = {MEMBRANE: "last_step", SPIKE_COUNT: "sum_over_steps"}


def readout_props(graph: nir.NIRGraph) -> dict:
    """The readout rule (:func:`snnc.ir.readout.readout_rule`, the one snnc's float and compiled accuracies use) as
    ONNX metadata: ``snnc.readout`` (``last_step``: scores are ``output`` after the last step, a non-spiking
    readout's voltage; ``sum_over_steps``: ``output`` summed over the T steps, spike counts) and
    ``snnc.readout_rule`` (its one-line description)."""
    rule = readout_rule(graph)
    return {"snnc.readout": READOUTS[rule["rule"]], "snnc.readout_rule": rule["description"]}


def _neuron(b: _Builder, name, node, x, shape, inputs, outputs) -> str:
    from onnx import TensorProto, helper
    sem = NeuronSemantics.of(node)
    dt = sem.require_dt(name)
    p = _params(node, shape)

    def state(var):
        inputs.append(helper.make_tensor_value_info(f"{name}.{var}", TensorProto.FLOAT, ["B", *shape]))
        outputs.append(helper.make_tensor_value_info(f"{name}.{var}.next", TensorProto.FLOAT, ["B", *shape]))
        return f"{name}.{var}"

    def c(key, val):
        return b.const(f"{name}.{key}", val)

    v = state("v")
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        i = state("i")
        w_in = p.get("w_in", np.ones(shape, np.float32))
        di = b.op("Sub", [b.op("Mul", [x, c("w_in", w_in)]), i])
        i2 = b.op("Add", [i, b.op("Mul", [di, c("dt_tau_syn", dt / p["tau_syn"])])], f"{name}.i.next")
        dv = b.op("Add", [b.op("Sub", [c("v_leak", p["v_leak"]), v]), b.op("Mul", [i2, c("r", p["r"])])])
        v2 = b.op("Add", [v, b.op("Mul", [dv, c("dt_tau_mem", dt / p["tau_mem"])])])
    elif isinstance(node, (nir.LIF, nir.LI)):
        dv = b.op("Add", [b.op("Sub", [c("v_leak", p["v_leak"]), v]), b.op("Mul", [x, c("r", p["r"])])])
        v2 = b.op("Add", [v, b.op("Mul", [dv, c("dt_tau", dt / p["tau"])])])
    elif isinstance(node, nir.IF):
        v2 = b.op("Add", [v, b.op("Mul", [x, c("r", p["r"])])])
    else:  # nir.I
        v2 = b.op("Add", [v, b.op("Mul", [x, c("dt_r", dt * p["r"])])])
    if not isinstance(node, (nir.CubaLIF, nir.LIF, nir.IF)):
        b.op("Identity", [v2], f"{name}.v.next")
        return v2
    fired = b.op("GreaterOrEqual" if sem.threshold_op == ">=" else "Greater", [v2, c("v_threshold", p["v_threshold"])])
    s = b.op("Cast", [fired], to=TensorProto.FLOAT)
    if sem.reset == "subtract":
        b.op("Sub", [v2, b.op("Mul", [s, c("v_threshold_r", p["v_threshold"])])], f"{name}.v.next")
    else:
        vr = p.get("v_reset", np.zeros(shape, np.float32))
        b.op("Where", [fired, c("v_reset", vr), v2], f"{name}.v.next")
    return s


def write_onnx(path, graph: nir.NIRGraph) -> dict:
    """Write ``model.onnx`` for the compiled graph; returns what report.json records."""
    import onnx
    model = build_onnx(graph)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString(deterministic=True))
    return {"file": path.name, "opset": OPSET, "inputs": [i.name for i in model.graph.input],
            "outputs": [o.name for o in model.graph.output],
            "num_steps": int((graph.metadata or {}).get("snnc.num_steps", 0)),
            "readout": {p.key[5:]: p.value for p in model.metadata_props if p.key.startswith("snnc.readout")},
            "run": "call once per time step, state inputs zero at the first step, feed each <state>.next back; class "
                   "scores by metadata snnc.readout (last_step: output after the last step; sum_over_steps: output "
                   "summed over the steps)"}


def run_onnx(path_or_model, x: np.ndarray, num_steps: int | None) -> np.ndarray:
    """Run a model written by :func:`write_onnx` in onnxruntime over T steps.

    Args:
        x: ``[B, *input_shape]`` direct input repeated ``num_steps`` times, or with
            ``num_steps=None`` a time-major ``[T, B, *input_shape]`` sequence.

    Returns:
        ``[T, B, *output_shape]`` float32 outputs of every step.
    """
    import onnxruntime as ort
    src = path_or_model if isinstance(path_or_model, (str, bytes)) else str(path_or_model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    steps = [x] * num_steps if num_steps is not None else list(x)
    B = steps[0].shape[0]
    feed = {}
    for i in sess.get_inputs():
        if i.name != "input":
            feed[i.name] = np.zeros([B, *i.shape[1:]], np.float32)
    outs, names = [], [o.name for o in sess.get_outputs()]
    for xt in steps:
        feed["input"] = np.asarray(xt, np.float32)
        res = dict(zip(names, sess.run(names, feed)))
        outs.append(res["output"])
        for k in feed:
            if k != "input":
                feed[k] = res[f"{k}.next"]
    return np.stack(outs)


def onnx_scores(path, x: np.ndarray, num_steps: int | None = None) -> np.ndarray:
    """Class scores ``[B, classes]`` of a model written by :func:`write_onnx`, by the readout rule in its metadata
    (``snnc.readout``); ``x`` and ``num_steps`` as :func:`run_onnx` (``num_steps`` None with direct input: the
    model's ``snnc.num_steps``).

    Raises:
        ValueError: a model without ``snnc.readout`` metadata (not written by snnc).
    """
    import onnx
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    if "snnc.readout" not in props:
        raise ValueError(f"{path}: no snnc.readout in the model's metadata (not written by this snnc)")
    if num_steps is None and props.get("snnc.input_encoding") != "spikes":
        num_steps = int(props["snnc.num_steps"])
    seq = run_onnx(path, x, num_steps)
    return seq[-1] if props["snnc.readout"] == "last_step" else seq.sum(0)
