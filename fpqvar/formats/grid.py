"""Rounding onto a format's grid, and integer codes.

Everything computes in float32 (any float dtype in), on CPU or CUDA, with plain torch ops.

Rounding (``rounding=``), on values already divided by their scale:

- ``"rne"``: round to nearest, ties to the even mantissa (ml_dtypes / torch cast semantics, IEEE RNE). In
  general a tie goes to the even multiple of the grid step; with ``mbits = 0`` (E3M0) that is the larger power
  of two (3 -> 4, as ml_dtypes rounds ``float8_e8m0fnu``), not the even code;
- ``"ties_up"``: round to nearest, ties to the numerically larger grid value. Upstream FPQVAR's CUDA kernel
  scans the ascending grid and keeps the last point whose distance is ``<=`` the best so far
  (``fpqvar-method.md`` section 4), so ties go up for negatives too (-2.5 -> -2, -0.25 -> -0 on E2M1). The
  kernel source (``quant/quant_kernel.cu``) is not in our reference copies of the upstream repository; this
  follows the spec's description, in exact arithmetic (the kernel compares float32 distances, which can only
  differ where two distances round to the same float32). Upstream's pure-PyTorch fallback
  (``quantize_to_nearest_grid``, ``argmin`` over distances) keeps the *first* minimum: ties go to the smaller
  value there.

Both modes saturate: anything beyond the grid goes to +-max.

Minifloats need no grid search: the binade exponent comes from the float32 bit fields,
``step = 2**(max(e, emin) - mbits)`` with ``emin = 1 - bias`` (subnormals share the lowest binade's step).
RNE adds and subtracts ``M = 1.5 * step * 2**23`` (float32 addition then rounds to multiples of ``step``, ties
to even); ``ties_up`` computes ``floor(x / step + 1/2) * step`` (``x / step`` is exact). INT grids round ``x``
itself (``torch.round`` = RNE, or ``floor(x + 1/2)``) and clamp to ``[qmin, qmax]``.

NaN / Inf policy (one rule, tested):

- ``round_to_grid`` / ``fake_quantize``: +-Inf saturates to +-max (times the scale); NaN propagates as NaN.
  Dynamic scales use the finite values only (``scales.py``), so one Inf does not spoil its group.
- ``encode`` / ``quantize``: NaN raises ``ValueError`` (quantization never produces a NaN code); +-Inf
  saturates as above.

Signed zero: minifloats keep the input's sign on zero (``-0.1`` -> ``-0.0``, code ``0b1000`` on E2M1, as
ml_dtypes); INT grids have one zero, ``+0``.

Codes (``encode`` / ``decode``), one ``torch.uint8`` per value:

- minifloats: ``[sign | exponent (ebits) | mantissa (mbits)]``, sign in bit ``bits - 1`` (ml_dtypes / OCP);
- signed INT grids (``int*``, ``neg32``): two's complement in ``bits`` bits (``-1`` -> ``2**bits - 1``);
- unsigned INT grids (``uint*``): the value itself.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from fpqvar.formats.blocks import blocks
from fpqvar.formats.spec import FloatFormat, Format, IntFormat, get_format

__all__ = ["ROUNDINGS", "round_to_grid", "encode", "decode", "grid_step"]

ROUNDINGS = ("rne", "ties_up")

_EXP_MASK = 0x7F800000
_ABS_MASK = 0x7FFFFFFF
_HALF_MANT = 0x400000  # float32 mantissa MSB: turns 2**k into 1.5 * 2**k


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def _emin(fmt: FloatFormat) -> int:
    return 1 - fmt.bias


def _round_float_(t: torch.Tensor, fmt: FloatFormat, rounding: str, sign_src: torch.Tensor) -> torch.Tensor:
    """Round float32 ``t`` onto the minifloat grid in place; zeros take the sign of ``sign_src``."""
    mx = fmt.max_value
    t.clamp_(-mx, mx)  # saturate first (max is on the grid, rounding is monotone); Inf -> max, NaN stays
    m = torch.bitwise_and(t.view(torch.int32), _EXP_MASK)  # biased float32 exponent of |t|, in its bit field
    m.clamp_(min=(_emin(fmt) + 127) << 23)  # subnormals use the smallest normal binade's step
    if rounding == "rne":
        # M = 1.5 * step * 2**23: t + M stays in M's binade for both signs, whose ulp is `step`
        m.add_(((23 - fmt.mbits) << 23) | _HALF_MANT)
        big = m.view(torch.float32)
        t.add_(big).sub_(big)
    else:
        step = m.sub_(fmt.mbits << 23).view(torch.float32)  # 2**(max(e, emin) - mbits)
        r = t.div_(step)  # exact: power-of-two division
        fl = torch.floor(r)
        up = r.sub_(fl).ge_(0.5)  # frac >= 1/2: ties go up, i.e. floor(r + 1/2) without rounding r + 1/2
        t.copy_(fl.add_(up).mul_(step))
    return t.copysign_(sign_src)  # (t + M) - M gives +0: zeros keep the input's sign


def _round_int_(t: torch.Tensor, fmt: IntFormat, rounding: str) -> torch.Tensor:
    """Round float32 ``t`` onto the integer grid ``[qmin, qmax]`` in place."""
    t.clamp_(float(fmt.qmin), float(fmt.qmax))
    if rounding == "rne":
        t.round_()
    else:
        t.add_(0.5).floor_()  # |t| <= 256 here, so t + 1/2 is exact in float32
    return t.add_(0.0)  # -0 -> +0: an INT grid has a single zero


def _round_(t: torch.Tensor, fmt: Format, rounding: str, sign_src: torch.Tensor) -> torch.Tensor:
    """Round float32 ``t`` in place; ``sign_src`` has the signs of ``t`` (e.g. the unscaled input)."""
    if isinstance(fmt, FloatFormat):
        return _round_float_(t, fmt, rounding, sign_src)
    return _round_int_(t, fmt, rounding)


def saturate_for_(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Clamp float32 ``t`` in place to the finite range of ``dtype`` before a cast to it (NaN stays NaN).

    Dequantized values are computed in float32; for a float16 output a grid point above 65504 (a rounded-up
    scale, a zero point shifting the grid) would otherwise cast to Inf. No-op for float32 / float64 outputs.
    """
    m = torch.finfo(dtype).max
    return t if m >= torch.finfo(torch.float32).max else t.clamp_(-m, m)


