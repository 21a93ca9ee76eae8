"""Loihi design rules: what a core and a chip can hold, checked in one place.

The split follows nengo-loihi (``hardware/validate.py`` ``validate_core``: the limits are checked apart
from placing and discretising). Every number comes from the target file ([core], [chip],
[fixed_point], [profiles] of ``snnc/targets/loihi-sim.toml``, each with its source): the mapper's
:func:`design_rules` (every violation at once, with the numbers), the placer's fit tests
(:func:`core_fits`, element-wise on arrays of candidate cores) and the validation of a compile folder
read back for ``snnc simulate`` (:func:`core_range_problems`) all use :data:`CORE_LIMITS`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnc.backends.loihi.mapping import neuron_order, target_section
from snnc.errors import SnncError

#: (figure of a core, key of the target's [core] table, rule name): the per-core limits.
CORE_LIMITS = (("neurons", "neurons", "CORE_NEURONS"), ("axons_in", "axons_in", "CORE_AXONS_IN"),
               ("axons_out", "axons_out", "CORE_AXONS_OUT"),
               ("memory_bits", "synapse_memory_bits", "CORE_SYNAPSE_MEMORY"))


@dataclass
class Violation:
    rule: str
    where: str
    value: float
    limit: float
    message: str


class DesignRuleError(SnncError):
    """The compiled model breaks target limits; ``violations`` lists all of them."""

    def __init__(self, violations: list[Violation], hint: str | None = None):
        self.violations = violations
        lines = [f"{len(violations)} design-rule violation(s):"] + [f"  [{v.rule}] {v.message}" for v in violations]
        super().__init__("\n".join(lines + ([hint] if hint else [])))




def core_fits(core_lim: dict, neurons=0, axons_in=0, axons_out=0, memory_bits=0):
    """Whether a core's figures are within every per-core limit (numbers, or numpy arrays of candidate
    cores: then element-wise)."""
    figures = {"neurons": neurons, "axons_in": axons_in, "axons_out": axons_out, "memory_bits": memory_bits}
    ok = True
    for key, lim_key, _ in CORE_LIMITS:
        ok = np.logical_and(ok, np.asarray(figures[key]) <= core_lim[lim_key])
    return ok if np.ndim(ok) else bool(ok)


def core_violations(core: dict, core_lim: dict) -> list[Violation]:
    """The per-core limits a placed core (``{"core", "groups", "neurons", "axons_in", ...}``) breaks."""
    out = []
    for key, lim_key, rule in CORE_LIMITS:
        if core[key] > core_lim[lim_key]:
            out.append(Violation(rule, f"core {core['core']}", core[key], core_lim[lim_key],
                                 f"core {core['core']} ({', '.join(core['groups'])}): {key} {core[key]} > "
                                 f"{core_lim[lim_key]} (over by {core[key] - core_lim[lim_key]})"))
    return out


def core_range_problems(core: dict, core_lim: dict, index: int, core_limits: bool, within) -> list[str]:
    """Problems of a core entry read back from a config: each figure a whole number in 0..its limit
    (``core_limits=False``: 0..2^62, to simulate a mapping that does not fit). ``within(v, lo, hi)``
    is the caller's whole-number range test."""
    out = []
    for key, lim_key, _ in CORE_LIMITS:
        v = core.get(key)
        if not within(v, 0, core_lim[lim_key] if core_limits else 2 ** 62):
            out.append(f"core {index}: {key} = {v!r} is outside 0..{core_lim[lim_key]}")
    return out


