"""Block DFQ: FPQVAR's dual-format FC2-input quantization with the block scales of MXFP4 / NVFP4 (issue 14).

FPQVAR's DFQ-FP4 (``dfq.py``, fpqvar-method.md section 6) splits each group at zero: values ``x <= 0`` (zero
included) go on the E1M2 grid {-1.75 .. 0}, values ``x > 0`` on the E2M1 grid {0 .. 6}, each side with its own
absmax scale (a float32 per group of 128). Here the groups are the format's blocks (32 for ``mxfp4``, 16 for
``nvfp4``, along ``axis``) and each side's scale is chosen and stored the way that format stores a block scale
(``block_scales.py``):

- ``mxfp4``: ``X_side = 2**e_side``, an E8M0 power of two per side per block, ``e_side`` from the side's
  absmax by the MX ``scale_rule`` (OCP v1.0 ``floor``: ``floor(log2 amax_side) - emax_side``, ``emax`` = 0 for
  E1M2 (max 1.75), 2 for E2M1 (max 6)); ``x_hat = rne_sat(x / X_side) * X_side``;
- ``nvfp4``: one float32 tensor scale per side, ``ts_side = amax_side(tensor) / (448 * max_side)`` (NVFP4's
  ``amax / (448 * 6)`` with the side's element maximum: 6 or 1.75), and an E4M3 block scale per side per block,
  ``sb_side = e4m3_rne(clamp(amax_side(block) / max_side / ts_side, 2**-6, 448))``;
  ``x_hat = rne_sat(x * ((1 / ts_side) / sb_side)) * (ts_side * sb_side)`` (NVFP4's reciprocal multiply).

So a block stores 4-bit codes (top bit = side, as ``dfq.py``) plus two scale bytes instead of one: 4 + 16/32 =
4.5 bits per value for MXFP4-DFQ, 4 + 16/16 = 5 for NVFP4-DFQ (+ 64 bits per tensor).

As in ``dfq.py``: zero results are ``+0``; a side without values keeps the smallest scale of its type (never
used). NaN / Inf follow ``grid.py``: absmax over finite values only, Inf saturates, NaN propagates.
"""

from __future__ import annotations

import torch

from fpqvar.formats.block_formats import MX_SCALE_RULES, BlockFormat, get_block_format
from fpqvar.formats.block_scales import e8m0_to_float, mx_exponent, nvfp4_block_scale, nvfp4_tensor_scale
from fpqvar.formats.blocks import blocks
from fpqvar.formats.grid import _round_float_, saturate_for_
from fpqvar.formats.scales import resolve_layout, row_minmax
from fpqvar.formats.spec import get_format

__all__ = ["BLOCK_DFQ_FORMATS", "block_dfq_fake_quantize"]

_NEG, _POS = get_format("e1m2"), get_format("e2m1")
BLOCK_DFQ_FORMATS = ("mxfp4", "nvfp4")  # the E2M1 block formats (DFQ-FP4's positive side is E2M1)


def _check(fmt) -> BlockFormat:
    b = get_block_format(fmt)
    if b.name not in BLOCK_DFQ_FORMATS:
        raise ValueError(f"block DFQ is defined for {BLOCK_DFQ_FORMATS} (E2M1 elements), got {b.name!r}")
    return b


def _side_amax(xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max |x| over x <= 0, max x over x > 0) per row, finite values only, ``(rows, 1)`` float32 (0 if none)."""
    mn, mx = row_minmax(xw)
    return mn.neg().clamp_(min=0.0), mx.clamp(min=0.0)


def block_dfq_fake_quantize(x: torch.Tensor, fmt: str | BlockFormat = "mxfp4", axis: int = -1, *,
                            scale_rule: str = "floor") -> torch.Tensor:
    """Block DFQ fake quantization of ``x`` (any float dtype; ``x.shape[axis]`` a multiple of the block size);
    same shape and dtype. ``scale_rule``: the E8M0 rule of ``mxfp4`` (``block_formats.MX_SCALE_RULES``)."""
    b = _check(fmt)
    mx = b.scale_kind == "e8m0"
    if not mx and scale_rule != "floor":
        raise ValueError(f"scale_rule applies to MX formats only; {b.name} has E4M3 block scales")
    if not x.dtype.is_floating_point:
        raise ValueError(f"block DFQ ({b.name}): x must be a float tensor, got {x.dtype}")
    layout = resolve_layout(x.shape, group_size=b.block_size, dim=axis, granularity="group")
    xw = layout.to_work(x)  # (blocks, block_size)
    neg_b = BlockFormat(f"{b.name}-neg", _NEG, b.block_size, b.scale_kind)  # the E1M2 side's scale rules
    if mx and scale_rule not in MX_SCALE_RULES:
        raise ValueError(f"scale_rule must be one of {MX_SCALE_RULES}, got {scale_rule!r}")
    if not mx:
        a_neg, a_pos = _side_amax(xw.reshape(1, -1).to(torch.float32)) if x.numel() else (torch.zeros(1),) * 2
        ts_neg = nvfp4_tensor_scale(a_neg, elem_max=_NEG.max_value).to(x.device)
        ts_pos = nvfp4_tensor_scale(a_pos, elem_max=_POS.max_value).to(x.device)
    out = torch.empty(xw.shape, dtype=x.dtype, device=x.device)
    for rs, _ in blocks(*xw.shape, xw.device):
        xc = xw[rs].to(torch.float32)
        a_neg, a_pos = _side_amax(xc)
        neg = torch.le(xc, 0)
        if mx:
            s_neg = e8m0_to_float(mx_exponent(a_neg, neg_b, scale_rule))
            s_pos = e8m0_to_float(mx_exponent(a_pos, b, scale_rule))
            q = xc / torch.where(neg, s_neg, s_pos)
        else:
            sb_neg, _ = nvfp4_block_scale(a_neg, ts_neg, elem_max=_NEG.max_value)
            sb_pos, _ = nvfp4_block_scale(a_pos, ts_pos, elem_max=_POS.max_value)
            q = xc * torch.where(neg, (1.0 / ts_neg) / sb_neg, (1.0 / ts_pos) / sb_pos)  # reciprocal multiply
            s_neg, s_pos = ts_neg * sb_neg, ts_pos * sb_pos
        q = torch.where(neg, _round_float_(q.clone(), _NEG, "rne", xc), _round_float_(q, _POS, "rne", xc))
        out[rs] = saturate_for_(q.mul_(torch.where(neg, s_neg, s_pos)).add_(0.0), x.dtype)  # -0 -> +0
    return layout.from_work(out).contiguous()
