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


def test_interval_is_centred_on_the_estimate_for_a_biased_statistic():
    """FID replicates sit above the estimate (repeated images); the interval is moved onto the estimate."""
    from fpqvar.eval import metrics as M

    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((200, 8)), rng.standard_normal((2000, 8)) + 0.2
    mu, sigma = M.feature_stats(b)
    est = M.frechet_distance(*M.feature_stats(a), mu, sigma)
    reps = replicates(lambda i: M.frechet_distance(*M.feature_stats(a[i]), mu, sigma),
                      resample_indices(np.zeros(200, int), 200, seed=0))
    assert np.median(reps) > est  # the bias the shift corrects
    lo, hi = interval(reps, 0.95, estimate=est)
    assert lo < est < hi
    plain = interval(reps, 0.95)
    assert hi - lo == pytest.approx(plain[1] - plain[0], rel=1e-12)
    assert interval(reps, 0.95)[0] == pytest.approx(np.quantile(reps, 0.025), rel=1e-12)
