"""Packed safetensors: real low-bit codes, exact round trip, clear refusals."""

import json

import pytest
import torch
from safetensors import safe_open

from fpqvar.model.sampling import decode_images, sample_tokens
from fpqvar.quant import load_quantized, quantize_, save_quantized
from fpqvar.quant.export import QuantFileError
from fpqvar.quant.recipes import LayerRule, Recipe, get_recipe
from fpqvar.quant.spec import QuantSpec
from tests.quant.conftest import make_small

KW = dict(seed=0, cfg=1.5, top_k=900, top_p=0.96)


def _outputs(var, vae):
    res = sample_tokens(var, 2, [0, 3], **KW)
    img = decode_images(var, res.f_hat)
    with torch.no_grad():
        logits = var(torch.tensor([0, 3]), vae.idx_to_var_input(res.idx_list))
    return res.idx_list, img, logits


@pytest.mark.parametrize("recipe", ["fp4-rtn", "litevar-int4", "fpqvar-w6a6-kv6", "int6-rtn", "quarot-fp4"])
def test_round_trip_exact(tmp_path, recipe):
    vae, var = make_small()
    quantize_(var, recipe, progress=False)
    tok_a, img_a, log_a = _outputs(var, vae)
    p = save_quantized(var, recipe, tmp_path / "q.safetensors")
    loaded = load_quantized(p, vae=vae)
    tok_b, img_b, log_b = _outputs(loaded, vae)
    assert all(torch.equal(a, b) for a, b in zip(tok_a, tok_b))
    torch.testing.assert_close(img_b, img_a, rtol=0, atol=0)
    torch.testing.assert_close(log_b, log_a, rtol=0, atol=0)
    # into a given float model of the same config, too
    _, other = make_small(seed=5, vae=vae)
    load_quantized(p, model=other)
    torch.testing.assert_close(_outputs(other, vae)[2], log_a, rtol=0, atol=0)


def test_round_trip_exact_with_galt(tmp_path):
    """GALT lambdas live in ada_lin's float weights after fusion: the file reproduces the model exactly."""
    import dataclasses

    from fpqvar.quant import CalibConfig, calibrate

    vae, var = make_small()
    cal = calibrate(var, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32), progress=False)
    r = get_recipe("fpqvar-w4a4-kv6")
    r = dataclasses.replace(r, galt=dataclasses.replace(r.galt, epochs=2))
    quantize_(var, r, cal, progress=False)
    _, _, log_a = _outputs(var, vae)
    loaded = load_quantized(save_quantized(var, r, tmp_path / "q.safetensors"), vae=vae)
    torch.testing.assert_close(_outputs(loaded, vae)[2], log_a, rtol=0, atol=0)
    lam = var.blocks[1].ffn.fc1.input_lambda  # the learned lambda is in the file (for inspection)
    assert lam is not None and not torch.equal(lam, torch.ones_like(lam))
    assert torch.equal(loaded.blocks[1].ffn.fc1.input_lambda, lam) and loaded.blocks[1].attn.proj.input_lambda is None


