"""What a core holds and how it is counted: neuron order, synapse formats, per-range counts, limits.

*What a core can hold* comes from the target's ``[core]`` table (Loihi 1: 1,024 compartments,
4,096 input and 4,096 output axons, 16,384 x 64-bit words of synaptic memory). How the neurons
of a group are split and placed on cores is :mod:`snnc.backends.loihi.placement`.

**Neuron order.** A group's neurons are put in *core order* and every core holds contiguous
ranges of it. A ``(C, H, W)`` group is cut into channel blocks of ``Cb`` channels (``Cb = C``
unless a layer is too wide for one core to hold a position's channels); core order is block by
block, position by position (raster ``y * W + x``), the block's channels last. A *unit* is one
position of one block (``Cb`` neurons); ranges are whole units. A 1-D group's unit is a neuron.

**Formats** (chosen per on-chip projection; nengo-loihi ``block.py`` ``Axon``/``Synapse``,
``hardware/builder.py``; see ``[axon_types]`` of the target):

- ``discrete`` (nengo-loihi discrete axons, sparse synapse format): one input axon per source
  neuron with a synapse into the core; its synapses are stored as one list: blocks of up to 64
  synapses, each ``n * (weight_bits + index_bits) + 10`` bits rounded up to 64-bit words
  (``SynapseFmt.bits_per_axon``); ``index_bits`` is the smallest of 6..12 that addresses the
  core's neurons. Output axons: one slot per (source neuron, destination core).
- ``population`` (pop32 axons): a source *population* -- one position of one channel block of a
  ``(C, H, W)`` source, its ``Cb`` channels being the *atoms* -- shares one input axon per
  destination core; the spike carries the atom. Weights are stored per entry as ``atoms x L``
  synapses (``L`` target compartments, rows of equal length as the hardware indexes them by
  atom), one list in the same block format. Entries with the same weights and the same targets
  relative to their compartment base are stored once: for a convolution, one entry per distinct
  set of valid kernel taps (the kernel is shared by all interior positions: nengo-loihi
  ``conv2d_loihi_weights``) and per 256-compartment index offset (the base of a synapse-map
  entry is below ``cx_base_max`` = 256; the rest of the offset goes into the indices, so targets
  further into the core need their own copy); for a dense projection, one entry per pooled
  source position (the pixels of a sum-pooling window share it). Output axons: two slots per
  (population, destination core) (``Axon.slots_per_axon``).

SynOps and ``synapses`` (connections: non-zero weights per target neuron, a conv weight counted
once per output position, pooling multiplying the inputs each weight sees) are the same in both
formats; ``stored_synapses`` counts the weight entries in memory.

:class:`ProjCounter` counts a projection into any unit range exactly and fast (no convolution
over all channels: per range one small matrix product), :func:`snnc.backends.loihi.rules.design_rules` returns every
violation at once, each with the rule name, the place, the value and the limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from snnc.errors import SnncError
from snnc.ir.ops import synapse_counts
from snnc.targets import load_target

DISCRETE, POPULATION = "discrete", "population"
#: What ``compile_graph(formats=...)`` / ``snnc compile --formats`` take: ``"auto"`` (per projection the
#: format that needs fewer cores) or ``"discrete"`` (discrete axons and per-synapse weights everywhere).
FORMAT_CHOICES = ("auto", DISCRETE)


def check_formats(formats: str) -> str:
    """``formats`` if it is one of :data:`FORMAT_CHOICES`.

    Raises:
        ValueError: it is not.
    """
    if formats not in FORMAT_CHOICES:
        raise SnncError(f"formats must be 'auto' or 'discrete', got {formats!r}")
    return formats


def target_section(target, name: str) -> dict:
    """A target table, taken from the bundled ``loihi-sim.toml`` when a custom target lacks it
    (``axon_types``, ``latency_ns``, ``interchip`` are newer than the required tables)."""
    sec = target.data.get(name) if hasattr(target, "data") else None
    if isinstance(sec, dict):
        return sec
    return load_target("loihi-sim")[name]


# ---------------------------------------------------------------------------------------------- order
def is_spatial(shape) -> bool:
    return len(shape) == 3


def layout_of(shape, block: int | None = None) -> tuple[int, int, int]:
    """``(C, positions, Cb)`` of a group: ``(C, H*W, Cb)`` for ``(C, H, W)``, ``(1, N, 1)`` otherwise."""
    if is_spatial(shape):
        c = int(shape[0])
        return c, int(shape[1]) * int(shape[2]), int(block or c)
    return 1, int(np.prod(shape)), 1


def padded_shape(shape, pad=None) -> tuple:
    """The grid a padded ``(C, H, W)`` layout lays out: ``(C, H + top + bottom, W + left + right)``
    (``shape`` itself without ``pad``)."""
    shape = tuple(int(v) for v in shape)
    if not pad:
        return shape
    t, b, l, r = (int(v) for v in pad)
    return (shape[0], shape[1] + t + b, shape[2] + l + r)


def real_positions(shape, pad=None) -> np.ndarray:
    """Raster index on the padded grid of every real position of ``(C, H, W)`` (raster order), int64 ``[H*W]``."""
    c, h, w = (int(v) for v in shape)
    if not pad:
        return np.arange(h * w, dtype=np.int64)
    t, b, l, r = (int(v) for v in pad)
    return ((np.arange(h)[:, None] + t) * (w + l + r) + np.arange(w)[None, :] + l).reshape(-1).astype(np.int64)


def conv_padding(proj: dict, kernel, target_shape) -> tuple | None:
    """``(top, bottom, left, right)``: how many positions beyond a ``(C, H, W)`` target the taps of a
    convolution with ``kernel`` ``(kh, kw)`` reach (its zero padding, seen from the target), or None
    when every tap lands inside or the projection is not a convolution."""
    op = next((o for o in proj["ops"] if o["op"] == "conv2d"), None)
    if op is None or not is_spatial(target_shape):
        return None
    src = [int(v) for v in proj["source_shape"]]
    ky, kx = pool_factor(proj["ops"])
    n_in = (src[1] // ky, src[2] // kx)
    out = []
    for ax in (0, 1):
        s, p, d, kk = int(op["stride"][ax]), int(op["padding"][ax]), int(op["dilation"][ax]), int(kernel[ax])
        reach = [(i + p - t * d) // s for i in range(n_in[ax]) for t in range(kk) if (i + p - t * d) % s == 0]
        n_out = int(target_shape[1 + ax])
        out += [max(0, -min(reach)), max(0, max(reach) - (n_out - 1))] if reach else [0, 0]
    return tuple(out) if any(out) else None


def neuron_order(shape, block: int | None = None) -> np.ndarray:
    """Permutation: position i in core order -> flat C-order index (see module docstring)."""
    n = int(np.prod(shape))
    if not is_spatial(shape):
        return np.arange(n)
    c, npos, cb = layout_of(shape, block)
    idx = np.arange(n).reshape(c, npos)
    return np.concatenate([np.ascontiguousarray(idx[a:a + cb].T).reshape(-1) for a in range(0, c, cb)])


def block_starts(shape, block: int | None = None) -> np.ndarray:
    """Core-order index where each channel block starts (plus the total at the end)."""
    c, npos, cb = layout_of(shape, block)
    sizes = [min(cb, c - a) * npos for a in range(0, c, cb)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def block_size(shape, block: int | None, j: int) -> int:
    c, _, cb = layout_of(shape, block)
    return min(cb, c - j * cb)


def range_to_units(shape, block, start: int, stop: int):
    """Core-order neuron range -> ``(block j, q0, q1)`` or None when it is not whole units of one block."""
    starts = block_starts(shape, block)
    j = int(np.searchsorted(starts, start, side="right") - 1)
    if j < 0 or j >= len(starts) - 1 or stop > starts[j + 1]:
        return None
    bs = block_size(shape, block, j)
    if (start - starts[j]) % bs or (stop - starts[j]) % bs:
        return None
    return j, int((start - starts[j]) // bs), int((stop - starts[j]) // bs)


# ---------------------------------------------------------------------------------------------- memory
def index_bits(n_neurons: int, fmt: dict) -> int:
    for b in fmt["index_bits"]:
        if b and 2 ** b >= n_neurons:
            return int(b)
    return int(fmt["index_bits"][-1])


def axon_bits(counts: torch.Tensor, bits_per_weight: int, fmt: dict) -> torch.Tensor:
    """Synaptic memory bits per input axon with ``counts`` synapses (nengo-loihi bits_per_axon)."""
    return torch.as_tensor(list_bits(np.asarray(counts, np.int64), bits_per_weight, fmt))


def list_bits(n, bits_per_weight: int, fmt: dict) -> np.ndarray:
    """Bits of synapse lists of ``n`` synapses each (int64 array): blocks of up to ``block_synapses``,
    each ``n * bits_per_weight + header_bits`` rounded up to ``word_bits`` (nengo-loihi
    ``SynapseFmt.bits_per_axon``)."""
    blk, hdr, word = int(fmt["block_synapses"]), int(fmt["header_bits"]), int(fmt["word_bits"])
    n = np.asarray(n, np.int64)
    full, rem = n // blk, n % blk
    w_full = -(-(blk * bits_per_weight + hdr) // word) * word
    w_rem = -(-(rem * bits_per_weight + hdr) // word) * word
    return full * w_full + (rem > 0) * w_rem


@lru_cache(maxsize=256)
def _lut(n_max: int, bits_per_weight: int, blk: int, hdr: int, word: int) -> np.ndarray:
    return list_bits(np.arange(n_max + 1), bits_per_weight,
                     {"block_synapses": blk, "header_bits": hdr, "word_bits": word})


def hist_bits(hist: np.ndarray, bits_per_weight: int, fmt: dict) -> int:
    """Total bits of lists whose lengths have histogram ``hist`` (``hist[n]`` lists of n synapses)."""
    if hist is None or len(hist) <= 1:
        return 0
    lut = _lut(len(hist) - 1, int(bits_per_weight), int(fmt["block_synapses"]), int(fmt["header_bits"]),
               int(fmt["word_bits"]))
    return int(np.dot(hist.astype(np.int64), lut))


# ---------------------------------------------------------------------------------------------- counting
def pool_factor(ops: list) -> tuple[int, int]:
    ky = kx = 1
    for op in ops:
        if op["op"] == "sum_pool2d":
            ky *= int(op["kernel"][0])
            kx *= int(op["kernel"][1])
    return ky, kx


@dataclass
class RangeStats:
    """Counts of one projection into one unit range (see :meth:`ProjCounter.stats`)."""
    synapses: int                 # connections (non-zero weights per target), real sources
    axons: dict                   # format -> input axons
    hist: np.ndarray              # discrete: histogram of per-pooled-source synapse counts (x kp2 real sources)
    kp2: int                      # real sources per pooled source
    entries: tuple | None = None  # population: (pattern key, block js, base position, L) per population
    pop_hist: np.ndarray | None = None   # dense population: histogram of atoms x L per pooled population
    entry_sizes: dict = field(default_factory=dict)   # (offset, unit, base max) -> synapses per distinct entry


class ProjCounter:
    """Exact counts of one on-chip projection into unit ranges of its target group.

    Args:
        proj: projection config (``source_shape``, ``ops``).
        mask: 0/1 (non-zero) weight mask, shaped like the weighted op's weight.
        target_shape, target_block: the target group's shape and channel block.
        source_block: channel block of the source group (its population atoms), or None for a
            source without populations (1-D, or more atoms than a population takes).
        target_pad: ``(top, bottom, left, right)`` padding positions of a padded target layout
            (:func:`padded_shape`), or None. Unit indices ``q`` are then raster positions of the padded
            grid; discrete lists, connections and reach count real targets only, population entries
            target every position of the padded grid (so a convolution's border sources share the
            interior's entry).
    """

    def __init__(self, proj: dict, mask, target_shape, target_block=None, source_block=None, target_pad=None):
        self.ops = proj["ops"]
        self.src_shape = tuple(int(v) for v in proj["source_shape"])
        self.tgt_shape = tuple(int(v) for v in target_shape)
        self.tgt_block = target_block
        self.pad = tuple(int(v) for v in target_pad) if target_pad else None
        if self.pad and not any(op["op"] == "conv2d" for op in self.ops):
            raise SnncError("a padded target layout is only for convolutions")
        self.map_shape = padded_shape(self.tgt_shape, self.pad)
        self.kind = "conv" if any(op["op"] == "conv2d" for op in self.ops) else "dense"
        self.kpy, self.kpx = pool_factor(self.ops)
        self.kp2 = self.kpy * self.kpx
        mask = np.asarray(mask) != 0
        self.nnz_total = int(mask.sum())
        self.spatial_src = is_spatial(self.src_shape)
        if self.spatial_src:
            c, h, w = self.src_shape
            self.pooled = (c, h // self.kpy, w // self.kpx)
        else:
            self.pooled = (int(np.prod(self.src_shape)),)
        # populations: one position of a channel block of a (C, H, W) source, or consecutive neurons of a 1-D one
        self.src_block = source_block if source_block else None
        if self.src_block:
            c = self.src_shape[0]
            self.js_bounds = [(a, min(c, a + self.src_block)) for a in range(0, c, self.src_block)]
            self.atoms = np.array([b - a for a, b in self.js_bounds], np.int64)
        self._blk_cache: dict = {}
        if self.kind == "conv":
            self._init_conv(mask)
        else:
            self._init_dense(mask)

    # ------------------------------------------------------------------ geometry
    def _init_conv(self, mask):
        op = next(o for o in self.ops if o["op"] == "conv2d")
        cd, hd, wd = self.tgt_shape
        cs, ph, pw = self.pooled
        g = int(op.get("groups", 1))
        co, cig, kh, kw = mask.shape
        full = np.zeros((co, cs, kh, kw), bool)
        opg, ipg = co // g, cs // g
        for gi in range(g):
            full[gi * opg:(gi + 1) * opg, gi * ipg:(gi + 1) * ipg] = mask[gi * opg:(gi + 1) * opg]
        self.nz = full.reshape(co, cs, kh * kw)
        self.T = kh * kw
        (sy, sx), (py_, px_), (dy, dx) = op["stride"], op["padding"], op["dilation"]

        pt, pb, pl, pr = self.pad or (0, 0, 0, 0)

        def taps(n_in, k, s, p, d, n_out, lo, hi):
            """Per source index and tap: the target index on the (padded) grid, -1 where none, and
            whether it is a real target."""
            o = np.full((n_in, k), -1, np.int64)
            real = np.zeros((n_in, k), bool)
            for i in range(n_in):
                for t in range(k):
                    num = i + p - t * d
                    if num % s == 0 and -lo <= num // s < n_out + hi:
                        o[i, t] = num // s + lo
                        real[i, t] = 0 <= num // s < n_out
            return o, real
        oy, ry = taps(ph, kh, sy, py_, dy, hd, pt, pb)
        ox, rx = taps(pw, kw, sx, px_, dx, wd, pl, pr)
        wg = wd + pl + pr                                           # width of the (padded) grid
        # per tap t = (ky, kx): target position of every pooled source pixel, -1 where none
        ty, tx = np.repeat(np.arange(kh), kw), np.tile(np.arange(kw), kh)
        oyt, oxt = oy[:, ty].T, ox[:, tx].T                       # [T, ph], [T, pw]
        self.qpos = oyt[:, :, None] * wg + oxt[:, None, :]          # [T, ph, pw]
        self.valid = (oyt[:, :, None] >= 0) & (oxt[:, None, :] >= 0)
        self.qpos = np.where(self.valid, self.qpos, -1)
        # real targets (all valid ones without padding): what discrete lists, connections and reach count
        self.real = self.valid & ry[:, ty].T[:, :, None] & rx[:, tx].T[:, None, :] if self.pad else None
        oyv = np.where(oyt >= 0, oyt, np.iinfo(np.int64).max)
        self.row_min = oyv.min(0)                                   # per pooled row: first target row
        self.row_max = oyt.max(0)                                   # last target row (-1: none)
        self.wd = wg

    def _init_dense(self, mask):
        f = int(np.prod(self.pooled))
        m = mask.reshape(mask.shape[0], -1)
        if m.shape[1] != f:
            raise SnncError(f"dense weight of {m.shape[1]} inputs after pooling/flatten, source gives {f}")
        self.cum = np.zeros((m.shape[0] + 1, f), np.int32)
        np.cumsum(m, axis=0, out=self.cum[1:])
        if self.src_block:
            c, ph, pw = self._pooled3
            mm = m.reshape(m.shape[0], c, ph * pw)
            starts = np.array([a for a, _ in self.js_bounds])
            anyb = np.logical_or.reduceat(mm, starts, axis=1)                     # [N, n_js, ph*pw]
            self.cum_any = np.zeros((m.shape[0] + 1, anyb.shape[1] * anyb.shape[2]), np.int32)
            np.cumsum(anyb.reshape(m.shape[0], -1), axis=0, out=self.cum_any[1:])

    @property
    def _pooled3(self) -> tuple:
        """The pooled source as ``(C, H, W)``: a 1-D source of N neurons is ``(N, 1, 1)``."""
        return self.pooled if len(self.pooled) == 3 else (int(self.pooled[0]), 1, 1)

    # ------------------------------------------------------------------ per target block
    def _block(self, j):
        if j not in self._blk_cache:
            c0 = j * layout_of(self.tgt_shape, self.tgt_block)[2]
            c1 = c0 + block_size(self.tgt_shape, self.tgt_block, j)
            nzj = self.nz[c0:c1]
            nnz = nzj.sum(0).astype(np.float32)                      # [cs, T]
            nany = None
            if self.src_block:
                starts = np.array([a for a, _ in self.js_bounds])
                nany = np.maximum.reduceat(nzj.view(np.uint8), starts, axis=1).sum(0).astype(np.float32)
            self._blk_cache[j] = (nnz, nany)
        return self._blk_cache[j]

    @property
    def population_ok(self) -> bool:
        return self.src_block is not None and (self.kind == "dense" or self.T <= 62)

    # ------------------------------------------------------------------ counting
    def conv_terms(self, j: int, q0: int, q1: int):
        """Pooled rows reached, tap indicator ``A [T, rows*pw]`` and per-pixel base positions."""
        wd = self.wd
        r0, r1 = q0 // wd, (q1 - 1) // wd
        rows = np.nonzero((self.row_max >= r0) & (self.row_min <= r1))[0]
        if rows.size == 0:
            return None
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        q = self.qpos[:, y0:y1]
        a = (q >= q0) & (q < q1)
        return y0, y1, a, q

    def _real(self, y0, y1, a):
        """The taps of ``a`` that reach real targets (``a`` itself without padding)."""
        return a if self.real is None else a & self.real[:, y0:y1]

    def stats(self, j: int, q0: int, q1: int, formats=(DISCRETE, POPULATION)) -> RangeStats:
        """Counts into units ``[q0, q1)`` of target block ``j``."""
        if self.kind == "conv":
            return self._conv_stats(j, q0, q1, formats)
        return self._dense_stats(j, q0, q1, formats)

    def _conv_stats(self, j, q0, q1, formats):
        terms = self.conv_terms(j, q0, q1)
        if terms is None:
            return RangeStats(0, {DISCRETE: 0, POPULATION: 0}, np.zeros(1, np.int64), self.kp2)
        y0, y1, a, q = terms
        nnz, nany = self._block(j)
        T, ny, pw = a.shape
        af = a.reshape(T, -1).astype(np.float32)
        ar = af if self.real is None else self._real(y0, y1, a).reshape(T, -1).astype(np.float32)
        counts = np.rint(nnz @ ar).astype(np.int64)                # [cs, pixels]
        hist = np.bincount(counts.ravel())
        syn = int(counts.sum()) * self.kp2
        axons = {DISCRETE: int(np.count_nonzero(counts)) * self.kp2}
        st = RangeStats(syn, axons, hist, self.kp2)
        if POPULATION in formats and self.population_ok:
            L = np.rint(nany @ af).astype(np.int64)               # [n_js, pixels]: entry rows (padding too)
            has = L > 0 if self.real is None else np.rint(nany @ ar) > 0   # an axon where a real target is
            axons[POPULATION] = int(has.sum()) * self.kp2
            tm = (a.reshape(T, -1).astype(np.int64) << np.arange(T, dtype=np.int64)[:, None]).sum(0)
            base = np.where(a, q, np.iinfo(np.int64).max).reshape(T, -1).min(0) - q0
            js, px = np.nonzero(has)
            tm_u, tm_id = np.unique(tm, return_inverse=True)
            pat = js * len(tm_u) + tm_id.reshape(-1)[px]
            base = base[px] if self.pad is None else \
                self._planar_base(j, q0, q1, a.reshape(T, -1), q.reshape(T, -1), js, px)
            st.entries = (pat, js, base, L[js, px])
        return st

    def _planar_base(self, j, q0, q1, a, q, js, px) -> np.ndarray:
        """A padded (planar) range's entry bases in compartments from the range start: channel ``c`` of the
        range sits ``c * (q1 - q0)`` further on, so an entry's base is at its first channel with a target
        (a later one than the block's first where a grouped convolution or an all-zero filter leaves the
        first without)."""
        key = ("planar", j)
        if key not in self._blk_cache:
            c0 = j * layout_of(self.tgt_shape, self.tgt_block)[2]
            c1 = c0 + block_size(self.tgt_shape, self.tgt_block, j)
            starts = np.array([s for s, _ in self.js_bounds])
            nzc = np.maximum.reduceat(self.nz[c0:c1].view(np.uint8), starts, axis=1).astype(bool)   # [cb, n_js, T]
            # the block's first channel reaches every (atom block, tap) any channel does: bases need no channel
            self._blk_cache[key] = (nzc, bool((nzc[0] == nzc.any(0)).all()))
        nzc, first_full = self._blk_cache[key]
        if first_full:
            return np.where(a[:, px], q[:, px], np.iinfo(np.int64).max).min(0) - q0
        hit = nzc[:, js, :] & a[:, px].T[None]                    # [cb, entries, T]: targets per channel and tap
        has_c = hit.any(2)
        c_first = np.argmax(has_c, axis=0)                        # [entries]
        taps = hit[c_first, np.arange(len(js))]                   # [entries, T]
        qmin = np.where(taps, q[:, px].T, np.iinfo(np.int64).max).min(1)
        return c_first * (q1 - q0) + qmin - q0

    def _dense_stats(self, j, q0, q1, formats):
        cnt = (self.cum[q1] - self.cum[q0]).astype(np.int64)      # per pooled flat source
        hist = np.bincount(cnt)
        st = RangeStats(int(cnt.sum()) * self.kp2, {DISCRETE: int(np.count_nonzero(cnt)) * self.kp2}, hist, self.kp2)
        if POPULATION in formats and self.population_ok:
            L = (self.cum_any[q1] - self.cum_any[q0]).astype(np.int64).reshape(len(self.atoms), -1)
            has = L > 0
            st.axons[POPULATION] = int(has.sum()) * self.kp2
            st.pop_hist = np.bincount((L * self.atoms[:, None])[has])
        return st

    def reach(self, j: int, q0: int, q1: int, fmt: str) -> np.ndarray:
        """Which sources reach the range: bool over pooled sources (discrete: ``pooled`` shape),
        or over pooled populations ``[n_js, ph, pw]`` (population)."""
        if self.kind == "conv":
            terms = self.conv_terms(j, q0, q1)
            nnz, nany = self._block(j)
            cs, ph, pw = self.pooled
            if fmt == POPULATION:
                out = np.zeros((len(self.atoms), ph, pw), bool)
            else:
                out = np.zeros((cs, ph, pw), bool)
            if terms is None:
                return out
            y0, y1, a, _ = terms
            a = self._real(y0, y1, a)
            af = a.reshape(a.shape[0], -1).astype(np.float32)
            w = nany if fmt == POPULATION else nnz
            out[:, y0:y1] = ((w @ af) > 0.5).reshape(out.shape[0], y1 - y0, pw)
            return out
        if fmt == POPULATION:
            c, ph, pw = self._pooled3
            return ((self.cum_any[q1] - self.cum_any[q0]) > 0).reshape(len(self.atoms), ph, pw)
        return ((self.cum[q1] - self.cum[q0]) > 0).reshape(self.pooled)

    def counts_real(self, j: int, q0: int, q1: int) -> np.ndarray:
        """Synapses from every real source neuron (C order) into the range."""
        if self.kind == "conv":
            out = self._conv_counts(j, q0, q1).astype(np.float64)
        else:
            out = (self.cum[q1] - self.cum[q0]).astype(np.float64).reshape(self.pooled)
        return self.expand(out).reshape(-1)

    def _conv_counts(self, j: int, q0: int, q1: int, padding: bool = False) -> np.ndarray:
        """Synapses per pooled source ``[C, ph, pw]`` (int64) of a convolution into units ``[q0, q1)`` of block
        ``j``: into its real targets, or (``padding``) into a padded layout's padding compartments."""
        cs, ph, pw = self._pooled3
        out = np.zeros((cs, ph, pw), np.int64)
        terms = self.conv_terms(j, q0, q1) if (self.pad or not padding) else None
        if terms is not None:
            y0, y1, a, _ = terms
            a = a & ~self.real[:, y0:y1] if padding else self._real(y0, y1, a)
            nnz, _ = self._block(j)
            out[:, y0:y1] = np.rint(nnz @ a.reshape(a.shape[0], -1).astype(np.float32)).reshape(cs, y1 - y0, pw)
        return out

    def expand(self, pooled: np.ndarray) -> np.ndarray:
        """Pooled-source array ``[n, ph, pw]`` -> real source pixels ``[n, h, w]`` (1-D unchanged)."""
        if pooled.ndim != 3 or self.kp2 == 1:
            return pooled
        return np.repeat(np.repeat(pooled, self.kpy, axis=1), self.kpx, axis=2)

    # ------------------------------------------------------------------ memory
    def memory(self, st: RangeStats, fmt: str, bits_per_weight: int, synfmt: dict, offset: int = 0,
               unit_neurons: int = 1, cx_base_max: int = 256) -> tuple[int, int]:
        """``(bits, stored synapses)`` of a range in format ``fmt``; ``offset``: where the range starts
        on its core (population entries beyond ``cx_base_max`` need their own copy)."""
        if fmt == DISCRETE:
            h = st.hist
            stored = int(np.dot(np.arange(len(h)), h)) * st.kp2
            return hist_bits(h, bits_per_weight, synfmt) * st.kp2, stored
        if self.kind == "dense":
            h = st.pop_hist
            if h is None:
                return 0, 0
            return hist_bits(h, bits_per_weight, synfmt), int(np.dot(np.arange(len(h)), h))
        if st.entries is None or len(st.entries[0]) == 0:
            return 0, 0
        key = (offset, unit_neurons, cx_base_max)
        n = st.entry_sizes.get(key)
        if n is None:  # distinct entries do not depend on the index width: counted once per offset
            pat, js, base, L = st.entries
            blk = (offset + base * unit_neurons) // cx_base_max
            _, first = np.unique(pat * (int(blk.max()) + 1) + blk, return_index=True)
            n = st.entry_sizes[key] = self.atoms[js[first]] * L[first]
        return int(list_bits(n, bits_per_weight, synfmt).sum()), int(n.sum())

    def lower_bound_bits(self, bits_per_weight: int, synfmt: dict, allow_population: bool) -> tuple[int, int, int]:
        """Lower bounds over all mappings: ``(memory bits, input axons, output-axon slots)``.

        Memory: discrete stores each source's synapses as one list at least (splitting only adds
        headers), at the smallest index width; population stores every non-zero kernel weight at
        least once. Axons: every source (population) with a synapse needs one input axon and one
        output slot (two for pop32) somewhere.
        """
        n_pos = layout_of(self.map_shape, self.tgt_block)[1]
        nblocks = len(block_starts(self.tgt_shape, self.tgt_block)) - 1
        if self.kind == "conv":
            reach = np.zeros(self.pooled, bool)
            cnt = np.zeros(self.pooled, np.int64)
            popr = np.zeros((len(self.atoms),) + self.pooled[1:], bool) if self.population_ok else None
            for j in range(nblocks):
                c = self._conv_counts(j, 0, n_pos)
                cnt += c
                if popr is not None:
                    popr |= self.reach(j, 0, n_pos, POPULATION)
            reach = cnt > 0
        else:
            cnt = (self.cum[-1] - self.cum[0]).astype(np.int64).reshape(self.pooled)
            reach = cnt > 0
            popr = self.reach(0, 0, n_pos, POPULATION) if self.population_ok else None
        mem_d = int(list_bits(cnt[reach], bits_per_weight, synfmt).sum()) * self.kp2
        ax_d = int(reach.sum()) * self.kp2
        mem, ax, out = mem_d, ax_d, ax_d
        if allow_population and popr is not None:
            mem = min(mem, self.nnz_total * bits_per_weight)
            ax = min(ax, int(popr.sum()) * self.kp2)
            out = min(out, 2 * int(popr.sum()) * self.kp2)
        return mem, ax, out

    def padding_counts(self, j: int, q0: int, q1: int) -> np.ndarray:
        """A padded layout: synapses from every real source neuron (C order) into the padding compartments
        of units ``[q0, q1)`` of block ``j`` (the entries' rows address them; each spike drives them too)."""
        return self.expand(self._conv_counts(j, q0, q1, padding=True).astype(np.float64)).reshape(-1)


# ---------------------------------------------------------------------------------------------- slices
def slice_masks(shape, perm, bounds) -> torch.Tensor:
    n = int(np.prod(shape))
    m = torch.zeros((len(bounds), n), dtype=torch.float32)
    for k, (a, b) in enumerate(bounds):
        m[k, torch.as_tensor(perm[a:b])] = 1.0
    return m.reshape((len(bounds),) + tuple(shape))


def count_slices(group_cfg: dict, chip_projs: list, mask_weights: list, bounds) -> dict:
    """Per on-chip projection ``i``: ``[K slices, source size]`` float32 synapse counts (C order of
    the source) for neuron ranges ``bounds`` in the group's core order."""
    shape = tuple(group_cfg["shape"])
    block = group_cfg.get("channel_block")
    units = [range_to_units(shape, block, a, b) for a, b in bounds]
    out = {}
    for i, (p, mw) in enumerate(zip(chip_projs, mask_weights)):
        if all(u is not None for u in units):
            pc = ProjCounter(p, np.asarray(mw), shape, block)
            out[i] = torch.as_tensor(np.stack([pc.counts_real(*u) for u in units]).astype(np.float32)) \
                if units else torch.zeros((0, int(np.prod(p["source_shape"]))))
        else:  # ranges that are not whole units: count through the ops (autograd)
            masks = slice_masks(shape, neuron_order(shape, block), bounds)
            out[i] = synapse_counts(p["ops"], torch.as_tensor(np.asarray(mw, np.float32)), p["source_shape"],
                                    shape, masks)
    return out


# ---------------------------------------------------------------------------------------------- geometry
def core_position(core, chip: dict):
    """(chip, x, y) of core id(s) on the tile mesh; chips side by side east-west (snnc assumption).
    Works on ints and numpy arrays."""
    c, local = np.divmod(core, chip["cores"])
    tile = local // chip["cores_per_tile"]
    tx, ty = tile % chip["tiles_x"], tile // chip["tiles_x"]
    return c, c * chip["tiles_x"] + tx, ty


def _route_matrix(n_cores: int, chip: dict, in_tile: float, ew: float, ns: float, per_chip: float) -> np.ndarray:
    c, x, y = core_position(np.arange(n_cores), chip)
    return (in_tile + ew * np.abs(x[:, None] - x[None, :]) + ns * np.abs(y[:, None] - y[None, :]) +
            per_chip * np.abs(c[:, None] - c[None, :]))


def spike_cost_matrix(n_cores: int, chip: dict, energy: dict, interchip: dict | None = None) -> np.ndarray:
    """``[src core, dst core]`` energy of one spike message in pJ: within-tile cost plus E-W / N-S
    tile hops (Davies 2018 Table 2), plus ``interchip["energy_pJ"]`` per chip boundary crossed."""
    return _route_matrix(n_cores, chip, energy["spike_in_tile"], energy["hop_ew"], energy["hop_ns"],
                         (interchip or {}).get("energy_pJ", 0.0))


def spike_latency_matrix(n_cores: int, chip: dict, latency: dict, interchip: dict) -> np.ndarray:
    """``[src core, dst core]`` latency of one spike message in ns (Davies 2018 Table 2 + the
    inter-chip assumption)."""
    return _route_matrix(n_cores, chip, latency["spike_in_tile"], latency["hop_ew"], latency["hop_ns"],
                         interchip["latency_ns"])


def chip_crossings(n_cores: int, chip: dict) -> np.ndarray:
    c, _, _ = core_position(np.arange(n_cores), chip)
    return np.abs(c[:, None] - c[None, :])


def ceil_div(a, b) -> int:
    return -(-int(a) // int(b))


__all__ = ["DISCRETE", "POPULATION", "ProjCounter", "RangeStats", "axon_bits",
           "block_starts", "ceil_div", "core_position", "count_slices", "hist_bits", "index_bits",
           "layout_of", "list_bits", "neuron_order", "range_to_units", "spike_cost_matrix", "spike_latency_matrix",
           "target_section", "chip_crossings", "is_spatial", "block_size", "slice_masks", "pool_factor",
           ]
