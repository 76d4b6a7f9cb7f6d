"""DFQ, dual-format quantization of the FC2 input (``fpqvar-method.md`` section 6).

Per group (FP4: 128 contiguous elements along ``dim``; FP6: one token = the whole last dim):

- values ``x <= 0`` (zero included) use the negative format with ``s_neg = max|x_neg| / neg_max``;
- values ``x > 0`` use the positive format with ``s_pos = max(x_pos) / pos_max``;
- ``x_hat = Q_neg(x / s_neg) * s_neg`` where ``x <= 0``, else ``Q_pos(x / s_pos) * s_pos``.

========  ==========================  ===========================  ==============
variant   negatives                   positives                    default groups
========  ==========================  ===========================  ==============
``fp4``   E1M2 {-1.75 .. 0}, max 1.75 E2M1 {0 .. 6}, max 6          128 along dim
``fp6``   INT {-32 .. -1, 0}, max 32  E2M3 {0 .. 7.5}, max 7.5      per token
========  ==========================  ===========================  ==============

A group with no positive (or no negative) values gets scale 1 on that side (unused), so the result stays finite
and exact where upstream divides 0 by 0. Zero results are ``+0``. NaN / Inf follow ``grid.py``: Inf saturates,
NaN propagates (``dfq_fake_quantize``) or raises ``ValueError`` (``dfq_quantize``); scales use finite values.

Codes (``dfq_quantize``), one ``torch.uint8`` per value, ``bits`` = 4 (fp4) or 6 (fp6); the top bit selects the
format, so a code is as wide as one single-format code:

- top bit 0: positive half, low bits = the positive format's magnitude code (E2M1: 3 bits, E2M3: 5 bits);
  zero is always coded here, as code 0 (the negative-zero code ``top | 0`` is never produced);
- top bit 1: negative half, low bits = the magnitude: E1M2 magnitude code (3 bits) for fp4; ``|q| - 1``
  (``-1 .. -32`` as ``0 .. 31``) for fp6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.formats.grid import _check_rounding, _codes_from_grid, _round_, decode
from fpqvar.formats.scales import Layout, guard_scale, resolve_layout, row_minmax
from fpqvar.formats.spec import Format, get_format

__all__ = ["DFQ_VARIANTS", "DFQTensor", "dfq_fake_quantize", "dfq_quantize", "dfq_dequantize"]


@dataclass(frozen=True)
class _Variant:
    neg: Format
    pos: Format
    bits: int
    default_group_size: int | None


DFQ_VARIANTS = {
    "fp4": _Variant(get_format("e1m2"), get_format("e2m1"), 4, 128),
    "fp6": _Variant(get_format("neg32"), get_format("e2m3"), 6, None),
}


@dataclass(frozen=True)
class DFQTensor:
    """DFQ codes (``x``'s shape, uint8, unpacked) and the two float32 scales (public layout of ``scales.py``)."""

    codes: torch.Tensor
    scale_neg: torch.Tensor
    scale_pos: torch.Tensor
    variant: str
    group_size: int | None
    dim: int
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def layout(self) -> Layout:
        return _layout(self.shape, self.group_size, self.dim)


def _variant(variant: str) -> _Variant:
    try:
        return DFQ_VARIANTS[variant]
    except KeyError:
        raise ValueError(f"DFQ variant must be one of {tuple(DFQ_VARIANTS)}, got {variant!r}") from None


def _layout(shape, group_size, dim) -> Layout:
    if group_size is None:
        return resolve_layout(shape, granularity="token")
    return resolve_layout(shape, group_size=group_size, dim=dim)


def _dfq_work(xw: torch.Tensor, v: _Variant, rounding: str):
    """Grid values ``q`` (unscaled, zeros ``+0``), the per-element scale, the mask ``x <= 0`` and both scales."""
    mn, mx = row_minmax(xw)
    s_neg = guard_scale((-mn).clamp_(min=0.0) / v.neg.max_value)
    s_pos = guard_scale(mx.clamp(min=0.0) / v.pos.max_value)
    neg = xw <= 0
    s_sel = torch.where(neg, s_neg, s_pos)
    t = xw / s_sel
    if v.neg.name == "e1m2" and v.pos.name == "e2m1" and rounding == "rne":
        # Fast path, both halves at once (same values as the general path below, which the tests compare):
        # float32 addition of M = step * 2**23 rounds to multiples of `step`, ties to even (see grid.py).
        t.clamp_(-1.75, 6.0)
        m = t.view(torch.int32) & 0x7F800000
        m.clamp_(min=127 << 23).add_(22 << 23)  # E2M1: step 2**(max(e, 0) - 1)
        big = torch.where(neg, -(2.0**21), m.view(torch.float32))  # E1M2 on [-1.75, 0]: uniform step 0.25
        q = t.add_(big).sub_(big)  # (t + M) - M: zero results are +0
    else:
        q_neg = _round_(t.clone(), v.neg, rounding)
        q = torch.where(neg, q_neg, _round_(t, v.pos, rounding)).add_(0.0)  # -0 -> +0
    return q, s_sel, neg, s_neg, s_pos


def _resolve_group(group_size, v: _Variant):
    return v.default_group_size if group_size == "auto" else group_size


def dfq_fake_quantize(
    x: torch.Tensor,
    *,
    group_size: int | None | str = "auto",
    dim: int = -1,
    variant: str = "fp4",
    rounding: str = "rne",
) -> torch.Tensor:
    """Dual-format fake quantization; same shape and dtype as ``x``.

    ``group_size="auto"``: 128 for ``fp4``, per token (``None``: the whole last dim) for ``fp6``.
    """
    v = _variant(variant)
    _check_rounding(rounding)
    if x.numel() == 0:
        return x.clone()
    layout = _layout(x.shape, _resolve_group(group_size, v), dim)
    q, s_sel, *_ = _dfq_work(layout.to_work(x.to(torch.float32)), v, rounding)
    return layout.from_work(q.mul_(s_sel)).to(x.dtype)


def dfq_quantize(
    x: torch.Tensor,
    *,
    group_size: int | None | str = "auto",
    dim: int = -1,
    variant: str = "fp4",
    rounding: str = "rne",
) -> DFQTensor:
    """DFQ codes and scales; ``dfq_dequantize(dfq_quantize(x)) == dfq_fake_quantize(x)`` bit for bit."""
    v = _variant(variant)
    _check_rounding(rounding)
    if bool(torch.isnan(x).any()):
        raise ValueError(f"dfq_quantize: input of shape {tuple(x.shape)} contains NaN")
    layout = _layout(x.shape, _resolve_group(group_size, v), dim)
    q, _, neg, s_neg, s_pos = _dfq_work(layout.to_work(x.to(torch.float32)), v, rounding)
    a = q.abs()
    top = 1 << (v.bits - 1)
    if v.neg.kind == "float":
        neg_mag = _codes_from_grid(a, v.neg).to(torch.int32)
    else:
        neg_mag = a.to(torch.int32) - 1  # |q| in 1..32 -> 0..31
    pos_mag = _codes_from_grid(a.clamp(max=v.pos.max_value), v.pos).to(torch.int32)
    codes = torch.where(neg & (q != 0), neg_mag | top, pos_mag).to(torch.uint8)
    return DFQTensor(
        codes=layout.from_work(codes).contiguous(),
        scale_neg=layout.scale_from_work(s_neg),
        scale_pos=layout.scale_from_work(s_pos),
        variant=variant,
        group_size=layout.group_size,
        dim=layout.dim,
        shape=tuple(x.shape),
        dtype=x.dtype,
    )


def dfq_dequantize(q: DFQTensor) -> torch.Tensor:
    """Values of a :class:`DFQTensor`, in its original dtype."""
    v = _variant(q.variant)
    layout = q.layout
    cw = layout.to_work(q.codes).to(torch.int32)
    top = 1 << (v.bits - 1)
    is_neg = (cw & top) != 0
    mag = cw & (top - 1)
    if v.neg.kind == "float":
        neg_val = -decode(mag, v.neg)
    else:
        neg_val = -(mag + 1).to(torch.float32)
    vals = torch.where(is_neg, neg_val, decode(mag, v.pos))
    s = torch.where(is_neg, layout.scale_to_work(q.scale_neg), layout.scale_to_work(q.scale_pos))
    return layout.from_work(vals * s).to(q.dtype)
