"""Bit-exact integer model of the accelerator's arithmetic (the golden model for ``fpqvar.hw.rtl``).

Everything here works on integer codes and integer / fixed-point values; the only floating-point steps
are the per-group scale application and the cross-group accumulation, in IEEE float32 with a fixed order
(below), which numpy reproduces bit for bit. Sub-models: ``quantizer_int`` (FP quantizer) and
``hadamard_int`` (FHT-128).

Multipliers (hardware.md section 6: keep the sign out of the multiplier):

- **FP4** ``e2m1 x e2m1``: ``sign = sa ^ sb``; magnitude = a 64-entry ROM over the two 3-bit magnitude codes,
  product in units of 1/4 (E2M1 magnitudes are multiples of 1/2): 0..144, **8 bits**.
- **DFQ** (fc2 input, fpqvar-method.md section 6): activation code ``[sel | m2 m1 m0]``, ``sel = 1``
  selects the negative half (value ``-E1M2(m)``), ``sel = 0`` the positive half (``+E2M1(m)``); weight
  E2M1. ``sign = sel ^ sw``; magnitude = a 128-entry ROM over ``(sel, ma, mw)``, product in units of 1/8
  (E1M2 x E2M1 = quarters x halves; E2M1 x E2M1 = 2 * (halves x halves)): 0..288, **9 bits**.
- **INT4** (baseline): two's-complement ``int4 x int4 -> int8`` (-56..64).
- **Symmetric INT4** (the fair integer baseline, built like FP4): the symmetric grid -7..7 of
  ``fpqvar.formats`` ``int4`` in sign-magnitude codes ``[s | m2 m1 m0]`` (``0b1000`` is -0, unused by the
  quantizer); ``sign = sa ^ sb``, magnitude = a 64-entry ROM ``ma * mb``: 0..49, **6 bits**.

Group dot product (128 lanes, the PE): lane products enter a binary adder tree of ``log2(lanes)`` levels that
adds adjacent pairs; the sign is applied in the tree (first level adds ``+-mag``). A signed leaf needs
``product_bits + 1`` bits (FP4 9; INT4 8), each level one more bit, so the **accumulator has ``leaf + 7``
bits for 128 lanes: FP4 16, INT4 15, symmetric INT4 14**, and this is tight: ``128 * max|product|`` (18432,
8192, 6272) needs exactly that many signed bits. DFQ has two trees (products masked by ``sel``), one sum per
half since the halves have different scales: **negative half 15 bits** (128 * 84 = 10752), **positive half
17 bits** (128 * 288 = 36864). Integer sums are exact, so the tree order does not matter for the value.

Scale application and cross-group accumulation (the order the fast paths must reuse), per output ``(t, o)``:

    p_g = fl32( fl32(s_x[t, g] * s_w[o, g]) * fl32(D[t, o, g] * unit) )     (unit = 1/4 FP4, 1/8 DFQ; exact)
    acc = 0;  for g = 0, 1, ..., G-1 (ascending):  acc = fl32(acc + p_g)    (sequential, float32)
    y = fl32(acc + b[o])                                                    (bias last, if any)

DFQ partials: for each group ``g`` ascending, ``p_neg,g = fl32(fl32(s_neg * s_w) * D_neg * 1/8)`` is added
first, then ``p_pos,g``. With ``S = sum_i |x_hat_i * w_hat_i|`` (exact products of the dequantized operands),
``n`` partials and ``u = 2**-24``, the error against the exact real result ``y*`` is (first order, standard
recursive-summation analysis): ``|y - y*| <= (n + 1) * u * S + u * |y|`` (:func:`accumulation_error_bound`).
It is zero when the scales are powers of two and the partial sums fit 24 bits.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fpqvar.hw.hadamard_int import fht_int, randomized_fht_int
from fpqvar.hw.quantizer_int import magnitude_grid, quantize_groups, quantize_groups_dfq

__all__ = [
    "GROUP_SIZE",
    "PRODUCT_UNIT",
    "PRODUCT_BITS",
    "magnitude_units",
    "fp4_mul_rom",
    "dfq_mul_rom",
    "fp4_mul",
    "dfq_mul",
    "int4_mul",
    "int4_value",
    "int4_sym_mul_rom",
    "int4_sym_mul",
    "int4_sym_value",
    "int4_sym_from_twos",
    "product_value",
    "leaf_bits",
    "accumulator_bits",
    "adder_tree",
    "group_dot",
    "group_dot_dfq",
    "scale_accumulate",
    "accumulation_error_bound",
    "linear_through_datapath",
    "linear_dfq_through_datapath",
    # re-exported sub-models: the FP quantizer and the FHT-128
    "quantize_groups",
    "quantize_groups_dfq",
    "fht_int",
    "randomized_fht_int",
]

GROUP_SIZE = 128
PRODUCT_UNIT = {"fp4": 0.25, "dfq": 0.125, "int4": 1.0, "int4_sym": 1.0}  # value of one LSB of the product
# Magnitude bits (fp4, dfq and its two halves); signed bits (int4). DFQ's negative half (E1M2 x E2M1) tops at
# 84 / 8 (7 bits), its positive half at 288 / 8 (9 bits): the PE gives each half a tree of its own width.
PRODUCT_BITS = {"fp4": 8, "dfq": 9, "dfq_neg": 7, "dfq_pos": 9, "int4": 8, "int4_sym": 6}
_U32 = 2.0**-24  # float32 unit roundoff


@lru_cache(maxsize=None)
def magnitude_units(fmt: str, unit_log2: int) -> tuple[int, ...]:
    """Magnitude codes 0..7 of ``fmt`` as integers in units of ``2**-unit_log2`` (must be exact)."""
    vals = [v * 2**unit_log2 for v in magnitude_grid(fmt)]
    if any(v != int(v) for v in vals):
        raise ValueError(f"{fmt} magnitudes are not multiples of 2**-{unit_log2}: {magnitude_grid(fmt)}")
    return tuple(int(v) for v in vals)


@lru_cache(maxsize=None)
def fp4_mul_rom() -> tuple[int, ...]:
    """FP4 magnitude ROM: entry ``(ma << 3) | mb`` = ``|a * b|`` in units of 1/4 (E2M1 halves x halves)."""
    u = magnitude_units("e2m1", 1)
    return tuple(u[i >> 3] * u[i & 7] for i in range(64))


@lru_cache(maxsize=None)
def dfq_mul_rom() -> tuple[int, ...]:
    """DFQ magnitude ROM: entry ``(sel << 6) | (ma << 3) | mw`` = ``|a * w|`` in units of 1/8."""
    q = magnitude_units("e1m2", 2)  # quarters
    h = magnitude_units("e2m1", 1)  # halves
    neg = [q[i >> 3] * h[i & 7] for i in range(64)]  # quarters x halves = eighths
    pos = [2 * h[i >> 3] * h[i & 7] for i in range(64)]  # halves x halves = quarters = 2 eighths
    return tuple(pos + neg)  # sel = 0 (positive half) first


def _codes(c, name: str) -> np.ndarray:
    c = np.asarray(c)
    if not np.issubdtype(c.dtype, np.integer) or (c.size and (c.min() < 0 or c.max() > 15)):
        raise ValueError(f"{name}: 4-bit codes (integers 0..15) required")
    return c.astype(np.int64)


def fp4_mul(a, b) -> tuple[np.ndarray, np.ndarray]:
    """E2M1 x E2M1 codes -> ``(sign, magnitude in units of 1/4)`` via the ROM (broadcasting)."""
    a, b = _codes(a, "fp4_mul a"), _codes(b, "fp4_mul b")
    rom = np.asarray(fp4_mul_rom(), dtype=np.int64)
    return (a >> 3) ^ (b >> 3), rom[((a & 7) << 3) | (b & 7)]


def dfq_mul(a, w) -> tuple[np.ndarray, np.ndarray]:
    """DFQ activation code x E2M1 weight code -> ``(sign, magnitude in units of 1/8)``."""
    a, w = _codes(a, "dfq_mul a"), _codes(w, "dfq_mul w")
    rom = np.asarray(dfq_mul_rom(), dtype=np.int64)
    return (a >> 3) ^ (w >> 3), rom[((a >> 3) << 6) | ((a & 7) << 3) | (w & 7)]


def int4_value(c) -> np.ndarray:
    """Two's-complement value of 4-bit codes (-8..7)."""
    c = _codes(c, "int4 code")
    return np.where(c >= 8, c - 16, c)


