"""Quantization damage measured against the float model's own samples (same seeds, same labels).

On a small model whose float samples are low-diversity (CFG 1.5), quantization noise can *lower* the FID
against real data by acting like extra sampling temperature; the distance to the float model's samples does not
have that confound. Shift-and-Sum (arXiv 2606.16131) reports the same quantity as "FID to FP16".
"""

from __future__ import annotations

import numpy as np

from fpqvar.eval import metrics as M


def paired_metrics(images_NHWC_u8: np.ndarray, float_images_NHWC_u8: np.ndarray, net) -> dict:
    """FID between the two sets' DigitNet features, and per-image PSNR (dB) of paired images (same seeds)."""
    from fpqvar.eval.evaluate import digit_features

    if images_NHWC_u8.shape != float_images_NHWC_u8.shape:
        raise ValueError(f"paired metrics need sets of the same shape, got {images_NHWC_u8.shape} vs "
                         f"{float_images_NHWC_u8.shape}")
    fa, _ = digit_features(net, images_NHWC_u8)
    fb, _ = digit_features(net, float_images_NHWC_u8)
    diff = images_NHWC_u8.astype(np.float64) - float_images_NHWC_u8.astype(np.float64)
    mse_N = (diff ** 2).reshape(len(diff), -1).mean(axis=1)
    psnr_N = 10 * np.log10(255.0 ** 2 / np.maximum(mse_N, 1e-12))
    return {
        "fid_to_float": M.fid_from_features(fa, fb),
        "psnr_to_float_db": float(np.mean(np.minimum(psnr_N, 100.0))),  # identical images count as 100 dB
        "identical_images": float(np.mean(mse_N == 0)),
    }
