"""Quantization damage measured against the float model's own samples (same seeds, same labels), with
bootstrap intervals over the image pairs.

On a small model whose float samples are low-diversity (CFG 1.5), quantization noise can *lower* the FID
against real data by acting like extra sampling temperature; the distance to the float model's samples does not
have that confound, so it ranks recipes (issue 13). Shift-and-Sum (arXiv 2606.16131) reports the same quantity
as "FID to FP16". Three views of it:
- ``fid_to_float``: FID between the two sets' features (the run's feature network: DigitNet or Inception);
- ``psnr_to_float_db``: mean over image pairs of 10 log10(255^2 / MSE), an identical pair counted as 100 dB;
- ``token_agreement``: mean over image pairs of the share of token ids (all scales) equal to the float model's.
The float model's own row has 0 / 100 dB / 1 by construction, so these metrics have no sampling floor of that
kind: the interval is what says whether two recipes differ.
"""

from __future__ import annotations

import numpy as np

from fpqvar.eval import metrics as M
from fpqvar.eval.bootstrap import DEFAULT_CONFIDENCE, interval, replicates

PSNR_IDENTICAL_DB = 100.0  # an identical pair (MSE 0) counts as 100 dB so that the mean stays finite


def psnr_per_image(images_NHWC_u8: np.ndarray, float_images_NHWC_u8: np.ndarray) -> np.ndarray:
    """(N,) PSNR in dB of each image against its float twin (uint8 peak 255), capped at 100 dB."""
    if images_NHWC_u8.shape != float_images_NHWC_u8.shape:
        raise ValueError(f"paired metrics need sets of the same shape, got {images_NHWC_u8.shape} vs "
                         f"{float_images_NHWC_u8.shape}")
    diff = images_NHWC_u8.astype(np.float64) - float_images_NHWC_u8.astype(np.float64)
    mse_N = (diff ** 2).reshape(len(diff), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        psnr_N = 10 * np.log10(255.0 ** 2 / mse_N)
    return np.minimum(psnr_N, PSNR_IDENTICAL_DB)


def token_agreement_per_image(tokens_NL: np.ndarray, float_tokens_NL: np.ndarray) -> np.ndarray:
    """(N,) share of token positions whose id equals the float model's."""
    if tokens_NL.shape != float_tokens_NL.shape:
        raise ValueError(f"token agreement needs token arrays of the same shape, got {tokens_NL.shape} vs "
                         f"{float_tokens_NL.shape}")
    return (tokens_NL == float_tokens_NL).mean(axis=1)


def damage_metrics(images_NHWC_u8: np.ndarray, float_images_NHWC_u8: np.ndarray, feats_ND: np.ndarray,
                   float_feats_ND: np.ndarray, tokens_NL: np.ndarray | None = None,
                   float_tokens_NL: np.ndarray | None = None, idx_BN: np.ndarray | None = None, *,
                   confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """The damage metrics of one set against the float set (pairs in the same order) and their intervals:
    every resample draws the same pair indices from both sets (``idx_BN`` from fpqvar.eval.bootstrap)."""
    psnr_N = psnr_per_image(images_NHWC_u8, float_images_NHWC_u8)
    same_N = np.all(images_NHWC_u8 == float_images_NHWC_u8, axis=(1, 2, 3)).astype(np.float64)
    agree_N = None if tokens_NL is None else token_agreement_per_image(tokens_NL, float_tokens_NL)

    def ci(stat, estimate):
        if idx_BN is None or len(idx_BN) == 0:
            return None
        iv = interval(replicates(stat, idx_BN), confidence, estimate)  # centred on the estimate
        return None if iv is None else list(iv)

    fid = M.fid_from_features(feats_ND, float_feats_ND)
    psnr = float(psnr_N.mean())
    agree = None if agree_N is None else float(agree_N.mean())
    return {
        "fid_to_float": fid,
        "fid_to_float_ci": ci(lambda i: M.fid_from_features(feats_ND[i], float_feats_ND[i]), fid),
        "psnr_to_float_db": psnr, "psnr_to_float_db_ci": ci(lambda i: float(psnr_N[i].mean()), psnr),
        "token_agreement": agree,
        "token_agreement_ci": None if agree_N is None else ci(lambda i: float(agree_N[i].mean()), agree),
        "identical_images": float(same_N.mean()),
    }
