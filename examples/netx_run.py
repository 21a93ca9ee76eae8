"""Run an snnc ``network.net`` with lava-dl's own netx loader, in a plain Lava process.

    python examples/netx_run.py OUT/network.net INPUTS.npz TRACE.npz

Imports lava-nc, lava-dl and, from snnc, only its standalone Lava import fixes
(``snnc.backends.lava.compat``: no torch, nothing else of snnc). ``INPUTS.npz`` holds the
per-sample input in Lava's (W, H, C) order, as ``snnc.backends.lava.netx.netx_inputs`` writes it:

* ``bias_mant`` ``[N, L, *input layer shape]`` int32: the input layer's ``bias_mant`` at each of
  the L steps (direct analog input: the host's first-layer result, bias_exp 6), or
* ``spikes`` ``[N, L, *input shape]`` 0/1: spikes sent into the network's input port;

and ``steps`` (L). After one warm-up step (Lava sets Vars only in a started runtime), each sample
runs L steps from rest (every neuron's u and v and every synapse's buffered input set to 0 before it). ``TRACE.npz`` gets, per netx layer ``k`` (Lava order),
``s{k}`` (spikes) and ``v{k}`` (voltage), each ``[N, L, *shape]``.
"""
from __future__ import annotations

import sys

import numpy as np

from snnc.backends.lava import compat


def main(net_path: str, inputs_path: str, out_path: str) -> None:
    hdf5 = compat.import_netx()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    data = np.load(inputs_path)
    L = int(data["steps"])
    net = hdf5.Network(net_config=net_path)
    host = "bias_mant" in data.files
    x = data["bias_mant"] if host else data["spikes"]
    n = int(x.shape[0])
    if not host:  # the whole spike sequence, sample after sample, into the network's input port
        seq = np.moveaxis(x.reshape((n * L,) + x.shape[2:]), 0, -1).astype(np.int32)
        seq = np.concatenate([np.zeros(seq.shape[:-1] + (1,), np.int32), seq], -1)  # the warm-up step: none
        src = RingBuffer(data=seq)
        src.s_out.connect(net.inp)
    monitors = []
    for layer in net.layers:
        ms = {}
        for key, target in (("s", layer.neuron.s_out), ("v", layer.neuron.v)):
            ms[key] = Monitor()
            ms[key].probe(target, n * L + 1)
        monitors.append(ms)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    # Lava sets Vars only in a started runtime: one warm-up step, then every sample starts from rest
    net.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    try:
        for i in range(n):
            for layer in net.layers:  # from rest
                layer.neuron.u.set(np.zeros(layer.neuron.u.shape, np.int32))
                layer.neuron.v.set(np.zeros(layer.neuron.v.shape, np.int32))
                syn = getattr(layer, "synapse", None)  # Dense: a_buff, Conv: a_buf; the input layer has none
                buf = next((getattr(syn, k) for k in ("a_buff", "a_buf") if hasattr(syn, k)), None)
                if buf is not None:
                    buf.set(np.zeros(buf.shape, np.int32))
            for t in range(L):
                if host:
                    net.layers[0].neuron.bias_mant.set(x[i, t].astype(np.int32))
                net.run(condition=RunSteps(num_steps=1))
        out = {}
        for k, ms in enumerate(monitors):
            for key, m in ms.items():
                d = next(iter(next(iter(m.get_data().values())).values()))  # [n L, *shape]
                d = np.asarray(d)[1:]  # without the warm-up step
                out[f"{key}{k}"] = d.reshape((n, L) + d.shape[1:]).astype(np.int64)
    finally:
        net.stop()
    out["snnc_modules"] = np.array(sorted(m for m in sys.modules if m.startswith("snnc")))  # the fixes, no more
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
