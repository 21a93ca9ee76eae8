"""How to split and place neuron groups on cores and chips (after nengo-loihi's split between what a
core holds, :mod:`.mapping`, and how to allocate, ``hardware/allocators.py``).

1. **Blocks and formats** (forward, topological order): for each group, the channel block ``Cb``
   (``(C, H, W)`` groups) and, per on-chip projection, the synapse format (``discrete`` or
   ``population``, :mod:`.mapping`) that need the fewest cores by an estimate: the largest range
   that fits one empty core, probed in the middle of the layer, gives ``units per core``. Ties go
   to the larger block (fewer, bigger populations), then to less memory. Blocks tried: halving the
   block (``ceil(C / ceil(C / b))``, b = C, C/2, ...) and doubling the number of blocks
   (``ceil(C / n)``, n = 1, 2, 4, ...), so the choice does not hinge on how C divides. A source's populations
   are its channel blocks, so sources are decided first. A group fed only by convolutions whose taps
   reach beyond it also tries the *padded layout* for each block whose padded grid fits one core
   (:meth:`Placer._pad_option`; :func:`.mapping.padded_shape`): one population entry per source
   block instead of one per set of valid taps, for the padding compartments' price. Where a whole
   block fits a core the estimate counts whole blocks per core; ties go to the unpadded layout. A 1-D
   group with on-chip inputs that feeds others gets populations of consecutive neurons (``pop_block``),
   so its dense consumers may take population axons.
2. **Packing** (reverse topological order, so every group's destinations are placed before it and
   its output axons are counted exactly): first-fit with splitting. The next piece of a group is
   the largest range of units (bisection on the exact per-core formulas: neurons, input axons,
   output axons, synaptic memory of everything on the core at the core's index width) that fits
   the first core with room, else a new core. A group with on-chip inputs only takes a place in a
   partly used core when the piece is at least a quarter of what fits an empty core (or is its
   last piece), so layers are not shredded; groups driven by the host fill any gap. A padded group
   goes in whole blocks; a range of padding positions only is not placed.
3. **Chips** (more than ``[chip].cores`` cores): nengo-loihi's ``GreedyComms`` allocator idea. A
   chip starts from an unplaced core without on-chip input traffic (else the lowest-numbered),
   then takes the unplaced core with the most routes (source neuron or population -> core pairs)
   to the cores already on it, until full. The same order numbers the cores of a one-chip model,
   so cores that talk sit on nearby tiles.

The lower bound on cores is ``max(ceil(neurons / 1024), ceil(memory / 128 KiB), ceil(input axons /
4096), ceil(output-axon slots / 4096))`` with each term summed over projections at its cheapest
format (:meth:`.mapping.ProjCounter.lower_bound_bits`); the report gives it with the ratio
achieved.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snnc.backends.loihi import mapping as M
from snnc.backends.loihi import rules
from snnc.backends.loihi.mapping import DISCRETE, POPULATION


@dataclass
class ProjPlan:
    cfg: dict
    mask: np.ndarray
    source_gi: int | None            # index of the source group; None for the graph input
    recurrent: bool
    weight_bits: int
    fmt: str = DISCRETE
    counter: M.ProjCounter | None = None


@dataclass
class GroupPlan:
    gi: int
    cfg: dict
    projs: list
    block: int | None = None
    units_est: int = 1
    out_projs: list = field(default_factory=list)   # (group index, projection index) of projections from it
    pad: tuple | None = None          # padded layout (top, bottom, left, right), or None
    pad_option: tuple | None = None   # the padding its convolutions reach (a padded layout's), None: not eligible
    real_cum: np.ndarray | None = None   # padded layout: real units before each unit of the grid, [npos + 1]
    pop_block: int | None = None      # 1-D group: neurons per source population (pieces hold whole ones), or None

    @property
    def shape(self):
        return tuple(self.cfg["shape"])

    @property
    def mshape(self):
        """The grid the layout lays out: the shape, padded with :attr:`pad`."""
        return M.padded_shape(self.shape, self.pad)

    def set_pad(self, pad) -> None:
        self.pad = tuple(pad) if pad else None
        if self.pad:
            npos = M.layout_of(self.mshape)[1]
            real = np.zeros(npos, np.int64)
            real[M.real_positions(self.shape, self.pad)] = 1
            self.real_cum = np.concatenate([[0], np.cumsum(real)])
        else:
            self.real_cum = None

    @property
    def liquid(self) -> bool:
        return not self.projs

    def layout(self):
        """``(C, units per block, Cb, blocks)``; units on the padded grid for a padded layout."""
        c, npos, cb = M.layout_of(self.mshape, self.block)
        return c, npos, cb, len(M.block_starts(self.shape, self.block)) - 1


@dataclass
class Piece:
    gi: int
    j: int
    q0: int
    q1: int
    neurons: int
    axons_in: int
    axons_out: int
    offset: int = 0
    stats: list = field(default_factory=list)
    mem_cache: dict = field(default_factory=dict)


class Core:
    def __init__(self):
        self.pieces: list[Piece] = []
        self.neurons = self.axons_in = self.axons_out = 0


class Placer:
    """Plan blocks and formats, pack groups onto cores, assign chips. See the module docstring."""

    ACCEPT_FRACTION = 0.25
    #: backward passes of :meth:`choose_formats` (each stops early when no block changes)
    BACKWARD_ROUNDS = 3
    #: :meth:`tiling_bound` tries ranges of at least 1/TILING_PIECES of a block's units
    TILING_PIECES = 64

    def __init__(self, group_cfgs: list[dict], chip_projs: list[list[dict]], masks: list[list[np.ndarray]],
                 target, formats: str = "auto", neurons_per_core: int | None = None):
        M.check_formats(formats)
        self.target = target
        self.lim = dict(target["core"])   # what packing may use (neurons capped by neurons_per_core)
        if neurons_per_core is not None:
            self.lim["neurons"] = min(int(self.lim["neurons"]), int(neurons_per_core))
        self.synfmt = target["synapse_format"]
        self.chip = target["chip"]
        at = M.target_section(target, "axon_types")
        self.allow_pop = formats == "auto" and "pop32" in at.get("used", [])
        self.pop = at["pop32"]
        self.disc = at["discrete"]
        self.cx_base_max = int(at.get("cx_base_max", 256))
        self.index = {g["name"]: gi for gi, g in enumerate(group_cfgs)}
        self.groups: list[GroupPlan] = []
        for gi, (g, projs, ms) in enumerate(zip(group_cfgs, chip_projs, masks)):
            pps = []
            for p, m in zip(projs, ms):
                src = self.index.get(p["source"])
                pps.append(ProjPlan(p, m, src, bool(p["recurrent"]) or (src is not None and src >= gi),
                                    int(p.get("weight_bits", self.synfmt["weight_bits"]))))
            self.groups.append(GroupPlan(gi, g, pps))
        for gp in self.groups:
            for pi, pp in enumerate(gp.projs):
                if pp.source_gi is not None:
                    self.groups[pp.source_gi].out_projs.append((gp.gi, pi))
            gp.pad_option = self._pad_option(gp)
        self.cores: list[Core] = []
        self.unsplittable: list[tuple[str, dict]] = []

    # ------------------------------------------------------------------ helpers
    def _pad_option(self, gp: GroupPlan) -> tuple | None:
        """The padded layout a group may take: a ``(C, H, W)`` group whose on-chip inputs are all
        feed-forward convolutions, some reaching beyond it (zero padding, or a valid convolution's border
        sources), with population formats allowed. Padding positions are compartments without neurons
        behind them: every source then targets a full kernel, so one population entry serves the border
        sources too."""
        if not (self.allow_pop and gp.projs and M.is_spatial(gp.shape)):
            return None
        pads = []
        for pp in gp.projs:
            if pp.recurrent or not any(op["op"] == "conv2d" for op in pp.cfg["ops"]):
                return None
            pads.append(M.conv_padding(pp.cfg, np.shape(pp.mask)[2:], gp.shape) or (0, 0, 0, 0))
        pad = tuple(int(max(v)) for v in zip(*pads))
        return pad if any(pad) else None

    def _whole_padded(self, gp: GroupPlan, cb, pad) -> bool:
        """A padded layout is tried only where a whole padded block fits one core: a block cut across
        cores has kernels cut at every cut, each an entry of its own, and pays for the padding too."""
        return M.layout_of(M.padded_shape(gp.shape, pad), cb)[1] * int(cb or 1) <= int(self.lim["neurons"])

    def _counter(self, pp: ProjPlan, gp: GroupPlan, block, pad=None, source_block=None) -> M.ProjCounter:
        sb = self._source_block(pp) if source_block is None else source_block
        return M.ProjCounter(pp.cfg, pp.mask, gp.shape, block, sb, pad)

    def slots(self, fmt: str) -> int:
        return int(self.pop["out_slots"] if fmt == POPULATION else self.disc["out_slots"])

    def _source_block(self, pp: ProjPlan) -> int | None:
        if pp.recurrent:
            return None
        if pp.source_gi is not None:
            src = self.groups[pp.source_gi]
            if not M.is_spatial(src.shape):
                return src.pop_block   # a 1-D source: populations of consecutive neurons, if it has them
            cb = M.layout_of(src.shape, src.block)[2]
        else:
            shape = tuple(pp.cfg["source_shape"])
            if not M.is_spatial(shape):
                return None
            cb = int(shape[0])
        return cb if cb <= int(self.pop["max_atoms"]) else None

    def _range_stats(self, gp: GroupPlan, j: int, q0: int, q1: int, cache: dict | None = None):
        key = (gp.gi, j, q0, q1)
        if cache is not None and key in cache:
            return cache[key]
        fm = (DISCRETE, POPULATION)
        st = [pp.counter.stats(j, q0, q1, fm if pp.fmt == POPULATION else (DISCRETE,)) for pp in gp.projs]
        if cache is not None:
            cache[key] = st
        return st

    def _mem(self, gp: GroupPlan, stats, ib: int, offset: int, unit: int) -> tuple[int, int]:
        """(bits, stored synapses) of a range of ``gp`` at compartment ``offset`` of its core, ``unit``
        compartments per unit (a padded layout's range is planar: its entries' bases step by one)."""
        if gp.pad:
            unit = 1
        bits = stored = 0
        for pp, st in zip(gp.projs, stats):
            b, s = pp.counter.memory(st, pp.fmt, pp.weight_bits + ib, self.synfmt, offset, unit, self.cx_base_max)
            bits += b
            stored += s
        return bits, stored

    @staticmethod
    def _axons_in(gp: GroupPlan, stats) -> int:
        return sum(st.axons[pp.fmt] for pp, st in zip(gp.projs, stats))

    @staticmethod
    def _largest(feasible, hi: int, lo: int = 1) -> int:
        """Largest m in lo..hi with feasible(m) (bisection; feasibility is monotone in m up to rare
        population-pattern effects, and whatever is returned was checked). 0 if even lo fails."""
        if hi < lo or not feasible(lo):
            return 0
        if feasible(hi):
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if feasible(mid):
                lo = mid
            else:
                hi = mid
        return lo

    # ------------------------------------------------------------------ 1. blocks and formats
    def _block_candidates(self, shape) -> list:
        if not M.is_spatial(shape):
            return [None]
        c = int(shape[0])
        cb = min(c, int(self.lim["neurons"]))
        nb, cands = M.ceil_div(c, cb), set()
        while cb > 1 or nb < c:  # halving the block, and doubling the number of blocks
            cands |= {M.ceil_div(c, M.ceil_div(c, cb)), M.ceil_div(c, nb)}
            cb, nb = max(1, cb // 2), min(c, nb * 2)
        return sorted(cands | {1}, reverse=True)

    def choose_formats(self) -> None:
        """Forward: each group's block and formats by :meth:`_estimate` (its own cores plus the cores its
        sources need for the output axons it makes them drive). Then backward, where every consumer is
        decided: a group whose own output axons would need cores beyond its neurons takes the block that
        minimises both (:meth:`_out_extra`; a source's populations are its channel blocks)."""
        lim = self.lim
        for gp in self.groups:
            cands = self._block_candidates(gp.shape)
            if not gp.projs:
                gp.block = cands[0]
                gp.units_est = int(lim["neurons"]) // M.layout_of(gp.shape, gp.block)[2]
                continue
            self._choose(gp, cands)
            if self.allow_pop and not M.is_spatial(gp.shape) and gp.out_projs and \
                    all(not self.groups[di].projs[pi].recurrent for di, pi in gp.out_projs):
                # populations of consecutive neurons, as many as a piece of it holds: its consumers may take
                # population axons (one per population and core) instead of one per neuron
                gp.pop_block = max(1, min(int(gp.units_est), int(np.prod(gp.shape)), int(self.pop["max_atoms"])))
        for _ in range(self.BACKWARD_ROUNDS):
            changed = False
            for gp in reversed(self.groups):
                if not gp.projs or not M.is_spatial(gp.shape) or not gp.out_projs:
                    continue
                if self._out_extra(gp, gp.block, gp.units_est, gp.pad) == 0:
                    continue  # its output axons fit its own pieces: nothing to trade
                before = gp.block
                self._choose(gp, self._block_candidates(gp.shape), with_out=True)
                if gp.block != before:  # its consumers' populations changed: recount them
                    changed = True
                    for di, pi in gp.out_projs:
                        dpp = self.groups[di].projs[pi]
                        if dpp.recurrent:
                            continue
                        dg = self.groups[di]
                        dpp.counter = self._counter(dpp, dg, dg.block, dg.pad)
                        if dpp.fmt == POPULATION and not dpp.counter.population_ok:
                            dpp.fmt = DISCRETE
            if not changed:
                break

    def _choose(self, gp: GroupPlan, cands, with_out: bool = False) -> None:
        lim = self.lim
        shape = gp.shape
        src_blocks = [self._source_block(pp) for pp in gp.projs]
        combos = [[]]
        for pp, sb in zip(gp.projs, src_blocks):
            opts = [DISCRETE] + ([POPULATION] if self.allow_pop and sb is not None else [])
            combos = [c0 + [o] for c0 in combos for o in opts]
        best = None
        pads = [None] + ([gp.pad_option] if gp.pad_option else [])
        for cb in cands:
            for pad in pads:
                if pad and not self._whole_padded(gp, cb, pad):
                    continue
                counters = [self._counter(pp, gp, cb, pad, sb) for pp, sb in zip(gp.projs, src_blocks)]
                out_extra = None
                for combo in combos:
                    combo = [f if (f == DISCRETE or ct.population_ok) else DISCRETE for f, ct in zip(combo, counters)]
                    if pad and DISCRETE in combo:
                        continue  # padding serves shared (population) entries only
                    est, units, mem = self._estimate(gp, cb, counters, combo, pad)
                    if with_out and est != float("inf"):
                        if out_extra is None:
                            out_extra = self._out_extra(gp, cb, units, pad)
                        est += out_extra
                    # ties: no padding (fewer compartments), then the larger block, then less memory
                    key = (est, pad is not None, -(cb or 1), mem)
                    if best is None or key < best[0]:
                        best = (key, cb, counters, combo, units, pad)
            ideal = M.ceil_div(int(np.prod(shape)), int(lim["neurons"]))
            if best[0][0] <= ideal:
                break  # the first (largest) block that reaches the neuron bound is as good as any
        _, gp.block, counters, combo, gp.units_est, pad = best
        gp.set_pad(pad)
        for pp, ct, f in zip(gp.projs, counters, combo):
            pp.counter, pp.fmt = ct, f

    def _out_extra(self, gp: GroupPlan, cb, units: int, pad=None) -> int:
        """Cores group ``gp`` would need beyond its own pieces for its output-axon slots with channel
        block ``cb`` (its populations), its consumers' blocks, formats and units per core as decided:
        a population reaches about ``blocks x (1 + target span / units per core)`` cores of a
        convolution's target, every core of a dense target."""
        size = int(np.prod(gp.shape))
        _, npos, bs = M.layout_of(M.padded_shape(gp.shape, pad), cb)
        nblocks = len(M.block_starts(gp.shape, cb)) - 1
        pieces = nblocks * M.ceil_div(npos, max(units, 1))
        slots = 0.0
        for di, pi in gp.out_projs:
            dg = self.groups[di]
            dpp = dg.projs[pi]
            if dpp.recurrent:
                continue
            sb = cb if cb is not None and cb <= int(self.pop["max_atoms"]) else None
            ct = M.ProjCounter(dpp.cfg, dpp.mask, dg.shape, dg.block, sb, dg.pad)
            _, dnpos, _ = M.layout_of(dg.mshape, dg.block)
            dnb = len(M.block_starts(dg.shape, dg.block)) - 1
            m = max(1, int(dg.units_est))
            if ct.kind == "conv":
                cs, ph, pw = ct.pooled
                q = ct.qpos[:, ph // 2, pw // 2]
                q = q[q >= 0]
                span = int(q.max() - q.min() + 1) if q.size else 1
                fan = dnb * min(M.ceil_div(dnpos, m), 1 + (span - 1) / m)
            else:
                fan = dnb * M.ceil_div(dnpos, m)
            if dpp.fmt == POPULATION and ct.population_ok:
                slots += self.slots(POPULATION) * fan * size / max(ct.src_block, 1)
            else:
                slots += self.slots(DISCRETE) * fan * size
        return max(0, M.ceil_div(int(np.ceil(slots)), int(self.lim["axons_out"])) - pieces)

    def _estimate(self, gp: GroupPlan, cb, counters, combo, pad=None):
        """(estimated cores incl. extra source cores, units per core, memory per neuron): the largest
        range from the start of the middle row that fits an empty core; infinite when the heaviest
        unit (the centre position of a convolution, the densest neuron of a dense group) does not
        fit alone."""
        mshape = M.padded_shape(gp.shape, pad)
        c, npos, bs = M.layout_of(mshape, cb)
        nblocks = len(M.block_starts(gp.shape, cb)) - 1
        width = mshape[2] if M.is_spatial(gp.shape) else 1
        fm = (DISCRETE, POPULATION)
        memo = {}
        over = [0.0]

        def feasible_at(q0, m):
            q1 = min(npos, q0 + m)
            sts = [ct.stats(0, q0, q1, fm if f == POPULATION else (DISCRETE,)) for ct, f in zip(counters, combo)]
            ax = sum(st.axons[f] for st, f in zip(sts, combo))
            n = (q1 - q0) * bs
            ib = M.index_bits(n, self.synfmt)
            mem = sum(ct.memory(st, f, pp.weight_bits + ib, self.synfmt, 0, 1 if pad else bs, self.cx_base_max)[0]
                      for ct, st, f, pp in zip(counters, sts, combo, gp.projs))
            memo[(q0, m)] = mem
            if m == 1:
                over[0] = max(over[0], ax / self.lim["axons_in"], mem / self.lim["synapse_memory_bits"])
            return rules.core_fits(self.lim, neurons=n, axons_in=ax, memory_bits=mem)

        if M.is_spatial(gp.shape):
            heavy = [(mshape[1] // 2) * width + width // 2]
        else:
            per_neuron = sum(np.diff(ct.cum[:, :], axis=0).sum(1, dtype=np.int64) for ct in counters)
            heavy = [int(np.argmax(per_neuron))]
        if not all(feasible_at(h, 1) for h in heavy):
            return float("inf"), 0, over[0]  # ranked by how far the heaviest unit is from fitting
        q0 = (npos // 2) // width * width
        cap = min(npos - q0, int(self.lim["neurons"]) // bs)
        per_core = 1   # whole blocks per core
        if npos * bs <= int(self.lim["neurons"]) and feasible_at(0, npos):
            # the whole block fits a core (a range cut inside it may not: cut kernels are entries of their own);
            # how many such blocks share one (blocks taken as alike)
            q0, cap, m = 0, npos, npos
            sts = [ct.stats(0, 0, npos, fm if f == POPULATION else (DISCRETE,)) for ct, f in zip(counters, combo)]
            ax = sum(st.axons[f] for st, f in zip(sts, combo))
            while per_core < nblocks:
                k = per_core + 1
                n = k * npos * bs
                ib = M.index_bits(n, self.synfmt)
                mem = k * sum(ct.memory(st, f, pp.weight_bits + ib, self.synfmt, 0, 1 if pad else bs,
                                        self.cx_base_max)[0] for ct, st, f, pp in zip(counters, sts, combo, gp.projs))
                if not rules.core_fits(self.lim, neurons=n, axons_in=ax, memory_bits=mem):  # axons shared
                    break
                per_core = k
        else:
            m = self._largest(lambda k: feasible_at(q0, k), cap)
        if m == 0:
            return float("inf"), 0, 0
        mem_per_neuron = memo.get((q0, m), 0) / max(m * bs, 1)
        if m == cap:  # the probe ran out of layer: the neuron limit is the estimate, if that range fits
            full = int(min(npos, int(self.lim["neurons"]) // bs))
            if full == m or feasible_at(0, full):
                m = full
        est = M.ceil_div(nblocks, per_core) * M.ceil_div(npos, m)
        return est + self._source_extra(gp, counters, combo, m, nblocks, est), m, mem_per_neuron

    def _source_extra(self, gp: GroupPlan, counters, combo, m: int, nblocks: int, est: int) -> int:
        """Cores the sources would need beyond their neurons because of the output axons this
        choice makes them drive: a source reaches about ``blocks x (1 + target span / units per
        core)`` cores through a convolution, every core of the group through a dense projection."""
        extra = 0
        for pp, ct, f in zip(gp.projs, counters, combo):
            if pp.source_gi is None or pp.recurrent:
                continue
            src = self.groups[pp.source_gi]
            size = int(np.prod(src.shape))
            if ct.kind == "conv":
                cs, ph, pw = ct.pooled
                q = ct.qpos[:, ph // 2, pw // 2]
                q = q[q >= 0]
                span = int(q.max() - q.min() + 1) if q.size else 1
                fan = nblocks * (1 + (span - 1) / m)
            else:
                fan = est
            if f == POPULATION:
                slots = self.slots(POPULATION) * fan * size / max(ct.src_block, 1)
            else:
                slots = self.slots(DISCRETE) * fan * size
            extra += max(0, M.ceil_div(int(np.ceil(slots)), self.lim["axons_out"]) -
                         M.ceil_div(size, self.lim["neurons"]))
        return extra

    # ------------------------------------------------------------------ 2. packing
    def pack(self) -> None:
        lim = self.lim
        self.ndest: dict = {}        # (group, proj) -> destination cores per pooled source / population
        self.union: dict = {}        # (group, proj, core) -> bool reach already counted
        self.ain_union: dict = {}    # (group, proj, core) -> bool: sources with an input axon on the core
        self.cores_of: dict = {}     # group -> set of cores holding a piece of it
        self.c_neu = np.zeros(0, np.int64)
        self.c_ain = np.zeros(0, np.int64)
        self.c_aout = np.zeros(0, np.int64)
        self.c_mem = np.zeros(0, np.int64)
        self.c_cap = np.zeros(0, np.int64)   # most neurons a core may hold before its index width overflows memory
        for gp in reversed(self.groups):
            c_all, npos, cb, nblocks = gp.layout()
            out_cum = self._out_prefix(gp)
            cache: dict = {}
            for j in range(nblocks):
                bs = M.block_size(gp.shape, gp.block, j)
                q = 0
                rc = gp.real_cum
                while q < npos:
                    if rc is not None and rc[npos] == rc[q]:
                        break  # only padding left: no real target, nothing to place
                    remaining = npos - q
                    # a group without synapses fills any gap; others take room in a used core only for a
                    # sizeable piece (or their last one)
                    need = 1 if gp.liquid else min(remaining, max(1, int(gp.units_est * self.ACCEPT_FRACTION)),
                                                   max(1, int(lim["neurons"]) // bs))
                    if gp.pad and gp.units_est >= npos:
                        need = remaining  # whole blocks: a cut block's border kernels are entries of their own
                    if gp.pop_block:      # whole populations
                        need = min(remaining, M.ceil_div(need, gp.pop_block) * gp.pop_block)
                    core, m = self._first_fit(gp, j, q, bs, need, remaining, out_cum, cache)
                    if core is None:
                        core = self._new_core()
                        m = self._fit(gp, j, q, bs, core, out_cum, cache, remaining, 1)
                        if m == 0:
                            st = self._range_stats(gp, j, q, q + 1, cache) if gp.projs else []
                            mem = self._mem(gp, st, M.index_bits(bs, self.synfmt), 0, bs)[0] if gp.projs else 0
                            if not any(nm == gp.cfg["name"] for nm, _ in self.unsplittable):
                                self.unsplittable.append((gp.cfg["name"], {
                                    "axons_in": self._axons_in(gp, st) if gp.projs else 0, "memory_bits": mem,
                                    "axons_out": int(out_cum[j][q + 1] - out_cum[j][q])}))
                            m = min(gp.pop_block or 1, remaining)
                    if rc is None or rc[q + m] > rc[q]:  # a range of padding only is not placed
                        self._place(gp, j, q, q + m, bs, core, out_cum, cache)
                    q += m

    def _new_core(self) -> Core:
        core = Core()
        core.idx = len(self.cores)
        self.cores.append(core)
        for name in ("c_neu", "c_ain", "c_aout", "c_mem"):
            setattr(self, name, np.append(getattr(self, name), 0))
        self.c_cap = np.append(self.c_cap, int(self.lim["neurons"]))
        return core

    def _first_fit(self, gp, j, q, bs, need, remaining, out_cum, cache):
        """The first core that takes at least ``need`` units (or all that remain); (core, units)."""
        if not self.cores:
            return None, 0
        lim = self.lim
        out_need = int(out_cum[j][q + need] - out_cum[j][q])
        ok = (self.c_neu + need * bs <= self.c_cap) & (self.c_aout + out_need <= lim["axons_out"])
        if gp.projs:
            st = self._range_stats(gp, j, q, q + need, cache)
            holds = np.zeros(len(self.cores), bool)   # a core with a piece of gp shares its input axons
            holds[list(self.cores_of.get(gp.gi, ()))] = True
            ok &= (self.c_ain + self._axons_in(gp, st) <= lim["axons_in"]) | holds
            ok &= self.c_mem + self._mem(gp, st, M.index_bits(need * bs, self.synfmt), 0, bs)[0] <= \
                lim["synapse_memory_bits"]
        for ci in np.nonzero(ok)[0]:
            core = self.cores[int(ci)]
            m = self._fit(gp, j, q, bs, core, out_cum, cache, remaining, need)
            if m >= need or (m > 0 and m == remaining):
                return core, m
        return None, 0

    def _new_axons_in(self, gp: GroupPlan, j, q0, q1, stats, core: Core) -> int:
        """Input axons a range of ``gp`` adds to ``core``: one per source (population) and core, so
        sources that already drive another piece of the same projection there need none (their entry
        lists the targets of both)."""
        if core.idx not in self.cores_of.get(gp.gi, ()):
            return self._axons_in(gp, stats)
        n = 0
        for pi, (pp, st) in enumerate(zip(gp.projs, stats)):
            u = self.ain_union.get((gp.gi, pi, core.idx))
            if u is None:
                n += st.axons[pp.fmt]
                continue
            r = pp.counter.reach(j, q0, q1, pp.fmt)
            n += int((r & ~u).sum()) * pp.counter.kp2
        return n

    def _out_prefix(self, gp: GroupPlan) -> list:
        """Per block: prefix sums over units of the output-axon slots of this group's neurons
        (destinations are placed already; recurrent projections are counted after packing)."""
        c_all, npos, cb, nblocks = gp.layout()
        real = M.layout_of(gp.shape)[1]
        per_real = np.zeros((nblocks, real), np.int64)
        for (di, pi) in gp.out_projs:
            pp = self.groups[di].projs[pi]
            if pp.recurrent or (di, pi) not in self.ndest:
                continue
            nd = pp.counter.expand(self.ndest[(di, pi)].astype(np.int64))
            if pp.fmt == POPULATION and not M.is_spatial(gp.shape):  # charged to a population's first neuron
                per_real[0, ::gp.pop_block] += self.slots(POPULATION) * nd.reshape(-1)
            elif pp.fmt == POPULATION:
                per_real += self.slots(POPULATION) * nd.reshape(nblocks, real)
            elif M.is_spatial(gp.shape):
                nd = nd.reshape(c_all, real)
                for j, a in enumerate(range(0, c_all, cb)):
                    per_real[j] += self.slots(DISCRETE) * nd[a:a + cb].sum(0)
            else:
                per_real[0] += self.slots(DISCRETE) * nd.reshape(-1)
        per = per_real
        if gp.pad:  # padding positions have no neurons behind them: no output axons
            per = np.zeros((nblocks, npos), np.int64)
            per[:, M.real_positions(gp.shape, gp.pad)] = per_real
        return [np.concatenate([[0], np.cumsum(r)]) for r in per]

    def _fit(self, gp, j, q, bs, core: Core, out_cum, cache, remaining, need: int = 1) -> int:
        """Largest number of units from ``q`` on that fit ``core`` with what it holds (0: not even ``need``)."""
        lim = self.lim
        hi = min(remaining, (int(lim["neurons"]) - core.neurons) // bs)
        if hi < need:
            return 0
        base_ax_in, base_ax_out = core.axons_in, core.axons_out

        def feasible(m):
            n = core.neurons + m * bs
            if base_ax_out + int(out_cum[j][q + m] - out_cum[j][q]) > lim["axons_out"]:
                return False
            ib = M.index_bits(n, self.synfmt)
            if not gp.projs:  # no synapses of its own, but a wider index for what the core holds
                return n <= lim["neurons"] and self._core_mem(core, ib)[0] <= lim["synapse_memory_bits"]
            st = self._range_stats(gp, j, q, q + m, cache)
            if base_ax_in + self._new_axons_in(gp, j, q, q + m, st, core) > lim["axons_in"]:
                return False
            mem = self._core_mem(core, ib)[0]
            if mem > lim["synapse_memory_bits"]:
                return False
            mem += self._mem(gp, st, ib, core.neurons, bs)[0]
            return mem <= lim["synapse_memory_bits"]

        a = gp.pop_block or 1
        if a > 1:  # whole populations of a 1-D source (or what remains)
            k = self._largest(lambda k: feasible(min(k * a, remaining)),
                              M.ceil_div(hi, a) if hi == remaining else hi // a, lo=M.ceil_div(need, a))
            return min(k * a, remaining)
        return self._largest(feasible, hi, lo=need)

    def _piece_mem(self, p: Piece, ib: int) -> tuple[int, int]:
        if ib not in p.mem_cache:
            gp = self.groups[p.gi]
            p.mem_cache[ib] = self._mem(gp, p.stats, ib, p.offset, M.block_size(gp.shape, gp.block, p.j)) \
                if gp.projs else (0, 0)
        return p.mem_cache[ib]

    def core_memory(self, core: Core) -> tuple[int, int]:
        """(memory bits, stored synapses) of a core at the index width of all its neurons."""
        return self._core_mem(core, M.index_bits(core.neurons, self.synfmt))

    def _core_mem(self, core: Core, ib: int) -> tuple[int, int]:
        bits = stored = 0
        for p in core.pieces:
            b, s = self._piece_mem(p, ib)
            bits += b
            stored += s
        return bits, stored

    def _place(self, gp, j, q0, q1, bs, core: Core, out_cum, cache) -> None:
        lim_mem = self.lim["synapse_memory_bits"]
        st = self._range_stats(gp, j, q0, q1, cache) if gp.projs else []
        p = Piece(gp.gi, j, q0, q1, (q1 - q0) * bs, self._new_axons_in(gp, j, q0, q1, st, core) if gp.projs else 0,
                  int(out_cum[j][q1] - out_cum[j][q0]), core.neurons, st)
        for pi, pp in enumerate(gp.projs):   # the sources that now have an input axon on this core
            key = (gp.gi, pi, core.idx)
            r = pp.counter.reach(j, q0, q1, pp.fmt)
            self.ain_union[key] = r if key not in self.ain_union else (self.ain_union[key] | r)
        self.cores_of.setdefault(gp.gi, set()).add(core.idx)
        core.pieces.append(p)
        core.neurons += p.neurons
        core.axons_in += p.axons_in
        core.axons_out += p.axons_out
        ci = core.idx
        self.c_neu[ci], self.c_ain[ci], self.c_aout[ci] = core.neurons, core.axons_in, core.axons_out
        ib_now = M.index_bits(core.neurons, self.synfmt)
        self.c_mem[ci] = self._core_mem(core, ib_now)[0]
        cap = core.neurons
        for b in sorted(int(b) for b in self.synfmt["index_bits"] if b and b >= ib_now):
            if self._core_mem(core, b)[0] > lim_mem:
                break
            cap = max(cap, min(2 ** b, int(self.lim["neurons"])))
        self.c_cap[ci] = cap
        for pi, pp in enumerate(gp.projs):
            if pp.source_gi is None or pp.recurrent:
                continue
            r = pp.counter.reach(j, q0, q1, pp.fmt)
            key = (gp.gi, pi)
            if key not in self.ndest:
                self.ndest[key] = np.zeros(r.shape, np.int32)
            u = self.union.get(key + (ci,))
            new = r if u is None else (r & ~u)
            self.ndest[key] += new
            self.union[key + (ci,)] = r if u is None else (u | r)

    # ------------------------------------------------------------------ 3. exact counts, chips
    def finish(self) -> dict:
        """Exact per-core figures (output axons with recurrent projections too), core-to-core routes,
        chip assignment and final core numbering. Returns the mapping summary."""
        n = len(self.cores)
        unit_core = []
        for gp in self.groups:
            _, npos, _, nblocks = gp.layout()
            uc = np.full((nblocks, npos), -1, np.int64)
            unit_core.append(uc)
        pieces_of: dict = {gp.gi: [] for gp in self.groups}
        for ci, core in enumerate(self.cores):
            for p in core.pieces:
                unit_core[p.gi][p.j, p.q0:p.q1] = ci
                pieces_of[p.gi].append((ci, p))
        ax_out = np.zeros(n, np.int64)
        routes = np.zeros((n, n), np.int64)
        for gp in self.groups:
            for pi, pp in enumerate(gp.projs):
                if pp.source_gi is None:
                    continue
                sg = self.groups[pp.source_gi]
                c_all, npos, cb, nblocks = sg.layout()
                uc = unit_core[sg.gi]
                if sg.pad:  # real positions only
                    uc = uc[:, M.real_positions(sg.shape, sg.pad)]
                if pp.fmt == POPULATION:
                    src_core = uc.reshape(-1) if M.is_spatial(sg.shape) else uc[0, ::sg.pop_block]
                else:
                    if M.is_spatial(sg.shape):
                        chan_block = np.arange(c_all) // cb
                        src_core = uc[chan_block].reshape(-1)     # per real neuron (C order)
                    else:
                        src_core = uc.reshape(-1)
                per_core: dict = {}
                for ci, p in pieces_of[gp.gi]:
                    r = pp.counter.reach(p.j, p.q0, p.q1, pp.fmt)
                    per_core[ci] = r if ci not in per_core else (per_core[ci] | r)
                for ci, r in per_core.items():
                    rr = pp.counter.expand(r).reshape(-1)
                    cnt = np.bincount(src_core[rr], minlength=n)
                    routes[:, ci] += cnt
                    ax_out += self.slots(pp.fmt) * cnt
        for ci, core in enumerate(self.cores):
            core.axons_out = int(ax_out[ci])
        order = self._chip_order(routes)
        self.cores = [self.cores[i] for i in order]
        routes = routes[np.ix_(order, order)]
        cpc = int(self.chip["cores"])
        chip_of = np.arange(n) // cpc
        inter = int(routes[chip_of[:, None] != chip_of[None, :]].sum())
        return {"routes": int(routes.sum()), "inter_chip_routes": inter}

    def _chip_order(self, routes: np.ndarray) -> list[int]:
        n = len(self.cores)
        if n == 0:
            return []
        w = (routes + routes.T).astype(np.float64)
        np.fill_diagonal(w, 0)
        no_pre = (routes.sum(0) - np.diag(routes)) == 0
        cpc = int(self.chip["cores"])
        free = np.ones(n, bool)
        order: list[int] = []
        while free.any():
            cand = np.nonzero(free & no_pre)[0]
            start = int(cand[0]) if cand.size else int(np.nonzero(free)[0][0])
            chip = [start]
            free[start] = False
            score = w[start].copy()
            while len(chip) < cpc and free.any():
                s = np.where(free, score, -1.0)
                best = int(np.argmax(s))
                if s[best] <= 0:
                    cand = np.nonzero(free & no_pre)[0]
                    best = int(cand[0]) if cand.size else int(np.nonzero(free)[0][0])
                chip.append(best)
                free[best] = False
                score += w[best]
            order.extend(chip)
        return order

    # ------------------------------------------------------------------ bound
    def tiling_bound(self) -> dict:
        """The least synaptic memory any tiling of this placer's family needs, per group and in total.

        A tiling cuts a group into channel blocks of ``Cb`` channels (each candidate of
        :meth:`choose_formats`) and every block into ranges of ``m`` units (whole rows, or powers of two
        up to a row), each range on a core of its own at compartment offset 0 (the cheapest place: no
        further 256-compartment copies of population entries), every projection in either format; a
        tiling counts only if every range fits an empty core (compartments, input axons, memory); ranges
        of at least 1/:data:`TILING_PIECES` of a block are tried, shorter ones only when none of those
        fits. A group's figure is never below its every-weight-once memory (:meth:`lower_bound`'s term),
        which also stands in, with a ``note``, when not even one unit fits a core. Its memory is the sum over its ranges
        (:meth:`.mapping.ProjCounter.memory` at each range's index width), counted exactly for the first
        and the last channel block and taken as the first's for the others (exact where the blocks'
        non-zero patterns are alike, as in an unpruned layer). Unlike :meth:`lower_bound` (every weight once), this counts the copies the synapse
        formats force (a convolution's entry per set of valid taps; a discrete list per source and
        core), but it is a minimum over this family only, not a proof over every mapping: blocks of
        non-contiguous channels or positions are not tried.

        Returns ``{"memory_bits", "cores" (memory / the core's memory, rounded up), "groups": {name:
        {"memory_bits", "channel_block", "units", "formats"}}}``.
        """
        lim = self.target["core"]
        MEM, NEU, AIN = int(lim["synapse_memory_bits"]), int(lim["neurons"]), int(lim["axons_in"])
        total, per = 0, {}
        for gp in self.groups:
            if not gp.projs:
                continue
            shape = gp.shape
            cbs = self._block_candidates(shape)
            min_ib = min(int(b) for b in self.synfmt["index_bits"] if b)
            weight_bound = sum(pp.counter.lower_bound_bits(pp.weight_bits + min_ib, self.synfmt,
                                                           self.allow_pop and pp.counter.population_ok)[0]
                               for pp in gp.projs)
            best = None
            for small in (False, True):  # ranges of a row or more first; shorter ones only if none of those fits
                best = self._least_tiling(gp, cbs, small, MEM, NEU, AIN)
                if best is not None:
                    break
            if best is None:  # not even one unit fits an empty core: the weight bound stands in
                per[gp.cfg["name"]] = {"memory_bits": int(weight_bound), "channel_block": None, "units": None,
                                       "formats": None, "note": "no tiling fits a core; the every-weight-once bound"}
                total += weight_bound
                continue
            mem = max(best[0], weight_bound)  # never below what any mapping must store
            total += mem
            per[gp.cfg["name"]] = {"memory_bits": int(mem), "channel_block": best[1], "units": int(best[2]),
                                   "formats": best[3], "padding": list(best[4]) if best[4] else None}
        return {"memory_bits": int(total), "cores": M.ceil_div(int(total), MEM), "groups": per}

    def _least_tiling(self, gp: GroupPlan, cbs, small: bool, MEM: int, NEU: int, AIN: int):
        """``(memory bits, channel block, units, formats)`` of the tiling of ``gp`` with the least memory among
        channel blocks ``cbs`` and ranges of at least (``small``: fewer than) 1/:data:`TILING_PIECES` of a
        block's units whose every range fits an empty core, or None."""
        shape = gp.shape
        fm_all = (DISCRETE, POPULATION)
        best = None
        for cb, pad in [(cb, pad) for cb in cbs for pad in [None] + ([gp.pad_option] if gp.pad_option else [])
                        if not pad or self._whole_padded(gp, cb, pad)]:
            mshape = M.padded_shape(shape, pad)
            _, npos, bs = M.layout_of(mshape, cb)
            width = int(mshape[2]) if M.is_spatial(shape) else 1
            nblocks = len(M.block_starts(shape, cb)) - 1
            srcs = [self._source_block(pp) for pp in gp.projs]
            counters = [M.ProjCounter(pp.cfg, pp.mask, shape, cb, sb, pad) for pp, sb in zip(gp.projs, srcs)]
            combos = [[]]
            for ct in counters:
                combos = [c0 + [o] for c0 in combos
                          for o in ((DISCRETE, POPULATION) if self.allow_pop and ct.population_ok else (DISCRETE,))]
            if pad:  # padding serves shared (population) entries only
                combos = [c for c in combos if DISCRETE not in c]
            ms = {npos} | {r * width for r in range(1, npos // width + 1)} | {2 ** k for k in range(11)}
            lo = M.ceil_div(npos, self.TILING_PIECES)
            ms = sorted(m for m in ms if (m < lo if small else lo <= m) and m <= npos and m * bs <= NEU)
            # the first and the last block (the last may be narrower), the others as the first: exact where
            # the blocks' non-zero patterns are alike (unpruned weights), an estimate otherwise
            reps = [(0, nblocks - 1)] + ([(nblocks - 1, 1)] if nblocks > 1 else [])
            for combo in combos:
                for m in ms:
                    mem = 0
                    for j, times in reps:
                        bsj = M.block_size(shape, cb, j)
                        for q0 in range(0, npos, m):
                            q1 = min(npos, q0 + m)
                            ib = M.index_bits((q1 - q0) * bsj, self.synfmt)
                            sts = [ct.stats(j, q0, q1, fm_all if f == POPULATION else (DISCRETE,))
                                   for ct, f in zip(counters, combo)]
                            if sum(st.axons[f] for st, f in zip(sts, combo)) > AIN:
                                mem = None
                                break
                            piece = sum(ct.memory(st, f, pp.weight_bits + ib, self.synfmt, 0, 1 if pad else bsj,
                                                  self.cx_base_max)[0]
                                        for ct, st, f, pp in zip(counters, sts, combo, gp.projs))
                            if piece > MEM:
                                mem = None
                                break
                            mem += piece * max(times, 1)
                        if mem is None:
                            break
                    if mem is not None and (best is None or mem < best[0]):
                        best = (mem, cb, m, list(combo), pad)
        return best

    def lower_bound(self) -> dict:
        lim = self.target["core"]
        neurons = sum(int(np.prod(gp.shape)) for gp in self.groups)
        min_ib = min(int(b) for b in self.synfmt["index_bits"] if b)
        mem = ax_in = ax_out = 0
        for gp in self.groups:
            for pp in gp.projs:
                b, a, o = pp.counter.lower_bound_bits(pp.weight_bits + min_ib, self.synfmt,
                                                      self.allow_pop and pp.counter.population_ok)
                mem += b
                ax_in += a
                if pp.source_gi is not None:
                    ax_out += o
        terms = {"neurons": M.ceil_div(neurons, lim["neurons"]),
                 "memory": M.ceil_div(mem, lim["synapse_memory_bits"]),
                 "axons_in": M.ceil_div(ax_in, lim["axons_in"]),
                 "axons_out": M.ceil_div(ax_out, lim["axons_out"])}
        return {"cores": max(1, max(terms.values())), "terms": terms,
                "totals": {"neurons": neurons, "memory_bits": mem, "axons_in": ax_in, "axons_out_slots": ax_out}}
