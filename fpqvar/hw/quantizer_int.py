"""Bit-exact model of the accelerator's FP4 quantizer: scale stage -> threshold compare -> code.

The quantizer has two stages (hardware.md section 1: "7-8 comparisons per element after scaling"):

1. **Scale stage** (an FP32 divider, not generated as RTL here): ``q = |x| / s`` for a float32 element
   ``x`` and its float32 group scale ``s``, delivered as an unsigned fixed-point number with ``frac_bits``
   fractional bits, **rounded to odd** (truncate, then OR the discarded remainder into the LSB: the
   divider's sticky bit) and saturated to ``mag_bits`` bits. The grid midpoints are multiples of
   ``2**-(frac_bits - 1)``, one bit coarser than the LSB, so every comparison of this fixed-point value with
   a midpoint has the same outcome as the comparison of the exact real quotient ``|x| / s`` (proof in
   :func:`scale_to_fixed`). The stage is exact.
2. **Compare stage** (RTL: ``fpqvar.hw.rtl.quantizer``): the magnitude index is the number of midpoints
   passed, ``idx = sum_k [v > t_k]`` or ``[v >= t_k]`` depending on which side a tie at ``t_k`` goes; the
   code is ``sign << 3 | idx`` (the magnitude code of E2M1 / E1M2 is monotone in the value: index == code).

Tie rules (the names and meanings of ``fpqvar.formats.grid.ROUNDINGS``):

- ``"rne"``: a tie between magnitude indices ``k`` and ``k + 1`` goes to the even index (mantissa LSB 0), for
  both signs: ``>=`` at odd ``k``, ``>`` at even ``k``;
- ``"ties_up"``: ties go to the numerically larger grid value (upstream FPQVAR, fpqvar-method.md section 4):
  larger magnitude (``>=``) for positive ``x``, smaller magnitude (``>``) for negative ``x``.

Scales follow ``fpqvar.formats.scales``: ``s = fl32(absmax / max_value)`` in float32, and an all-zero
group gets ``s = 1`` (its codes are all 0). The sign bit is the float's sign bit, so ``-0.0`` gives code
``0b1000`` as ``fpqvar.formats.grid`` does.

DFQ (fpqvar-method.md section 6, fc2 input): per group, ``x <= 0`` goes to the negative half on E1M2
with ``s_neg = fl32(max|x_neg| / 1.75)``, ``x > 0`` to the positive half on E2M1 with
``s_pos = fl32(max x_pos / 6)``. The code's top bit selects the half (1 = negative / E1M2, 0 = positive /
E2M1); the low 3 bits are the magnitude code of the selected format. A zero result is coded ``0`` (as
``fpqvar.formats.dfq``: the negative-zero code ``0b1000`` is never produced), although zero inputs belong to
the negative half for the scale.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fpqvar.formats.spec import FloatFormat, get_format

__all__ = [
    "ROUNDINGS",
    "E2M1_FRAC_BITS",
    "E2M1_MAG_BITS",
    "DFQ_FRAC_BITS",
    "DFQ_MAG_BITS",
    "FIXED_POINT",
    "magnitude_grid",
    "thresholds_fixed",
    "tie_goes_up",
    "compare_stage",
    "scale_to_fixed",
    "absmax_scales",
    "quantize_groups",
    "quantize_groups_dfq",
    "dequantize_groups",
    "dequantize_groups_dfq",
]

ROUNDINGS = ("rne", "ties_up")  # same names and meanings as fpqvar.formats.grid.ROUNDINGS

# Fixed-point layout of the scale stage's output, (frac_bits, mag_bits) per quantizer:
# E2M1 midpoints are multiples of 1/4 -> 2 bits + 1 sticky bit; 3 integer bits (max 6).
# E1M2 midpoints are odd multiples of 1/8 -> 3 bits + 1 sticky bit; 1 integer bit (max 1.75).
# DFQ shares one input between its halves: 4 fractional bits (E1M2) and 3 integer bits (E2M1).
FIXED_POINT = {"e2m1": (3, 6), "e1m2": (4, 5), "dfq": (4, 7)}
E2M1_FRAC_BITS, E2M1_MAG_BITS = FIXED_POINT["e2m1"]
DFQ_FRAC_BITS, DFQ_MAG_BITS = FIXED_POINT["dfq"]

_FP4_NAMES = ("e2m1", "e1m2")


def _fp4(fmt: str | FloatFormat) -> FloatFormat:
    f = get_format(fmt)
    if f.name not in _FP4_NAMES:
        raise ValueError(f"the FP4 quantizer supports {_FP4_NAMES}, got format {f.name!r}")
    return f


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


@lru_cache(maxsize=None)
def magnitude_grid(fmt: str) -> tuple[float, ...]:
    """Values of the magnitude codes 0..7, ascending (checked: index == code is the monotone order)."""
    f = _fp4(fmt)
    mags = tuple(float(v) for v in f.code_values[: 1 << (f.bits - 1)])
    if any(b <= a for a, b in zip(mags, mags[1:])):
        raise AssertionError(f"{f.name}: magnitude codes are not monotone: {mags}")
    return mags


@lru_cache(maxsize=None)
def thresholds_fixed(fmt: str, frac_bits: int) -> tuple[int, ...]:
    """Midpoints between consecutive magnitudes, times ``2**frac_bits``; each must be an even integer."""
    g = magnitude_grid(fmt)
    out = []
    for a, b in zip(g, g[1:]):
        t = (a + b) / 2 * 2**frac_bits  # exact: dyadic values
        if t != int(t) or int(t) % 2:
            raise ValueError(f"{fmt}: midpoint {(a + b) / 2} needs more than frac_bits={frac_bits} - 1 bits")
        out.append(int(t))
    return tuple(out)


def tie_goes_up(rounding: str, negative: np.ndarray | bool, n_thresholds: int = 7) -> np.ndarray:
    """Bool ``(..., K)``: does a tie at midpoint ``k`` go to the larger magnitude index ``k + 1``?"""
    _check_rounding(rounding)
    neg = np.asarray(negative, dtype=bool)[..., None]
    k = np.arange(n_thresholds)
    if rounding == "rne":
        return np.broadcast_to(k % 2 == 1, neg.shape[:-1] + (n_thresholds,))
    return np.broadcast_to(~neg, neg.shape[:-1] + (n_thresholds,))


def compare_stage(v: np.ndarray, negative: np.ndarray, fmt: str, rounding: str, frac_bits: int) -> np.ndarray:
    """Magnitude index (0..7) of fixed-point magnitudes ``v`` (``frac_bits`` fraction bits, LSB = sticky)."""
    t = np.asarray(thresholds_fixed(_fp4(fmt).name, frac_bits), dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)[..., None]
    up = tie_goes_up(rounding, negative, len(t))
    passed = np.where(up, v >= t, v > t)
    return passed.sum(axis=-1).astype(np.uint8)


def scale_to_fixed(mag: np.ndarray, s: np.ndarray, frac_bits: int, mag_bits: int) -> np.ndarray:
    """Exact ``|x| / s`` as fixed point with ``frac_bits`` fractional bits, rounded to odd, saturated.

    ``v = 2 * floor(q * 2**(F-1)) + [q * 2**(F-1) not an integer]`` with ``q = mag / s``, ``F = frac_bits``.
    For a threshold ``t = 2m`` (``m`` an integer): ``v >= 2m  <=>  q >= m / 2**(F-1)`` and
    ``v > 2m  <=>  q > m / 2**(F-1)``, so the compare stage decides as on the exact quotient.
    Saturating at ``2**mag_bits - 1`` keeps every comparison since all thresholds lie below.

    Computed in float64 and corrected: ``r = fl(num / s)``; ``n * s`` is exact (n < 2**mag_bits, s has 24
    significant bits), so comparing it with ``num`` gives the exact floor and remainder test.
    """
    num = np.asarray(mag, dtype=np.float32).astype(np.float64) * 2.0 ** (frac_bits - 1)  # exact
    den = np.asarray(s, dtype=np.float32).astype(np.float64)
    if np.any(~(den > 0)) or np.any(~np.isfinite(num)):
        raise ValueError("scale_to_fixed: scales must be > 0 and magnitudes finite")
    vmax = (1 << mag_bits) - 1
    r = num / den
    sat = r >= 2.0 ** (mag_bits - 1)
    n = np.floor(np.where(sat, 0.0, r))
    prod = n * den
    floor_q = np.where(prod > num, n - 1, n)
    sticky = prod != num
    v = 2 * floor_q.astype(np.int64) + sticky.astype(np.int64)
    return np.where(sat, vmax, np.minimum(v, vmax)).astype(np.int64)


def _groups(x: np.ndarray, group_size: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] % group_size:
        raise ValueError(f"last dim of shape {x.shape} must be a multiple of group_size={group_size}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"quantizer input must be floating point, got {x.dtype}")
    x32 = x.astype(np.float32)
    if not np.all(np.isfinite(x32)):
        raise ValueError(f"quantizer input of shape {x.shape} has non-finite values (after the float32 cast)")
    return x32.reshape(x.shape[:-1] + (x.shape[-1] // group_size, group_size))


def absmax_scales(absmax: np.ndarray, max_value: float) -> np.ndarray:
    """``fl32(absmax / max_value)``; zero (or underflowed) scales become 1 (``fpqvar.formats.scales``)."""
    s = np.asarray(absmax, dtype=np.float32) / np.float32(max_value)
    return np.where(s == 0, np.float32(1.0), s).astype(np.float32)


def quantize_groups(x: np.ndarray, fmt: str = "e2m1", *, group_size: int = 128, rounding: str = "rne"):
    """Per-group absmax FP4 quantization, last dim: ``(codes uint8 (..., C), scales f32 (..., C/g))``."""
    f = _fp4(fmt)
    _check_rounding(rounding)
    xg = _groups(x, group_size)
    s = absmax_scales(np.abs(xg).max(axis=-1), f.max_value)
    neg = np.signbit(xg)
    frac_bits, mag_bits = FIXED_POINT[f.name]
    v = scale_to_fixed(np.abs(xg), s[..., None], frac_bits, mag_bits)
    idx = compare_stage(v, neg, f.name, rounding, frac_bits)
    codes = (neg.astype(np.uint8) << 3) | idx
    return codes.reshape(np.shape(x)), s


def quantize_groups_dfq(x: np.ndarray, *, group_size: int = 128, rounding: str = "rne"):
    """DFQ per group: ``(codes uint8 (..., C), s_neg f32 (..., C/g), s_pos f32 (..., C/g))``."""
    _check_rounding(rounding)
    xg = _groups(x, group_size)
    neg = xg <= 0  # zero belongs to the negative half (fpqvar-method.md section 6)
    s_neg = absmax_scales(np.where(neg, -xg, 0).max(axis=-1), get_format("e1m2").max_value)
    s_pos = absmax_scales(np.where(neg, 0, xg).max(axis=-1), get_format("e2m1").max_value)
    s_el = np.where(neg, s_neg[..., None], s_pos[..., None])
    v = scale_to_fixed(np.abs(xg), s_el, DFQ_FRAC_BITS, DFQ_MAG_BITS)
    idx = np.where(
        neg,
        compare_stage(v, neg, "e1m2", rounding, DFQ_FRAC_BITS),
        compare_stage(v, neg, "e2m1", rounding, DFQ_FRAC_BITS),
    ).astype(np.uint8)
    codes = ((neg & (idx > 0)).astype(np.uint8) << 3) | idx  # zero results: code 0
    return codes.reshape(np.shape(x)), s_neg, s_pos


def dequantize_groups(codes: np.ndarray, scales: np.ndarray, fmt: str = "e2m1", *, group_size: int = 128):
    """float32 ``fl32(value(code) * s)``: what a fake-quantizer stores (for comparisons, not the datapath)."""
    f = _fp4(fmt)
    vals = f.code_values.astype(np.float32)[np.asarray(codes, dtype=np.int64)]
    vg = vals.reshape(vals.shape[:-1] + (-1, group_size))
    return (vg * np.asarray(scales, np.float32)[..., None]).reshape(vals.shape)


def dequantize_groups_dfq(codes, s_neg, s_pos, *, group_size: int = 128):
    """float32 values of DFQ codes: ``-e1m2_mag * s_neg`` (top bit 1) or ``+e2m1_mag * s_pos`` (top bit 0)."""
    c = np.asarray(codes, dtype=np.int64)
    neg_v = -np.asarray(magnitude_grid("e1m2"), np.float32)[c & 7]
    pos_v = np.asarray(magnitude_grid("e2m1"), np.float32)[c & 7]
    sel = (c >> 3).astype(bool)
    shp = c.shape[:-1] + (-1, group_size)
    sn = np.asarray(s_neg, np.float32)[..., None]
    sp = np.asarray(s_pos, np.float32)[..., None]
    out = np.where(sel.reshape(shp), neg_v.reshape(shp) * sn, pos_v.reshape(shp) * sp)
    return out.astype(np.float32).reshape(c.shape)
