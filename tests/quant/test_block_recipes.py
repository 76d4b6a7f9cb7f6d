"""MX / NVFP4 in the harness (issue 14): specs, which sites get which format, what QuantLinear stores and
computes, the packed file (torchao layout, exact round trip, strict refusals) and its size accounting."""

import json

import pytest
import torch
from safetensors import safe_open

from fpqvar.formats import block_dfq_fake_quantize, pack_block, quantize_codes, quantize_dequantize
from fpqvar.model.sites import model_sites
from fpqvar.model.zoo import get_model_spec
from fpqvar.quant import QuantLinear, load_quantized, quantize_, save_quantized
from fpqvar.quant.export import QuantFileError, read_header
from fpqvar.quant.recipes import Recipe, Rule, get_recipe, recipe_names
from fpqvar.quant.spec import QuantSpec
from tests.quant.conftest import make_small
from tests.quant.test_export import _tamper

NEW = ["mxfp4-rtn", "mxfp6-rtn", "mxfp8-rtn", "nvfp4-rtn", "mxfp4-rtn-all", "mxfp6-rtn-all", "mxfp8-rtn-all",
       "nvfp4-rtn-all", "fpqvar-mxfp4", "fpqvar-nvfp4"]
FMT = {"mxfp4": ("mxfp4", 32), "mxfp6": ("mxfp6_e2m3", 32), "mxfp8": ("mxfp8_e4m3", 32), "nvfp4": ("nvfp4", 16)}
BLOCK4 = ("mat_qkv", "proj", "fc1", "fc2")
ALL = ("word_embed", "ada_lin", *BLOCK4, "head_ada_lin", "head")


def test_new_recipes_exist_and_round_trip():
    assert set(NEW) <= set(recipe_names())
    for n in NEW:
        r = get_recipe(n)
        assert Recipe.from_json(r.to_json()) == r and r.description and r.source


@pytest.mark.parametrize("bad, match", [
    ({"fmt": "mxfp4"}, "group_size=32"),  # the default 128 is not MXFP4's block
    ({"fmt": "nvfp4", "group_size": 32}, "group_size=16"),
    ({"fmt": "mxfp4", "granularity": "channel", "group_size": None}, "granularity 'group'"),
    ({"fmt": "mxfp4", "group_size": 32, "rounding": "ties_up"}, "rounding"),
    ({"fmt": "mxfp4", "group_size": 32, "static": True}, "static"),
    ({"fmt": "mxfp8_e4m3", "group_size": 32, "dfq": "fp4"}, "dfq"),
    ({"fmt": "mxfp4", "group_size": 32, "scale_rule": "round"}, "scale_rule"),
    ({"fmt": "nvfp4", "group_size": 16, "scale_rule": "floor"}, "scale_rule"),
    ({"fmt": "e2m1", "scale_rule": "floor"}, "scale_rule"),
])
def test_block_spec_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        QuantSpec.from_dict(bad)


def test_block_spec_fields():
    s = QuantSpec(fmt="mxfp4", granularity="group", group_size=32)
    assert s.scale_rule == "floor" and s.bits == 4 and s.short() == "mxfp4/g32"
    assert QuantSpec("mxfp6_e2m3", "group", 32).bits == 6 and QuantSpec("mxfp8_e4m3", "group", 32).bits == 8
    assert QuantSpec("mxfp4", "group", 32, scale_rule="rceil").short() == "mxfp4/g32/rceil"
    assert QuantSpec("nvfp4", "group", 16, dfq="fp4").short() == "dfq-nvfp4/g16"
    assert QuantSpec.from_dict(s.to_dict()) == s
    assert "scale_rule" not in QuantSpec("e2m1").to_dict()  # existing specs serialise as before


def _table(recipe: str, cfg) -> dict:
    """role -> set of (weight short, act short) over the linear sites the recipe quantizes."""
    r = get_recipe(recipe)
    out: dict[str, set] = {}
    for s in model_sites(cfg):
        if s.kind != "linear":
            continue
        w, a = r.specs_for(s)
        if (w, a) != (None, None):
            out.setdefault(s.role, set()).add((w.short(), a.short()))
    return out


