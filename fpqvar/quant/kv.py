"""KV-cache quantization (fpqvar-method.md section 9): the cached K and V of earlier scales are fake-quantized per
token and head (absmax over head_dim; E2M3 -> s = absmax / 7.5) right before the current scale's K / V are
appended; the current scale's own K / V stay float for that step.

The model calls ``attn.kv_quantizer(t)`` on the cached tensors ``(B, H, L, head_dim)``. ``KVQuantizer`` is a
plain callable (not an ``nn.Module``), so installing it changes neither the module tree nor the state_dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.quant.spec import QuantSpec

__all__ = ["KVQuantizer", "install_kv_quantizers", "remove_kv_quantizers"]


@dataclass(frozen=True)
class KVQuantizer:
    spec: QuantSpec

    def __call__(self, t_BHLc: torch.Tensor) -> torch.Tensor:
        from fpqvar.quant.qlinear import quantize_activation

        # granularity 'token' = one scale per (b, h, l) row over head_dim; 'group' splits head_dim further
        return quantize_activation(t_BHLc, self.spec)


def install_kv_quantizers(var, spec: QuantSpec) -> int:
    q = KVQuantizer(spec)
    for b in var.blocks:
        b.attn.kv_quantizer = q
    return len(var.blocks)


def remove_kv_quantizers(var) -> None:
    for b in var.blocks:
        b.attn.kv_quantizer = None
