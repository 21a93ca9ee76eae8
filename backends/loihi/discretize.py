"""Loihi's fixed-point fields: how float weights, biases and decays become the integers a core holds.

The split follows nengo-loihi (``builder/discretize.py``: discretisation apart from deciding the
scales). The ``quantize`` pass decides the scales; it reaches these rules through its target
(:attr:`snnc.targets.Target.fixed_point`), never by importing this backend. Every constant is the
target file's (``[fixed_point]`` and ``[synapse_format]`` of ``snnc/targets/loihi-sim.toml``, sources
there): the weight mantissa has ``synapse_format.weight_bits`` bits (Loihi 1: 8, stored as even numbers
in ``[-2^8, 2^8 - 2]``: lava-nc ``truncate_weights`` drops one LSB of a mixed-sign weight), the real
exponent is ``act_shift + weight_exp`` with ``weight_exp`` in ``weight_exp_min..weight_exp_max``,
biases have a ``bias_mant_bits`` signed mantissa and an exponent ``bias_exp_min..bias_exp_max``
(``bias_exp_min`` 0 unless set: 6 for ``--target lava``, netx's fixed exponent), decays are
``decay_bits``-bit fields with the offsets ``ds_offset``/``dm_offset`` (lava-nc
``src/lava/proc/lif/models.py`` ``AbstractPyLifModelFixed``).
"""
from __future__ import annotations

import math

import numpy as np

from snnc.errors import SnncError


