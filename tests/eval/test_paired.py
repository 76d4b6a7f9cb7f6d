import numpy as np
import torch

from fpqvar.eval.bootstrap import resample_indices
from fpqvar.eval.evaluate import digit_features
from fpqvar.eval.paired import damage_metrics, psnr_per_image, token_agreement_per_image
from fpqvar.model.digit_net import DigitNet


def _net():
    torch.manual_seed(0)  # test-local random feature net
    return DigitNet().eval()


def test_damage_metrics_identical_and_perturbed():
    net = _net()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    fa = digit_features(net, a)[0]
    tok = rng.integers(0, 64, size=(64, 21))
    same = damage_metrics(a, a.copy(), fa, fa.copy(), tok, tok.copy())
    assert abs(same["fid_to_float"]) < 1e-6 and same["identical_images"] == 1.0
    assert same["psnr_to_float_db"] == 100 and same["token_agreement"] == 1.0
    b = a.copy()
    b[:, 0, 0, 0] ^= 1  # one pixel, one LSB: MSE = 1 / 3072 per image -> PSNR = 10 log10(255^2 * 3072)
    tok_b = tok.copy()
    tok_b[:32, :7] = (tok_b[:32, :7] + 1) % 64  # half the images: 7 of 21 tokens differ
    p = damage_metrics(b, a, digit_features(net, b)[0], fa, tok_b, tok)
    np.testing.assert_allclose(p["psnr_to_float_db"], 10 * np.log10(255.0 ** 2 * 3072), rtol=1e-12)
    assert p["identical_images"] == 0.0
    np.testing.assert_allclose(p["token_agreement"], (32 * 1.0 + 32 * 14 / 21) / 64, rtol=1e-12)


def test_per_image_psnr_and_agreement_from_the_definition():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    for n in range(5):
        mse = np.mean((a[n].astype(float) - b[n].astype(float)) ** 2)
        assert psnr_per_image(a, b)[n] == np.float64(10 * np.log10(255 ** 2 / mse))
    t, u = np.array([[1, 2, 3, 4]]), np.array([[1, 0, 3, 0]])
    assert token_agreement_per_image(t, u).tolist() == [0.5]


def test_intervals_bracket_the_estimate_and_shrink_with_the_difference():
    """A recipe whose images differ more from the float ones gets a lower PSNR interval, disjoint from a
    recipe that differs little (the point of the intervals: a difference, not noise)."""
    net = _net()
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, size=(60, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(6), 10)
    idx = resample_indices(labels, 100, seed=0)
    fa = digit_features(net, a)[0]
    out = {}
    for name, amp in (("small", 2), ("large", 40)):
        noise = rng.integers(-amp, amp + 1, size=a.shape)
        b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
        out[name] = damage_metrics(b, a, digit_features(net, b)[0], fa, idx_BN=idx)
    for m in out.values():
        lo, hi = m["psnr_to_float_db_ci"]
        assert lo <= m["psnr_to_float_db"] <= hi
        lo, hi = m["fid_to_float_ci"]
        assert lo < hi
    assert out["large"]["psnr_to_float_db_ci"][1] < out["small"]["psnr_to_float_db_ci"][0]
