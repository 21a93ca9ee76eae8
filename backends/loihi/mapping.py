"""Split neuron groups into per-core slices, pack them onto cores, check every limit.

*What a core can hold* comes from the target's ``[core]`` table (Loihi 1:
1,024 compartments, 4,096 input and 4,096 output axons, 16,384 x 64-bit words
of synaptic memory). *How it is counted*:

- input axons of a core: distinct source neurons with at least one synapse
  into the core (one axon per source neuron and destination core, as on Loihi);
- output axons of a core: for each neuron on it, the number of distinct
  destination cores it reaches;
- synaptic memory: nengo-loihi's ``SynapseFmt.bits_per_axon`` (sparse format):
  per input axon with n synapses, blocks of up to 64 synapses, each
  ``n * (weight_bits + index_bits) + 10`` bits rounded up to 64-bit words;
  index_bits is the smallest of (6..12) that addresses the core's neurons.

*How it splits*: each group is cut into equal contiguous slices of its neurons
(channel-last order for conv-shaped groups, so a slice is a spatial tile with
all its channels and shares one receptive field); the largest slice size that
meets every limit is found by bisection. Small slices of consecutive groups
are then packed onto one core while the sums stay within the limits.

:func:`design_rules` returns every violation at once, each with the rule
name, the core or group, the value and the limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from snnc.backends.loihi.ops import synapse_counts


@dataclass
class Violation:
    rule: str
    where: str
    value: float
    limit: float
    message: str


class DesignRuleError(ValueError):
    """The compiled model breaks target limits; ``violations`` lists all of them."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        lines = [f"{len(violations)} design-rule violation(s):"] + [f"  [{v.rule}] {v.message}" for v in violations]
        super().__init__("\n".join(lines))


def neuron_order(shape) -> np.ndarray:
    """Permutation: position i in core order -> flat C-order index. Channel-last for (C, H, W)."""
    n = int(np.prod(shape))
    idx = np.arange(n).reshape(shape)
    if len(shape) == 3:
        return np.ascontiguousarray(idx.transpose(1, 2, 0)).reshape(-1)
    return idx.reshape(-1)


def index_bits(n_neurons: int, fmt: dict) -> int:
    for b in fmt["index_bits"]:
        if b and 2 ** b >= n_neurons:
            return int(b)
    return int(fmt["index_bits"][-1])


