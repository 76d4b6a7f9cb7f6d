"""SmoothQuant scales from the definition (arXiv 2211.10438) and where they go."""

import pytest
import torch

from fpqvar.transforms import site_linear, smooth_site_, smoothquant_scales
from tests.transforms.conftest import tiny_var


def test_scales_from_definition():
    a = torch.tensor([4.0, 1.0, 0.0, 9.0])
    w = torch.tensor([[1.0, -2.0, 3.0, 0.0], [-0.25, 1.0, -1.0, 0.0]])
    s = smoothquant_scales(a, w, alpha=0.5)
    # s_j = max|X_j|^0.5 / max_o|W_oj|^0.5; dead channels clamp to eps = 1e-5 before the powers
    ref = torch.tensor([2.0 / 1.0, 1.0 / 2**0.5, (1e-5) ** 0.5 / 3**0.5, 3.0 / (1e-5) ** 0.5], dtype=torch.float64)
    torch.testing.assert_close(s, ref, rtol=1e-15, atol=0)  # TOLERANCE: float64 pow, one rounding each
    assert torch.equal(smoothquant_scales(a, w, alpha=1.0), a.double().clamp_min(1e-5))
    assert torch.equal(smoothquant_scales(a, w, alpha=0.0), 1 / w.double().abs().amax(0).clamp_min(1e-5))


def test_smoothing_balances_activation_and_weight_ranges():
    """After smoothing with alpha = 0.5 the per-channel maxima of X / s and W * s are equal (the point of it)."""
    g = torch.Generator().manual_seed(0)
    a = torch.exp(torch.randn(64, generator=g) * 2)
    w = torch.randn(32, 64, generator=g)
    s = smoothquant_scales(a, w, alpha=0.5)
    torch.testing.assert_close(a.double() / s, (w.double() * s).abs().amax(0), rtol=1e-12, atol=0)


def test_smooth_site_folds_into_adaln_and_weight():
    var = tiny_var()
    b = var.blocks[0]
    w0 = site_linear(b, "attn").weight.detach().clone()
    a = torch.exp(torch.randn(var.C, generator=torch.Generator().manual_seed(1)))
    s = smooth_site_(b, "attn", a)
    # TOLERANCE: one float32 rounding of W * s (computed in float64)
    torch.testing.assert_close(site_linear(b, "attn").weight.double(), w0.double() * s, rtol=2**-23, atol=0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="alpha"):
        smoothquant_scales(torch.ones(4), torch.ones(2, 4), alpha=1.5)
    with pytest.raises(ValueError, match="in_features"):
        smoothquant_scales(torch.ones(3), torch.ones(2, 4))