@pytest.mark.parametrize("stem", list(FMT))
def test_which_sites_get_which_format(stem):
    fmt, b = FMT[stem]
    pair = {(f"{fmt}/g{b}", f"{fmt}/g{b}")}
    small = make_small()[1].config  # word_embed in_features = z_channels = 8: not a multiple of 16 / 32
    d16 = get_model_spec("var-d16").var  # Cvae = 32: word_embed takes blocks of 32 and 16
    assert _table(f"{stem}-rtn", small) == {r: pair for r in BLOCK4}
    assert _table(f"{stem}-rtn", d16) == {r: pair for r in BLOCK4}
    assert _table(f"{stem}-rtn-all", small) == {r: pair for r in ALL if r != "word_embed"}
    assert _table(f"{stem}-rtn-all", d16) == {r: pair for r in ALL}
    if stem in ("mxfp4", "nvfp4"):
        t = _table(f"fpqvar-{stem}", d16)
        assert t == {**{r: pair for r in ("mat_qkv", "proj", "fc1")}, "fc2": {(f"{fmt}/g{b}", f"dfq-{fmt}/g{b}")}}
        assert [x.KIND for x in get_recipe(f"fpqvar-{stem}").transforms] == ["ght", "galt"]
        assert get_recipe(f"fpqvar-{stem}").ght_block == 128


def test_indivisible_site_is_an_error_unless_skipped():
    _, var = make_small()
    s = QuantSpec("mxfp4", "group", 32)
    with pytest.raises(ValueError, match="word_embed.*do not divide its in_features 8.*skip_indivisible"):
        quantize_(var, Recipe("we", (Rule("word_embed", s, s),)), progress=False)
    quantize_(var, Recipe("we", (Rule("*", s, s, roles=("word_embed", "head"), skip_indivisible=True),)),
              progress=False)
    assert type(var.word_embed) is torch.nn.Linear and isinstance(var.head, QuantLinear)


