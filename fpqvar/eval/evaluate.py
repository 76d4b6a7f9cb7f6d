"""Metrics of a packed sample set against a reference: domain (default model) or ImageNet (ADM reference batch).

The result is a flat dict: fid, is, is_std, precision, recall, class_accuracy (domain only), sfid (None when the
reference or the feature network cannot provide it), num_samples, reference (a label saying what the numbers
are comparable to), plus settings (k, is_split_size).
"""

from __future__ import annotations

import numpy as np

from fpqvar.eval import metrics as M

PR_K = 3  # ADM / Kynkaanniemi et al. 2019
IS_SPLIT_SIZE = 5000  # ADM's split size; the default model's 1,000-image sets are one split


def digit_features(net, images_NHWC_u8: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """DigitNet (features (N, 128), logits (N, 10)) of uint8 images (N, 32, 32, 3)."""
    import torch

    if images_NHWC_u8.ndim != 4 or images_NHWC_u8.shape[1:] != (32, 32, 3):
        raise ValueError(f"domain metrics need (N, 32, 32, 3) images (the default model), got "
                         f"{images_NHWC_u8.shape}")
    feats, logits = [], []
    with torch.no_grad():
        for s in range(0, len(images_NHWC_u8), batch):
            x = torch.from_numpy(images_NHWC_u8[s:s + batch]).permute(0, 3, 1, 2).float() / 255
            f = net.features(x)
            feats.append(f.numpy())
            logits.append(net.out(f).numpy())
    return np.concatenate(feats), np.concatenate(logits)


def domain_metrics(images_NHWC_u8: np.ndarray, labels: np.ndarray | None, ref, net, *, k: int = PR_K,
                   is_split_size: int = IS_SPLIT_SIZE) -> dict:
    feats, logits = digit_features(net, images_NHWC_u8)
    mu, sigma = M.feature_stats(feats)
    precision, recall = M.precision_recall(ref.features, feats, k=k)
    is_mean, is_std = M.inception_score(logits, is_split_size)
    floor_n, floor_fid, floor_std = floor_for(ref.meta.get("floor", {}), len(images_NHWC_u8))
    return {
        "fid": M.frechet_distance(mu, sigma, ref.mu, ref.sigma),
        "is": is_mean, "is_std": is_std, "precision": precision, "recall": recall,
        "class_accuracy": None if labels is None else M.class_accuracy(logits, labels),
        "sfid": None, "num_samples": int(len(images_NHWC_u8)), "reference": ref.label,
        "floor_fid": floor_fid, "floor_n": floor_n, "floor_fid_std": floor_std, "k": k, "is_split_size": is_split_size,
    }


def floor_for(floor: dict, n: int) -> tuple[int | None, float | None, float | None]:
    """(n', real-vs-real FID at n', its std over the draws) for the stored size closest to n (log scale); the
    1,000-image floor for an older reference without sizes."""
    by_n = floor.get("by_n") or {}
    if by_n:
        best = min(by_n, key=lambda k: abs(np.log(int(k) / max(1, n))))
        return int(best), by_n[best]["fid"], by_n[best].get("fid_std")
    return (None, floor.get("fid"), None) if floor else (None, None, None)


def imagenet_metrics(images_NHWC_u8: np.ndarray, ref, extractor, *, k: int = PR_K,
                     is_split_size: int = IS_SPLIT_SIZE) -> dict:
    feats, logits = extractor(images_NHWC_u8)
    mu, sigma = M.feature_stats(feats)
    precision = recall = None
    if ref.images is not None:
        ref_feats, _ = extractor(ref.images)
        precision, recall = M.precision_recall(ref_feats, feats, k=k)
    is_mean, is_std = M.inception_score(logits, is_split_size)
    return {
        "fid": M.frechet_distance(mu, sigma, ref.mu, ref.sigma), "is": is_mean, "is_std": is_std,
        "precision": precision, "recall": recall, "class_accuracy": None,
        "sfid": None,  # needs mixed_6/conv spatial features: see fpqvar.eval.inception
        "num_samples": int(len(images_NHWC_u8)), "reference": ref.label, "floor_fid": None, "k": k,
        "is_split_size": is_split_size,
    }


def evaluate_images(images_NHWC_u8: np.ndarray, labels: np.ndarray | None, *, model: str,
                    classifier=None, reference=None, inception_weights=None, device: str = "cpu") -> dict:
    """Dispatch on the model: ``default`` -> domain metrics; an ImageNet model -> ADM reference + Inception.

    ``classifier`` / ``reference``: paths (None = shipped assets for the default model; the ADM reference has no
    default and must be given).
    """
    from fpqvar.eval import reference as R

    if model == "default":
        cls_path = classifier if classifier is not None else R.default_classifier_path()
        net = R.load_digit_net(cls_path)
        ref = R.load_domain_reference(reference)
        want = ref.meta.get("classifier_sha256")
        if want and want != R.file_sha256(cls_path):
            raise ValueError(f"{ref.path}: built with another classifier than {cls_path} (sha256 differs); rebuild "
                             f"it with `fpqvar eval build-reference --classifier {cls_path}`")
        return domain_metrics(images_NHWC_u8, labels, ref, net)
    from fpqvar.eval.inception import InceptionFeatures

    if reference is None:
        raise ValueError(f"model {model!r}: ImageNet metrics need the ADM reference batch; pass --reference "
                         f"VIRTUAL_imagenet256_labeled.npz")
    extractor = InceptionFeatures(inception_weights, device=device)  # fails first, before loading 2 GB
    ref = R.load_adm_reference(reference)
    return imagenet_metrics(images_NHWC_u8, ref, extractor)
