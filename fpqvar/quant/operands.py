"""Quantizers of the attention operands and the KV cache (sites ``blocks.{i}.attn.q`` / ``.k`` / ``.v`` /
``.attn_map`` and ``blocks.{i}.attn.kv`` of ``fpqvar.model.sites``).

- Operands (LiteVAR's attention quantization, fpqvar-method.md section 11): the model calls
  ``attn.operand_hooks[role](t)`` right before its matmuls on q ``(B, H, Lq, c)``, k and v ``(B, H, Lk, c)``
  (cached keys / values included) and the softmax map ``(B, H, Lq, Lk)``. The spec's granularity acts along the
  last dim: ``token`` = one scale per (batch, head, token) row over head_dim for q / k / v, per query row over
  the keys for the map; ``channel`` (V only, LiteVAR) = one scale per (batch, head, channel) across the tokens;
  ``tensor`` = one scale for the whole operand; ``fixed_scale`` = a constant scale (LiteVAR's map: 1/256).
- KV cache (section 9): the cached K and V of earlier scales are fake-quantized right before the current scale's
  K / V are appended (``attn.kv_quantizer``); the current scale's own K / V stay float for that step.

Both are plain callables (not modules): installing them changes neither the module tree nor the state_dict; the
packed file records them through the recipe and reinstalls them on load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.quant.qlinear import quantize_activation
from fpqvar.quant.spec import QuantSpec

__all__ = ["OperandQuantizer", "KVQuantizer", "install_operand_quantizers", "install_kv_quantizers",
           "remove_kv_quantizers", "operand_specs"]


@dataclass(frozen=True)
class OperandQuantizer:
    spec: QuantSpec

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.spec.granularity == "channel":  # per channel across tokens: rows = (B, H, c) over L
            tok = QuantSpec(**{**self.spec.to_dict(), "granularity": "token"})
            return quantize_activation(t.transpose(-1, -2), tok).transpose(-1, -2).contiguous()
        return quantize_activation(t, self.spec)


KVQuantizer = OperandQuantizer  # the cached K / V are quantized the same way (per token and head over c)


def install_operand_quantizers(var, specs: dict[str, QuantSpec]) -> int:
    """``specs``: site name (``blocks.3.attn.k``) -> spec. Returns the number of hooks installed."""
    n = 0
    for name, spec in specs.items():
        path, role = name.rsplit(".", 1)
        attn = var.get_submodule(path)
        if role == "kv":
            attn.kv_quantizer = KVQuantizer(spec)
        else:
            attn.operand_hooks[role] = OperandQuantizer(spec)
        n += 1
    return n


def install_kv_quantizers(var, spec: QuantSpec) -> int:
    return install_operand_quantizers(var, {f"blocks.{i}.attn.kv": spec for i in range(len(var.blocks))})


def remove_kv_quantizers(var) -> None:
    for b in var.blocks:
        b.attn.kv_quantizer = None


def operand_specs(var) -> dict[str, dict]:
    """The installed operand / KV quantizers as ``{site name: spec dict}`` (what the packed file records)."""
    out = {}
    for i, b in enumerate(var.blocks):
        for role, q in sorted(b.attn.operand_hooks.items()):
            out[f"blocks.{i}.attn.{role}"] = q.spec.to_dict()
        if b.attn.kv_quantizer is not None:
            out[f"blocks.{i}.attn.kv"] = b.attn.kv_quantizer.spec.to_dict()
    return out
