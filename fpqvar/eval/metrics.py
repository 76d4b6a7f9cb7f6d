"""Sample-quality metrics on features and logits: FID, IS, precision / recall, class accuracy.

Definitions follow the ADM evaluation suite (shared/spec/var-model.md section 5), written from the papers:
- FID (Heusel et al. 2017): ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) on feature means / covariances
  (covariance with ddof = 1, as numpy's ``np.cov``); matrix square root by ``scipy.linalg.sqrtm``.
- IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), p(y) the mean over a split; the score is the mean
  over consecutive splits of ``split_size`` samples (ADM uses 5,000; a set smaller than a split is one split).
- Precision / recall (Kynkaanniemi et al. 2019): the k-NN manifold of a set is the union of balls around its
  points with radius = distance to the k-th nearest other point (k = 3 as ADM); precision = share of generated
  points inside the real manifold, recall = share of real points inside the generated manifold (<= counts).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

# Added to both covariance diagonals when sqrtm of the product is not finite (singular covariances, e.g. fewer
# samples than feature dimensions); the same remedy as the ADM / pytorch-fid implementations.
SQRTM_EPS = 1e-6


def feature_stats(feats_ND) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) in float64; sigma with ddof = 1."""
    f = np.asarray(feats_ND, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature_stats: need (N >= 2, D) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    D = mu1.shape[0]
    if mu2.shape != (D,) or s1.shape != (D, D) or s2.shape != (D, D):
        raise ValueError(f"frechet_distance: shapes mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 "
                         f"{s2.shape} do not agree")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products (dead ReLU features) are expected; checked below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(D) * SQRTM_EPS
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        # tiny imaginary parts are round-off of a real PSD product; a large one means broken inputs
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: sqrtm has imaginary component {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_from_features(feats_a, feats_b) -> float:
    return frechet_distance(*feature_stats(feats_a), *feature_stats(feats_b))


def inception_score(logits_NK, split_size: int = 5000) -> tuple[float, float]:
    """(mean, std) of exp(E KL(p(y|x) || p(y))) over consecutive splits of ``split_size`` samples."""
    logits = torch.as_tensor(np.asarray(logits_NK), dtype=torch.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"inception_score: need (N, K) logits, got shape {tuple(logits.shape)}")
    if split_size < 1:
        raise ValueError(f"inception_score: split_size must be >= 1, got {split_size}")
    logp = torch.log_softmax(logits, dim=1)
    scores = []
    for start in range(0, logp.shape[0], split_size):
        part = logp[start:start + split_size]
        logp_y = torch.logsumexp(part, dim=0) - np.log(part.shape[0])  # log of the split's mean p(y)
        kl = (part.exp() * (part - logp_y)).sum(dim=1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def class_accuracy(logits_NK, labels_N) -> float:
    logits, labels = np.asarray(logits_NK), np.asarray(labels_N)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"class_accuracy: logits {logits.shape} and labels {labels.shape} do not match")
    return float((logits.argmax(axis=1) == labels).mean())


def _row_block(n_cols: int) -> int:
    return max(1, (1 << 25) // max(1, n_cols))  # ~256 MB of float64 distances per block


def knn_radii(feats_ND, k: int = 3) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point (the point itself excluded)."""
    f = torch.as_tensor(np.asarray(feats_ND), dtype=torch.float64)
    if f.shape[0] <= k:
        raise ValueError(f"knn_radii: need more than k={k} points, got {f.shape[0]}")
    out = []
    for s in range(0, f.shape[0], _row_block(f.shape[0])):
        d = torch.cdist(f[s:s + _row_block(f.shape[0])], f)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the +1 skips the point's zero distance to itself
    return torch.cat(out)


def manifold_inside(manifold_ND, radii_N: torch.Tensor, queries_MD) -> torch.Tensor:
    """(M,) bool: is each query inside the union of balls (manifold point, radius)?"""
    m = torch.as_tensor(np.asarray(manifold_ND), dtype=torch.float64)
    q = torch.as_tensor(np.asarray(queries_MD), dtype=torch.float64)
    inside = []
    for s in range(0, q.shape[0], _row_block(m.shape[0])):
        d = torch.cdist(q[s:s + _row_block(m.shape[0])], m)
        inside.append((d <= radii_N.unsqueeze(0)).any(dim=1))
    return torch.cat(inside)


def ball_membership(manifold_ND, radii_N: torch.Tensor, queries_MD) -> torch.Tensor:
    """(M, N) bool: query m inside ball n (for resampling the manifold's points: fpqvar.eval.compare)."""
    m = torch.as_tensor(np.asarray(manifold_ND), dtype=torch.float64)
    q = torch.as_tensor(np.asarray(queries_MD), dtype=torch.float64)
    rows = [torch.cdist(q[s:s + _row_block(m.shape[0])], m) <= radii_N.unsqueeze(0)
            for s in range(0, q.shape[0], _row_block(m.shape[0]))]
    return torch.cat(rows)


def manifold_coverage(manifold_ND, radii_N: torch.Tensor, queries_MD) -> float:
    """Share of queries inside the union of balls (manifold point, radius)."""
    return float(manifold_inside(manifold_ND, radii_N, queries_MD).double().mean())


def precision_recall(real_ND, fake_MD, k: int = 3, real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    real = np.asarray(real_ND)
    fake = np.asarray(fake_MD)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision_recall: feature shapes {real.shape} and {fake.shape} do not agree")
    r_real = knn_radii(real, k) if real_radii is None else real_radii
    precision = manifold_coverage(real, r_real, fake)
    recall = manifold_coverage(fake, knn_radii(fake, k), real)
    return precision, recall


class FeatureModule(torch.nn.Module):
    """Wraps a ``features(img) -> (B, D)`` network for torchmetrics' FrechetInceptionDistance(feature=...)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.num_features = int(net.num_features)

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        return self.net.features(img_B3HW)


def torchmetrics_fid(net: torch.nn.Module, real_B3HW: torch.Tensor, fake_B3HW: torch.Tensor,
                     batch: int = 500) -> float:
    """FID through torchmetrics with a custom feature module (images in [0, 1]); cross-checks frechet_distance."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=FeatureModule(net).eval(), normalize=True)
    with torch.no_grad():
        for s in range(0, len(real_B3HW), batch):
            fid.update(real_B3HW[s:s + batch], real=True)
        for s in range(0, len(fake_B3HW), batch):
            fid.update(fake_B3HW[s:s + batch], real=False)
        return float(fid.compute())
