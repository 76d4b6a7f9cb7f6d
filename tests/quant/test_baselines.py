"""Baselines as their authors run them: which sites end up quantized, in which format and granularity.

The tables below are written from the authors' code (not from ``fpqvar/quant/baselines.py``):
- upstream FPQVAR INT (PKU-SEC-Lab/FPQVAR models_quant/quant_utils.py quantize_VAR, evaluate_quantization.py):
  mat_qkv, proj, fc1 replaced; fc2 replacement commented out; W symmetric per channel; A per token, --act_sym false.
- LiteVAR (EkaterinaXie/LiteVAR models/quant_self_attention.py replace_to_quantize_layer): every nn.Linear whose
  name lacks "ffn.fc2"; WeightPCQuantizer (asymmetric per output channel), ActPGDynamicQuantizer (per token,
  asymmetric); QuantSelfAttention: Q / K per (batch, head, token), V per channel over tokens, map 1/256 uint8.
- PTQ4ARVG (BienLuky/PTQ4ARVG VAR/quant/quant_model.py): every nn.Linear except word_embed, activations static
  per tensor (leaf_param, channel_wise False).
"""

import pytest
import torch

from fpqvar.model.sites import model_sites
from fpqvar.quant import CalibConfig, calibrate, get_recipe, quantize_
from fpqvar.quant.qlinear import QuantLinear
from tests.quant.conftest import make_small

_ALL = ("word_embed", "ada_lin", "mat_qkv", "proj", "fc1", "fc2", "head_ada_lin", "head")

# role -> (weight fmt, weight granularity, act fmt, act granularity, act static); absent role = float
EXPECTED = {
    "int4-rtn": {r: ("int4", "channel", "uint4", "token", False) for r in ("mat_qkv", "proj", "fc1")},
    "int6-rtn": {r: ("int6", "channel", "uint6", "token", False) for r in ("mat_qkv", "proj", "fc1")},
    "litevar-w4a4": {r: ("uint4", "channel", "uint4", "token", False) for r in _ALL if r != "fc2"},
    "litevar-w6a6": {r: ("uint6", "channel", "uint6", "token", False) for r in _ALL if r != "fc2"},
    "smoothquant-w8a8": {r: ("int8", "channel", "int8", "tensor", True) for r in _ALL if r != "word_embed"},
    "smoothquant-w6a6": {r: ("int6", "channel", "int6", "tensor", True) for r in _ALL if r != "word_embed"},
    "quarot-w4a4": {r: ("int4", "channel", "int4", "tensor", True) for r in _ALL if r != "word_embed"},
}
# LiteVAR attention at 8 bits: role -> (fmt, granularity, fixed scale)
LITEVAR_OPERANDS = {"q": ("uint8", "token", None), "k": ("uint8", "token", None), "v": ("uint8", "channel", None),
                    "attn_map": ("uint8", "tensor", 1 / 256)}


@pytest.fixture(scope="module")
def calib():
    _, var = make_small()
    return calibrate(var, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32), progress=False)


def _quantized(name, calib):
    _, var = make_small()
    r = get_recipe(name)
    quantize_(var, r, calib if r.needs_calibration else None, progress=False, report=False)
    return var


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layer_set_formats_granularity(name, calib):
    var = _quantized(name, calib)
    got = {}
    for s in model_sites(var):
        if s.kind != "linear":
            continue
        m = var.get_submodule(s.module)
        if isinstance(m, QuantLinear) and (m.weight_spec or m.act_spec):
            w, a = m.weight_spec, m.act_spec
            got.setdefault(s.role, set()).add((w.fmt, w.granularity, a.fmt, a.granularity, a.static))
        else:
            got.setdefault(s.role, set()).add(None)
    want = EXPECTED[name]
    for role, specs in got.items():
        assert specs == {want.get(role)}, (name, role)
    assert set(want) <= set(got)
    ops = {(i, role): q.spec for i, b in enumerate(var.blocks) for role, q in b.attn.operand_hooks.items()}
    if name.startswith("litevar"):
        assert {r for _, r in ops} == set(LITEVAR_OPERANDS) and len(ops) == 4 * len(var.blocks)
        for (_, role), spec in ops.items():
            assert (spec.fmt, spec.granularity, spec.fixed_scale) == LITEVAR_OPERANDS[role]
    else:
        assert not ops  # the others keep the attention matmuls float
    assert all(b.attn.kv_quantizer is None for b in var.blocks)


def test_quarot_rotates_every_block_linear(calib):
    var = _quantized("quarot-w4a4", calib)
    for b in var.blocks:
        for m in (b.attn.mat_qkv, b.attn.proj, b.ffn.fc1, b.ffn.fc2):
            assert m.rotation is not None and m.rotation.block == m.in_features  # the full width
    assert var.head.rotation is None


def test_litevar_map_quantizer_is_fixed_scale():
    """The softmax map at scale 1/256, zero point 0, clamped to 255: 0.5 -> 128/256, 1.0 saturates at 255/256."""
    from fpqvar.quant.operands import OperandQuantizer
    from fpqvar.quant.spec import QuantSpec

    q = OperandQuantizer(QuantSpec("uint8", "tensor", None, fixed_scale=1 / 256))
    p = torch.tensor([[0.0, 0.5, 1.0, 0.001, 0.0021]])
    torch.testing.assert_close(q(p), torch.tensor([[0.0, 128, 255, 0, 1]]) / 256, rtol=0, atol=0)


def test_litevar_v_is_per_channel_across_tokens():
    """V (B, H, L, c): one scale per (b, h, channel) over L; scaling one channel leaves the others' codes."""
    from fpqvar.quant.operands import OperandQuantizer
    from fpqvar.quant.spec import QuantSpec

    q = OperandQuantizer(QuantSpec("uint8", "channel", None))
    g = torch.Generator().manual_seed(0)
    v = torch.randn(1, 2, 9, 4, generator=g)
    a = q(v)
    v2 = v.clone()
    v2[..., 0] *= 100
    b = q(v2)
    torch.testing.assert_close(a[..., 1:], b[..., 1:], rtol=0, atol=0)
    # min-max over the tokens of each (b, h, channel) column: error within one step (max - min) / 255 of it
    step = (v.amax(dim=2, keepdim=True) - v.amin(dim=2, keepdim=True)) / 255
    assert bool(((a - v).abs() <= step * (1 + 1e-5)).all())
    # a per-token quantizer would use different scales: the rows of one channel over tokens decide here
    assert not torch.equal(a, OperandQuantizer(QuantSpec("uint8", "token", None))(v))


def test_mixed_format_picks_one_pair_per_block(calib):
    var = _quantized("fp4-mixed", calib)
    for b in var.blocks:
        pairs = {(m.weight_spec.fmt, m.act_spec.fmt) for m in (b.ada_lin[1], b.attn.mat_qkv, b.attn.proj,
                                                               b.ffn.fc1, b.ffn.fc2)}
        assert len(pairs) == 1 and pairs <= {(w, a) for w in ("e1m2", "e2m1", "e3m0")
                                             for a in ("e1m2", "e2m1", "e3m0")}