def round_to_grid(x_norm: torch.Tensor, fmt: str | Format, rounding: str = "rne") -> torch.Tensor:
    """Nearest grid value of ``x_norm`` (already divided by its scale), float32, saturating to +-max."""
    fmt = get_format(fmt)
    _check_rounding(rounding)
    src = x_norm.reshape(1, -1)
    t = src.to(torch.float32, copy=True)
    for rs, cs in blocks(*t.shape, t.device):
        _round_(t[rs, cs], fmt, rounding, src[rs, cs])
    return t.reshape(x_norm.shape)


def grid_step(x_norm: torch.Tensor, fmt: str | Format) -> torch.Tensor:
    """Grid spacing of the binade that holds each ``x_norm`` (float32; 1 for INT grids)."""
    fmt = get_format(fmt)
    if isinstance(fmt, IntFormat):
        return torch.ones_like(x_norm, dtype=torch.float32)
    t = x_norm.to(torch.float32, copy=True).clamp_(-fmt.max_value, fmt.max_value)
    m = torch.bitwise_and(t.view(torch.int32), _EXP_MASK).clamp_(min=(_emin(fmt) + 127) << 23)
    return m.sub_(fmt.mbits << 23).view(torch.float32)


def _codes_from_grid(q: torch.Tensor, fmt: Format) -> torch.Tensor:
    """Codes of float32 values already on the grid (the output of ``_round_``)."""
    if isinstance(fmt, IntFormat):
        return torch.bitwise_and(q.to(torch.int16), (1 << fmt.bits) - 1).to(torch.uint8)
    qi = q.view(torch.int32)
    sign = torch.bitwise_and(torch.bitwise_right_shift(qi, 31), 1)  # arithmetic shift: negative -> -1 -> 1
    ai = torch.bitwise_and(qi, _ABS_MASK)
    a = ai.view(torch.float32)
    emin = _emin(fmt)
    # normal: (exponent field) << mbits | top mbits of the float32 mantissa
    normal = torch.bitwise_right_shift(ai, 23 - fmt.mbits).sub_((127 - fmt.bias) << fmt.mbits)
    # subnormal (and zero): the value in units of the lowest step
    sub = (a * 2.0 ** (fmt.mbits - emin)).to(torch.int32)
    mag = torch.where(a < 2.0**emin, sub, normal)
    return torch.bitwise_or(mag, torch.bitwise_left_shift(sign, fmt.bits - 1)).to(torch.uint8)


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
