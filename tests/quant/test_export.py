"""Packed safetensors: real low-bit codes, exact round trip, clear refusals."""

import json

import pytest
import torch
from safetensors import safe_open

from fpqvar.model.sampling import decode_images, sample_tokens
from fpqvar.quant import load_quantized, quantize_, save_quantized
from fpqvar.quant.export import QuantFileError, read_header
from fpqvar.quant.recipes import LayerRule, Recipe, get_recipe
from fpqvar.quant.spec import QuantSpec
from tests.quant.conftest import make_small
from tests.quant.test_quantize import fast

KW = dict(seed=0, cfg=1.5, top_k=900, top_p=0.96)


def _outputs(var, vae):
    res = sample_tokens(var, 2, [0, 3], **KW)
    img = decode_images(var, res.f_hat)
    with torch.no_grad():
        logits = var(torch.tensor([0, 3]), vae.idx_to_var_input(res.idx_list))
    return res.idx_list, img, logits


@pytest.mark.parametrize("recipe", ["fp4-rtn", "litevar-w4a4", "fpqvar-w6a6-kv6", "int6-rtn", "fpqvar-dfq-fullht",
                                    "quarot-w4a4", "mxfp4-rtn", "mxfp6-rtn-all", "mxfp8-rtn", "nvfp4-rtn-all",
                                    "fpqvar-mxfp4", "fpqvar-nvfp4"])
def test_round_trip_exact(tmp_path, recipe):
    from fpqvar.quant import CalibConfig

    vae, var = make_small()
    r = fast(get_recipe(recipe), epochs=1)  # GALT (fpqvar-mxfp4 / -nvfp4): one epoch for the CPU budget
    needs = r.needs_calibration  # quarot-w4a4: static activation scales
    quantize_(var, r, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32) if needs else None,
              progress=False)
    tok_a, img_a, log_a = _outputs(var, vae)
    p = save_quantized(var, r, tmp_path / "q.safetensors")
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

    from fpqvar.quant import CalibConfig, calibrate

    vae, var = make_small()
    cal = calibrate(var, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32), progress=False)
    r = fast(get_recipe("fpqvar-w4a4-kv6"))
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
    assert "attn_bias_for_masking" not in keys and "lvl_1L" not in keys  # derived from the config on load
    assert list(meta) == ["fpqvar"]  # one metadata key: byte-stable files
    h = json.loads(meta["fpqvar"])
    assert h["recipe"]["name"] == "mix" and h["model_config"]["embed_dim"] == C


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

    meta = _meta(p)
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
    with safe_open(str(p), "pt") as f:  # the recipe defines the GHT block: not stored
        assert not any(k.endswith("rotation.Q_bb") for k in f.keys())
    assert read_header(p)["layers"]["blocks.0.ffn.fc1"]["rotation"]["derived"] is True


def _meta(p):
    with safe_open(str(p), "pt") as f:
        return f.metadata()


def _tamper(p, tmp_path, edit_sd=None, edit_header=None):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(p))
    h = json.loads(_meta(p)["fpqvar"])
    if edit_sd:
        edit_sd(sd)
    if edit_header:
        edit_header(h)
    bad = tmp_path / "bad.safetensors"
    save_file(sd, str(bad), metadata={"fpqvar": json.dumps(h)})
    return bad


