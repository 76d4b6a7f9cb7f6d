"""Metrics of a sample set against a reference: domain (default model) or ImageNet (ADM reference batch), each
with a bootstrap interval over the samples (fpqvar.eval.bootstrap).

``MetricSetup`` loads the feature network and the reference once per run; ``quality_metrics`` measures one
set. The result is a flat dict: fid, is, is_std, precision, recall, class_accuracy (domain only), sfid (None when
the reference or the feature network cannot provide it), num_samples, reference (a label saying what the numbers
are comparable to), the real-vs-real floors at the nearest stored size (floor_fid, floor_precision,
floor_recall, floor_n), settings (k, is_split_size), and ``<metric>_ci`` = [lo, hi] for every metric (None
without resamples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from fpqvar.eval import metrics as M
from fpqvar.eval import reference as R
from fpqvar.eval.bootstrap import DEFAULT_CONFIDENCE, interval, replicates

PR_K = 3  # ADM / Kynkaanniemi et al. 2019
IS_SPLIT_SIZE = 5000  # ADM's split size; the default model's 1,000-image sets are one split
# Recall's interval needs the (real, generated) ball-membership matrix; above this many entries (ImageNet-size
# sets) it is skipped rather than allocated.
_MAX_MEMBERSHIP = 1 << 27


def digit_features(net, images_NHWC_u8: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """DigitNet (features (N, 128), logits (N, 10)) of uint8 images (N, 32, 32, 3)."""
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


def floor_for(floor: dict, n: int) -> tuple[int | None, float | None, float | None]:
    """(n', real-vs-real FID at n', its std over the draws) for the stored size closest to n (log scale); the
    1,000-image floor for an older reference without sizes."""
    by_n = floor.get("by_n") or {}
    if by_n:
        best = min(by_n, key=lambda k: abs(np.log(int(k) / max(1, n))))
        return int(best), by_n[best]["fid"], by_n[best].get("fid_std")
    return (None, floor.get("fid"), None) if floor else (None, None, None)


def _floors(floor: dict, n: int) -> dict:
    n_f, fid, std = floor_for(floor, n)
    at = (floor.get("by_n") or {}).get(str(n_f), floor) if floor else {}
    return {"floor_fid": fid, "floor_n": n_f, "floor_fid_std": std, "floor_precision": at.get("precision"),
            "floor_recall": at.get("recall")}


@dataclass
class MetricSetup:
    """The feature network and the reference of one run (loaded once, used for every method)."""
    features: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # uint8 images -> (feats (N, D), logits)
    ref_mu: np.ndarray
    ref_sigma: np.ndarray
    ref_feats: np.ndarray | None  # for precision / recall (None: not available)
    label: str
    floor: dict  # the reference's real-vs-real floor record ({} when it has none)
    domain: bool  # class accuracy exists (DigitNet logits are the digit classes)
    _ref_radii: torch.Tensor | None = None

    def ref_radii(self) -> torch.Tensor:
        if self._ref_radii is None:
            self._ref_radii = M.knn_radii(self.ref_feats, PR_K)
        return self._ref_radii


def load_metric_setup(*, model: str, classifier=None, reference=None, inception_weights=None,
                      device: str = "cpu") -> MetricSetup:
    """``default`` -> DigitNet + the domain reference; an ImageNet model -> Inception-v3 + the ADM reference batch
    (``reference`` must be given). ``classifier`` / ``reference``: paths (None = the shipped assets)."""
    if model == "default":
        cls_path = classifier if classifier is not None else R.default_classifier_path()
        net = R.load_digit_net(cls_path)
        ref = R.load_domain_reference(reference)
        want = ref.meta.get("classifier_sha256")
        if want and want != R.file_sha256(cls_path):
            raise ValueError(f"{ref.path}: built with another classifier than {cls_path} (sha256 differs); rebuild "
                             f"it with `fpqvar eval build-reference --classifier {cls_path}`")
        return MetricSetup(lambda im: digit_features(net, im), ref.mu, ref.sigma, ref.features, ref.label,
                           ref.meta.get("floor", {}), domain=True)
    from fpqvar.eval.inception import InceptionFeatures

    if reference is None:
        raise ValueError(f"model {model!r}: ImageNet metrics need the ADM reference batch; pass --reference "
                         f"VIRTUAL_imagenet256_labeled.npz")
    extractor = InceptionFeatures(inception_weights, device=device)  # fails first, before loading 2 GB
    ref = R.load_adm_reference(reference)
    ref_feats = extractor(ref.images)[0] if ref.images is not None else None
    return MetricSetup(extractor, ref.mu, ref.sigma, ref_feats, ref.label, {}, domain=False)


def _ci(stat: Callable[[np.ndarray], float], idx_BN: np.ndarray | None, confidence: float,
        estimate: float | None = None):
    """Bootstrap interval of ``stat`` (centred on ``estimate``: fpqvar.eval.bootstrap); None without resamples."""
    if idx_BN is None or len(idx_BN) == 0:
        return None
    iv = interval(replicates(stat, idx_BN), confidence, estimate)
    return None if iv is None else list(iv)


def quality_metrics(setup: MetricSetup, images_NHWC_u8: np.ndarray, labels_N: np.ndarray | None,
                    idx_BN: np.ndarray | None = None, *, confidence: float = DEFAULT_CONFIDENCE,
                    features: tuple[np.ndarray, np.ndarray] | None = None, k: int = PR_K,
                    is_split_size: int = IS_SPLIT_SIZE) -> dict:
    """Metrics of one set against the reference; ``idx_BN``: bootstrap resamples (fpqvar.eval.bootstrap)."""
    feats, logits = features if features is not None else setup.features(images_NHWC_u8)
    n = len(feats)
    out = {"fid": M.frechet_distance(*M.feature_stats(feats), setup.ref_mu, setup.ref_sigma)}
    out["fid_ci"] = _ci(lambda i: M.frechet_distance(*M.feature_stats(feats[i]), setup.ref_mu, setup.ref_sigma),
                        idx_BN, confidence, out["fid"])
    out["is"], out["is_std"] = M.inception_score(logits, is_split_size)
    out["is_ci"] = _ci(lambda i: M.inception_score(logits[i], is_split_size)[0], idx_BN, confidence, out["is"])
    out.update(precision=None, recall=None, precision_ci=None, recall_ci=None)
    if setup.ref_feats is not None:
        # precision: share of generated points inside the real manifold (fixed); recall: share of real points
        # inside the generated manifold. Resampled recall keeps each generated point's full-set k-NN radius.
        inside_N = M.manifold_inside(setup.ref_feats, setup.ref_radii(), feats).numpy()
        out["precision"] = float(inside_N.mean())
        out["precision_ci"] = _ci(lambda i: float(inside_N[i].mean()), idx_BN, confidence, out["precision"])
        radii = M.knn_radii(feats, k)
        if len(setup.ref_feats) * n <= _MAX_MEMBERSHIP:
            member_RN = M.ball_membership(feats, radii, setup.ref_feats).numpy()
            out["recall"] = float(member_RN.any(axis=1).mean())
            out["recall_ci"] = _ci(lambda i: float(member_RN[:, i].any(axis=1).mean()), idx_BN, confidence,
                                   out["recall"])
        else:
            out["recall"] = M.manifold_coverage(feats, radii, setup.ref_feats)
    out["class_accuracy"] = out["class_accuracy_ci"] = None
    if setup.domain and labels_N is not None:
        correct_N = (logits.argmax(axis=1) == labels_N).astype(np.float64)
        out["class_accuracy"] = float(correct_N.mean())
        out["class_accuracy_ci"] = _ci(lambda i: float(correct_N[i].mean()), idx_BN, confidence,
                                       out["class_accuracy"])
    return {**out, "sfid": None,  # needs Inception mixed_6/conv spatial features: see fpqvar.eval.inception
            "num_samples": int(n), "reference": setup.label, **_floors(setup.floor, n), "k": k,
            "is_split_size": is_split_size}


def evaluate_images(images_NHWC_u8: np.ndarray, labels: np.ndarray | None, *, model: str,
                    classifier=None, reference=None, inception_weights=None, device: str = "cpu") -> dict:
    """One set, no intervals: ``quality_metrics`` with a freshly loaded ``load_metric_setup``."""
    setup = load_metric_setup(model=model, classifier=classifier, reference=reference,
                              inception_weights=inception_weights, device=device)
    return quality_metrics(setup, images_NHWC_u8, labels)