def test_codes_are_packed(tmp_path):
    vae, var = make_small()
    r = Recipe("mix", (LayerRule("blocks.*.attn.mat_qkv", QuantSpec("e2m1"), None),
                       LayerRule("blocks.*.attn.proj", QuantSpec("e2m3", "channel", None), None),
                       LayerRule("blocks.*.ffn.fc1", QuantSpec("int8", "channel", None), None)))
    quantize_(var, r, progress=False)
    p = save_quantized(var, r, tmp_path / "q.safetensors")
    C = 256
    with safe_open(str(p), "pt") as f:
        keys = set(f.keys())
        assert f.get_tensor("blocks.0.attn.mat_qkv.weight_codes").shape == (3 * C, C // 2)  # 2 per byte
        assert f.get_tensor("blocks.0.attn.proj.weight_codes").shape == (C, 3 * C // 4)  # 4 per 3 bytes
        assert f.get_tensor("blocks.0.ffn.fc1.weight_codes").shape == (4 * C, C)
        assert f.get_tensor("blocks.0.attn.mat_qkv.weight_codes").dtype == torch.uint8
        meta = f.metadata()
    assert "blocks.0.attn.mat_qkv.weight" not in keys  # no float copy of a quantized weight
    assert "blocks.0.ffn.fc2.weight" in keys  # unquantized linear stored as float
    assert "blocks.0.ada_lin.1.weight" in keys
    assert json.loads(meta["recipe"])["name"] == "mix"
    assert json.loads(meta["model_config"])["embed_dim"] == C


def test_mismatches_refused(tmp_path):
    vae, var = make_small()
    quantize_(var, "fp4-rtn", progress=False)
    p = save_quantized(var, "fp4-rtn", tmp_path / "q.safetensors")
    _, deeper = make_small(depth=3, vae=vae)
    with pytest.raises(QuantFileError, match="model_config.depth: file 2 vs model 3"):
        load_quantized(p, model=deeper)
    with pytest.raises(QuantFileError, match="recipe is 'fp4-rtn', expected 'fpqvar-w6a6'"):
        load_quantized(p, vae=vae, expect_recipe="fpqvar-w6a6")
    with pytest.raises(QuantFileError, match="already quantized"):
        load_quantized(p, model=var)
    # tampered codes: wrong packed shape names the key
    from safetensors.torch import load_file, save_file

    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(p))
    sd["blocks.1.ffn.fc2.weight_codes"] = sd["blocks.1.ffn.fc2.weight_codes"][:, :-1].contiguous()
    bad = tmp_path / "bad.safetensors"
    save_file(sd, str(bad), metadata=meta)
    with pytest.raises(QuantFileError, match="blocks.1.ffn.fc2.weight_codes"):
        load_quantized(bad, vae=vae)
    # a float key missing
    sd = load_file(str(p))
    del sd["head.weight"]
    save_file(sd, str(bad), metadata=meta)
    with pytest.raises(QuantFileError, match="missing keys.*head.weight"):
        load_quantized(bad, vae=vae)
    # a plain (non-fpqvar) safetensors file
    save_file({"x": torch.zeros(1)}, str(bad))
    with pytest.raises(QuantFileError, match="not an fpqvar quantized model"):
        load_quantized(bad, vae=vae)
    # the file's VQVAE config must match the given VQVAE
    from fpqvar.model import build_vqvae
    from tests.quant.conftest import SMALL_VAE

    other_vae = build_vqvae(type(SMALL_VAE).from_dict({**SMALL_VAE.to_dict(), "ch": 64}))
    with pytest.raises(QuantFileError, match="vae_config.ch: file 32 vs model 64"):
        load_quantized(p, vae=other_vae)


def test_kv_and_rotation_survive(tmp_path):
    vae, var = make_small()
    quantize_(var, "fpqvar-w6a6-kv6", progress=False)
    p = save_quantized(var, get_recipe("fpqvar-w6a6-kv6"), tmp_path / "q.safetensors")
    loaded = load_quantized(p, vae=vae)
    assert loaded.blocks[0].attn.kv_quantizer is not None
    assert loaded.blocks[0].attn.kv_quantizer.spec == QuantSpec("e2m3", "token", None)
    torch.testing.assert_close(loaded.blocks[1].ffn.fc1.rotation.Q_bb, var.blocks[1].ffn.fc1.rotation.Q_bb,
                               rtol=0, atol=0)


def test_shared_adaln_uses_online_lambda_and_round_trips(tmp_path):
    """Shared AdaLN (var-d36 style) cannot absorb a per-block lambda: it is multiplied online inside the
    QuantLinear, and the file carries it."""
    import dataclasses

    from fpqvar.quant import CalibConfig, calibrate

    vae, var = make_small(shared_aln=True)
    cal = calibrate(var, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32), progress=False)
    r = get_recipe("fpqvar-w4a4")
    r = dataclasses.replace(r, galt=dataclasses.replace(r.galt, epochs=2))
    rep = quantize_(var, r, cal, progress=False)
    assert rep.layers["blocks.0.ffn.fc1"].get("online_scale") is True
    assert var.blocks[0].ffn.fc1.input_scale is not None and var.blocks[0].attn.proj.input_scale is None
    _, _, log_a = _outputs(var, vae)
    loaded = load_quantized(save_quantized(var, r, tmp_path / "q.safetensors"), vae=vae)
    torch.testing.assert_close(_outputs(loaded, vae)[2], log_a, rtol=0, atol=0)