def test_file_is_byte_reproducible_across_processes(tmp_path):
    """Issue 16 item 9: the same quantization written twice (here: in two fresh processes) gives identical
    bytes, so resuming a run can compare files."""
    import hashlib
    import subprocess
    import sys

    code = ("import sys, torch; torch.set_num_threads(1)\n"
            "from tests.quant.conftest import make_small\n"
            "from fpqvar.quant import quantize_, save_quantized\n"
            "_, v = make_small(); quantize_(v, 'fpqvar-w6a6-kv6', progress=False)\n"
            "save_quantized(v, 'fpqvar-w6a6-kv6', sys.argv[1], metadata={'a': '1', 'b': '2', 'c': '3'})\n")
    digests = set()
    for i in range(2):
        out = tmp_path / f"q{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_float_params_keep_their_dtype_and_file_is_small(tmp_path):
    """Issue 16 item 10: float parameters are stored in the narrowest dtype that holds them exactly (fp16 for a
    model whose weights came from fp16), never as float32 copies; derivable buffers are not stored."""
    vae, var = make_small()
    for p_ in var.parameters():  # a model loaded from an fp16 checkpoint: every parameter fp16-representable
        p_.data = p_.data.half().float()
    quantize_(var, "fp4-rtn", progress=False)
    p = save_quantized(var, "fp4-rtn", tmp_path / "q.safetensors")
    with safe_open(str(p), "pt") as f:
        assert f.get_tensor("head.weight").dtype == torch.float16
        assert f.get_tensor("blocks.0.ada_lin.1.weight").dtype == torch.float16
        assert f.get_tensor("blocks.0.attn.mat_qkv.weight_scale").dtype in (torch.float16, torch.bfloat16,
                                                                              torch.float32)
    size = read_header(p)["size"]
    assert size["bits_per_quantized_weight"] == pytest.approx(4 + 32 / 128, abs=0.26)  # codes + one scale / 128
    loaded = load_quantized(p, vae=vae)
    torch.testing.assert_close(_outputs(loaded, vae)[2], _outputs(var, vae)[2], rtol=0, atol=0)


def test_float_dtype_choice_rounds_float_params(tmp_path):
    """float_dtype='float16' stores every float parameter in fp16 (quantization scales stay lossless): the loaded
    model equals the in-memory one with those parameters rounded to fp16."""
    vae, var = make_small()
    quantize_(var, "fp4-rtn", progress=False)
    p = save_quantized(var, "fp4-rtn", tmp_path / "q.safetensors", float_dtype="float16")
    loaded = load_quantized(p, vae=vae)
    assert torch.equal(loaded.head.weight, var.head.weight.half().float())
    assert torch.equal(loaded.blocks[0].attn.proj.weight_scale, var.blocks[0].attn.proj.weight_scale)
    with pytest.raises(ValueError, match="float_dtype"):
        save_quantized(var, "fp4-rtn", tmp_path / "x.safetensors", float_dtype="fp8")


def _fp4_file(tmp_path):
    vae, var = make_small()
    quantize_(var, "fp4-rtn", progress=False)
    return vae, save_quantized(var, "fp4-rtn", tmp_path / "q.safetensors")


@pytest.mark.parametrize("edit, match", [
    (lambda sd: sd.__setitem__("blocks.0.attn.proj.weight_scale", -sd["blocks.0.attn.proj.weight_scale"]),
     "weight_scale has scales <= 0"),
    (lambda sd: sd["blocks.0.attn.proj.weight_scale"].view(-1).__setitem__(0, 0.0), "scales <= 0"),
    (lambda sd: sd["blocks.1.ffn.fc1.weight_scale"].view(-1).__setitem__(3, float("nan")), "non-finite"),
    (lambda sd: sd["head.weight"].view(-1).__setitem__(0, float("nan")), "'head.weight' has 1 non-finite"),
    (lambda sd: sd.__setitem__("head.weight", sd["head.weight"].to(torch.int32)), "'head.weight' is torch.int32"),
])
def test_bad_tensors_refused_naming_the_key(tmp_path, edit, match):
    """Issue 16 item 4: negative / zero / NaN scales, NaN floats and integer tensors in float slots."""
    vae, p = _fp4_file(tmp_path)
    with pytest.raises(QuantFileError, match=match):
        load_quantized(_tamper(p, tmp_path, edit_sd=edit), vae=vae)


def test_codes_off_the_grid_refused(tmp_path):
    """A symmetric INT4 code 8 decodes to -8, outside the -7..7 grid: refused naming the key."""
    from fpqvar.formats import pack_int4, unpack_int4

    vae, var = make_small()
    r = Recipe("i4", (LayerRule("blocks.*.attn.proj", QuantSpec("int4", "channel", None), None),))
    quantize_(var, r, progress=False)
    p = save_quantized(var, r, tmp_path / "q.safetensors")

    def edit(sd):
        codes = unpack_int4(sd["blocks.0.attn.proj.weight_codes"], 256)
        codes[0, 0] = 8
        sd["blocks.0.attn.proj.weight_codes"] = pack_int4(codes)
    with pytest.raises(QuantFileError, match="blocks.0.attn.proj.weight_codes.*code 8"):
        load_quantized(_tamper(p, tmp_path, edit_sd=edit), vae=vae)


