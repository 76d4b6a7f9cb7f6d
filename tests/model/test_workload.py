"""The workload list: FLOP totals against var-model.md section 4.3, and a hand-worked tiny config."""

import pytest

from fpqvar.model.workload import (
    WorkloadOptions,
    attention_pairs,
    flops_by_category,
    flops_by_scale,
    hadamard_flops,
    transformer_flops,
    transformer_ops,
    vae_decoder_ops,
    var_workload,
)
from fpqvar.model.zoo import PATCH_NUMS_256, VARConfig, get_model_spec

G = 1e9

# var-model.md section 4.3 (GFLOPs per 256x256 image, both CFG rows), copied from the spec table:
# linears, attention, ada_lin, head, transformer with CFG, transformer without CFG.
SPEC_4_3 = {
    "var-d16": (547.6, 37.5, 4.0, 11.5, 600.8, 300.4),
    "var-d20": (1069.5, 58.7, 7.9, 14.4, 1150.6, 575.3),
    "var-d24": (1848.2, 84.5, 13.6, 17.3, 1963.7, 981.8),
    "var-d30": (3609.7, 132.0, 26.5, 21.7, 3790.1, 1895.1),
}


def _word_embed_unconditional_flops(C: int) -> float:
    # The spec counts word_embed (32 -> C on 679 tokens) per forward pass and doubles it for CFG; upstream
    # applies it once, before duplicating the batch (var-model.md section 3.9 step 6), as the workload does.
    # The spec's totals therefore hold 2 * 32 * C * 679 more FLOPs (the unconditional half).
    return 2 * 32 * C * 679


@pytest.mark.parametrize("name", sorted(SPEC_4_3))
def test_flop_totals_match_spec(name):
    spec = get_model_spec(name)
    lin, att, ada, head, total_cfg, total_nocfg = SPEC_4_3[name]
    ops = transformer_ops(spec.var, WorkloadOptions(cfg=True))
    cat = flops_by_category(ops)
    assert round(cat["linear"] / G, 1) == lin
    assert round(cat["attention"] / G, 1) == att
    assert round(cat["ada_lin"] / G, 1) == ada
    assert round(cat["head"] / G, 1) == head
    extra = _word_embed_unconditional_flops(spec.var.C)
    assert round((transformer_flops(ops) + extra) / G, 1) == total_cfg
    nocfg = transformer_flops(transformer_ops(spec.var, WorkloadOptions(cfg=False)))
    assert round(nocfg / G, 1) == total_nocfg


def test_vae_decode_flops_match_spec():
    # var-model.md section 4.3: post_quant_conv + decoder at 256x256 ~393.7 GFLOPs per image.
    ops = vae_decoder_ops(get_model_spec("var-d30").vae, batch_images=1)
    assert round(sum(o.flops for o in ops) / G, 1) == 393.7
    ops2 = vae_decoder_ops(get_model_spec("var-d30").vae, batch_images=3)
    assert sum(o.flops for o in ops2) == 3 * sum(o.flops for o in ops)


def test_attention_pairs_and_last_scale_share():
    assert attention_pairs(PATCH_NUMS_256) == 286_434  # var-model.md section 4.2
    ops = transformer_ops(get_model_spec("var-d30").var, WorkloadOptions())
    per_scale = flops_by_scale(ops, ("linear",))
    # section 4.1: the last scale carries 256/680 = 37.6 % of token FLOPs, the last two 62.5 %.
    total = sum(per_scale.values())
    assert round(100 * per_scale[9] / total, 1) == 37.6
    assert round(100 * (per_scale[8] + per_scale[9]) / total, 1) == 62.5


def test_tiny_config_by_hand():
    # depth 1, C = 128, 2 heads of 64, MLP 512, V = 16, Cvae = 4, scales (1, 2): with CFG, 2 rows.
    cfg = VARConfig(depth=1, embed_dim=128, num_heads=2, vocab_size=16, z_channels=4, num_classes=10,
                    patch_nums=(1, 2))
    ops = transformer_ops(cfg, WorkloadOptions(cfg=True))
    f = {(o.scale, o.name): o.flops for o in ops}
    # scale 0: l = 1, cum = 1, 2 token rows
    assert f[(0, "ada_lin")] == 2 * 2 * 128 * 768
    assert f[(0, "qkv")] == 2 * 2 * 128 * 384
    assert f[(0, "attn_qk")] == 2 * (1 * 64 * 1) * (2 * 2)  # (1 x 64) @ (64 x 1), 2 rows x 2 heads
    assert f[(0, "attn_av")] == 2 * (1 * 1 * 64) * (2 * 2)
    assert f[(0, "proj")] == 2 * 2 * 128 * 128
    assert f[(0, "fc1")] == 2 * 2 * 128 * 512
    assert f[(0, "fc2")] == 2 * 2 * 512 * 128
    assert f[(0, "head_ada_lin")] == 2 * 2 * 128 * 256
    assert f[(0, "head")] == 2 * 2 * 128 * 16
    assert (0, "word_embed") not in f  # scale 0 starts from the class embedding
    # scale 1: l = 4 new tokens, keys = 1 + 4 = 5 cached, 8 token rows; word_embed on the 4 conditional tokens
    assert f[(1, "word_embed")] == 2 * 4 * 4 * 128
    assert f[(1, "qkv")] == 2 * 8 * 128 * 384
    assert f[(1, "attn_qk")] == 2 * (4 * 64 * 5) * (2 * 2)
    assert f[(1, "attn_av")] == 2 * (4 * 5 * 64) * (2 * 2)
    assert f[(1, "fc2")] == 2 * 8 * 512 * 128
    assert f[(1, "head")] == 2 * 8 * 128 * 16
    kv = {(o.scale, o.name): o.kv_read_elems for o in ops}
    assert kv[(1, "attn_qk")] == 2 * 5 * 128  # rows x cached keys x C
    w = {(o.scale, o.name): o.weight_elems for o in ops}
    assert w[(1, "fc1")] == 128 * 512 and w[(1, "attn_qk")] == 0


