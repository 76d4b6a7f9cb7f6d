import numpy as np
import pytest
import torch

from fpqvar.eval import metrics as m
from fpqvar.model.digit_net import DigitNet


def _gauss(rng, mu, var, n):
    return mu + rng.standard_normal((n, mu.size)) * np.sqrt(var)


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(0).standard_normal((500, 32)) @ np.random.default_rng(1).standard_normal((32, 32))
    # round-off only: sqrtm of S @ S recovers S to ~1e-12 relative; trace(S) here is ~1e3
    assert abs(m.fid_from_features(f, f)) < 1e-6


def test_fid_closed_form_diagonal_gaussians():
    rng = np.random.default_rng(0)
    D = 16
    mu1, mu2 = rng.normal(size=D), rng.normal(size=D)
    v1, v2 = rng.uniform(0.2, 3, D), rng.uniform(0.2, 3, D)
    # closed form for diagonal covariances: sum (mu1-mu2)^2 + sum (sqrt(v1) - sqrt(v2))^2
    ref = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert m.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(ref, rel=1e-10)
    # the distance is invariant under a common rotation of both distributions
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    got = m.frechet_distance(q @ mu1, q @ np.diag(v1) @ q.T, q @ mu2, q @ np.diag(v2) @ q.T)
    assert got == pytest.approx(ref, rel=1e-8)
    # from samples: the estimate converges; 40k samples per side give ~1 % error on these sums (bias ~ D^2/N)
    got_s = m.fid_from_features(_gauss(rng, mu1, v1, 40000), _gauss(rng, mu2, v2, 40000))
    assert got_s == pytest.approx(ref, rel=0.03)


def test_fid_general_covariance_against_identity():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(8, 8))
    s = a @ a.T + 0.1 * np.eye(8)
    w, v = np.linalg.eigh(s)
    sqrt_s = (v * np.sqrt(w)) @ v.T  # written here from the eigendecomposition
    ref = np.trace(s + np.eye(8) - 2 * sqrt_s)
    assert m.frechet_distance(np.zeros(8), s, np.zeros(8), np.eye(8)) == pytest.approx(ref, rel=1e-9)


def test_fid_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="shapes"):
        m.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_torchmetrics_fid_agrees_with_frechet_distance():
    net = DigitNet().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    real = torch.rand(300, 3, 32, 32, generator=g)
    fake = (torch.rand(300, 3, 32, 32, generator=g) * 0.7) ** 2
    with torch.no_grad():
        ours = m.fid_from_features(net.features(real).numpy(), net.features(fake).numpy())
    theirs = m.torchmetrics_fid(net, real, fake, batch=128)
    assert ours > 0.01
    # both in float64 from the same features; they differ only in summation order and the sqrtm algorithm
    assert theirs == pytest.approx(ours, rel=1e-4)


def test_inception_score_known_cases():
    assert m.inception_score(np.zeros((100, 10)))[0] == pytest.approx(1.0, abs=1e-12)
    K = 7
    confident = np.tile(np.eye(K) * 60.0, (5, 1))  # each sample sure of its own class, classes balanced
    assert m.inception_score(confident)[0] == pytest.approx(K, rel=1e-9)
    # two splits, each holding one class only: p(y|x) = p(y) in each split -> 1
    one_class = np.repeat(np.eye(2) * 60.0, 50, axis=0)
    mean, std = m.inception_score(one_class, split_size=50)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    assert m.inception_score(one_class, split_size=100)[0] == pytest.approx(2.0, rel=1e-9)


def _brute_pr(real, fake, k):
    def radii(x):
        return np.array([np.sort(np.linalg.norm(x - p, axis=1))[k] for p in x])  # index 0 is the point itself

    def cover(man, r, q):
        return np.mean([any(np.linalg.norm(q_i - man[j]) <= r[j] for j in range(len(man))) for q_i in q])

    return cover(real, radii(real), fake), cover(fake, radii(fake), real)


def test_precision_recall_known_cases():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    assert m.precision_recall(real, real.copy(), k=3) == (1.0, 1.0)
    assert m.precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)
    fake = rng.normal(size=(40, 5)) * 1.5 + 0.5
    for k in (1, 3):
        got = m.precision_recall(real, fake, k=k)
        assert got == pytest.approx(_brute_pr(real, fake, k), abs=0)
    # a 1-D case small enough to check by hand: real {0,1,2,3}, k=1 radii all 1; fake {0.5, 2.9, 5}
    p, r = m.precision_recall(np.array([[0.0], [1], [2], [3]]), np.array([[0.5], [2.9], [5.0]]), k=1)
    assert p == pytest.approx(2 / 3)  # 5.0 is outside
    # fake radii (k=1): 0.5->2.4, 2.9->2.1, 5->2.1; every real point is within one of them
    assert r == 1.0


def test_class_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert m.class_accuracy(logits, [0, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        m.class_accuracy(logits, [0, 1])


def test_knn_radii_blocks_match_unblocked(monkeypatch):
    x = np.random.default_rng(3).normal(size=(50, 4))
    full = m.knn_radii(x, 3)
    monkeypatch.setattr(m, "_row_block", lambda n: 7)
    # cdist's matmul path rounds differently per block shape: agreement to round-off only
    np.testing.assert_allclose(full.numpy(), m.knn_radii(x, 3).numpy(), rtol=1e-12)
    assert (full.numpy() > 0).all()
