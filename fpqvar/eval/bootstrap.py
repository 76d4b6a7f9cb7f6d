"""Bootstrap intervals over the samples of a set, shared by every method of a comparison (paired bootstrap).

Protocol (written down so that a table can be reproduced and read):
- A resample draws, within each class, as many indices as the class has images, uniformly with replacement
  (sets are class-balanced: a stratified resample keeps them so). ``B`` resamples from
  ``numpy.random.default_rng(seed)``; the default B = 200, seed = 0.
- Every method of one evaluation has the same classes, per-class counts and seeds (fpqvar.eval.sample_set), so
  the SAME index matrix is applied to every method's set: image i of two sets came from the same seed. A metric
  comparing two sets (the distance to the float model's samples) resamples both with the same indices, and the
  interval of a difference between two methods is the percentile interval of the per-resample differences.
- Interval: the spread of the replicates, centred on the estimate: ``estimate + (q_a - m, q_b - m)`` with
  q_a, q_b the (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the B replicates (numpy's linear
  interpolation) and m their median. For a mean (PSNR, accuracy, precision, token agreement) m ~ the estimate
  and this is the plain percentile interval; for FID it is not: resampling with replacement repeats images, so
  every replicate has fewer distinct samples and a higher FID (measured: the median replicate sits ~10 FID
  above the estimate at 200 samples), and a plain percentile interval would not even contain the estimate. The
  interval says how much the number moves with the draw of samples at this sample count, which is the question
  when two methods are compared at the same count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

DEFAULT_B = 200
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class BootstrapConfig:
    resamples: int = DEFAULT_B  # 0 disables the intervals
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.resamples, int) or self.resamples < 0:
            raise ValueError(f"BootstrapConfig.resamples must be an int >= 0, got {self.resamples!r}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"BootstrapConfig.confidence must be in [0.5, 1), got {self.confidence!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"BootstrapConfig.seed must be an int >= 0, got {self.seed!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def resample_indices(labels_N: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(B, N) int64 indices: row b resamples, within each class, that class's positions with replacement."""
    labels_N = np.asarray(labels_N)
    rng = np.random.default_rng(seed)
    idx_BN = np.empty((resamples, len(labels_N)), dtype=np.int64)
    for c in np.unique(labels_N):
        pos = np.flatnonzero(labels_N == c)
        idx_BN[:, pos] = pos[rng.integers(0, len(pos), size=(resamples, len(pos)))]
    return idx_BN


def replicates(stat: Callable[[np.ndarray], float], idx_BN: np.ndarray) -> np.ndarray:
    """(B,) values of ``stat(indices)`` over the resamples. Small dense algebra runs on one BLAS thread: with
    OpenBLAS's default threads on a busy 2-core machine a 128x128 ``sqrtm`` was measured 70x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return np.array([stat(idx) for idx in idx_BN], dtype=np.float64)


def interval(reps_B: np.ndarray, confidence: float = DEFAULT_CONFIDENCE,
             estimate: float | None = None) -> tuple[float, float] | None:
    """Interval of the replicates (module docstring): the percentile interval, moved by ``estimate - median``
    when the estimate is given. None without replicates or when a replicate is not finite."""
    reps_B = np.asarray(reps_B, dtype=np.float64)
    if reps_B.size == 0 or not np.isfinite(reps_B).all():
        return None
    a = (1 - confidence) / 2
    lo, mid, hi = np.quantile(reps_B, [a, 0.5, 1 - a])
    shift = 0.0 if estimate is None else float(estimate) - mid
    return float(lo + shift), float(hi + shift)
