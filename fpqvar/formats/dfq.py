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

A group with no positive (or no negative) values gets scale 1 on that side (unused), so the result stays
finite and exact where upstream divides 0 by 0. Zero results are ``+0``. NaN / Inf follow ``grid.py``: Inf
saturates, NaN propagates (``dfq_fake_quantize``) or raises ``ValueError`` (``dfq_quantize``); scales use the
finite values.

Codes (``dfq_quantize``), one ``torch.uint8`` per value, ``bits`` = 4 (fp4) or 6 (fp6); the top bit selects
the format, so a code is as wide as one single-format code:

- top bit 0: positive half, low bits = the positive format's magnitude code (E2M1: 3 bits, E2M3: 5 bits);
  zero is always coded here, as code 0 (the negative-zero code ``top | 0`` is never produced);
- top bit 1: negative half, low bits = the magnitude: E1M2 magnitude code (3 bits) for fp4; ``|q| - 1``
  (``-1 .. -32`` as ``0 .. 31``) for fp6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.formats.blocks import blocks, whole_rows
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
    """DFQ codes (``x``'s shape, uint8, unpacked) and both float32 scales (public layout, ``scales.py``)."""

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


def _dfq_scales(xc: torch.Tensor, v: _Variant) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_neg, s_pos) per row, ``(rows, 1)``; a missing half gets scale 1 (``guard_scale``)."""
    mn, mx = row_minmax(xc)
    s_neg = guard_scale(mn.neg_().clamp_(min=0.0).div_(v.neg.max_value))
    s_pos = guard_scale(mx.clamp_(min=0.0).div_(v.pos.max_value))
    return s_neg, s_pos


def _dfq_block(xc: torch.Tensor, s_neg, s_pos, v: _Variant, rounding: str, out: torch.Tensor | None):
    """Grid values (unscaled, zeros ``+0``) of one block, the mask ``x <= 0`` and the per-element scale."""
    neg = torch.le(xc, 0)
    s_sel = torch.where(neg, s_neg, s_pos)
    t = torch.div(xc, s_sel) if out is None else torch.div(xc, s_sel, out=out)
    if v.neg.name == "e1m2" and v.pos.name == "e2m1" and rounding == "rne":
        # Fast path, both halves in one pass (the tests check it against the general path below):
        # (t + M) - M with M = 1.5 * step * 2**23 rounds to multiples of `step`, ties to even (grid.py).
        t.clamp_(-1.75, 6.0)
        m = torch.bitwise_and(t.view(torch.int32), 0x7F800000)
        m.clamp_(min=127 << 23).add_((22 << 23) | 0x400000)  # E2M1: step 2**(max(e, 0) - 1)
        big = m.view(torch.float32).masked_fill_(neg, 1.5 * 2.0**21)  # E1M2 on [-1.75, 0]: step 0.25
        t.add_(big).sub_(big)  # zero results are +0
    else:
        q_neg = _round_(t.clone(), v.neg, rounding, xc)
        t.copy_(torch.where(neg, q_neg, _round_(t, v.pos, rounding, xc))).add_(0.0)  # -0 -> +0
    return t, neg, s_sel


def _dfq_rows(x: torch.Tensor, group_size, dim, variant: str, rounding: str, out: torch.Tensor | None = None):
    """``((layout, variant, s_neg, s_pos), blocks)``; iterating ``blocks`` yields ``(rs, cs, q, neg, s_sel)``
    and fills the work-layout scales ``s_neg`` / ``s_pos`` ``(rows, 1)`` as it goes."""
    v = _variant(variant)
    _check_rounding(rounding)
    layout = _layout(x.shape, _resolve_group(group_size, v), dim)
    xw = layout.to_work(x)
    rows, n = xw.shape
    per_block = whole_rows(n, x.device)
    if per_block:
        s_neg = torch.empty((rows, 1), dtype=torch.float32, device=x.device)
        s_pos = torch.empty_like(s_neg)
    else:
        s_neg, s_pos = _dfq_scales(xw.to(torch.float32), v)
    plan = (layout, v, s_neg, s_pos)

    def gen():
        for rs, cs in blocks(rows, n, x.device):
            xc = xw[rs, cs].to(torch.float32)
            if per_block:
                s_neg[rs], s_pos[rs] = _dfq_scales(xc, v)
            o = None if out is None else out[rs, cs]
            yield (rs, cs, *_dfq_block(xc, s_neg[rs], s_pos[rs], v, rounding, o))

    return plan, gen()


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
    _check_rounding(rounding)
    layout = _layout(x.shape, _resolve_group(group_size, _variant(variant)), dim)
    if x.numel() == 0:
        return x.clone()
    direct = x.dtype == torch.float32
    out = torch.empty(layout.to_work(x).shape, dtype=x.dtype, device=x.device)
    _, rows = _dfq_rows(x, group_size, dim, variant, rounding, out if direct else None)
    for rs, cs, q, _neg, s_sel in rows:
        q.mul_(s_sel)
        if not direct:
            out[rs, cs] = q
    return layout.from_work(out).contiguous()


def dfq_quantize(
    x: torch.Tensor,
    *,
    group_size: int | None | str = "auto",
    dim: int = -1,
    variant: str = "fp4",
    rounding: str = "rne",
) -> DFQTensor:
    """DFQ codes and scales; ``dfq_dequantize(dfq_quantize(x)) == dfq_fake_quantize(x)`` bit for bit."""
    if bool(torch.isnan(x).any()):
        raise ValueError(f"dfq_quantize: input of shape {tuple(x.shape)} contains NaN")
    (layout, v, s_neg, s_pos), rows = _dfq_rows(x, group_size, dim, variant, rounding)
    codes = torch.empty(layout.to_work(x).shape, dtype=torch.uint8, device=x.device)
    top = 1 << (v.bits - 1)
    for rs, cs, q, neg, _ in rows:
        a = q.abs()
        if v.neg.kind == "float":
            neg_mag = _codes_from_grid(a, v.neg).to(torch.int32)
        else:
            neg_mag = a.to(torch.int32) - 1  # |q| in 1..32 -> 0..31
        pos_mag = _codes_from_grid(a.clamp_(max=v.pos.max_value), v.pos).to(torch.int32)
        codes[rs, cs] = torch.where(neg & (q != 0), neg_mag | top, pos_mag).to(torch.uint8)
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
