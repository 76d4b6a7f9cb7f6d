import numpy as np
import pytest

from fpqvar.eval.bootstrap import BootstrapConfig, interval, replicates, resample_indices


def test_resamples_stay_within_each_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx = resample_indices(labels, 50, seed=3)
    assert idx.shape == (50, 9)
    np.testing.assert_array_equal(labels[idx], np.broadcast_to(labels, idx.shape))  # class-balanced resamples
    np.testing.assert_array_equal(idx, resample_indices(labels, 50, seed=3))  # seeded
    assert len(np.unique(idx)) == 9  # every image is drawn somewhere


def test_interval_of_a_mean_matches_the_normal_approximation():
    """Percentile interval of the bootstrap mean of N(0, 1) draws ~ mean +- 1.96 / sqrt(N) (large B)."""
    x = np.random.default_rng(0).standard_normal(400)
    idx = resample_indices(np.zeros(400, int), 2000, seed=1)
    lo, hi = interval(replicates(lambda i: float(x[i].mean()), idx), 0.95)
    half = 1.96 * x.std(ddof=1) / np.sqrt(400)
    assert lo == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.15 * half)


def test_config_validation_and_degenerate_intervals():
    with pytest.raises(ValueError, match="resamples"):
        BootstrapConfig(resamples=-1)
    with pytest.raises(ValueError, match="confidence"):
        BootstrapConfig(confidence=1.0)
    assert interval(np.array([])) is None
    assert interval(np.array([1.0, np.nan])) is None