def int4_mul(a, b) -> np.ndarray:
    """INT4 baseline: signed product of two 4-bit two's-complement codes (-56..64)."""
    return int4_value(a) * int4_value(b)


@lru_cache(maxsize=None)
def int4_sym_mul_rom() -> tuple[int, ...]:
    """Symmetric INT4 magnitude ROM: entry ``(ma << 3) | mb`` = ``ma * mb`` (0..49)."""
    return tuple((i >> 3) * (i & 7) for i in range(64))


def int4_sym_value(c) -> np.ndarray:
    """Value of sign-magnitude 4-bit codes: ``(-1)**c[3] * c[2:0]`` (-7..7; ``0b1000`` is -0 = 0)."""
    c = _codes(c, "int4_sym code")
    return np.where(c >> 3, -(c & 7), c & 7)


def int4_sym_from_twos(c) -> np.ndarray:
    """Sign-magnitude codes of the symmetric grid's two's-complement codes (``fpqvar.formats`` ``int4``)."""
    v = int4_value(c)
    if np.any(v == -8):
        raise ValueError("int4_sym_from_twos: code 0b1000 (-8) is outside the symmetric grid -7..7")
    return (np.where(v < 0, 8, 0) | np.abs(v)).astype(np.int64)


def int4_sym_mul(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT4 sign-magnitude codes -> ``(sign, magnitude)`` via the ROM (broadcasting)."""
    a, b = _codes(a, "int4_sym_mul a"), _codes(b, "int4_sym_mul b")
    rom = np.asarray(int4_sym_mul_rom(), dtype=np.int64)
    return (a >> 3) ^ (b >> 3), rom[((a & 7) << 3) | (b & 7)]


def product_value(sign, mag) -> np.ndarray:
    """Signed integer product from the sign-magnitude pair (what the adder tree's first level forms)."""
    return np.where(np.asarray(sign) != 0, -np.asarray(mag, np.int64), np.asarray(mag, np.int64))


def leaf_bits(kind: str) -> int:
    """Signed width of one lane product entering the tree (kinds: fp4, int4, int4_sym, dfq_neg, dfq_pos)."""
    if kind not in PRODUCT_BITS or kind == "dfq":
        raise ValueError(f"kind must be one of fp4, int4, int4_sym, dfq_neg, dfq_pos; got {kind!r}")
    return PRODUCT_BITS[kind] + (kind != "int4")


def _levels(lanes: int) -> int:
    if lanes < 2 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two >= 2, got {lanes}")
    return lanes.bit_length() - 1


def accumulator_bits(kind: str, lanes: int = GROUP_SIZE) -> int:
    """Signed width of a group sum: ``leaf_bits + log2(lanes)`` (128 lanes: fp4 16, int4 15, int4_sym 14,
    dfq_neg 15, dfq_pos 17)."""
    return leaf_bits(kind) + _levels(lanes)


def adder_tree(values: np.ndarray, leaf: int) -> np.ndarray:
    """Sum the last dim by a binary tree of adjacent pairs, checking each level fits ``leaf + level`` bits."""
    v = np.asarray(values, dtype=np.int64)
    n = v.shape[-1]
    levels = _levels(n)
    for lvl in range(levels + 1):
        lo, hi = -(1 << (leaf + lvl - 1)), (1 << (leaf + lvl - 1)) - 1
        if v.size and (v.min() < lo or v.max() > hi):
            raise OverflowError(
                f"adder tree level {lvl}: values {v.min()}..{v.max()} exceed {leaf + lvl} bits")
        if lvl < levels:
            v = v[..., 0::2] + v[..., 1::2]
    return v[..., 0]


def group_dot(kind: str, a_codes, w_codes) -> np.ndarray:
    """One PE pass: ``sum_lanes a * w`` over the last dim, in product units (FP4: 1/4, INT4s: 1)."""
    if kind == "fp4":
        p = product_value(*fp4_mul(a_codes, w_codes))
    elif kind == "int4":
        p = int4_mul(a_codes, w_codes)
    elif kind == "int4_sym":
        p = product_value(*int4_sym_mul(a_codes, w_codes))
    else:
        raise ValueError(f"group_dot kind must be 'fp4', 'int4' or 'int4_sym' (use group_dot_dfq), got {kind!r}")
    return adder_tree(p, leaf_bits(kind))


def group_dot_dfq(a_codes, w_codes) -> tuple[np.ndarray, np.ndarray]:
    """DFQ PE pass: ``(sum over the negative half, sum over the positive half)``, units of 1/8."""
    a = _codes(a_codes, "group_dot_dfq a")
    p = product_value(*dfq_mul(a, w_codes))
    sel = (a >> 3).astype(bool)
    return (adder_tree(np.where(sel, p, 0), leaf_bits("dfq_neg")),
            adder_tree(np.where(sel, 0, p), leaf_bits("dfq_pos")))


# --- scale application and accumulation -----------------------------------------------------------------


def scale_accumulate(partials: list[tuple[np.ndarray, np.ndarray, np.ndarray]], unit: float,
                     bias: np.ndarray | None = None) -> np.ndarray:
    """Apply scales and accumulate in the documented float32 order.

    ``partials`` is the ordered list of ``(D_TO, s_a_T, s_w_O)``: integer group sums and their two scales.
    Returns float32 ``(T, O)``.
    """
    acc = None
    for d_TO, sa_T, sw_O in partials:
        s_TO = np.float32(sa_T)[:, None] * np.float32(sw_O)[None, :]  # fl32(s_a * s_w)
        d32 = (np.asarray(d_TO, np.float64) * unit).astype(np.float32)  # exact: |D| < 2**24, unit 2**-k
        p = s_TO * d32  # fl32
        acc = p if acc is None else acc + p  # fl32(acc + p); the first add to 0 is exact
    if bias is not None:
        acc = acc + np.asarray(bias, np.float32)[None, :]
    return acc.astype(np.float32)


def accumulation_error_bound(abs_dot: np.ndarray, n_partials: int, y: np.ndarray) -> np.ndarray:
    """``(n + 1) * u * S + u * |y|`` (u = 2**-24): bound on ``|y - y*|`` (module docstring)."""
    s = np.asarray(abs_dot, np.float64)
    return (n_partials + 1) * _U32 * s + _U32 * np.abs(np.asarray(y, np.float64))


def _check_linear(x, w, bias, group_size: int):
    x = np.asarray(x)
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {w.shape}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x of shape {x.shape} does not match weight of shape {w.shape} (in_features)")
    if w.shape[1] % group_size:
        raise ValueError(f"in_features={w.shape[1]} is not a multiple of group_size={group_size}")
    if bias is not None and np.shape(bias) != (w.shape[0],):
        raise ValueError(f"bias of shape {np.shape(bias)} does not match out_features={w.shape[0]}")
    return x.reshape(-1, x.shape[-1]), w


def _signed_e2m1_halves(codes: np.ndarray) -> np.ndarray:
    """E2M1 codes -> signed values in units of 1/2 (the operand the ROM's products are built from)."""
    h = np.asarray(magnitude_units("e2m1", 1), np.float64)
    return np.where(codes >> 3, -h[codes & 7], h[codes & 7])


def linear_through_datapath(x, w, bias=None, *, rounding: str = "rne", group_size: int = GROUP_SIZE):
    """A W4A4 linear layer on the datapath: ``y = Q(x) Q(w)^T + b``, float32 ``(..., out_features)``.

    Both operands are quantized by the FP quantizer model (E2M1, absmax per group of ``group_size`` along
    in_features, activations per token); per-group dot products are exact integers (the PE); scales and the
    cross-group sum follow the module docstring. The group sums are computed as integer matrix products of the
    signed operand units: this equals the ROM + adder tree result (``fp4_mul_rom()[a, b] == |a| * |b|`` in
    these units, checked exhaustively in the tests) and is exact in float64 (|partial sums| < 2**53).
    """
    x2, w = _check_linear(x, w, bias, group_size)
    xc, sx = quantize_groups(x2, "e2m1", group_size=group_size, rounding=rounding)
    wc, sw = quantize_groups(w, "e2m1", group_size=group_size, rounding=rounding)
    xu = _signed_e2m1_halves(xc.astype(np.int64))
    wu = _signed_e2m1_halves(wc.astype(np.int64))
    partials = []
    for g in range(w.shape[1] // group_size):
        sl = slice(g * group_size, (g + 1) * group_size)
        partials.append((xu[:, sl] @ wu[:, sl].T, sx[:, g], sw[:, g]))
    y = scale_accumulate(partials, PRODUCT_UNIT["fp4"], bias)
    return y.reshape(np.shape(x)[:-1] + (w.shape[0],))


def linear_dfq_through_datapath(x, w, bias=None, *, rounding: str = "rne", group_size: int = GROUP_SIZE):
    """The fc2 layer on the datapath: DFQ activations (two scales per group) x E2M1 weights, float32 out.

    Per group two integer sums (negative half, positive half; units of 1/8), added as two partials, negative
    first (module docstring).
    """
    x2, w = _check_linear(x, w, bias, group_size)
    xc, s_neg, s_pos = quantize_groups_dfq(x2, group_size=group_size, rounding=rounding)
    wc, sw = quantize_groups(w, "e2m1", group_size=group_size, rounding=rounding)
    xc = xc.astype(np.int64)
    q = np.asarray(magnitude_units("e1m2", 2), np.float64)
    h = np.asarray(magnitude_units("e2m1", 1), np.float64)
    sel = (xc >> 3).astype(bool)
    xu_neg = np.where(sel, -q[xc & 7], 0.0)  # quarters; x halves of w -> eighths
    xu_pos = np.where(sel, 0.0, 2 * h[xc & 7])  # halves * 2; x halves of w -> eighths
    wu = _signed_e2m1_halves(wc.astype(np.int64))
    partials = []
    for g in range(w.shape[1] // group_size):
        sl = slice(g * group_size, (g + 1) * group_size)
        partials.append((xu_neg[:, sl] @ wu[:, sl].T, s_neg[:, g], sw[:, g]))
        partials.append((xu_pos[:, sl] @ wu[:, sl].T, s_pos[:, g], sw[:, g]))
    y = scale_accumulate(partials, PRODUCT_UNIT["dfq"], bias)
    return y.reshape(np.shape(x)[:-1] + (w.shape[0],))
