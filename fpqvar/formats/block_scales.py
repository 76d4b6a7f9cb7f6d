"""Block scales of the MX and NVFP4 formats (``block_formats.py``), from the float32 bit fields.

Inputs are per-block absmax values over finite elements (``scales._row_absmax``), float32, shape
``(rows, 1)``. Rules and sources are in ``block_formats.py``; the range guards here are ours and keep every
dequantized value finite for finite input (issue 16 item 5):

MX (E8M0): the unbiased exponent ``e`` is clamped to ``[-127, 127 - emax_elem]``. The lower end is E8M0's
smallest scale (OCP v1.0 5.4.1: code 0 = 2**-127; an all-zero block gets it, as in torchao). The upper cap keeps
``elem_max * 2**e < 2**128``; the ``floor`` rule never reaches it for finite input, ``ceil`` / ``even`` /
``rceil`` can for ``amax >= 2**127`` (torchao's ``CEIL`` then dequantizes to Inf). The stored byte is
``e + 127``; 255 (NaN) is never produced.

NVFP4 (two-level): ``tensor_scale = amax_tensor / (448 * 6)`` (float32; NVIDIA / torchao
``per_tensor_amax_to_scale``), clamped to ``[2**-120, 2**116]`` (ours: below, ``1 / tensor_scale`` and the
encode reciprocal overflow; above, ``6 * 448 * tensor_scale`` would; an all-zero tensor gets ``2**-120``
instead of torchao's 0, which yields NaN codes there). The block scale is
``e4m3_rne(clamp(amax_block / 6 / tensor_scale, 2**-6, 448))`` (torchao ``nvfp4_quantize``: clamped to E4M3's
smallest normal, so subnormal E4M3 scales never occur), and elements are encoded as
``x * ((1 / tensor_scale) / block_scale)``: a reciprocal multiply, not a division, as NVIDIA's kernels and
torchao compute it (the float32 results differ from ``x / (tensor_scale * block_scale)`` in the last bit).
"""

from __future__ import annotations

import torch

from fpqvar.formats.block_formats import MX_SCALE_RULES, BlockFormat
from fpqvar.formats.grid import _codes_from_grid, _round_float_
from fpqvar.formats.spec import get_format

__all__ = ["E8M0_BIAS", "NVFP4_TENSOR_SCALE_RANGE", "mx_exponent", "e8m0_to_float", "nvfp4_tensor_scale",
           "check_nvfp4_tensor_scale", "nvfp4_block_scale"]

E8M0_BIAS = 127
_E8M0_EMIN = -127
_F32_MANT_BITS = 23
_E4M3 = get_format("e4m3")
_E4M3_MIN_NORMAL = 2.0**-6
NVFP4_TENSOR_SCALE_RANGE = (2.0**-120, 2.0**116)


def _check_rule(rule: str) -> None:
    if rule not in MX_SCALE_RULES:
        raise ValueError(f"MX scale rule must be one of {MX_SCALE_RULES}, got {rule!r}")


def _exponent_field(a: torch.Tensor) -> torch.Tensor:
    """Unbiased float32 exponent of ``a >= 0`` from its bit field; 0 and subnormals give -127."""
    return torch.bitwise_right_shift(a.view(torch.int32), _F32_MANT_BITS).bitwise_and_(0xFF).sub_(127)


def mx_exponent(amax: torch.Tensor, fmt: BlockFormat, rule: str = "floor") -> torch.Tensor:
    """Unbiased E8M0 exponent (int32, ``amax``'s shape) of each block; see the module docstring."""
    _check_rule(rule)
    a = amax.to(torch.float32).contiguous()
    emax = fmt.emax_elem
    if rule == "floor":
        e = _exponent_field(a) - emax
    elif rule == "ceil":
        mant_nonzero = a.view(torch.int32).bitwise_and(0x7FFFFF).ne(0).to(torch.int32)
        e = _exponent_field(a) + mant_nonzero - emax
    elif rule == "even":
        # round amax to the element's mbits (add half of the dropped part: a tie rounds up), then floor
        half = 1 << (_F32_MANT_BITS - fmt.element.mbits - 1)
        rounded = a.view(torch.int32).add(half).bitwise_and_(0x7F800000)
        e = torch.bitwise_right_shift(rounded, _F32_MANT_BITS) - 127 - emax
    else:  # rceil: ceil(log2(r)), r = amax / elem_max in float32, exactly (frexp: r = m * 2**k, m in [0.5, 1))
        r = a / fmt.element.max_value
        m, k = torch.frexp(r)
        e = k.to(torch.int32) - (m == 0.5).to(torch.int32)
        e = torch.where(r == 0, torch.full_like(e, _E8M0_EMIN), e)
    return e.clamp_(_E8M0_EMIN, 127 - emax)


def e8m0_to_float(e: torch.Tensor) -> torch.Tensor:
    """``2**e`` as float32 (exact, ``2**-127`` is a float32 subnormal)."""
    return torch.ldexp(torch.ones(e.shape, dtype=torch.float32, device=e.device), e.to(torch.int32))


def nvfp4_tensor_scale(amax: torch.Tensor | float, elem_max: float = 6.0) -> torch.Tensor:
    """float32 0-d NVFP4 tensor scale ``amax / (448 * elem_max)``, clamped to ``NVFP4_TENSOR_SCALE_RANGE``.

    ``elem_max``: the element format's largest value (E2M1: 6; the E1M2 side of block DFQ passes 1.75).
    """
    a = torch.as_tensor(amax, dtype=torch.float32)
    if a.numel() != 1 or not bool(torch.isfinite(a).all()) or float(a) < 0:
        raise ValueError(f"NVFP4 tensor amax must be one finite value >= 0, got {amax!r}")
    lo, hi = NVFP4_TENSOR_SCALE_RANGE
    return (a.reshape(()) / (_E4M3.max_value * elem_max)).clamp(lo, hi)  # 448 * 6 = 2688 for E2M1


def check_nvfp4_tensor_scale(ts: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    """Validate a static (calibrated) tensor scale: one float32 in ``NVFP4_TENSOR_SCALE_RANGE``."""
    t = torch.as_tensor(ts, dtype=torch.float32, device=device)
    lo, hi = NVFP4_TENSOR_SCALE_RANGE
    if t.numel() != 1 or not bool(((t >= lo) & (t <= hi)).all()):
        raise ValueError(f"NVFP4 tensor_scale must be one float32 in [2**-120, 2**116] (finite, > 0), got {ts!r}; "
                         "use nvfp4_tensor_scale(amax) to derive one from a calibrated absmax")
    return t.reshape(())


def nvfp4_block_scale(amax: torch.Tensor, tensor_scale: torch.Tensor,
                      elem_max: float = 6.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(E4M3 block scale values as float32, their uint8 codes) for block absmax ``amax``; ``elem_max`` the
    element's largest value (E2M1: 6)."""
    sb = (amax.to(torch.float32) / elem_max / tensor_scale).clamp_(_E4M3_MIN_NORMAL, _E4M3.max_value)
    sb = _round_float_(sb, _E4M3, "rne", sb)
    return sb, _codes_from_grid(sb, _E4M3)
