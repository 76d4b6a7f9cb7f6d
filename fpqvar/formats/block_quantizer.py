"""MX / NVFP4 quantization: the one entry point the quant layer calls for block-scaled formats.

- ``quantize_codes(x, fmt, axis=-1)`` -> :class:`BlockQuantized` (element codes, block scale codes, NVFP4's
  float32 tensor scale);
- ``dequantize_codes(q)`` -> values in ``x``'s dtype;
- ``quantize_dequantize(x, fmt, axis=-1)`` -> the same values in one pass (fake quantization);
  ``dequantize_codes(quantize_codes(x)) == quantize_dequantize(x)`` bit for bit.

``fmt`` is a name of ``block_formats.BLOCK_FORMATS`` (``"mxfp4"``, ``"mxfp6_e2m3"``, ``"mxfp6_e3m2"``,
``"mxfp8_e4m3"``, ``"nvfp4"``) or a :class:`BlockFormat`. Blocks run along ``axis`` (the reduction dim: the
input dim of a weight ``w_OI``, the channel dim of an activation ``x_..C``), whose size must be a multiple of
the block size. All arithmetic is float32 (any float dtype in, exact for bf16 / fp16 inputs), on CPU or CUDA.

Per block (``block_scales.py`` has the scale rules and range guards):

- MX: ``X = 2**e`` (E8M0), ``code = rne_sat(x / X)`` on the element grid, ``x_hat = value(code) * X``;
- NVFP4: ``S = tensor_scale * block_scale``; ``code = rne_sat(x * ((1 / tensor_scale) / block_scale))``,
  ``x_hat = value(code) * S``.

Element rounding is ``grid.py``'s RNE with saturation to +-max (the sign of zero kept, code ``0b1000...``).
Outputs narrower than float32 (float16) saturate at their own maximum (``grid.saturate_for_``).
NaN / Inf policy (as ``grid.py``): block and tensor absmax use finite values only; Inf saturates; NaN
propagates in ``quantize_dequantize`` and raises ``ValueError`` in ``quantize_codes``. torchao instead lets
an Inf / NaN spoil its block (scale 2**126 / NaN).

Storage (``pack_block`` / ``unpack_block``), torchao's layout along the last dim:

- element codes: E2M1 two per byte, element ``2i`` in the low nibble (``packing.pack_int4``, = torchao's
  ``pack_uint4`` / ``float4_e2m1fn_x2``); E4M3 one byte per value (= ``float8_e4m3fn`` bits); FP6 packed four
  in three bytes (``packing.pack_int6``; torchao keeps FP6 one per byte, equal to our unpacked codes);
- block scales: one byte each (E8M0 biased exponent = ``float8_e8m0fnu`` bits; NVFP4 E4M3 bits), in the public
  scale layout (``x``'s shape with ``shape[axis] // block_size`` along ``axis``; torchao's unswizzled layout
  for ``axis=-1``);
- NVFP4's tensor scale: a float32 0-d tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.formats.block_formats import MX_SCALE_RULES, BlockFormat, get_block_format
from fpqvar.formats.block_scales import (
    E8M0_BIAS,
    check_nvfp4_tensor_scale,
    e8m0_to_float,
    mx_exponent,
    nvfp4_block_scale,
    nvfp4_tensor_scale,
)
from fpqvar.formats.blocks import blocks
from fpqvar.formats.grid import _codes_from_grid, _decode_table, _round_float_, saturate_for_
from fpqvar.formats.packing import pack_int4, pack_int6, unpack_int4, unpack_int6
from fpqvar.formats.scales import Layout, _row_absmax, resolve_layout
from fpqvar.formats.spec import get_format

__all__ = ["BlockQuantized", "quantize_codes", "dequantize_codes", "quantize_dequantize", "block_scale_values",
           "pack_block", "unpack_block"]

_E4M3 = get_format("e4m3")


@dataclass(frozen=True)
class BlockQuantized:
    """Codes (``torch.uint8``, ``x``'s shape, unpacked), block scale codes (uint8, public scale layout) and,
    for NVFP4, the float32 0-d ``tensor_scale``."""

    codes: torch.Tensor
    scales: torch.Tensor
    fmt: BlockFormat
    axis: int
    shape: tuple[int, ...]
    tensor_scale: torch.Tensor | None = None
    scale_rule: str = "floor"
    dtype: torch.dtype = torch.float32

    @property
    def layout(self) -> Layout:
        return _layout(self.shape, self.fmt, self.axis)


def _layout(shape, fmt: BlockFormat, axis: int) -> Layout:
    if len(shape) == 0:
        raise ValueError(f"{fmt.name}: need a tensor with at least 1 dim, got shape {tuple(shape)}")
    return resolve_layout(shape, group_size=fmt.block_size, dim=axis, granularity="group")


class _Plan:
    """Validated arguments, the work view ``(blocks, block_size)`` and NVFP4's tensor scale."""

    def __init__(self, x: torch.Tensor, fmt, axis: int, scale_rule: str, tensor_scale):
        self.fmt = get_block_format(fmt)
        if not x.dtype.is_floating_point:
            raise ValueError(f"quantize to {self.fmt.name}: x must be a float tensor, got {x.dtype}")
        self.layout = _layout(x.shape, self.fmt, axis)
        self.xw = self.layout.to_work(x)
        self.rule = scale_rule
        self.mx = self.fmt.scale_kind == "e8m0"
        if scale_rule not in MX_SCALE_RULES:
            raise ValueError(f"scale_rule must be one of {MX_SCALE_RULES}, got {scale_rule!r}")
        if not self.mx and scale_rule != "floor":
            raise ValueError(f"scale_rule applies to MX formats only; {self.fmt.name} has E4M3 block scales")
        if self.mx and tensor_scale is not None:
            raise ValueError(f"{self.fmt.name} has no tensor scale; tensor_scale= is for nvfp4")
        self.ts = None
        if self.fmt.tensor_scale:
            if tensor_scale is None:
                amax = _row_absmax(self.xw.reshape(1, -1).to(torch.float32)) if x.numel() else torch.zeros(1)
                self.ts = nvfp4_tensor_scale(amax).to(x.device)
            else:
                self.ts = check_nvfp4_tensor_scale(tensor_scale, x.device)
        rows = self.xw.shape[0]
        self.scale_codes = torch.empty((rows, 1), dtype=torch.uint8, device=x.device)

    def rows(self):
        """Yield ``(rs, q, S)``: element grid values ``q`` (float32) and float32 scales ``S`` per block row."""
        elem = self.fmt.element
        for rs, _ in blocks(*self.xw.shape, self.xw.device):
            xc = self.xw[rs].to(torch.float32)
            amax = _row_absmax(xc)
            if self.mx:
                e = mx_exponent(amax, self.fmt, self.rule)
                s = e8m0_to_float(e)
                self.scale_codes[rs] = (e + E8M0_BIAS).to(torch.uint8)
                q = xc / s
            else:
                sb, codes = nvfp4_block_scale(amax, self.ts)
                self.scale_codes[rs] = codes
                q = xc * ((1.0 / self.ts) / sb)  # torchao / NVIDIA order of operations (block_scales.py)
                s = self.ts * sb
            yield rs, _round_float_(q, elem, "rne", xc), s


def quantize_codes(
    x: torch.Tensor,
    fmt: str | BlockFormat,
    axis: int = -1,
    *,
    scale_rule: str = "floor",
    tensor_scale: torch.Tensor | float | None = None,
) -> BlockQuantized:
    """Codes and scales of ``x`` in ``fmt``; NaN raises ``ValueError``.

    ``scale_rule``: the E8M0 rule for MX formats (``block_formats.MX_SCALE_RULES``, default the OCP ``floor``).
    ``tensor_scale``: NVFP4's static per-tensor scale (calibrated; ``block_scales.nvfp4_tensor_scale(amax)``);
    ``None`` computes it from this tensor's absmax.
    """
    plan = _Plan(x, fmt, axis, scale_rule, tensor_scale)
    if bool(torch.isnan(x).any()):
        raise ValueError(f"quantize to {plan.fmt.name}: input of shape {tuple(x.shape)} contains NaN")
    codes = torch.empty(plan.xw.shape, dtype=torch.uint8, device=x.device)
    for rs, q, _ in plan.rows():
        codes[rs] = _codes_from_grid(q, plan.fmt.element)
    layout = plan.layout
    return BlockQuantized(
        codes=layout.from_work(codes).contiguous(),
        scales=layout.scale_from_work(plan.scale_codes).contiguous(),
        fmt=plan.fmt,
        axis=layout.dim,
        shape=tuple(x.shape),
        tensor_scale=plan.ts,
        scale_rule=scale_rule,
        dtype=x.dtype,
    )


def quantize_dequantize(
    x: torch.Tensor,
    fmt: str | BlockFormat,
    axis: int = -1,
    *,
    scale_rule: str = "floor",
    tensor_scale: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Fake quantization: ``dequantize_codes(quantize_codes(x, ...))`` in one pass; ``x``'s shape and dtype."""
    plan = _Plan(x, fmt, axis, scale_rule, tensor_scale)
    out = torch.empty(plan.xw.shape, dtype=x.dtype, device=x.device)
    for rs, q, s in plan.rows():
        out[rs] = saturate_for_(q.mul_(s), x.dtype)
    return plan.layout.from_work(out).contiguous()


def block_scale_values(q: BlockQuantized) -> torch.Tensor:
    """float32 scale of every block (public scale layout): ``2**e`` (MX) or ``tensor_scale * block_scale``."""
    if q.fmt.scale_kind == "e8m0":
        if q.scales.numel() and bool((q.scales == 255).any()):
            raise ValueError(f"{q.fmt.name}: E8M0 scale code 255 is NaN")
        return e8m0_to_float(q.scales.to(torch.int32) - E8M0_BIAS)
    sb = _decode_table(_E4M3, q.scales.device)[q.scales.to(torch.int64)]
    if not bool((torch.isfinite(sb) & (sb > 0)).all()):
        raise ValueError(f"{q.fmt.name}: block scales must be finite E4M3 codes > 0")
    return q.tensor_scale * sb


def dequantize_codes(q: BlockQuantized) -> torch.Tensor:
    """Values of a :class:`BlockQuantized`, in its original dtype."""
    layout = q.layout
    codes_w = layout.to_work(q.codes)
    if codes_w.numel() and int(codes_w.max()) >= (1 << q.fmt.element_bits):
        raise ValueError(f"{q.fmt.name}: element codes must be < {1 << q.fmt.element_bits}")
    vals = _decode_table(q.fmt.element, codes_w.device)[codes_w.to(torch.int64)]
    if not bool(torch.isfinite(vals).all()):
        raise ValueError(f"{q.fmt.name}: element codes include NaN codes")
    out = saturate_for_(vals * layout.scale_to_work(block_scale_values(q)), q.dtype)
    return layout.from_work(out).to(q.dtype)


def pack_block(q: BlockQuantized) -> dict[str, torch.Tensor]:
    """Storage tensors: ``codes`` (packed along the last dim), ``scales`` (uint8), ``tensor_scale`` (NVFP4)."""
    bits = q.fmt.element_bits
    packed = pack_int4(q.codes) if bits == 4 else pack_int6(q.codes) if bits == 6 else q.codes.clone()
    out = {"codes": packed, "scales": q.scales.clone()}
    if q.tensor_scale is not None:
        out["tensor_scale"] = q.tensor_scale.clone()
    return out


def unpack_block(
    tensors: dict[str, torch.Tensor],
    fmt: str | BlockFormat,
    shape: tuple[int, ...],
    axis: int = -1,
    *,
    scale_rule: str = "floor",
    dtype: torch.dtype = torch.float32,
) -> BlockQuantized:
    """Inverse of :func:`pack_block`; shapes and dtypes are checked (errors name the key)."""
    fmt = get_block_format(fmt)
    shape = tuple(int(s) for s in shape)
    layout = _layout(shape, fmt, axis)
    for key in ("codes", "scales") + (("tensor_scale",) if fmt.tensor_scale else ()):
        if key not in tensors:
            raise ValueError(f"unpack {fmt.name}: missing tensor {key!r}")
    packed, scales = tensors["codes"], tensors["scales"]
    if packed.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise ValueError(f"unpack {fmt.name}: 'codes' and 'scales' must be uint8, got {packed.dtype}, {scales.dtype}")
    n = shape[-1]
    bits = fmt.element_bits
    codes = unpack_int4(packed, n) if bits == 4 else unpack_int6(packed, n) if bits == 6 else packed
    if tuple(codes.shape) != shape:
        raise ValueError(f"unpack {fmt.name}: 'codes' unpack to shape {tuple(codes.shape)}, expected {shape}")
    if tuple(scales.shape) != layout.scale_shape:
        raise ValueError(f"unpack {fmt.name}: 'scales' has shape {tuple(scales.shape)}, expected "
                         f"{layout.scale_shape}")
    ts = None
    if fmt.tensor_scale:
        t = tensors["tensor_scale"]
        if t.dtype != torch.float32:
            raise ValueError(f"unpack {fmt.name}: 'tensor_scale' must be float32, got {t.dtype}")
        ts = check_nvfp4_tensor_scale(t, t.device)
    return BlockQuantized(codes=codes.contiguous(), scales=scales, fmt=fmt, axis=layout.dim, shape=shape,
                          tensor_scale=ts, scale_rule=scale_rule, dtype=dtype)
