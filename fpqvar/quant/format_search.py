"""Per-layer format search ("MixedFormat", fpqvar-method.md section 10; MoFQ, section 12).

For each quantized linear, the weight and the input activation each get the candidate format (default
e1m2 / e2m1 / e3m0, all 4-bit) with the lowest mean squared quantization error, keeping the spec's granularity:
the weight on itself, the activation on the calibration rows of all scales (after the site's transforms).
Upstream's search script picks per block by MSE among the same three formats; its exact objective is unknown.
Ties keep the earlier candidate. A spec whose format is not among the candidates (or a DFQ activation) is kept.
"""

from __future__ import annotations

import torch

from fpqvar.quant.qlinear import quantize_activation
from fpqvar.quant.report import fake_quant_weight
from fpqvar.quant.spec import QuantSpec

__all__ = ["search_weight_format", "search_act_format"]


def _best(errs: dict[str, float]) -> str:
    return min(errs, key=lambda k: (errs[k], list(errs).index(k)))


@torch.no_grad()
def search_weight_format(w_OI: torch.Tensor, spec: QuantSpec, candidates: tuple[str, ...]) -> tuple[QuantSpec, dict]:
    if spec.fmt not in candidates:
        return spec, {}
    w = w_OI.float()
    errs = {f: float((fake_quant_weight(w, spec.with_fmt(f)) - w).pow(2).mean()) for f in candidates}
    return spec.with_fmt(_best(errs)), errs


@torch.no_grad()
def search_act_format(x_NC: torch.Tensor, spec: QuantSpec, candidates: tuple[str, ...]) -> tuple[QuantSpec, dict]:
    if spec.fmt not in candidates or spec.dfq is not None or spec.static or x_NC.numel() == 0:
        return spec, {}
    x = x_NC.float()
    errs = {f: float((quantize_activation(x, spec.with_fmt(f)) - x).pow(2).mean()) for f in candidates}
    return spec.with_fmt(_best(errs)), errs
