"""Compile a quantized NIR graph into a loihi-sim configuration (config dict + integer arrays).

``config`` (JSON-serialisable, written as ``config.json``)::

    {"format": "snnc-loihi-sim", "version": 1, "target": name, "num_steps": T, "dt": s,
     "latency_steps": T + max offset, "input": {"name", "shape", "encoding"},
     "outputs": [{"name", "group", "read_step"}],
     "groups": [{"name", "kind", "nir_type", "shape", "size", "du", "dv", "vth_mant", "bias_exp",
                 "host_bias_exp", "scale", "reset", "offset",
                 "projections": [{"source", "source_shape", "ops", "weight_exp", "weight_bits", "delay",
                                  "recurrent", "host", "synapses", "weight_key"}],   # no weight_bits if host
                 "slices": [{"core", "start", "stop"}]}],       # neuron ranges in core order
     "cores": [{"core", "chip", "groups", "neurons", "axons_in", "axons_out", "synapses", "memory_bits"}]}

``arrays`` (written as ``weights.npz``): per group ``<g>.bias_mant`` (int32, one per
neuron, C order), per projection ``<g>.p<i>.weight`` (int32 weight mantissas,
or float64 host weights for a direct input) and ``<g>.p<i>.host_bias`` (float64).
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch

from snnc.backends.loihi import mapping as M
from snnc.backends.loihi.ops import host_weight
from snnc.backends.loihi.validate import check_program
from snnc.groups import group_offsets, lower
from snnc.ir import UnsupportedNodeError


@dataclass
class _Split:
    """One group on its way to cores: config, slice bounds (core order) with their stats and
    per-projection synapse counts, and how many destination slices each neuron reaches."""
    cfg: dict
    bounds: list
    stats: list
    counts: dict
    projs: list
    masks: list
    fits: bool
    n_dest: np.ndarray

    def slice_sums(self, per_neuron: np.ndarray) -> list:
        """Sum of a per-neuron (C order) quantity over each slice."""
        cum = np.concatenate([[0], np.cumsum(per_neuron[M.neuron_order(tuple(self.cfg["shape"]))])])
        return [cum[b] - cum[a] for a, b in self.bounds]


class NotQuantizedError(ValueError):
    """The graph lacks the ``quantize`` pass's formats for this target."""


def _int_weights(p, s: float, e: int, shift: int) -> np.ndarray:
    x = p.weight * s / 2 ** (shift + e)
    q = np.rint(x)
    if np.abs(q - x).max(initial=0) > 1e-3:
        raise NotQuantizedError(f"weights of {p.weighted!r} are not on the quantization grid; run the quantize pass "
                                "last before the backend")
    return q.astype(np.int32)


