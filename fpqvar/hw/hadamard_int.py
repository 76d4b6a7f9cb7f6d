"""Bit-exact model of the 128-point fast Hadamard unit (the GHT unit's core, fpqvar-method.md section 7).

``y = H x`` with ``H`` the Sylvester Hadamard matrix (``scipy.linalg.hadamard(128)``, natural order), computed
by ``log2(128) = 7`` radix-2 butterfly stages ``(a, b) -> (a + b, a - b)``; stage ``k`` (0-based)
pairs elements whose indices differ in bit ``k`` (stride ``2**k``). The stages commute
(``H = H2 (x) ... (x) H2``), so any order gives the same result; the RTL uses the same ascending order.

Widths: each stage at most doubles the magnitude, so a signed ``b``-bit input needs ``b + k`` bits after ``k``
stages and the output has ``b + 7`` bits. Integer arithmetic, hence exact (no rounding anywhere).

The randomized Hadamard of the GHT is ``Q = D H / sqrt(128)``: ``x Q = H (d * x) / sqrt(128)``
(``H`` symmetric).
The sign flips ``d`` are applied at the input; the ``1 / sqrt(128)`` is not applied: it folds into the next
quantizer's absmax scale (a per-group positive factor leaves the absmax quantization codes unchanged in exact
arithmetic; the float scale then carries it).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FHT_POINTS", "FHT_STAGES", "fht_stage_bits", "fht_int", "randomized_fht_int", "signed_range"]

FHT_POINTS = 128
FHT_STAGES = 7


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def fht_stage_bits(in_bits: int, points: int = FHT_POINTS) -> list[int]:
    """Signed width after each stage: ``[in_bits, in_bits + 1, ..., in_bits + log2(points)]``."""
    stages = _stages(points)
    return [in_bits + k for k in range(stages + 1)]


def _stages(points: int) -> int:
    if points < 2 or points & (points - 1):
        raise ValueError(f"FHT points must be a power of two >= 2, got {points}")
    return points.bit_length() - 1


def _check_range(v: np.ndarray, bits: int, what: str) -> None:
    lo, hi = signed_range(bits)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"{what}: values {v.min()}..{v.max()} do not fit signed {bits} bits [{lo}, {hi}]")


def fht_int(x: np.ndarray, in_bits: int, points: int = FHT_POINTS) -> np.ndarray:
    """``H x`` along the last dim (size ``points``) of signed ``in_bits``-bit integers; int64 out.

    Checks the input range and, after every stage, that the value fits its documented width.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"fht_int: integer input required, got {x.dtype}")
    if x.ndim == 0 or x.shape[-1] != points:
        raise ValueError(f"fht_int: last dim must be {points}, got shape {x.shape}")
    stages = _stages(points)
    if not 2 <= in_bits <= 64 - stages - 1:
        raise ValueError(f"fht_int: in_bits={in_bits} out of range 2..{64 - stages - 1}")
    y = x.astype(np.int64)
    _check_range(y, in_bits, f"fht_int input (in_bits={in_bits})")
    lead = y.shape[:-1]
    for k in range(stages):
        h = 1 << k
        v = y.reshape(lead + (points // (2 * h), 2, h))
        a, b = v[..., 0, :], v[..., 1, :]
        y = np.stack([a + b, a - b], axis=-2).reshape(lead + (points,))
        _check_range(y, in_bits + k + 1, f"fht_int stage {k}")
    return y


def randomized_fht_int(x: np.ndarray, signs: np.ndarray, in_bits: int,
                       points: int = FHT_POINTS) -> np.ndarray:
    """``H (d * x)`` with ``d`` a vector of +-1 (the GHT's diagonal); the ``1/sqrt(points)`` is folded away.

    The input must avoid ``-2**(in_bits-1)`` (a symmetric range, as symmetric integer formats give) so
    that the flipped input still fits ``in_bits`` bits and the output ``in_bits + log2(points)`` bits.
    """
    d = np.asarray(signs)
    if d.shape != (points,) or not np.all(np.abs(d) == 1):
        raise ValueError(f"signs must be {points} values of +-1, got shape {d.shape}")
    x = np.asarray(x).astype(np.int64)
    lo, hi = signed_range(in_bits)
    if x.size and (x.min() <= lo or x.max() > hi):
        raise ValueError(f"randomized_fht_int: values {x.min()}..{x.max()} outside the symmetric range "
                         f"[{lo + 1}, {hi}] of in_bits={in_bits}")
    return fht_int(x * d.astype(np.int64), in_bits, points)
