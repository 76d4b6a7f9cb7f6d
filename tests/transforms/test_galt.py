"""GALT: STE, loss decrease, lam = 1 == GHT alone, keep / config rules, fusion on a tiny VAR."""

import copy
import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fpqvar.formats import fake_quantize
from fpqvar.transforms import (
    GALTConfig,
    block_hadamard_matrix,
    fuse_galt,
    galt_full_loss,
    learn_galt_lambda,
    site_linear,
    site_module,
    ste_fake_quantize,
    transform_site_,
)
from tests.transforms.conftest import assert_same_function, logits, tiny_inputs, tiny_var

Q128 = block_hadamard_matrix(128)


def _synthetic_layer(C=256, O=128, n=64, scales=10, seed=0):
    """Activations with a few outlier channels whose position and size change with the scale (time step),
    as FPQVAR describes the mat_qkv / fc1 inputs (fpqvar-method.md section 1)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(O, C, generator=g) / C**0.5
    xs = []
    for _ in range(scales):
        x = torch.randn(n, C, generator=g)
        idx = torch.randperm(C, generator=g)[:6]
        x[:, idx] *= torch.rand(6, generator=g) * 30 + 5
        xs.append(x)
    return xs, w


def test_ste_forward_is_fake_quantize_and_gradient_is_identity():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(5, 256, generator=g) * 3).requires_grad_(True)
    up = torch.randn(5, 256, generator=g)
    y = ste_fake_quantize(x, "e2m1", 128)
    assert torch.equal(y.detach(), fake_quantize(x.detach(), "e2m1", group_size=128))
    (y * up).sum().backward()
    assert torch.equal(x.grad, up)


def test_hand_written_backward_matches_autograd_of_the_definition():
    from fpqvar.transforms.galt import _rotate, _SiteLoss

    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 256, generator=g)
    x[:, 3] *= 20
    w = torch.randn(384, 256, generator=g) / 16
    y = x @ w.T
    Q, cfg = Q128.float(), GALTConfig()
    lam0 = torch.exp(torch.randn(256, generator=g) * 0.3)
    lam = lam0.clone().requires_grad_(True)
    xq = ste_fake_quantize(_rotate(x * lam, Q))
    wq = ste_fake_quantize(_rotate(w / lam, Q))
    ref = (y - xq @ wq.T).square().mean()
    ref.backward()
    for dt, tol in ((torch.float32, 1e-6), (torch.bfloat16, 1e-2)):
        lam2 = lam0.clone().requires_grad_(True)
        out = _SiteLoss.apply(lam2, x, y, w, Q, cfg, dt)
        out.backward()
        assert out.item() == ref.item()  # EXACT: same forward ops
        # TOLERANCE: float32 -> different summation order only (observed 2e-8 of max|grad|); bf16 GEMM operands
        # carry 2**-9 relative rounding (observed 1e-3)
        err = (lam2.grad - lam.grad).abs().max() / lam.grad.abs().max()
        assert err < tol, (dt, err)


def test_galt_loss_decreases_on_outlier_layer():
    xs, w = _synthetic_layer()
    cfg = GALTConfig(epochs=5, keep="final")
    lam, hist = learn_galt_lambda(xs, w, Q_block=Q128, config=cfg)
    assert len(hist) == 5 and lam.shape == (256,) and lam.dtype == torch.float32
    # Observed: the epoch loss drops ~35% in 5 epochs (0.272 -> 0.175, full loss 0.270 -> 0.169); ask for 20%.
    assert all(b < a for a, b in zip(hist, hist[1:])), hist
    assert hist[-1] < 0.8 * hist[0], hist
    l1 = galt_full_loss(xs, w, torch.ones(256), Q_block=Q128, config=cfg)
    assert galt_full_loss(xs, w, lam, Q_block=Q128, config=cfg) < 0.8 * l1
    assert bool((lam >= cfg.min_lam).all()) and not torch.equal(lam, torch.ones(256))


def test_untrained_lambda_is_one_and_loss_equals_ght_alone():
    xs, w = _synthetic_layer(n=32)
    cfg = GALTConfig(epochs=0, max_tokens_per_scale=None)
    lam, hist = learn_galt_lambda(xs, w, Q_block=Q128, config=cfg)
    assert hist == [] and torch.equal(lam, torch.ones(256))
    Q = Q128.float()

    def rot(t):  # t @ blockdiag(Q, Q)
        return (t.reshape(t.shape[0], -1, 128) @ Q).reshape(t.shape)

    ref = 0.0
    for x in xs:  # GHT alone: no lam anywhere
        y = fake_quantize(rot(x), "e2m1", group_size=128) @ fake_quantize(rot(w), "e2m1", group_size=128).T
        ref += (x @ w.T - y).square().mean().item()
    # EXACT: lam = 1 multiplies / divides by one, every other op is the same
    assert galt_full_loss(xs, w, lam, Q_block=Q128, config=cfg) == ref / len(xs)


def test_keep_best_never_worse_than_final_or_ght():
    xs, w = _synthetic_layer(n=32, seed=1)
    # a far too large step: with bf16 gradients the trajectory overshoots after epoch 1. The dtype is pinned:
    # grad_dtype "auto" is chosen by measurement and differs between machines (float32 overshoots far less)
    for gd, factor in (("bfloat16", 0.5), ("float32", 1.0)):
        cfg = GALTConfig(epochs=4, lr=1.0, grad_dtype=gd)
        best, _ = learn_galt_lambda(xs, w, Q_block=Q128, config=cfg)
        final, _ = learn_galt_lambda(xs, w, Q_block=Q128, config=dataclasses.replace(cfg, keep="final"))
        lb, lf = (galt_full_loss(xs, w, t, Q_block=Q128, config=cfg) for t in (best, final))
        assert lb <= factor * lf  # observed: bf16 0.27 vs 3.38; float32 0.27 vs 0.30
        assert lb <= galt_full_loss(xs, w, torch.ones(256), Q_block=Q128, config=cfg)


def test_subsampling_seeded_and_shapes():
    xs, w = _synthetic_layer(n=48)
    xs = [x.view(2, 24, 256) for x in xs]  # (B, L, C) per scale is accepted
    cfg = GALTConfig(epochs=2, max_tokens_per_scale=16, seed=3)
    a, ha = learn_galt_lambda(xs, w, Q_block=Q128, config=cfg)
    b, hb = learn_galt_lambda(xs, w, Q_block=Q128, config=cfg)
    assert torch.equal(a, b) and ha == hb
    c, _ = learn_galt_lambda(xs, w, Q_block=Q128, config=GALTConfig(epochs=2, max_tokens_per_scale=16, seed=4))
    assert not torch.equal(a, c)


def test_float32_gradients_also_train():
    xs, w = _synthetic_layer(n=32, seed=2)
    _, hist = learn_galt_lambda(xs, w, Q_block=Q128, config=GALTConfig(epochs=4, grad_dtype="float32"))
    assert hist[-1] < hist[0]


@pytest.mark.parametrize("field, value", [("lr", 0.0), ("epochs", -1), ("fmt", "e9m9"), ("keep", "last"),
                                          ("max_tokens_per_scale", 0), ("rounding", "nearest"),
                                          ("grad_dtype", "float16"), ("min_lam", 0.0), ("block", 0)])
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=f"GALTConfig.{field}"):
        GALTConfig(**{field: value})


def test_config_roundtrip_and_input_errors():
    cfg = GALTConfig(epochs=3, keep="final", max_tokens_per_scale=None)
    assert GALTConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["version"] == 1
    with pytest.raises(ValueError, match="unknown keys"):
        GALTConfig.from_dict({**cfg.to_dict(), "foo": 1})
    xs, w = _synthetic_layer(n=8, scales=2)
    with pytest.raises(ValueError, match=r"Q_block must be \(128, 128\)"):
        learn_galt_lambda(xs, w, Q_block=block_hadamard_matrix(64), config=cfg)
    with pytest.raises(ValueError, match="channels"):
        learn_galt_lambda([torch.randn(4, 128)], w, Q_block=Q128, config=cfg)


class _FakeQuantLinear(nn.Module):
    """Test-local W4A4 linear: E2M1 per-group-128 fake quantization of input and weight (RNE)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    @property
    def weight(self):
        return self.linear.weight

    def forward(self, x):
        wq = fake_quantize(self.linear.weight, "e2m1", group_size=128)
        return F.linear(fake_quantize(x, "e2m1", group_size=128), wq, self.linear.bias)


