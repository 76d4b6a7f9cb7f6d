"""SmoothQuant (Xiao et al., arXiv 2211.10438; fpqvar-method.md section 12): migrate activation outliers into the
weights with a per-input-channel scale

    s_j = max|X_j|^alpha / max_o |W_oj|^(1 - alpha),    X -> X / s,    W -> W * s.

In VAR only the ``mat_qkv`` and ``fc1`` inputs are smoothed: they are AdaLN outputs, so ``X / s`` folds into
``ada_lin`` for free (``fuse.py`` with lam = 1 / s). The ``proj`` input (attention output) and the ``fc2`` input
(GELU output) have no per-channel affine producer to absorb ``1 / s``, so they are not smoothed (as in the
SmoothQuant paper, which also smooths only the inputs of linears that follow a LayerNorm).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fpqvar.transforms.sites import site_linear, transform_site_

__all__ = ["smoothquant_scales", "smooth_site_", "smooth_block_"]


def smoothquant_scales(act_absmax_C: torch.Tensor, w_OI: torch.Tensor, alpha: float = 0.5,
                       eps: float = 1e-5) -> torch.Tensor:
    """SmoothQuant scales ``s`` (float64, ``(C,)``), applied as ``X / s`` and ``W * s``.

    ``act_absmax_C``: per-input-channel max|X| over the calibration set; ``w_OI``: the consuming weight. Both
    maxima are clamped to ``>= eps`` (dead channels) and so is ``s``, so ``s`` is finite and > 0.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smoothquant_scales: alpha must be in [0, 1], got {alpha}")
    if eps <= 0:
        raise ValueError(f"smoothquant_scales: eps must be > 0, got {eps}")
    if w_OI.ndim != 2 or act_absmax_C.shape != (w_OI.shape[1],):
        raise ValueError(f"smoothquant_scales: act_absmax_C {tuple(act_absmax_C.shape)} must be (in_features,) of "
                         f"w_OI {tuple(w_OI.shape)}")
    a = act_absmax_C.detach().to(torch.float64).abs().clamp_min(eps)
    w = w_OI.detach().to(torch.float64).abs().amax(dim=0).clamp_min(eps)
    return (a.pow(alpha) / w.pow(1.0 - alpha)).clamp_min(eps)


def smooth_site_(block: nn.Module, site: str, act_absmax_C: torch.Tensor, alpha: float = 0.5,
                 eps: float = 1e-5) -> torch.Tensor:
    """Smooth the ``mat_qkv`` (site "attn") or ``fc1`` (site "ffn") input of ``block`` in place; returns ``s``.

    ``X / s`` goes into ``ada_lin`` (online multiply for shared AdaLN), ``W * s`` into the weight.
    """
    s = smoothquant_scales(act_absmax_C, site_linear(block, site).weight, alpha, eps)
    transform_site_(block, site, lam_C=1.0 / s)
    return s


def smooth_block_(block: nn.Module, act_absmax_qkv_C: torch.Tensor, act_absmax_fc1_C: torch.Tensor,
                  alpha: float = 0.5, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Both smoothable sites of ``block``; returns ``(s_qkv, s_fc1)``."""
    return (smooth_site_(block, "attn", act_absmax_qkv_C, alpha, eps),
            smooth_site_(block, "ffn", act_absmax_fc1_C, alpha, eps))
