import numpy as np
import torch

from fpqvar.eval.paired import paired_metrics
from fpqvar.model.digit_net import DigitNet


def test_paired_metrics_identical_and_perturbed():
    torch.manual_seed(0)  # test-local random feature net
    net = DigitNet().eval()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    same = paired_metrics(a, a.copy(), net)
    assert abs(same["fid_to_float"]) < 1e-6 and same["identical_images"] == 1.0 and same["psnr_to_float_db"] == 100
    b = a.copy()
    b[:, 0, 0, 0] ^= 1  # one pixel, one LSB: MSE = 1 / 3072 per image -> PSNR = 10 log10(255^2 * 3072)
    p = paired_metrics(b, a, net)
    np.testing.assert_allclose(p["psnr_to_float_db"], 10 * np.log10(255.0 ** 2 * 3072), rtol=1e-12)
    assert p["identical_images"] == 0.0
