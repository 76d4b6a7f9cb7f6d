"""Rounding onto a format's grid, integer codes, fake quantization.

Everything computes in float32 (inputs of any float dtype are converted), on CPU or CUDA, with plain torch ops.

Rounding (``rounding=``), on values already divided by their scale:

- ``"rne"``: round to nearest, ties to the even mantissa (ml_dtypes / torch cast semantics; IEEE RNE);
- ``"ties_up"``: round to nearest, ties to the numerically larger grid value: upstream FPQVAR's CUDA kernel scans
  the ascending grid and keeps the last point whose distance is ``<=`` the best so far (``fpqvar-method.md``
  section 4), so a tie goes up for negatives too (-2.5 -> -2, -0.25 -> 0 on E2M1). The kernel source is not in
  our reference copies; this follows the spec's description, in exact arithmetic (the kernel compares float32
  distances, which can only differ where two distances round to the same float32). Note that upstream's
  pure-PyTorch fallback (``argmin`` over distances) picks the *first* minimum, i.e. ties to the smaller value.

Both modes saturate: anything beyond the grid goes to +-max.

Minifloats without a grid search: the binade exponent comes from the float32 bit fields, ``step =
2**(max(e, emin) - mbits)`` (``emin = 1 - bias``: subnormals share the smallest binade's step). RNE adds and
subtracts the magic number ``M = step * 2**23`` (float32 addition rounds to multiples of ``step``, ties to even);
``ties_up`` computes ``floor(x / step + 1/2) * step`` (exact: ``x / step`` is a power-of-two division). INT grids
round ``x`` itself (``torch.round`` = RNE, or ``floor(x + 1/2)``) and clamp to ``[qmin, qmax]``.

NaN / Inf policy (one rule, tested):

- ``round_to_grid`` / ``fake_quantize``: +-Inf saturate to +-max (times the scale); NaN propagates as NaN. Dynamic
  scales are computed from the finite values only (``scales.py``), so one Inf does not spoil its group.
- ``encode`` / ``quantize``: NaN raises ``ValueError`` (no format here has a NaN code that quantization may
  produce); +-Inf saturates as above.

Signed zero: minifloats keep the input's sign on zero (``-0.1`` -> ``-0.0``, code ``0b1000`` on E2M1, as ml_dtypes);
INT grids have one zero, ``+0``.

Codes (``encode`` / ``decode``), one ``torch.uint8`` per value:

- minifloats: ``[sign | exponent (ebits) | mantissa (mbits)]`` with the sign in bit ``bits - 1`` (ml_dtypes / OCP);
- signed INT grids (``int*``, ``neg32``): two's complement in ``bits`` bits (``-1`` -> ``2**bits - 1``);
- unsigned INT grids (``uint*``): the value itself.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from fpqvar.formats.spec import FloatFormat, Format, IntFormat, get_format

__all__ = ["ROUNDINGS", "round_to_grid", "encode", "decode", "grid_step"]

ROUNDINGS = ("rne", "ties_up")

_EXP_MASK = 0x7F800000
_ABS_MASK = 0x7FFFFFFF


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def _emin(fmt: FloatFormat) -> int:
    return 1 - fmt.bias


def _magic(t: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """``M = step * 2**23`` per element of a (clamped, finite or NaN) float32 ``t``, always positive."""
    m = t.view(torch.int32) & _EXP_MASK  # biased float32 exponent of |t|, in place in the bit field
    m.clamp_(min=(_emin(fmt) + 127) << 23)  # subnormals use the smallest normal binade's step
    m.add_((23 - fmt.mbits) << 23)
    return m.view(torch.float32)


def _round_float_(t: torch.Tensor, fmt: FloatFormat, rounding: str) -> torch.Tensor:
    """Round float32 ``t`` onto the minifloat grid, in place; returns ``t``."""
    mx = fmt.max_value
    t.clamp_(-mx, mx)  # saturation first (max is a grid point and rounding is monotone); Inf -> max, NaN stays
    big = _magic(t, fmt)
    if rounding == "rne":
        big.copysign_(t)  # symmetric: the sum stays on t's side of 0, so its ulp is `step`
        t.add_(big).sub_(big)
        return t.copysign_(big)  # x - x gives +0: restore the sign of zero
    step = big.mul_(2.0**-23)
    r = t / step
    fl = torch.floor(r)
    fl += (r - fl) >= 0.5  # ties (frac == 1/2) go to the larger value: floor(r + 1/2), without rounding r + 1/2
    return fl.mul_(step).copysign_(t)


def _round_int_(t: torch.Tensor, fmt: IntFormat, rounding: str) -> torch.Tensor:
    """Round float32 ``t`` onto the integer grid ``[qmin, qmax]``, in place where possible."""
    t.clamp_(float(fmt.qmin), float(fmt.qmax))
    if rounding == "rne":
        t.round_()
    else:
        t.add_(0.5).floor_()  # |t| <= 256 here, so t + 1/2 is exact in float32
    return t.add_(0.0)  # -0 -> +0: an INT grid has a single zero


def _round_(t: torch.Tensor, fmt: Format, rounding: str) -> torch.Tensor:
    if isinstance(fmt, FloatFormat):
        return _round_float_(t, fmt, rounding)
    return _round_int_(t, fmt, rounding)


def round_to_grid(x_norm: torch.Tensor, fmt: str | Format, rounding: str = "rne") -> torch.Tensor:
    """Nearest grid value of ``x_norm`` (already divided by its scale), float32, saturating to +-max."""
    fmt = get_format(fmt)
    _check_rounding(rounding)
    t = x_norm.to(torch.float32, copy=True)
    return _round_(t, fmt, rounding)


def grid_step(x_norm: torch.Tensor, fmt: str | Format) -> torch.Tensor:
    """Grid spacing of the binade that holds each ``x_norm`` (float32; 1 for INT grids)."""
    fmt = get_format(fmt)
    if isinstance(fmt, IntFormat):
        return torch.ones_like(x_norm, dtype=torch.float32)
    t = x_norm.to(torch.float32, copy=True).clamp_(-fmt.max_value, fmt.max_value)
    return _magic(t, fmt).mul_(2.0**-23)


def _codes_from_grid(q: torch.Tensor, fmt: Format) -> torch.Tensor:
    """Codes of float32 values already on the grid (the output of ``_round_``)."""
    if isinstance(fmt, IntFormat):
        return (q.to(torch.int16) & ((1 << fmt.bits) - 1)).to(torch.uint8)
    qi = q.view(torch.int32)
    sign = (qi >> 31) & 1  # arithmetic shift: -1 for negative -> 1
    ai = qi & _ABS_MASK
    a = ai.view(torch.float32)
    emin = _emin(fmt)
    # normal: (biased exponent in fmt) << mbits | top mbits of the float32 mantissa
    normal = (ai >> (23 - fmt.mbits)) - ((127 - fmt.bias) << fmt.mbits)
    # subnormal (and zero): the value in units of the smallest step
    sub = (a * 2.0 ** (fmt.mbits - emin)).to(torch.int32)
    mag = torch.where(a < 2.0**emin, sub, normal)
    return (mag | (sign << (fmt.bits - 1))).to(torch.uint8)


def encode(x_norm: torch.Tensor, fmt: str | Format, rounding: str = "rne") -> torch.Tensor:
    """Integer codes (``torch.uint8``) of ``round_to_grid(x_norm, fmt, rounding)``; NaN -> ``ValueError``."""
    fmt = get_format(fmt)
    _check_rounding(rounding)
    if bool(torch.isnan(x_norm).any()):
        raise ValueError(f"encode to {fmt.name}: input of shape {tuple(x_norm.shape)} contains NaN")
    return _codes_from_grid(round_to_grid(x_norm, fmt, rounding), fmt)


@lru_cache(maxsize=64)
def _decode_table(fmt: Format, device: torch.device) -> torch.Tensor:
    if isinstance(fmt, FloatFormat):
        vals = torch.tensor(fmt.code_values, dtype=torch.float32)
    else:
        c = torch.arange(1 << fmt.bits, dtype=torch.int32)
        if fmt.qmin < 0:  # two's complement
            c = torch.where(c >= (1 << (fmt.bits - 1)), c - (1 << fmt.bits), c)
        vals = c.to(torch.float32)
    return vals.to(device)


def decode(codes: torch.Tensor, fmt: str | Format) -> torch.Tensor:
    """float32 values of integer ``codes`` (a table lookup; special codes give NaN / Inf)."""
    fmt = get_format(fmt)
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"decode {fmt.name}: codes must be an integer tensor, got {codes.dtype}")
    idx = codes.to(torch.int64)
    if idx.numel() and bool(((idx < 0) | (idx >= (1 << fmt.bits))).any()):
        raise ValueError(f"decode {fmt.name}: codes must be in 0..{(1 << fmt.bits) - 1}")
    return _decode_table(fmt, idx.device)[idx]
