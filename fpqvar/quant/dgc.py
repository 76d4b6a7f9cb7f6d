"""PTQ4ARVG's calibration selection (DGC) as its code does it (BienLuky/PTQ4ARVG ``VAR/sample_cali_dgc.py``;
baseline-facts.md section 3.6): a Mahalanobis distance, not the paper's entropy criterion.

From a pool of generated samples (both CFG halves), each row gets a feature; distances are Mahalanobis
distances to the mean of its own set (conditional rows among conditional, unconditional among unconditional,
covariance pseudo-inverted); ``share`` = fraction of conditional rows among the ``top`` largest distances. The
calibration then keeps, per batch of n samples, the conditional rows of the first ``round(share n)`` samples and
the unconditional rows of the others' count (``CalibConfig.cond_share``), as PTQ4ARVG keeps the first rows of
each half per batch.

Feature: PTQ4ARVG hooks ``var.blocks[-1]`` and takes token 0, in a calibration pass WITHOUT the attention mask.
Under the block-causal mask used here (the teacher-forced pass equals sampling) token 0 depends only on the class,
so the feature is the mean over all tokens of the last block's input instead (a deviation; which tensor the
hook reads exactly could not be determined).
"""

from __future__ import annotations

import dataclasses

import torch

from fpqvar.quant.calibrate import CalibConfig, CalibrationData, calibrate

__all__ = ["mahalanobis_distances", "cond_share", "dgc_features", "dgc_calibrate"]


def mahalanobis_distances(f_NF: torch.Tensor) -> torch.Tensor:
    """Distance of each row to the rows' mean under their covariance (pseudo-inverse), float64 ``(N,)``."""
    f = f_NF.double()
    d = f - f.mean(dim=0, keepdim=True)
    cov = d.T @ d / max(f.shape[0] - 1, 1)
    P = torch.linalg.pinv(cov, hermitian=True)
    return torch.einsum("nf,fg,ng->n", d, P, d).clamp_min(0).sqrt()


def cond_share(f_cond: torch.Tensor, f_uncond: torch.Tensor, top: int) -> float:
    """Share of conditional rows among the ``top`` largest within-set distances (ties: conditional first)."""
    d = torch.cat((mahalanobis_distances(f_cond), mahalanobis_distances(f_uncond)))
    if not 1 <= top <= d.numel():
        raise ValueError(f"cond_share: top must be in 1..{d.numel()}, got {top}")
    order = sorted(range(d.numel()), key=lambda i: (-float(d[i]), i))[:top]
    return sum(1 for i in order if i < f_cond.shape[0]) / top


@torch.no_grad()
def dgc_features(var, config: CalibConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, unconditional) features ``(N, C)`` of the samples ``calibrate(var, config)`` would draw."""
    from fpqvar.model.sampling import sample_tokens

    classes = config.class_list(var.num_classes)
    feats: list[torch.Tensor] = []
    h = var.blocks[-1].register_forward_pre_hook(lambda m, a: feats.append(a[0].float().mean(dim=1).cpu()))
    conds, unconds = [], []
    try:
        for bi in range(0, len(classes), config.batch_size):
            labels = classes[bi:bi + config.batch_size]
            feats.clear()
            res = sample_tokens(var, len(labels), labels, seed=config.seed + bi // config.batch_size,
                                cfg=config.cfg, top_k=config.top_k, top_p=config.top_p)
            feats.clear()
            lab = res.labels.to(var.pos_1LC.device)
            x = var.vae.idx_to_var_input(res.idx_list)
            var(torch.cat((lab, torch.full_like(lab, var.num_classes))), torch.cat((x, x)))
            f = feats[-1]
            conds.append(f[: len(labels)])
            unconds.append(f[len(labels):])
    finally:
        h.remove()
    return torch.cat(conds), torch.cat(unconds)


def dgc_calibrate(var, config: CalibConfig | None = None, *, progress: bool = True) -> CalibrationData:
    """Calibration data with DGC's conditional share (``top`` = num_samples of the 2 num_samples rows)."""
    config = config or CalibConfig()
    fc, fu = dgc_features(var, config)
    share = cond_share(fc, fu, top=config.num_samples)
    return calibrate(var, dataclasses.replace(config, cond_share=share), progress=progress)
