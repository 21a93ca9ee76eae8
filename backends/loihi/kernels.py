"""Compiled CPU kernel of loihi-sim's compartment update: a group's neurons over a window of steps.

:func:`lif_window` does, for every sample, compartment and step of a window, what
:mod:`snnc.backends.loihi.sim`'s tensor path does in a dozen whole-tensor operations per step
-- the exponent shift of the synaptic sum, the 16-bit input check, the current and voltage
decays, the 24-bit wrap of u and saturation of v, the threshold, the reset, the spike and
activity counts -- in integer (int64) arithmetic, the same as lava-nc ``PyLifModelBitAcc``
(``src/lava/proc/lif/models.py``)::

    a = acc << weight_exp    (floor of acc / 2^-weight_exp when negative)
    u = sign(u) * (|u| * (2^12 - du_eff) >> 12) + (a << 6);   wrapped to 24-bit signed
    v = sign(v) * (|v| * (2^12 - dv_eff) >> 12) + u + bias;   clipped to +-(2^23 - 1)
    spike = v > vth;  v = 0 where spike

A feed-forward network is simulated layer by layer (all steps of a window for one group, then
the next group, whose synaptic sums for the whole window are one batched torch operation), so a
compartment's u and v stay in the core's cache across the steps instead of streaming through
memory once per step and operation. Compiled with numba (``parallel=True``: the neurons are
split in chunks over numba's threads, each chunk owning its counters, so results do not depend
on the thread count; ``cache=True``: compiled once per machine).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

#: neurons per inner block: the block's u and v (2 x 8 bytes each) stay in L1 across a window's steps
BLOCK = 512


@njit(inline="always", cache=True)
def _decay(x, f, mask, dbits):  # pragma: no cover - compiled
    """``sign(x) * ((|x| * f) >> dbits)`` with shifts: the product truncated toward zero (Lava's decay)."""
    y = x * f
    return (y + ((y >> 63) & mask)) >> dbits


@njit(inline="always", cache=True)
def _fire(vv, th, half):  # pragma: no cover - compiled
    """v clipped to the 24-bit range, compared with the threshold and reset: ``(v, spiked, clipped)``."""
    sat = (vv > half - 1) | (vv < 1 - half)
    vv = min(max(vv, 1 - half), half - 1)
    s = vv > th
    return (0 if s else vv), s, sat


@njit(parallel=True, cache=True, nogil=True)
def lif_window(v, u, acc, acc_t0, acc_exp, code, host_tab, bias_const, du, dv, vth, half, a_lim, act_shift, dbits,
               spikes, n_spk, n_act, stats, rec_u, rec_v, read_t, v_read):  # pragma: no cover
    """Steps ``0..W-1`` of a window for one group, in place.

    Args:
        v, u: int64 ``[B, N]`` voltage and current at the window's start (updated to its end).
        acc: ``[A, B, N]`` synaptic sums before the exponent shift (float32 holding exact integers,
            or int64) of window steps ``acc_t0 .. acc_t0 + A - 1``; no spike arrives at the other steps
            (``A = 0``: none in the window).
        acc_exp: weight exponent applied to ``acc`` (left shift; a negative one floors).
        code: int64 ``[W]``, the bias of each step: -2 none (the group rests), -1 ``bias_const``,
            ``h >= 0`` the host's bias ``host_tab[h]``.
        host_tab: int64 ``[H, B or 1, N]`` host-computed biases; bias_const: int64 ``[N]``.
        du, dv: int64 ``[N]`` effective decays ``du + 1`` and ``dv``; vth: int64 ``[N]`` (``vth_mant << 6``).
        half: 2^(uv_bits - 1) (2^23); a_lim: 2^(syn_input_bits - 1) - 1; act_shift: 6; dbits: 12.
        spikes: uint8 ``[W, B, N]`` (written: 1 where the compartment spiked).
        n_spk, n_act: int64 ``[N]`` spike and active-update counts (incremented).
        stats: int64 ``[K, 4]`` per neuron chunk: largest |a|, a beyond 16 bits, u wraps, v
            saturations (written; K sets the number of chunks).
        rec_u, rec_v: int64 ``[W, B, N]`` to record u and v after each step, or ``[0, 1, 1]``.
        read_t: int64 ``[R]``, window steps whose v is copied to ``v_read[r]`` (``[R, B, N]``); -1: none.
    """
    W, B, N = spikes.shape
    one = np.int64(1) << dbits
    mask = one - 1
    A = acc.shape[0]
    rec = rec_u.shape[0] == W
    per_sample = host_tab.shape[1] > 1
    zeros = np.zeros(N, np.int64)
    acc_none = np.zeros(0, acc.dtype)
    u_mem = False
    for i in range(N):
        u_mem |= du[i] < one
    K = stats.shape[0]
    per = (N + K - 1) // K
    for k in prange(K):
        c0 = k * per
        c1 = min(N, c0 + per)
        max_in = np.int64(0)
        over = np.int64(0)
        wraps = np.int64(0)
        sats = np.int64(0)
        for b in range(B):
            hb = b if per_sample else 0
            for n0 in range(c0, c1, BLOCK):
                n1 = min(c1, n0 + BLOCK)
                # 1-D contiguous views: the inner loop vectorises
                vb, ub = v[b, n0:n1], u[b, n0:n1]
                dub, dvb, thb = du[n0:n1], dv[n0:n1], vth[n0:n1]
                nsb, nab = n_spk[n0:n1], n_act[n0:n1]
                for t in range(W):
                    c = code[t]
                    if c == -1:
                        bias = bias_const[n0:n1]
                    elif c >= 0:
                        bias = host_tab[c, hb, n0:n1]
                    else:
                        bias = zeros[n0:n1]
                    has_acc = acc_t0 <= t < acc_t0 + A
                    ab_t = acc[t - acc_t0, b, n0:n1] if has_acc else acc_none
                    sp = spikes[t, b, n0:n1]
                    if has_acc:
                        for i in range(n1 - n0):
                            a = np.int64(ab_t[i])
                            a = (a << acc_exp) if acc_exp >= 0 else (a >> (-acc_exp))
                            max_in = max(max_in, a if a >= 0 else -a)
                            over += (a > a_lim) | (a < -a_lim)
                            uu = _decay(ub[i], one - dub[i], mask, dbits) + (a << act_shift)
                            wraps += (uu > half) | (uu <= -half)
                            uu -= 2 * half * (uu > half)
                            uu += 2 * half * (uu <= -half)
                            vv, s, sat = _fire(_decay(vb[i], one - dvb[i], mask, dbits) + uu + bias[i], thb[i], half)
                            sats += sat
                            nsb[i] += s
                            nab[i] += s | (vv != 0) | (uu != 0)
                            sp[i], ub[i], vb[i] = s, uu, vv
                    elif u_mem:  # no spike arrives: u only decays (it cannot wrap)
                        for i in range(n1 - n0):
                            uu = _decay(ub[i], one - dub[i], mask, dbits)
                            vv, s, sat = _fire(_decay(vb[i], one - dvb[i], mask, dbits) + uu + bias[i], thb[i], half)
                            sats += sat
                            nsb[i] += s
                            nab[i] += s | (vv != 0) | (uu != 0)
                            sp[i], ub[i], vb[i] = s, uu, vv
                    else:  # no input and no current memory: u is 0, not read
                        for i in range(n1 - n0):
                            vv, s, sat = _fire(_decay(vb[i], one - dvb[i], mask, dbits) + bias[i], thb[i], half)
                            sats += sat
                            nsb[i] += s
                            nab[i] += s | (vv != 0)
                            sp[i], ub[i], vb[i] = s, 0, vv
                    if rec:
                        rec_u[t, b, n0:n1] = ub
                        rec_v[t, b, n0:n1] = vb
                    for r in range(read_t.shape[0]):
                        if t == read_t[r]:
                            v_read[r, b, n0:n1] = vb
        stats[k, 0] = max_in
        stats[k, 1] = over
        stats[k, 2] = wraps
        stats[k, 3] = sats


@njit(parallel=True, cache=True, nogil=True)
def sum_pool(x, k):  # pragma: no cover - compiled
    """Sum-pooling of ``[M, C, H, W]`` spikes (uint8, or float32 0/1) over ``k x k`` windows with stride ``k``
    (no padding; the last rows and columns that do not fill a window are dropped, as
    ``torch.nn.functional.avg_pool2d`` with ``divisor_override=1``). Returns float32 ``[M, C, H // k, W // k]``,
    exact (small integer sums)."""
    M, C, H, W = x.shape
    Ho, Wo = H // k, W // k
    out = np.zeros((M, C, Ho, Wo), np.float32)
    for mc in prange(M * C):
        m = mc // C
        c = mc % C
        for y in range(Ho * k):
            row = x[m, c, y]
            o = out[m, c, y // k]
            for xo in range(Wo):
                acc = np.float32(0)
                for j in range(k):
                    acc += np.float32(row[xo * k + j])
                o[xo] += acc
    return out