def _quantize_sites(var):
    for b in var.blocks:
        for site in ("attn", "ffn"):
            m = site_module(b, site)
            m.linear = _FakeQuantLinear(m.linear)


def _capture_site_inputs(var, inputs, block_idx, site):
    """Per-scale inputs of one site in the teacher-forced forward: list of (B * pn^2, C)."""
    got = []
    mod = site_linear(var.blocks[block_idx], site)
    h = mod.register_forward_hook(lambda m, a, o: got.append(a[0].detach()))
    logits(var, inputs)
    h.remove()
    x_BLC = got[0]
    return [x_BLC[:, b:e].reshape(-1, var.C) for b, e in var.begin_ends]


def test_untrained_galt_model_equals_ght_model_exactly():
    var = tiny_var(embed_dim=256, num_heads=4)
    inputs = tiny_inputs(var)
    ght, galt = copy.deepcopy(var), copy.deepcopy(var)
    for b in ght.blocks:
        transform_site_(b, "attn", Q=Q128)
        transform_site_(b, "ffn", Q=Q128)
    cfg = GALTConfig(epochs=0)
    for i, b in enumerate(galt.blocks):
        lam_q, _ = learn_galt_lambda(_capture_site_inputs(var, inputs, i, "attn"),
                                     site_linear(b, "attn").weight, Q_block=Q128, config=cfg)
        lam_f, _ = learn_galt_lambda(_capture_site_inputs(var, inputs, i, "ffn"),
                                     site_linear(b, "ffn").weight, Q_block=Q128, config=cfg)
        assert fuse_galt(b, lam_q, lam_f, Q=Q128)
    _quantize_sites(ght)
    _quantize_sites(galt)
    # EXACT: with lam = 1 the fused ada_lin rows are lam * w = w, lam * b + (lam - 1) = b, and (W / 1) Q = W Q
    assert torch.equal(logits(galt, inputs), logits(ght, inputs))


def test_trained_galt_fusion_preserves_float_model():
    var = tiny_var()
    inputs = tiny_inputs(var)
    v2 = copy.deepcopy(var)
    cfg = GALTConfig(epochs=3)
    for i, b in enumerate(v2.blocks):
        lams = [learn_galt_lambda(_capture_site_inputs(var, inputs, i, s), site_linear(b, s).weight,
                                  Q_block=Q128, config=cfg)[0] for s in ("attn", "ffn")]
        assert not torch.equal(lams[0], torch.ones(var.C))
        fuse_galt(b, *lams, Q=Q128)
    assert_same_function(logits(v2, inputs), logits(var, inputs), "trained GALT + GHT, quantization off")
