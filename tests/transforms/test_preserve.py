"""With quantization off, every transform preserves the model's function (TOLERANCE tier, teacher-forced logits)."""

import copy

import pytest
import torch

from fpqvar.transforms import (
    OnlineScale,
    TransformedInput,
    block_hadamard_matrix,
    fuse_galt,
    fuse_input_scale_into_adaln,
    random_hadamard,
    scale_linear_input_,
    site_linear,
    site_module,
    smooth_block_,
    transform_site_,
)
from tests.transforms.conftest import assert_same_function, logits, tiny_inputs, tiny_var

# C = 128 (one GHT block) and C = 256 (two blocks, 4 heads); shared AdaLN (var-d36 style) separately.
WIDTHS = [{}, {"embed_dim": 256, "num_heads": 4}]


def _lam(C: int, seed: int) -> torch.Tensor:
    # positive, spread like the shipped d30 lams (0.05 .. 2.8, fpqvar-method.md section 8)
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(C, generator=g) * 0.6).clamp(0.05, 2.8)


@pytest.fixture(params=range(len(WIDTHS)), ids=["C128", "C256"])
def model(request):
    var = tiny_var(**WIDTHS[request.param])
    return var, tiny_inputs(var)


def _check(var, inputs, apply, what):
    ref = logits(var, inputs)
    v2 = copy.deepcopy(var)
    for b in v2.blocks:
        apply(b)
    out = logits(v2, inputs)
    assert_same_function(out, ref, what)
    assert not torch.equal(out, ref) or what == "identity"  # something happened (weights really changed)
    return v2


def test_ght_on_qkv_and_fc1(model):
    var, inputs = model
    Q = block_hadamard_matrix(128)
    v2 = _check(var, inputs, lambda b: [transform_site_(b, s, Q=Q) for s in ("attn", "ffn")], "GHT")
    b = v2.blocks[0]
    assert isinstance(site_module(b, "attn"), TransformedInput) and site_module(b, "attn").scale is None
    assert not torch.equal(site_linear(b, "attn").weight, site_linear(var.blocks[0], "attn").weight)


def test_full_hadamard(model):
    var, inputs = model
    Q = random_hadamard(var.C, seed=5)
    _check(var, inputs, lambda b: [transform_site_(b, s, Q=Q) for s in ("attn", "ffn")], "full Hadamard")


def test_full_hadamard_paley_width():
    var = tiny_var(embed_dim=384, num_heads=4)  # 384 = 12 x 32: Paley I x Sylvester
    Q = random_hadamard(384, seed=1)
    _check(var, tiny_inputs(var), lambda b: [transform_site_(b, s, Q=Q) for s in ("attn", "ffn")], "Hadamard-384")


def test_smoothquant(model):
    var, inputs = model
    g = torch.Generator().manual_seed(2)
    C = var.C
    absmax = torch.exp(torch.randn(2, C, generator=g) * 1.5)  # outlier-ish channel maxima
    _check(var, inputs, lambda b: smooth_block_(b, absmax[0], absmax[1], alpha=0.5), "SmoothQuant")


def test_galt_fusion(model):
    var, inputs = model
    C = var.C
    v2 = _check(var, inputs, lambda b: fuse_galt(b, _lam(C, 0), _lam(C, 1)), "GALT fusion")
    assert not isinstance(site_module(v2.blocks[0], "attn"), TransformedInput)  # zero run-time cost


def test_galt_fusion_with_ght(model):
    var, inputs = model
    C, Q = var.C, block_hadamard_matrix(128)
    _check(var, inputs, lambda b: fuse_galt(b, _lam(C, 0), _lam(C, 1), Q=Q), "GALT + GHT")


def test_adaln_fusion_equals_online_multiply(model):
    """The fused model equals the unfused one with x * lam fed into W / lam (the upstream online form)."""
    var, inputs = model
    lam = _lam(var.C, 3)
    fused, online = copy.deepcopy(var), copy.deepcopy(var)
    for b in fused.blocks:
        for site in ("attn", "ffn"):
            fuse_input_scale_into_adaln(b, site, lam)
            scale_linear_input_(site_linear(b, site), lam)
    for b in online.blocks:
        b.attn.mat_qkv = TransformedInput(b.attn.mat_qkv, OnlineScale(lam))
        b.ffn.fc1 = TransformedInput(b.ffn.fc1, OnlineScale(lam))
        scale_linear_input_(site_linear(b, "attn"), lam)
        scale_linear_input_(site_linear(b, "ffn"), lam)
    assert_same_function(logits(fused, inputs), logits(online, inputs), "AdaLN fusion vs online x*lam")
    assert_same_function(logits(fused, inputs), logits(var, inputs), "AdaLN fusion vs original")


def test_adaln_fusion_rows_from_definition():
    """scale' = lam (1 + scale) - 1 and shift' = lam shift on the modulation vectors; other chunks untouched."""
    var = tiny_var()
    b0 = var.blocks[0]
    b1 = copy.deepcopy(b0)
    C = var.C
    lam = _lam(C, 4)
    cond = torch.randn(3, C, generator=torch.Generator().manual_seed(0))
    fuse_input_scale_into_adaln(b1, "ffn", lam)
    with torch.no_grad():
        m0 = [t.double() for t in b0.modulation(cond)]
        m1 = [t.double() for t in b1.modulation(cond)]
    lam64 = lam.double()
    for k in (0, 1, 2, 4):
        assert torch.equal(m0[k], m1[k]), k  # gamma1, gamma2, scale1, shift1: site "attn" untouched
    # TOLERANCE: one float32 rounding of the fused weight/bias, then a C-term float32 matmul: ~1e-6 relative
    torch.testing.assert_close(m1[3], lam64 * (1 + m0[3]) - 1, rtol=0, atol=1e-5)
    torch.testing.assert_close(m1[5], lam64 * m0[5], rtol=0, atol=1e-5)


def test_shared_aln_uses_online_scale():
    var = tiny_var(shared_aln=True)
    inputs = tiny_inputs(var)
    C = var.C
    with pytest.raises(NotImplementedError, match="shared"):
        fuse_input_scale_into_adaln(var.blocks[0], "attn", _lam(C, 0))
    Q = block_hadamard_matrix(128)
    v2 = _check(var, inputs, lambda b: fuse_galt(b, _lam(C, 0), _lam(C, 1), Q=Q), "GALT + GHT, shared AdaLN")
    m = site_module(v2.blocks[1], "ffn")
    assert isinstance(m, TransformedInput) and m.scale is not None and m.rotation is not None
    assert fuse_galt(copy.deepcopy(var.blocks[0]), _lam(C, 0), None) is False


def test_transform_errors():
    var = tiny_var()
    b = var.blocks[0]
    with pytest.raises(ValueError, match="site must be one of"):
        transform_site_(b, "proj", Q=block_hadamard_matrix(128))
    with pytest.raises(ValueError, match="lam must have shape"):
        fuse_input_scale_into_adaln(b, "attn", torch.ones(7))
    with pytest.raises(ValueError, match="non-zero"):
        scale_linear_input_(b.ffn.fc1, torch.zeros(var.C))
    transform_site_(b, "attn", Q=block_hadamard_matrix(128))
    with pytest.raises(ValueError, match="already transformed"):
        transform_site_(b, "attn", Q=block_hadamard_matrix(128))
