"""Exports of a loihi-sim compile for other tools (``snnc compile --target lava|nir|onnx``).

Every export target runs the same passes and fixed-point fields as loihi-sim (the OUT folder
holds the loihi-sim files and report too) and adds its own file:

=========  ===================  =====================================================
target     file                 module
=========  ===================  =====================================================
lava       ``network.net``      :mod:`snnc.backends.lava.netx` (lava-dl netx HDF5)
nir        ``portable.nir``     :mod:`snnc.backends.export.portable` (snnTorch, Norse, Sinabs)
onnx       ``model.onnx``       :mod:`snnc.backends.export.onnx_step` (one stateful time step)
=========  ===================  =====================================================
"""
from __future__ import annotations

import numpy as np

from snnc.errors import SnncError


#: The fixed-point fields a lava-dl netx file holds exactly (lava-dl 0.6.0 ``netx/hdf5.py``): every neuron's
#: ``bias_exp`` is 6 (``get_neuron_params``), so biases are multiples of 64 (``bias_exp_min = 6``: an exponent
#: above 6 is stored as the mantissa shifted, still exact); ``Conv`` has no weight exponent and ``Dense`` derives
#: its own from the stored weights (``utils.optimize_weight_bits``, clipping outside -256..254), so every
#: projection keeps ``weight_exp = 0`` (its mantissas in -256..254 are the weights); netx has no per-layer bias
#: enable time: biases act from step 0 (``netx`` below, read by the loihi backend as ``bias_from = 0``).
NETX_FIXED_POINT = {"weight_exp_min": 0, "weight_exp_max": 0, "bias_exp_min": 6}


def export_target(export: str | None, tgt):
    """The target a ``--target`` export compiles for: loihi-sim's, and for ``lava`` with the fixed-point fields
    limited to what netx holds exactly (:data:`NETX_FIXED_POINT`), so that ``network.net`` run by lava-dl equals
    the compiled program bit for bit; loihi-sim simulates (and the report measures) exactly that program."""
    if export != "lava":
        return tgt
    import copy
    import dataclasses

    data = copy.deepcopy(tgt.data)
    data["fixed_point"].update(NETX_FIXED_POINT)
    data["netx"] = {"bias_from_step_0": True, "fixed_point": dict(NETX_FIXED_POINT)}
    return dataclasses.replace(tgt, data=data)


def netx_refusal(e: Exception) -> SnncError:
    """The one-line error of a ``--target lava`` compile whose network netx cannot hold (issue 20: it used to exit 0
    without ``network.net``, the reason only in report.json)."""
    return SnncError(f"--target lava: network.net cannot hold this network: {e}; nothing was written. Compile for "
                     "loihi-sim (the default --target) and run that folder in Lava with `snnc simulate OUT --engine "
                     "lava`, which builds a Lava process graph of any program the Lava engine accepts")


def check_export(export: str | None, config: dict, compiled=None) -> None:
    """Refuse, before any simulation, an export that cannot be written (``lava``: :func:`check_netx`; ``nir``: the
    portable graph is built once from the compiled graph).

    Raises:
        SnncError: one line naming the group and the reason (``UnsupportedNodeError`` for ``nir``).
    """
    if export == "nir" and compiled is not None:
        from snnc.backends.export.portable import build_portable
        build_portable(compiled, "nir")
    if export == "lava":
        from snnc.backends.lava.engine import LavaMappingError
        from snnc.backends.lava.netx import check_netx
        try:
            check_netx(config)
        except LavaMappingError as e:
            raise netx_refusal(e) from None


def check_export_early(export: str | None, graph, target) -> None:
    """Refuse, right after tracing (before data, calibration, passes and simulation), an export whose file cannot
    hold the traced graph: the structure the passes keep, read from the graph after its exact rewrites
    (``fold_bn``'s folds and ``prepare_graph``'s, on a copy). ``nir``: the portable graph is built from it;
    ``lava``: a graph that is not a chain of neuron groups, and per-neuron time constants on ``target``'s du/dv
    grid. :func:`check_export` repeats the checks on the compiled program (per-channel scales among them). Not
    for a pipeline with ``adapt_semantics``, which changes the neurons and pooling the export sees.

    Raises:
        SnncError: one line naming the node or group and the reason.
    """
    if export not in ("nir", "lava"):
        return
    import copy

    from snnc.ir.lowering import lower, prepare_graph
    from snnc.passes import PassContext, Pipeline
    g = Pipeline("fold_bn").run(copy.deepcopy(graph), PassContext())
    g, _ = prepare_graph(g)
    if export == "nir":
        from snnc.backends.export.portable import build_portable
        build_portable(g, "nir")
        return
    from snnc.backends.lava.engine import LavaMappingError
    from snnc.backends.lava.netx import check_chain
    low = lower(g)
    fp = target.fixed_point
    try:
        check_chain(next(iter(low.inputs)), [(n, [p.source for p in grp.projections]) for n, grp in low.groups.items()])
        for name, grp in low.groups.items():
            du, dv = fp.decays(name, grp.alpha, grp.beta, per_neuron=True)
            if np.ndim(du) or np.ndim(dv):
                raise LavaMappingError(f"groups ['{name}'] have per-neuron time constants (du/dv per neuron): netx "
                                       "holds one iDecay and vDecay per layer")
    except LavaMappingError as e:
        raise netx_refusal(e) from None


def writer_for(export: str, config: dict, arrays: dict, compiled, program, x_test=None, y_test=None):
    """A callable ``(folder) -> dict`` that writes ``export``'s file into ``folder`` and returns
    what goes into report.json under ``export``."""
    if export == "lava":
        def write(folder):
            from snnc.backends.lava.engine import LavaMappingError
            from snnc.backends.lava.netx import write_netx
            try:
                layers = write_netx(folder / "network.net", config, arrays)
            except LavaMappingError as e:
                raise netx_refusal(e) from None
            return {"target": "lava", "netx": {"written": True, "file": "network.net", "layers": layers,
                                               "exact": all(layer["exact"] for layer in layers)},
                    "run": "snnc simulate OUT --engine lava (Lava process graph from config.json + weights.npz)"}
        return write
    if export == "nir":
        def write(folder):
            from snnc.backends.export.portable import write_portable
            return dict(target="nir", **write_portable(folder, compiled))
        return write
    if export == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise SnncError("--target onnx needs the onnx package: make setup-exports "
                             "(pip install -c constraints.txt -e '.[exports]')") from None

        def write(folder):
            from snnc.backends.export.onnx_step import write_onnx
            return dict(target="onnx", **write_onnx(folder / "model.onnx", compiled))
        return write
    raise SnncError(f"unknown export target {export!r}")