def compile_graph(graph: nir.NIRGraph, target, max_cores: int | None = None, raise_on_violation: bool = True):
    """Build the loihi-sim config for a graph that went through ``fold_bn`` and ``quantize``.

    Returns:
        ``(config dict, arrays dict, violations list)``.

    Raises:
        NotQuantizedError: the graph was not quantized for this target.
        UnsupportedNodeError: a node or chain the backend cannot map.
        DesignRuleError: with ``raise_on_violation``, every broken limit at once.
        ConfigError: an emitted field outside the target's ranges (see :mod:`.validate`).
    """
    from snnc.passes.quantize import is_quantized

    if not is_quantized(graph, target.name):
        raise NotQuantizedError(f"the graph is not quantized for {target.name!r}: add the quantize pass "
                                "(e.g. --passes fold_bn,quantize)")
    fp, core_lim, fmt, chip = target["fixed_point"], target["core"], target["synapse_format"], target["chip"]
    low = lower(graph)
    if len(low.inputs) != 1:
        raise UnsupportedNodeError("input", "Input", f"{len(low.inputs)} inputs; loihi-sim takes exactly one")
    in_name, in_shape = next(iter(low.inputs.items()))
    if low.num_steps is None:
        raise NotQuantizedError("T (num_steps) is not recorded in the graph; pass --num-steps")
    T = int(low.num_steps)
    offsets = group_offsets(low)
    groups, arrays = [], {}
    splits: list[_Split] = []
    unsplittable = []
    for g in low.groups.values():
        node = graph.nodes[g.name]
        q = node.metadata["snnc.quant"]
        s = float(q["scale"])
        gcfg = {"name": g.name, "kind": g.kind, "nir_type": g.nir_type, "shape": list(g.shape), "size": g.size,
                "du": int(q["du"]), "dv": int(q["dv"]), "vth_mant": int(q["vth_mant"]), "bias_exp": int(q["bias_exp"]),
                "host_bias_exp": int(q["host_bias_exp"]), "scale": s, "reset": g.reset, "offset": offsets[g.name],
                "projections": []}
        arrays[f"{g.name}.bias_mant"] = np.asarray(q["bias_mant"], np.int32).reshape(-1)
        chip_projs, mask_ws = [], []
        for i, p in enumerate(g.projections):
            key = f"{g.name}.p{i}"
            pc = {"source": p.source, "source_shape": list(p.source_shape), "ops": p.ops, "recurrent": p.recurrent,
                  "host": p.host, "weight_key": f"{key}.weight"}
            if p.host:
                arrays[f"{key}.weight"] = host_weight(p, g).astype(np.float64)
                if p.bias is not None:
                    arrays[f"{key}.host_bias"] = np.asarray(p.bias, np.float64).reshape(-1)
                pc.update(weight_exp=0, delay=0, synapses=0)
            else:
                wq = graph.nodes[p.weighted].metadata["snnc.quant"]
                e = int(wq["weight_exp"])
                pc["weight_bits"] = int(wq.get("weight_bits", fmt["weight_bits"]))
                arrays[f"{key}.weight"] = _int_weights(p, s, e, fp["act_shift"])
                src_off = offsets.get(p.source, 0)
                delay = offsets[g.name] - src_off - (0 if p.recurrent else 1)
                pc.update(weight_exp=e, delay=int(delay))
                chip_projs.append(pc)
                mask_ws.append(torch.as_tensor((arrays[f"{key}.weight"] != 0).astype(np.float32)))
            gcfg["projections"].append(pc)
        bounds, counts, stats, fits = M.split_group(gcfg, chip_projs, mask_ws, core_lim, fmt)
        splits.append(_Split(gcfg, bounds, stats, counts, chip_projs, mask_ws, fits, np.zeros(g.size)))
        groups.append(gcfg)
    # ---- output axons: re-split sources (reverse topological order) so each slice's
    #      neurons reach at most axons_out destination slices in total
    gindex = {sp.cfg["name"]: gi for gi, sp in enumerate(splits)}
    for sp in reversed(splits):
        for cons in splits:
            for pc, cnt in zip(cons.projs, cons.counts.values()):
                if pc["source"] == sp.cfg["name"]:
                    sp.n_dest += (cnt > 0).to(torch.float32).sum(0).numpy()
        if any(n > core_lim["axons_out"] for n in sp.slice_sums(sp.n_dest)):
            n_now = sp.bounds[0][1] - sp.bounds[0][0]
            sp.bounds, sp.counts, sp.stats, fits2 = M.split_group(sp.cfg, sp.projs, sp.masks, core_lim, fmt,
                                                                  n_dest=sp.n_dest, max_n=n_now)
            sp.fits = sp.fits and fits2
    for sp in splits:
        for st, n_out in zip(sp.stats, sp.slice_sums(sp.n_dest)):
            st["axons_out"] = int(n_out)  # destination slices reached (packing may merge some)
        if not sp.fits:
            unsplittable.append((sp.cfg["name"], max(sp.stats, key=lambda st: st["axons_in"])))
        for pc, c in zip(sp.projs, sp.counts.values()):
            pc["synapses"] = int(c.sum())
    # ---- pack slices onto cores
    flat = [(gi, k, st) for gi, sp in enumerate(splits) for k, st in enumerate(sp.stats)]

    def memory_of(members, n_core):
        bits = 0
        for m in members:
            gi, k, _ = flat[m]
            counts, projs = splits[gi].counts, splits[gi].projs
            for i, c in counts.items():
                wb = projs[i].get("weight_bits", fmt["weight_bits"])
                bits += int(M.axon_bits(c[k], wb + M.index_bits(n_core, fmt), fmt).sum())
        return bits

    packed = M.pack([st for _, _, st in flat], core_lim, memory_of)
    cores = []
    core_of = {}
    for cid, members in enumerate(packed):
        c = {"core": cid, "chip": cid // chip["cores"], "groups": [], "neurons": 0, "axons_in": 0, "axons_out": 0,
             "synapses": 0, "memory_bits": 0}
        for m in members:
            gi, k, st = flat[m]
            core_of[(gi, k)] = cid
            name = splits[gi].cfg["name"]
            if name not in c["groups"]:
                c["groups"].append(name)
            for key in ("neurons", "axons_in", "synapses"):
                c[key] += st[key]
        c["memory_bits"] = memory_of(members, c["neurons"])  # index bits address the whole core
        cores.append(c)
    for gi, sp in enumerate(splits):
        sp.cfg["slices"] = [{"core": core_of[(gi, k)], "start": a, "stop": b} for k, (a, b) in enumerate(sp.bounds)]
    # ---- output axons: per source neuron, distinct destination cores
    for sp in splits:
        for pc, cnt in zip(sp.projs, sp.counts.values()):
            if pc["source"] not in gindex:
                continue  # graph input (spikes from the host)
            dest = dest_core_matrix(cnt, [s["core"] for s in sp.cfg["slices"]])
            n_dest = dest.sum(0)  # per source neuron (C order)
            sg = splits[gindex[pc["source"]]].cfg
            core_of_src = source_core_vector(sg)
            per_core = np.bincount(core_of_src, weights=n_dest.numpy(), minlength=len(cores))
            for cid in np.nonzero(per_core)[0]:
                cores[cid]["axons_out"] += int(per_core[cid])
    read_outputs = []
    for oname, gname in low.outputs.items():
        read_outputs.append({"name": oname, "group": gname, "read_step": T - 1 + offsets[gname]})
    config = {
        "format": "snnc-loihi-sim", "version": 1, "target": target.name, "num_steps": T,
        "dt": float(next(iter(low.groups.values())).dt) if low.groups else None,
        "latency_steps": T + max(offsets.values(), default=0),
        "input": {"name": in_name, "shape": list(in_shape), "encoding": low.encoding},
        "outputs": read_outputs, "groups": groups, "cores": cores,
    }
    violations = M.design_rules(cores, groups, core_lim, fp, max_cores, unsplittable)
    if violations and raise_on_violation:
        raise M.DesignRuleError(violations)
    if not violations:  # every emitted field within the target's ranges, checked before anything is written
        check_program(config, arrays, target, where="the compiled configuration")
    return config, arrays, violations


def dest_core_matrix(cnt: torch.Tensor, slice_cores: list[int]) -> torch.Tensor:
    """``[n_dest_cores, src]`` 0/1: does the source neuron reach a destination core."""
    uniq = sorted(set(slice_cores))
    pos = {c: i for i, c in enumerate(uniq)}
    onehot = torch.zeros((len(uniq), len(slice_cores)), dtype=torch.float32)
    for k, c in enumerate(slice_cores):
        onehot[pos[c], k] = 1.0
    return ((onehot @ (cnt > 0).to(torch.float32)) > 0).to(torch.float32)


def source_core_vector(gcfg: dict) -> np.ndarray:
    """Core id of every neuron of a group, C order."""
    perm = M.neuron_order(tuple(gcfg["shape"]))
    out = np.empty(gcfg["size"], np.int64)
    for s in gcfg["slices"]:
        out[perm[s["start"]:s["stop"]]] = s["core"]
    return out