def design_rules(cores: list[dict], groups: list[dict], core_lim: dict, fp: dict, max_cores: int | None,
                 unsplittable: list[tuple[str, dict]], max_chips: int | None, cores_per_chip: int) -> list[Violation]:
    """Every violation of a mapping, with its numbers: per-core limits (:func:`core_violations`), a group
    whose single neuron does not fit a core (``GROUP_FAN_IN``), reset modes, synaptic delays, and the
    ``max_cores``/``max_chips`` limits (``cores_per_chip`` from the target's ``[chip]`` table)."""
    v: list[Violation] = []
    for c in cores:
        v += core_violations(c, core_lim)
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
    chips = -(-len(cores) // cores_per_chip)
    if max_chips is not None and chips > max_chips:
        v.append(Violation("MAX_CHIPS", "model", chips, max_chips,
                           f"the model needs {chips} chips ({len(cores)} cores, {cores_per_chip} per chip); the limit "
                           f"is {max_chips} chip(s) = {max_chips * cores_per_chip} cores (short by {chips - max_chips} "
                           f"chip(s))"))
    return v


def profile_counts(cores: list[dict], groups: list[dict], arrays: dict) -> list[dict]:
    """Per core, the distinct shared parameter sets its compartments and synapses need (Loihi keeps
    them in small per-core tables that compartments and synapse lists index; nengo-loihi
    ``hardware/builder.py`` ``core_cx_profiles``/``core_vth_profiles`` count them the same way):

    * ``vth``: distinct thresholds (vThMant) of the neurons on the core (a readout's is the largest
      vThMant; per-channel groups give one per distinct channel value, ``<g>.vth_mant``);
    * ``compartment``: distinct (du, dv) pairs (refractory delay and noise are the same for all);
    * ``synapse_formats``: distinct (weight bits, weight exponent, axon type) of the on-chip projections
      into the groups on the core.

    Returns one dict per core: ``{"core", "vth", "compartment", "synapse_formats"}``.
    """
    vth_sets = [set() for _ in cores]
    cx_sets = [set() for _ in cores]
    syn_sets = [set() for _ in cores]
    for g in groups:
        arr = arrays.get(f"{g['name']}.vth_mant")
        du_a, dv_a = arrays.get(f"{g['name']}.du"), arrays.get(f"{g['name']}.dv")
        perm = neuron_order(tuple(g["shape"]), g.get("channel_block")) \
            if arr is not None or du_a is not None else None
        fmts = {(int(p["weight_bits"]), int(p["weight_exp"]), p.get("axon_type", "discrete"))
                for p in g["projections"] if not p["host"]}
        for sl in g.get("slices", []):
            c = sl["core"]
            if arr is not None:
                vth_sets[c].update(np.unique(np.asarray(arr)[perm[sl["start"]:sl["stop"]]]).tolist())
            else:
                vth_sets[c].add(int(g["vth_mant"]))
            if du_a is not None:  # per-neuron time constants: the distinct pairs this core's slice holds
                idx = perm[sl["start"]:sl["stop"]]
                cx_sets[c].update(zip(np.asarray(du_a)[idx].tolist(), np.asarray(dv_a)[idx].tolist()))
            else:
                cx_sets[c].add((int(g["du"]), int(g["dv"])))
            syn_sets[c].update(fmts)
    return [{"core": i, "vth": len(v), "compartment": len(cx), "synapse_formats": len(sy)}
            for i, (v, cx, sy) in enumerate(zip(vth_sets, cx_sets, syn_sets))]


#: Rule name -> (key of :func:`profile_counts`, key of the target's ``[profiles]`` table).
PROFILE_RULES = {"CORE_VTH_PROFILES": ("vth", "vth_per_core"),
                 "CORE_COMPARTMENT_PROFILES": ("compartment", "compartment_per_core"),
                 "CORE_SYNAPSE_FORMATS": ("synapse_formats", "synapse_formats_per_core")}


def profile_rules(cores: list[dict], groups: list[dict], arrays: dict, target) -> list[Violation]:
    """Violations of the per-core parameter-set tables (``[profiles]`` of the target; Loihi 1: 16
    threshold, 32 compartment and 16 synapse-format entries per core, nengo-loihi
    ``hardware/validate.py`` ``validate_core``)."""
    lim = target_section(target, "profiles")
    out = []
    for row in profile_counts(cores, groups, arrays):
        c = cores[row["core"]]
        for rule, (key, lk) in PROFILE_RULES.items():
            if lk in lim and row[key] > lim[lk]:
                out.append(Violation(rule, f"core {row['core']}", row[key], lim[lk],
                                     f"core {row['core']} ({', '.join(c['groups'])}): {row[key]} distinct {key} "
                                     f"parameter sets > {lim[lk]} per core (over by {row[key] - lim[lk]})"))
    return out