def test_layer_metadata_must_agree_with_the_recipe(tmp_path):
    """Issue 16 item 4: per-layer format metadata that disagrees with the recipe would decode the codes on the
    wrong grid (e2m1 codes read as int4): refused."""
    vae, p = _fp4_file(tmp_path)

    def edit(h):
        h["layers"]["blocks.0.attn.proj"]["weight"]["fmt"] = "int4"
    with pytest.raises(QuantFileError, match="blocks.0.attn.proj.*weight spec int4/g128 disagrees"):
        load_quantized(_tamper(p, tmp_path, edit_header=edit), vae=vae)

    def edit2(h):
        h["layers"]["blocks.0.attn.proj"]["weight"] = "e2m1"
    with pytest.raises(QuantFileError, match="blocks.0.attn.proj"):
        load_quantized(_tamper(p, tmp_path, edit_header=edit2), vae=vae)

    def edit3(h):
        h["operands"]["blocks.0.attn.kv"] = QuantSpec("e2m3", "token", None).to_dict()
    with pytest.raises(QuantFileError, match="blocks.0.attn.kv"):
        load_quantized(_tamper(p, tmp_path, edit_header=edit3), vae=vae)


def test_version1_files_still_load(tmp_path):
    """A file in format version 1 (one metadata key per field, float32 parameters, mask stored) loads."""
    from safetensors.torch import save_file

    vae, var = make_small()
    quantize_(var, "fp4-rtn", progress=False)
    p = save_quantized(var, "fp4-rtn", tmp_path / "v2.safetensors")
    from safetensors.torch import load_file

    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(p)).items()}
    sd["attn_bias_for_masking"] = var.attn_bias_for_masking
    sd["lvl_1L"] = var.lvl_1L
    for i in range(2):
        sd[f"blocks.{i}.attn.zero_k_bias"] = var.blocks[i].attn.zero_k_bias
    h = read_header(p)
    v1_recipe = {"name": "fp4-rtn", "version": 1,
                 "rules": [{"pattern": "blocks.*", "weight": QuantSpec("e2m1").to_dict(),
                            "act": QuantSpec("e2m1").to_dict()}]}
    for layer in h["layers"].values():
        layer.pop("input_scale", None)
        layer["rotation"] = None
    meta = {"fpqvar.format": "fpqvar-quantized", "fpqvar.format_version": "1", "recipe": json.dumps(v1_recipe),
            "model_config": json.dumps(h["model_config"]), "vae_config": json.dumps(h["vae_config"]),
            "model_name": json.dumps(None), "layers": json.dumps(h["layers"]), "kv": json.dumps(None),
            "hadamard": json.dumps({"kind": None, "block": None, "seed": 42})}
    old = tmp_path / "v1.safetensors"
    save_file(sd, str(old), metadata=meta)
    loaded = load_quantized(old, vae=vae)
    torch.testing.assert_close(_outputs(loaded, vae)[2], _outputs(var, vae)[2], rtol=0, atol=0)


def test_shared_adaln_uses_online_lambda_and_round_trips(tmp_path):
    """Shared AdaLN (var-d36 style) cannot absorb a per-block lambda: it is multiplied online inside the
    QuantLinear, and the file carries it."""

    from fpqvar.quant import CalibConfig, calibrate

    vae, var = make_small(shared_aln=True)
    cal = calibrate(var, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32), progress=False)
    r = fast(get_recipe("fpqvar-w4a4"))
    rep = quantize_(var, r, cal, progress=False)
    assert rep.layers["blocks.0.ffn.fc1"].get("online_scale") is True
    assert var.blocks[0].ffn.fc1.input_scale is not None and var.blocks[0].attn.proj.input_scale is None
    _, _, log_a = _outputs(var, vae)
    loaded = load_quantized(save_quantized(var, r, tmp_path / "q.safetensors"), vae=vae)
    torch.testing.assert_close(_outputs(loaded, vae)[2], log_a, rtol=0, atol=0)