def axon_bits(counts: torch.Tensor, bits_per_weight: int, fmt: dict) -> torch.Tensor:
    """Synaptic memory bits per input axon with ``counts`` synapses (nengo-loihi bits_per_axon)."""
    blk, hdr, word = fmt["block_synapses"], fmt["header_bits"], fmt["word_bits"]
    c = counts.to(torch.int64)
    full, rem = c // blk, c % blk

    def words(n):
        return -(-(n * bits_per_weight + hdr) // word) * word

    return full * words(torch.tensor(blk)) + (rem > 0).to(torch.int64) * words(rem)


@dataclass
class GroupMapInfo:
    """Per group: core-order permutation, slice bounds, per-projection per-slice synapse counts."""
    name: str
    size: int
    perm: np.ndarray
    bounds: list                         # [(start, stop)] in core order
    counts: dict = field(default_factory=dict)   # projection index -> [K, src_size] float32
    core_of_slice: list = field(default_factory=list)


def slice_masks(shape, perm, bounds) -> torch.Tensor:
    n = int(np.prod(shape))
    m = torch.zeros((len(bounds), n), dtype=torch.float32)
    for k, (a, b) in enumerate(bounds):
        m[k, torch.as_tensor(perm[a:b])] = 1.0
    return m.reshape((len(bounds),) + tuple(shape))


def count_slices(group_cfg: dict, chip_projs: list, mask_weights: list, bounds) -> dict:
    shape = tuple(group_cfg["shape"])
    perm = neuron_order(shape)
    masks = slice_masks(shape, perm, bounds)
    return {i: synapse_counts(p["ops"], mw, p["source_shape"], shape, masks)
            for i, (p, mw) in enumerate(zip(chip_projs, mask_weights))}


def slice_stats(counts: dict, bounds, fmt: dict, weight_bits: list | None = None) -> list[dict]:
    """Per slice: neurons, input axons, synapses, memory bits (weights of ``weight_bits[i]`` bits for
    projection i: Loihi's synapse formats store 1..8-bit weights)."""
    stats = []
    for k, (a, b) in enumerate(bounds):
        n = b - a
        ax = syn = mem = 0
        for i, c in counts.items():
            wb = weight_bits[i] if weight_bits else fmt["weight_bits"]
            bpw = wb + index_bits(n, fmt)
            row = c[k]
            ax += int((row > 0).sum())
            syn += int(row.sum())
            mem += int(axon_bits(row, bpw, fmt).sum())
        stats.append({"neurons": n, "axons_in": ax, "synapses": syn, "memory_bits": mem})
    return stats


def _bounds(size, n):
    return [(a, min(a + n, size)) for a in range(0, size, n)]


def split_group(group_cfg: dict, chip_projs: list, mask_weights: list, core: dict, fmt: dict,
                n_dest: np.ndarray | None = None, max_n: int | None = None):
    """Largest equal slice size meeting neurons/axons/memory limits (bisection).

    ``n_dest`` (per neuron, C order): destination cores each neuron reaches; with
    it the slice's summed output axons must fit too. ``max_n`` caps the size.

    Returns ``(bounds, counts, stats, fits)``; ``fits`` is False when even a
    one-neuron slice breaks a limit (then the one-neuron split is returned so
    the violation can be reported with its numbers).
    """
    size = int(np.prod(group_cfg["shape"]))
    wbits = [p.get("weight_bits", fmt["weight_bits"]) for p in chip_projs]
    out_cum = None
    if n_dest is not None:
        out_cum = np.concatenate([[0], np.cumsum(np.asarray(n_dest)[neuron_order(tuple(group_cfg["shape"]))])])

    def ok(n):
        bounds = _bounds(size, n)
        if out_cum is not None and any(out_cum[b] - out_cum[a] > core["axons_out"] for a, b in bounds):
            return False, bounds, None, None
        counts = count_slices(group_cfg, chip_projs, mask_weights, bounds)
        st = slice_stats(counts, bounds, fmt, wbits)
        good = all(s["neurons"] <= core["neurons"] and s["axons_in"] <= core["axons_in"] and
                   s["memory_bits"] <= core["synapse_memory_bits"] for s in st)
        return good, bounds, counts, st

    hi = min(core["neurons"], size, max_n or size)
    good, bounds, counts, st = ok(hi)
    if good:
        return bounds, counts, st, True
    lo = 0  # largest known good
    best = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        res = ok(mid)
        if res[0]:
            lo, best = mid, res
        else:
            hi = mid
    if best is None:
        res = ok(1)
        if res[2] is None:  # only the output-axon limit fails: report with the counts
            bounds = _bounds(size, 1)
            counts = count_slices(group_cfg, chip_projs, mask_weights, bounds)
            return bounds, counts, slice_stats(counts, bounds, fmt, wbits), False
        return res[1], res[2], res[3], res[0]
    return best[1], best[2], best[3], True


def pack(slices: list[dict], core: dict, memory_fn) -> list[list[int]]:
    """Next-fit packing of slices (in order) onto cores while the core's neurons, input/output axons
    (sums: conservative where slices share a source) and synaptic memory stay within the limits.

    ``memory_fn(slice_indices, n_neurons)`` gives the exact synaptic memory of slices sharing one
    core, whose synapse index must address all ``n_neurons`` of the core.
    """
    cores: list[list[int]] = []
    tot = None
    for i, s in enumerate(slices):
        if tot is not None:
            n = tot["neurons"] + s["neurons"]
            if (n <= core["neurons"] and tot["axons_in"] + s["axons_in"] <= core["axons_in"] and
                    tot["axons_out"] + s.get("axons_out", 0) <= core["axons_out"] and
                    memory_fn(cores[-1] + [i], n) <= core["synapse_memory_bits"]):
                cores[-1].append(i)
                tot = {"neurons": n, "axons_in": tot["axons_in"] + s["axons_in"],
                       "axons_out": tot["axons_out"] + s.get("axons_out", 0)}
                continue
        cores.append([i])
        tot = {"neurons": s["neurons"], "axons_in": s["axons_in"], "axons_out": s.get("axons_out", 0)}
    return cores


def core_position(core, chip: dict):
    """(chip, x, y) of core id(s) on the tile mesh; chips side by side east-west (snnc assumption).
    Works on ints and numpy arrays."""
    c, local = np.divmod(core, chip["cores"])
    tile = local // chip["cores_per_tile"]
    tx, ty = tile % chip["tiles_x"], tile // chip["tiles_x"]
    return c, c * chip["tiles_x"] + tx, ty


def spike_cost_matrix(n_cores: int, chip: dict, energy: dict) -> np.ndarray:
    """``[src core, dst core]`` energy of one spike message in pJ: within-tile cost plus E-W / N-S
    tile hops (Davies 2018 Table 2)."""
    _, x, y = core_position(np.arange(n_cores), chip)
    return (energy["spike_in_tile"] + energy["hop_ew"] * np.abs(x[:, None] - x[None, :]) +
            energy["hop_ns"] * np.abs(y[:, None] - y[None, :]))


def design_rules(cores: list[dict], groups: list[dict], core_lim: dict, fp: dict, max_cores: int | None,
                 unsplittable: list[tuple[str, dict]]) -> list[Violation]:
    v: list[Violation] = []
    for c in cores:
        for key, lim_key, rule in (("neurons", "neurons", "CORE_NEURONS"), ("axons_in", "axons_in", "CORE_AXONS_IN"),
                                   ("axons_out", "axons_out", "CORE_AXONS_OUT"),
                                   ("memory_bits", "synapse_memory_bits", "CORE_SYNAPSE_MEMORY")):
            if c[key] > core_lim[lim_key]:
                v.append(Violation(rule, f"core {c['core']}", c[key], core_lim[lim_key],
                                   f"core {c['core']} ({', '.join(c['groups'])}): {key} {c[key]} > {core_lim[lim_key]} "
                                   f"(over by {c[key] - core_lim[lim_key]})"))
    for name, st in unsplittable:
        v.append(Violation("GROUP_FAN_IN", name, st["axons_in"], core_lim["axons_in"],
                           f"group {name}: one neuron alone needs {st['axons_in']} input axons / "
                           f"{st['memory_bits']} memory bits; a core has {core_lim['axons_in']} / "
                           f"{core_lim['synapse_memory_bits']}"))
    for g in groups:
        if g["kind"] == "spiking" and g["reset"] != "zero":
            v.append(Violation("RESET_MODE", g["name"], 0, 0,
                               f"group {g['name']}: reset {g['reset']!r}; Loihi-1 LIF resets v to 0 only "
                               "(lava-nc PyLifModelBitAcc); retrain with reset to zero"))
        for p in g["projections"]:
            if p.get("delay", 0) > fp["max_delay"] or p.get("delay", 0) < 0:
                v.append(Violation("SYNAPTIC_DELAY", g["name"], p["delay"], fp["max_delay"],
                                   f"group {g['name']}: projection from {p['source']} needs delay {p['delay']} "
                                   f"(allowed 0..{fp['max_delay']})"))
    if max_cores is not None and len(cores) > max_cores:
        v.append(Violation("MAX_CORES", "model", len(cores), max_cores,
                           f"the model needs {len(cores)} cores; the limit is {max_cores} "
                           f"(short by {len(cores) - max_cores} cores)"))
    return v