@pytest.mark.parametrize("stem", list(FMT))
def test_quantlinear_stores_the_format_and_fake_quantizes_inputs(stem):
    """Weights: codes + scale bytes exactly as quantize_codes gives them (blocks along in_features), the float
    weight exactly their dequantization; inputs: quantize_dequantize along the last dim (NVFP4: tensor scale of
    the whole input)."""
    fmt, _ = FMT[stem]
    _, ref = make_small()
    _, var = make_small()
    quantize_(var, f"{stem}-rtn", progress=False)
    lin, q = ref.blocks[1].ffn.fc1, var.blocks[1].ffn.fc1
    want = quantize_codes(lin.weight.detach().float(), fmt, axis=1)
    assert torch.equal(q.weight_codes, want.codes) and torch.equal(q.weight_scale, want.scales)
    assert q.weight_scale.dtype == torch.uint8
    if want.tensor_scale is not None:
        assert q.weight_tensor_scale.dtype == torch.float32 and torch.equal(q.weight_tensor_scale, want.tensor_scale)
    assert torch.equal(q.weight, quantize_dequantize(lin.weight.detach().float(), fmt, axis=1))
    x = torch.randn(2, 7, lin.in_features, generator=torch.Generator().manual_seed(1))
    assert torch.equal(q.quantize_input(x), quantize_dequantize(x, fmt, axis=-1))


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
def test_fpqvar_block_recipe_uses_block_dfq_on_fc2(fmt, calib_small):
    _, var = make_small()
    from tests.quant.test_quantize import fast

    quantize_(var, fast(get_recipe(f"fpqvar-{fmt}"), epochs=1), calib_small, progress=False)
    fc2 = var.blocks[0].ffn.fc2
    x = torch.nn.functional.gelu(torch.randn(2, 5, fc2.in_features, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(fc2.quantize_input(x), block_dfq_fake_quantize(x, fmt))
    assert var.blocks[0].attn.mat_qkv.rotation is not None and var.blocks[0].ffn.fc1.input_lambda is not None


@pytest.fixture(scope="module")
def calib_small():
    from fpqvar.quant import CalibConfig, calibrate

    _, var = make_small()
    return calibrate(var, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32), progress=False)


def _saved(tmp_path, recipe):
    vae, var = make_small()
    quantize_(var, recipe, progress=False)
    return vae, var, save_quantized(var, recipe, tmp_path / "q.safetensors")


@pytest.mark.parametrize("stem", list(FMT))
def test_packed_file_is_torchao_layout_and_counts_scales(tmp_path, stem):
    fmt, b = FMT[stem]
    _, var, p = _saved(tmp_path, f"{stem}-rtn")
    q = var.blocks[0].attn.proj
    O, I = q.weight_codes.shape
    with safe_open(str(p), "pt") as f:
        codes, scales = f.get_tensor("blocks.0.attn.proj.weight_codes"), f.get_tensor("blocks.0.attn.proj.weight_scale")
        ts = f.get_tensor("blocks.0.attn.proj.weight_tensor_scale") if stem == "nvfp4" else None
    ref = pack_block(quantize_codes(q.weight.float(), fmt, axis=1))  # re-quantizing the dequantized weight is exact
    assert torch.equal(codes, ref["codes"]) and torch.equal(scales, ref["scales"])
    bits = {"mxfp4": 4, "mxfp6": 6, "mxfp8": 8, "nvfp4": 4}[stem]
    assert codes.dtype == torch.uint8 and codes.shape == (O, I * bits // 8)  # two E2M1 per byte, FP6 4 in 3
    assert scales.dtype == torch.uint8 and scales.shape == (O, I // b)
    if ts is not None:
        assert ts.dtype == torch.float32 and ts.shape == () and torch.equal(ts, ref["tensor_scale"])
    h = read_header(p)
    info = h["layers"]["blocks.0.attn.proj"]
    assert info["packing"] == f"torchao:{fmt}" and info["storage"]["block_size"] == b
    assert "torchao" in info["storage"]["layout"]
    # bits per weight from the definition: elements + one 8-bit scale per block (+ 32 bits per NVFP4 tensor)
    layers = [m for m in var.modules() if isinstance(m, QuantLinear)]
    n = sum(m.in_features * m.out_features for m in layers)
    want = (bits * n + 8 * n / b + (32 * len(layers) if stem == "nvfp4" else 0)) / n
    assert h["size"]["bits_per_quantized_weight"] == pytest.approx(want, rel=1e-12)


def _edit(key, fn):
    def edit(sd):
        t = sd[key].clone()
        fn(t)
        sd[key] = t
    return edit


@pytest.mark.parametrize("recipe, edit, match", [
    ("mxfp4-rtn", _edit("blocks.0.attn.proj.weight_scale", lambda t: t.view(-1).__setitem__(3, 255)),
     "blocks.0.attn.proj.weight_scale.*E8M0 byte 255"),
    ("nvfp4-rtn", _edit("blocks.1.ffn.fc1.weight_scale", lambda t: t.view(-1).__setitem__(0, 0)),
     "blocks.1.ffn.fc1.weight_scale.*E4M3 bytes that are not a finite scale > 0"),
    ("nvfp4-rtn", _edit("blocks.1.ffn.fc1.weight_scale", lambda t: t.view(-1).__setitem__(0, 0xB8)),  # negative
     "blocks.1.ffn.fc1.weight_scale"),
    ("nvfp4-rtn", _edit("blocks.0.ffn.fc2.weight_tensor_scale", lambda t: t.fill_(-1.0)),
     "blocks.0.ffn.fc2.weight_tensor_scale"),
    ("mxfp8-rtn", _edit("blocks.0.attn.mat_qkv.weight_codes", lambda t: t.view(-1).__setitem__(5, 0x7F)),
     "blocks.0.attn.mat_qkv.weight_codes.*code 127 is a NaN code"),
    ("mxfp4-rtn", lambda sd: sd.__setitem__("blocks.0.attn.proj.weight_codes",
                                            sd["blocks.0.attn.proj.weight_codes"][:, :-1].contiguous()),
     "blocks.0.attn.proj.weight_codes.*expected torch.uint8"),
])
def test_bad_block_storage_refused_naming_the_key(tmp_path, recipe, edit, match):
    vae, _, p = _saved(tmp_path, recipe)
    with pytest.raises(QuantFileError, match=match):
        load_quantized(_tamper(p, tmp_path, edit_sd=edit), vae=vae)


def test_block_packing_must_fit_the_spec(tmp_path):
    vae, _, p = _saved(tmp_path, "mxfp4-rtn")

    def edit(h):
        h["layers"]["blocks.0.attn.proj"]["packing"] = "int4"
    with pytest.raises(QuantFileError, match="blocks.0.attn.proj.*packing 'int4'"):
        load_quantized(_tamper(p, tmp_path, edit_header=edit), vae=vae)

    def edit2(h):  # the header claims NVFP4 where the recipe says MXFP4
        h["layers"]["blocks.0.attn.proj"]["weight"] = QuantSpec("nvfp4", "group", 16).to_dict()
    with pytest.raises(QuantFileError, match="blocks.0.attn.proj.*disagrees"):
        load_quantized(_tamper(p, tmp_path, edit_header=edit2), vae=vae)
    assert json.loads(json.dumps(read_header(p)["layers"]["blocks.0.attn.proj"]["storage"]))
