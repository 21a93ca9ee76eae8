"""Lava backend: run snnc's compiled configuration in Lava, and write it as a lava-dl netx file.

* :mod:`~snnc.backends.lava.compat` — the import-time fixes lava-nc 0.10 / lava-dl 0.6 need on
  Python 3.11 (all of them, documented there); :func:`lava_available`.
* :mod:`~snnc.backends.lava.engine` — :class:`LavaProgram`: the loihi-sim ``config.json`` +
  ``weights.npz`` as a Lava process graph (lava-nc LIF, Dense, DelayDense, Conv), run on the CPU
  with ``Loihi2SimCfg(select_tag="fixed_pt")``.
* :mod:`~snnc.backends.lava.netx` — ``network.net``, lava-dl netx's HDF5 layout, with what netx
  cannot say recorded beside it.
* :mod:`~snnc.backends.lava.procs` — the Lava processes snnc adds (host I/O, right shift, flatten).

``snnc compile MODEL --target lava -o OUT`` writes ``OUT/network.net`` next to the loihi-sim
files; ``snnc simulate OUT --engine lava`` runs OUT in Lava and compares it with loihi-sim.
"""
from __future__ import annotations

# numpy and torch are imported where used: ``import snnc.backends.lava.compat`` in a user's own Lava process loads
# this package and the fixes only (no torch, nothing else of snnc)
from snnc.backends.lava.compat import LavaNotInstalledError, import_lava_nc, import_netx, lava_available

__all__ = ["LavaNotInstalledError", "import_lava_nc", "import_netx", "lava_available", "compare_with_loihi_sim"]


def compare_with_loihi_sim(program, x, batch_size: int = 16, progress=None):
    """Run ``x`` in Lava and in loihi-sim; compare u, v and spikes of every group at every step.

    Args:
        program: a loaded loihi-sim ``Program``.
        x: ``[N, *input_shape]`` analog or ``[T, N, *input_shape]`` spikes.
        batch_size: samples per Lava run (and per loihi-sim comparison batch).

    Returns:
        ``(lava SimResult, comparison dict)``; the dict has ``equal`` (bool), ``samples``,
        ``steps``, ``values_compared`` and per group ``mismatches`` ``{"u", "v", "spikes"}``
        (counts of differing values), and ``outputs_equal``.

    Raises:
        LavaNotInstalledError, LavaMappingError.
    """
    import numpy as np
    import torch

    from snnc.backends.lava.engine import LavaProgram

    spikes_in = program.config["input"]["encoding"] == "spikes"
    x = torch.as_tensor(np.asarray(x))
    mism = {g: {"u": 0, "v": 0, "spikes": 0} for g in program.groups}
    counted = [0]
    ref_out = {}

    def on_chunk(i0, trace):
        n = next(iter(trace.values()))["v"].shape[0]
        xs = x[:, i0:i0 + n] if spikes_in else x[i0:i0 + n]
        ref = program.run(xs, batch_size=max(n, 1), record=True)
        for g, tr in trace.items():
            for k in ("u", "v", "spikes"):
                a = ref.trace[g][k].numpy()
                b = tr[k].numpy()
                mism[g][k] += int((a.astype(np.int64) != b.astype(np.int64)).sum())
                counted[0] += a.size
        for k, v in ref.outputs.items():
            ref_out.setdefault(k, []).append(v)

    lava = LavaProgram(program, chunk=batch_size)
    res = lava.run(x, progress=progress, on_chunk=on_chunk)
    outputs_equal = all(torch.equal(torch.cat(ref_out[k]).to(torch.int64), res.outputs[k].to(torch.int64))
                        for k in res.outputs)
    equal = outputs_equal and all(v == 0 for m in mism.values() for v in m.values())
    return res, {"equal": bool(equal), "outputs_equal": bool(outputs_equal), "samples": int(res.samples),
                 "steps": int(program.L), "values_compared": int(counted[0]), "mismatches": mism,
                 "engine": "lava-nc 0.10.0, Loihi2SimCfg(select_tag='fixed_pt') (PyLifModelBitAcc, "
                           "PyDenseModelBitAcc, PyConvModelFixed)"}