def test_ada_lin_once_per_sample():
    var = get_model_spec("var-d16").var
    per_scale = flops_by_category(transformer_ops(var, WorkloadOptions(ada_lin_per_scale=True)))
    once = flops_by_category(transformer_ops(var, WorkloadOptions(ada_lin_per_scale=False)))
    assert per_scale["ada_lin"] == 10 * once["ada_lin"]  # 10 scales
    assert per_scale["linear"] == once["linear"]


def test_ght_and_quant_ops_present_only_when_asked():
    var = get_model_spec("var-d30").var
    plain = transformer_ops(var, WorkloadOptions())
    assert not [o for o in plain if o.kind in ("ght", "quant")]
    ops = transformer_ops(var, WorkloadOptions(ght_block=128, quantize_acts=True))
    ght = [o for o in ops if o.kind == "ght"]
    # fpqvar-method.md section 7: on the qkv and fc1 inputs only
    assert {o.name for o in ght} == {"ght_qkv", "ght_fc1"}
    # 680 tokens x 2 rows x 30 blocks x 2 sites x C elements, each 128-block costs 128 * 7 add/sub
    assert sum(o.elems for o in ght) == 680 * 2 * 30 * 2 * 1920
    assert sum(o.flops for o in ght) == 680 * 2 * 30 * 2 * (1920 // 128) * 128 * 7
    q = {o.name for o in ops if o.kind == "quant"}
    assert q == {"quant_qkv", "quant_proj", "quant_fc1", "quant_fc2"}


def test_ght_flop_ratio():
    # fpqvar-method.md "Additional figures": GHT has ~15x fewer FLOPs than the full Hadamard at C = 1920.
    C = 1920
    dense_ratio = hadamard_flops(C, C, "dense") / hadamard_flops(C, 128, "dense")
    assert dense_ratio == pytest.approx(C / 128) and dense_ratio == 15.0
    assert hadamard_flops(C, 128, "dense") == 2 * 15 * 128 * 128
    # With a FWHT-like count (C log2 C vs C log2 128) the ratio is only log2(1920)/7 ~ 1.56: the 15x is dense.
    fwht_ratio = hadamard_flops(C, C, "fwht") / hadamard_flops(C, 128, "fwht")
    assert fwht_ratio == pytest.approx(10.9069 / 7, rel=1e-4)
    assert hadamard_flops(128, 128, "fwht") == 896  # 128 x log2 128 add/sub per transform
    with pytest.raises(ValueError, match="multiple of block"):
        hadamard_flops(1000, 128)
    with pytest.raises(ValueError, match="unknown method"):
        hadamard_flops(128, 128, "fft")


def test_batch_scales_flops_and_options_roundtrip():
    var = get_model_spec("var-d16").var
    one = transformer_flops(transformer_ops(var, WorkloadOptions(batch_images=1)))
    four = transformer_flops(transformer_ops(var, WorkloadOptions(batch_images=4)))
    assert four == 4 * one
    opt = WorkloadOptions(batch_images=2, ght_block=128, quantize_acts=True)
    assert WorkloadOptions.from_dict(opt.to_dict()) == opt
    with pytest.raises(ValueError, match="batch_images"):
        WorkloadOptions(batch_images=0)
    with pytest.raises(ValueError, match="unknown keys"):
        WorkloadOptions.from_dict({"batch": 1})


def test_default_model_and_d36_rejected():
    spec = get_model_spec("default")
    ops = var_workload(spec.var, spec.vae, WorkloadOptions())
    assert any(o.category == "vae" for o in ops)
    assert max(o.scale for o in ops) == len(spec.var.patch_nums) - 1
    with pytest.raises(ValueError, match="shared AdaLN"):
        transformer_ops(get_model_spec("var-d36").var, WorkloadOptions())