class FixedPoint:
    """The fixed-point rules of a loihi-backend target. ``fp["key"]`` reads its ``[fixed_point]`` table;
    ``mantissa_bits`` is ``[synapse_format].weight_bits``."""

    def __init__(self, target):
        self.fp = dict(target["fixed_point"])
        self.mantissa_bits = int(target["synapse_format"]["weight_bits"])
        #: the most negative weight mantissa; the largest is ``wmax - weight_step(bits)``
        self.wmax = 2 ** self.mantissa_bits

    def __getitem__(self, key):
        return self.fp[key]

    def weight_step(self, weight_bits: int) -> int:
        """Spacing of representable mixed-sign weights with ``weight_bits`` of the mantissa (lava-nc
        ``truncate_weights``: 2 for the full width, coarser for fewer bits).

        Raises:
            SnncError: ``weight_bits`` outside 1..the format's width.
        """
        if not 1 <= weight_bits <= self.mantissa_bits:
            raise SnncError(f"weight_bits must be 1..{self.mantissa_bits}, got {weight_bits}")
        return 2 ** (self.mantissa_bits - weight_bits + 1)

    def qmax(self, weight_bits: int) -> int:
        """The largest weight mantissa with ``weight_bits`` (254 for 8 of 8 bits)."""
        return self.wmax - self.weight_step(weight_bits)

    def quantize_weights(self, w: np.ndarray, scale: float, weight_bits: int) -> tuple[np.ndarray, int]:
        """Float composite weights -> (int32 mantissas, weight_exp): the smallest exponent in range with
        ``max|w| * scale / 2^(act_shift + e) <= qmax``."""
        m = float(np.abs(w).max()) if w.size else 0.0
        qmax = self.qmax(weight_bits)
        if m == 0:
            return np.zeros(w.shape, np.int32), 0
        e = math.ceil(math.log2(m * scale / (2 ** self.fp["act_shift"] * qmax)) - 1e-12)
        e = int(min(max(e, self.fp["weight_exp_min"]), self.fp["weight_exp_max"]))
        step = self.weight_step(weight_bits)
        q = step * np.rint(w * scale / 2 ** (self.fp["act_shift"] + e) / step)
        return np.clip(q, -self.wmax, qmax).astype(np.int32), e

    def quantize_rows(self, w: np.ndarray, scale_rows, e: int, weight_bits: int) -> tuple[np.ndarray, int]:
        """Weights with a per-row scale (scalar or ``[O]``) at exponent ``e`` -> (int32 mantissas, number
        of weights clipped to the mantissa range)."""
        step = self.weight_step(weight_bits)
        qmax = self.wmax - step
        s = np.asarray(scale_rows, np.float64).reshape((-1,) + (1,) * (w.ndim - 1)) if np.ndim(scale_rows) \
            else scale_rows
        r = step * np.rint(w * s / 2 ** (self.fp["act_shift"] + e) / step)
        clipped = int(np.sum((r > qmax) | (r < -self.wmax)))
        return np.clip(r, -self.wmax, qmax).astype(np.int32), clipped

    def grid(self, w_rows: np.ndarray, unit: np.ndarray, weight_bits: int) -> np.ndarray:
        """Fake-quantize rows on the mantissa grid: ``unit`` (per row, ``[O, 1]``) is the value of one
        mantissa LSB; mantissas are multiples of the step in ``[-wmax, qmax]``."""
        step = self.weight_step(weight_bits)
        return np.clip(step * np.rint(w_rows / (unit * step)), -self.wmax, self.wmax - step) * unit

    def fit_exp(self, w_rows: np.ndarray, scale_rows: np.ndarray, qmax: int) -> int:
        """Smallest exponent in range at which every row's largest |weight| (``w_rows`` ``[O, K]``) fits."""
        m = (np.abs(w_rows).max(1) * scale_rows)
        m = float(m.max()) if m.size else 0.0
        if m == 0:
            return 0
        e = math.ceil(math.log2(m / (2 ** self.fp["act_shift"] * qmax)) - 1e-12)
        return int(min(max(e, self.fp["weight_exp_min"]), self.fp["weight_exp_max"]))

    def split_bias(self, b_int: np.ndarray) -> tuple[np.ndarray, int]:
        """Integer biases -> (int32 mantissa, exponent): the smallest exponent in ``bias_exp_min..bias_exp_max``
        whose mantissa fits ``bias_mant_bits`` signed bits (``bias_exp_min``: 0 unless the target sets it; the
        netx export sets 6, lava-dl netx's fixed bias exponent)."""
        mmax = 2 ** (self.fp["bias_mant_bits"] - 1) - 1
        m = float(np.abs(b_int).max()) if np.size(b_int) else 0.0
        e = int(self.fp.get("bias_exp_min", 0))
        while m / 2 ** e > mmax and e < self.fp["bias_exp_max"]:
            e += 1
        mant = np.clip(np.rint(np.asarray(b_int, np.float64) / 2 ** e), -mmax - 1, mmax).astype(np.int32)
        return mant, e

    def decays(self, name: str, alpha: np.ndarray, beta: np.ndarray, per_neuron: bool = False):
        """Per-step current and voltage decay factors -> (du, dv) fields of ``decay_bits`` bits: two ints when
        every neuron of the group has the same, else (``per_neuron``) two int64 arrays shaped like ``alpha``
        (a compartment profile per distinct pair; Loihi 1 holds 32 per core, nengo-loihi
        ``MAX_COMPARTMENT_CFGS``: the ``CORE_COMPARTMENT_PROFILES`` rule checks it per core).

        Raises:
            SnncError: per-neuron time constants without ``per_neuron``.
        """
        one = 2 ** self.fp["decay_bits"]  # decay_unity (lava: 2**12)
        du = np.rint(one * (1 - np.asarray(alpha, np.float64))) - self.fp["ds_offset"]
        dv = np.rint(one * (1 - np.asarray(beta, np.float64))) - self.fp["dm_offset"]
        # a leaky neuron keeps at least the smallest leak (dv = 1): dv = 0 would need tau_mem = inf, which
        # NIR's r = tau_mem/dt parametrisation cannot hold (tau_mem >= 8192 dt rounds there)
        dv_min = np.where(np.asarray(beta) < 1, 1, 0)
        du = np.clip(du, 0, one - 1).astype(np.int64)
        dv = np.clip(dv, dv_min, one - 1).astype(np.int64)
        if np.ptp(du) or np.ptp(dv):
            if not per_neuron:
                raise SnncError(f"group {name!r}: per-neuron time constants differ; this step needs one du/dv per "
                                "group")
            return du, dv
        return int(du.flat[0]), int(dv.flat[0])
