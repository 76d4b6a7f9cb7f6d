"""Block-scaled formats (MXFP4 / MXFP6 / MXFP8, NVFP4; ``fpqvar.formats.block_quantizer``) in a QuantLinear.

A block-format weight ``w_OI`` is held as the format stores it: element codes (uint8 ``(O, I)``, unpacked),
block scale bytes (uint8 ``(O, I / block)``: E8M0 biased exponents for MX, E4M3 bits for NVFP4) and, for NVFP4,
the float32 0-d tensor scale (``weight_tensor_scale``; computed from the weight's absmax at conversion). Blocks
run along in_features (the reduction dim, OCP MX v1.0 section 6). The float weight is exactly
``dequantize_codes`` of those.

Activations are fake-quantized with ``quantize_dequantize`` along the last (input) dim; NVFP4's tensor scale is
then dynamic, the absmax of the whole input tensor of that call (all tokens of the batch, as torchao's dynamic
NVFP4 activations). ``dfq="fp4"`` runs block DFQ (``formats.block_dfq``) instead.
"""

from __future__ import annotations

import torch

from fpqvar.formats import block_dfq_fake_quantize, dequantize_codes, quantize_codes, quantize_dequantize
from fpqvar.formats.block_quantizer import BlockQuantized
from fpqvar.quant.spec import QuantSpec

__all__ = ["quantize_block_weight", "block_weight_from_codes", "quantize_block_activation", "block_quantized"]


def _rule(spec: QuantSpec) -> str:
    return spec.scale_rule or "floor"  # NVFP4 specs carry None (no E8M0 rule); the quantizer's default


def quantize_block_weight(w_OI: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor,
                                                                       torch.Tensor | None]:
    """``(codes uint8 (O, I), scale bytes uint8 (O, I / block), tensor_scale float32 0-d or None)``."""
    q = quantize_codes(w_OI.detach().float(), spec.fmt, axis=1, scale_rule=_rule(spec))
    return q.codes, q.scales, q.tensor_scale


def block_quantized(codes: torch.Tensor, scales: torch.Tensor, tensor_scale: torch.Tensor | None,
                    spec: QuantSpec) -> BlockQuantized:
    b = spec.block
    return BlockQuantized(codes=codes, scales=scales, fmt=b, axis=1, shape=tuple(codes.shape),
                          tensor_scale=None if tensor_scale is None else tensor_scale.reshape(()).float(),
                          scale_rule=_rule(spec), dtype=torch.float32)


def block_weight_from_codes(codes: torch.Tensor, scales: torch.Tensor, tensor_scale: torch.Tensor | None,
                            spec: QuantSpec, dtype: torch.dtype) -> torch.Tensor:
    """The dequantized weight (``dequantize_codes`` in float32, cast to ``dtype``)."""
    if spec.block.tensor_scale and tensor_scale is None:
        raise ValueError(f"{spec.fmt} weight: the tensor scale is missing")
    return dequantize_codes(block_quantized(codes, scales, tensor_scale, spec)).to(dtype)


def quantize_block_activation(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Fake-quantize a linear's input ``x_..C`` along its last dim in the spec's block format (dtype kept)."""
    if spec.dfq is not None:
        return block_dfq_fake_quantize(x, spec.fmt, axis=-1, scale_rule=_rule(spec))
    return quantize_dequantize(x, spec.fmt, axis=-1, scale_rule=_rule(spec))
