"""quantize_ end to end on a random small VAR (C = 256, two 128-groups), and the pipeline's invariants."""

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn as nn

from fpqvar.model.sampling import decode_images, sample_tokens
from fpqvar.model.sites import model_sites
from fpqvar.quant import CalibConfig, QuantLinear, calibrate, quantize_
from fpqvar.quant.recipes import Recipe, Rule, get_recipe, recipe_names
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GALT, GHT, GPS, FormatSearch, FullHadamard, SmoothQuant, SVDQuant
from fpqvar.transforms.galt import GALTConfig
from tests.quant.conftest import make_small

KW = dict(seed=0, cfg=1.5, top_k=900, top_p=0.96)


@pytest.fixture(scope="module")
def calib():
    _, var = make_small()
    return calibrate(var, CalibConfig(num_samples=4, batch_size=4, max_tokens_per_scale=64), progress=False)


def fast(recipe: Recipe, epochs: int = 2) -> Recipe:
    """Fewer GALT epochs for the CPU test budget (the algorithm is the same)."""
    ts = tuple(GALT(sites=t.sites, config=GALTConfig(epochs=epochs)) if t.KIND == "galt" else t
               for t in recipe.transforms)
    return dataclasses.replace(recipe, transforms=ts)


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_end_to_end(name, calib):
    vae, var = make_small()
    recipe = fast(get_recipe(name))
    rep = quantize_(var, recipe, calib, progress=False)
    res = sample_tokens(var, 2, [0, 1], **KW)
    img = decode_images(var, res.f_hat)
    assert img.shape == (2, 3, 8, 8) and bool(torch.isfinite(img).all())
    q = {n: m for n, m in var.named_modules() if isinstance(m, QuantLinear)}
    sites = model_sites(var)
    quantized = {s.module for s in sites if s.kind == "linear" and recipe.specs_for(s) != (None, None)}
    transformed = {s.module for s in sites if s.kind == "linear"
                   and any(any(__import__("fnmatch").fnmatchcase(s.name, p) for p in t.sites)
                           for t in recipe.transforms)}
    assert set(q) == quantized | transformed
    assert (var.blocks[0].attn.kv_quantizer is not None) == (recipe.kv is not None)
    for m in q.values():  # quantized weights are decode(codes) x scale: the dequantized copy sits exactly on the grid
        if m.weight_spec is not None:
            from fpqvar.quant.qlinear import weight_from_codes

            aux = getattr(m, "weight_tensor_scale", None) if m.weight_spec.block else m.weight_zero_point
            ref = weight_from_codes(m.weight_codes, m.weight_scale, aux, m.weight_spec, torch.float32)
            assert torch.equal(m.weight, ref)
    # the installed module reproduces the last stage the report measured (float rounding only: lambda is
    # applied through ada_lin in the model but multiplied directly here)
    by = {}
    for r in rep.sqnr:
        if r["scale"] == "all":
            by.setdefault(r["layer"], {})[r["stage"]] = r["sqnr_db"]
    for layer, st in by.items():
        last = [k for k in st if k != "final"][-1]
        assert abs(st["final"] - st[last]) < 0.05 or (math.isinf(st["final"]) and math.isinf(st[last])), layer


def test_weights_on_grid_exact(calib):
    """Every quantized fp4-rtn weight / scale is one of the E2M1 values (written here from the definition)."""
    _, var = make_small()
    quantize_(var, "fp4-rtn", progress=False)
    grid = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    grid = torch.cat((-grid, grid))
    for m in var.modules():
        if isinstance(m, QuantLinear):
            O, I = m.weight.shape
            t = m.weight.reshape(O, I // 128, 128) / m.weight_scale.unsqueeze(-1)
            assert bool(torch.isin(t, grid).all())


def test_needs_calibration_and_refuses_double_quantization():
    _, var = make_small()
    with pytest.raises(ValueError, match="needs calibration data \\(galt\\)"):
        quantize_(var, "fpqvar-w4a4", progress=False)
    quantize_(var, "fp4-rtn", progress=False)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_(var, "fp4-rtn", progress=False)


def test_rules_leave_unmatched_layers_float():
    _, var = make_small()
    r = Recipe("x", (Rule("blocks.*.ffn.fc2", None, None),
                     Rule("blocks.1.*", QuantSpec("int8", "channel", None), None, roles=("proj", "fc2"))))
    quantize_(var, r, progress=False)
    assert isinstance(var.blocks[1].attn.proj, QuantLinear)
    assert type(var.blocks[1].ffn.fc2) is nn.Linear and type(var.blocks[0].attn.proj) is nn.Linear
    assert type(var.head) is nn.Linear and type(var.blocks[0].ada_lin[1]) is nn.Linear


def test_rules_reach_every_linear_site():
    """Issue 13: a rule naming head, ada_lin, head_nm.ada_lin or word_embed quantizes it (it used to do nothing)."""
    _, var = make_small()
    i8 = QuantSpec("int8", "channel", None)
    r = Recipe("all", (Rule("head", i8, None), Rule("blocks.*.ada_lin", i8, None), Rule("head_nm.ada_lin", i8, None),
                       Rule("word_embed", i8, None)))
    quantize_(var, r, progress=False)
    for m in (var.head, var.blocks[0].ada_lin[1], var.blocks[1].ada_lin[1], var.head_nm.ada_lin[1], var.word_embed):
        assert isinstance(m, QuantLinear) and m.weight_spec == i8
    res = sample_tokens(var, 2, [0, 1], **KW)
    assert all(bool(torch.isfinite(t).all()) for t in res.idx_list[-1:])


@pytest.mark.parametrize("rules, match", [
    ((Rule("blocks.*.attn.fc3", QuantSpec("int8", "channel", None), None),), "selects no site"),
    ((Rule("head", QuantSpec("int8", "channel", None), None), Rule("hea?", QuantSpec("int4", "channel", None), None)),
     "shadowed"),
    ((Rule("blocks.*.attn.k", QuantSpec("int8", "channel", None), None),), "without weights"),
    ((Rule("blocks.*", QuantSpec("int8", "channel", None), None, roles=("fc1",)),
      Rule("blocks.*", None, None, roles=("fc1",))), "shadowed"),
])
def test_bad_rules_are_errors_naming_the_rule(rules, match):
    _, var = make_small()
    with pytest.raises(ValueError, match=match):
        quantize_(var, Recipe("bad", rules), progress=False)


def test_transform_selecting_nothing_is_an_error(calib):
    _, var = make_small()
    with pytest.raises(ValueError, match="select no linear site"):
        quantize_(var, Recipe("t", (), (GHT(sites=("blocks.*.attn.q",)),)), calib, progress=False)


_G2 = GALT(config=GALTConfig(epochs=2))
_SQ = SmoothQuant()
_SQ_ALL = SmoothQuant(sites=("blocks.*.attn.proj", "blocks.*.ffn.fc2", "head"))  # online scales (no modulation)
STEPS = {"ght": GHT(), "hadamard": FullHadamard(), "smoothquant": _SQ, "galt": _G2, "smooth_online": _SQ_ALL,
         "ght_head": GHT(sites=("head", "blocks.*.attn.proj")),
         # issue 14: SVDQuant's smoothing + low-rank split (no rule: the residual stays float), PTQ4ARVG's GPS
         "svdquant": SVDQuant(alphas=(0.5,), lowrank_iters=2), "gps": GPS(weight_fmt="uint8", act_bits=8)}
PAIRS = [("ght", "galt"), ("hadamard", "galt"), ("ght", "smoothquant"), ("smoothquant", "galt"),
         ("hadamard", "smoothquant"), ("ght", "smooth_online"), ("ght_head", "smooth_online"), ("galt", "ght"),
         ("smoothquant", "gps"), ("smoothquant", "svdquant")]


def _preserves(steps, calib, make=make_small) -> None:
    vae, ref = make()
    _, var = make()
    quantize_(var, Recipe("t", (), tuple(steps)), calib, progress=False)
    res = sample_tokens(ref, 2, [0, 1], **KW)
    with torch.no_grad():
        x = vae.idx_to_var_input(res.idx_list)
        y_ref, y = ref(res.labels, x), var(res.labels, x)
    # float32 rounding of the float64-absorbed weights and fused ada_lin rows: relative logit error < 1e-4
    # (observed ~1e-6)
    assert float((y - y_ref).norm() / y_ref.norm()) < 1e-4


@pytest.mark.parametrize("key", list(STEPS))
def test_every_transform_preserves_function(key, calib):
    _preserves([STEPS[key]], calib)


@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_every_pair_of_transforms_preserves_function(pair, calib):
    _preserves([STEPS[k] for k in pair], calib)


def test_all_kinds_are_covered_by_the_preservation_tests():
    from fpqvar.quant.steps import transform_kinds

    # format search changes formats and GPTQ the rounding, not the function
    covered = {STEPS[k].KIND for k in STEPS} | {"format_search", "gptq"}
    assert set(transform_kinds()) <= covered


def test_transform_site_then_quantize_composes(calib):
    """transform_site_ (public API) before quantize_: the wrapper's online rotation moves into the QuantLinear, so
    activation quantization sees the rotated input; equal to letting the recipe do the GHT."""
    from fpqvar.transforms.hadamard import block_hadamard_matrix
    from fpqvar.transforms.sites import transform_site_

    fp4 = QuantSpec("e2m1")
    rules = (Rule("blocks.*", fp4, fp4, roles=("mat_qkv", "fc1")),)
    vae, a = make_small()
    _, b = make_small()
    Q = block_hadamard_matrix(128, 42)
    for i in range(2):
        for s in ("attn.mat_qkv", "ffn.fc1"):
            transform_site_(a, f"blocks.{i}.{s}", Q=Q)
    quantize_(a, Recipe("by-hand", rules), progress=False)
    quantize_(b, Recipe("recipe", rules, (GHT(),)), progress=False)
    assert a.blocks[0].attn.mat_qkv.rotation is not None
    res = sample_tokens(b, 2, [0, 1], **KW)
    with torch.no_grad():
        x = vae.idx_to_var_input(res.idx_list)
        torch.testing.assert_close(a(res.labels, x), b(res.labels, x), rtol=0, atol=0)
    _, c = make_small()
    transform_site_(c, "blocks.0.ffn.fc1", Q=Q)
    with pytest.raises(ValueError, match="already transformed"):
        quantize_(c, Recipe("twice", rules, (GHT(),)), progress=False)


def test_galt_untrained_equals_ght_alone(calib):
    """GALT with epochs=0 (lambda = 1) fuses exact ones: the model equals the GHT-only recipe bit for bit."""
    base = get_recipe("fpqvar-w4a4")
    no_train = fast(base, epochs=0)
    ght_only = dataclasses.replace(base, transforms=tuple(t for t in base.transforms if t.KIND != "galt"))
    vae, a = make_small()
    _, b = make_small()
    quantize_(a, no_train, calib, progress=False)
    quantize_(b, ght_only, progress=False)
    res = sample_tokens(b, 2, [0, 1], **KW)
    with torch.no_grad():
        x = vae.idx_to_var_input(res.idx_list)
        torch.testing.assert_close(a(res.labels, x), b(res.labels, x), rtol=0, atol=0)


def test_galt_fused_into_adaln(calib):
    vae, var = make_small()
    _, ref = make_small()
    rep = quantize_(var, fast(get_recipe("fpqvar-w4a4")), calib, progress=False)
    assert set(rep.galt) == {f"blocks.{i}.{s}" for i in range(2) for s in ("attn.mat_qkv", "ffn.fc1")}
    C = 256
    # scale1 / shift1 rows (chunks 2, 4) changed, gamma rows (chunks 0, 1) untouched
    w, w0 = var.blocks[0].ada_lin[1].weight, ref.blocks[0].ada_lin[1].weight
    assert torch.equal(w[:2 * C], w0[:2 * C]) and not torch.equal(w[2 * C:3 * C], w0[2 * C:3 * C])
    assert all(r["num_steps"] == 2 for r in rep.galt.values())
    # the step's time is counted once: the per-layer times add up to it, and it is part of the total
    t = rep.timings_s
    assert sum(r["time_s"] for r in rep.galt.values()) <= t["galt_s"] <= t["quantize_total_s"]


def test_galt_default_lr_follows_the_model():
    """Upstream: lr 1e-2 for the 256px scripts (var-d30), 2e-3 for the 512px ones (var-d36), method section 8."""
    from fpqvar.model.zoo import get_model_spec
    from fpqvar.quant.steps import galt_defaults_for

    class M:
        def __init__(self, size):
            self.vae = type("V", (), {"config": type("C", (), {"image_size": size})()})()

    assert galt_defaults_for(M(256)).lr == 1e-2 and galt_defaults_for(M(512)).lr == 2e-3
    assert get_model_spec("var-d36").vae.image_size == 512


def test_static_activation_scale_from_calibration(calib, tmp_path):
    """A static per-tensor INT8 activation: scale = calibration absmax over all tokens / 127 (EXACT)."""
    r = Recipe("static8", (Rule("blocks.*", QuantSpec("int8", "channel", None),
                                QuantSpec("int8", "tensor", None, static=True), roles=("proj", "fc2")),))
    _, var = make_small()
    with pytest.raises(ValueError, match="needs calibration data \\(static"):
        quantize_(var, r, progress=False)
    quantize_(var, r, calib, progress=False)
    for name in ("blocks.0.attn.proj", "blocks.1.ffn.fc2"):
        m = var.get_submodule(name)
        want = calib.stats[name].absmax_SC.amax() / 127
        assert torch.equal(m.act_scale, want.reshape(1))
    from fpqvar.quant import load_quantized, save_quantized

    loaded = load_quantized(save_quantized(var, r, tmp_path / "s.safetensors"), vae=var.vae)
    assert torch.equal(loaded.blocks[1].ffn.fc2.act_scale, var.blocks[1].ffn.fc2.act_scale)


def test_static_scale_sees_the_rotated_input(calib):
    """With a GHT the static scale is the absmax of the ROTATED calibration rows (what the quantizer sees),
    computed here with the rotation written out; without the rotation the scale would differ."""
    from fpqvar.transforms.hadamard import block_hadamard_matrix

    r = Recipe("static-ght", (Rule("blocks.*.ffn.fc1", None, QuantSpec("int8", "group", 128, static=True)),),
               (GHT(sites=("blocks.*.ffn.fc1",)),))
    _, var = make_small()
    quantize_(var, r, calib, progress=False)
    Q = block_hadamard_matrix(128, 42).float()
    x = torch.cat(calib.x_per_scale("blocks.0.ffn.fc1"))
    xr = (x.reshape(-1, 2, 128) @ Q).reshape(-1, 256)
    want = xr.abs().amax(dim=0).reshape(2, 128).amax(dim=1) / 127
    got = var.blocks[0].ffn.fc1.act_scale
    assert torch.equal(got, want)
    unrotated = x.abs().amax(dim=0).reshape(2, 128).amax(dim=1) / 127
    assert not torch.equal(got, unrotated)


class _Calib:
    """A stand-in for CalibrationData with fixed rows (one 'scale')."""

    def __init__(self, name, x):
        self.name, self.x = name, x

    def has_rows(self, name):
        return name == self.name

    def x_per_scale(self, name):
        return [self.x]

    def absmax(self, name):
        return self.x.abs().amax(dim=0)


def _state(x, w, spec):
    from fpqvar.model.sites import Site
    from fpqvar.quant.steps import SiteState

    site = Site("blocks.0.ffn.fc1", "linear", "fc1", "blocks.0.ffn.fc1", 0, w.shape[1], w.shape[0])
    return SiteState(site, w, None, spec, spec, True, _Calib(site.name, x))


def test_format_search_tensor_mse_picks_the_lowest_error():
    """Uniform data suits E1M2's uniform grid; one outlier channel per group (30x) needs E3M0's range, which
    keeps the ordinary channels off zero (MoFQ-style choice by MSE, fpqvar-method.md sections 10, 12)."""
    from fpqvar.quant.steps.base import PlanContext
    from fpqvar.quant.steps.search import _search

    g = torch.Generator().manual_seed(0)
    spec = QuantSpec("e2m1", "group", 128)
    uni = torch.rand(64, 256, generator=g) * 2 - 1
    heavy = torch.randn(64, 256, generator=g)
    heavy[:, ::128] *= 30
    cfg = FormatSearch(objective="tensor_mse", joint=False, per="layer")
    st = _state(heavy, uni, spec)
    _search(cfg, [st], PlanContext(None, None))
    assert st.wspec.fmt == "e1m2" and st.aspec.fmt == "e3m0"
    st = _state(heavy, uni, QuantSpec("int4", "token", None))  # not a candidate: kept
    _search(cfg, [st], PlanContext(None, None))
    assert st.aspec.fmt == "int4"


def test_format_search_joint_output_mse_matches_a_brute_force():
    """The joint search returns the (W, A) pair with the lowest layer-output MSE, recomputed here pair by pair
    with plain fake quantization of W and x (every pair of the 3 FP4 formats)."""
    from fpqvar.formats import fake_quantize
    from fpqvar.quant.steps.base import PlanContext
    from fpqvar.quant.steps.search import _search

    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 256, generator=g)
    x[:, 5] *= 12
    w = torch.randn(64, 256, generator=g) * 0.05
    st = _state(x, w, QuantSpec("e2m1", "group", 128))
    _search(FormatSearch(per="layer"), [st], PlanContext(None, None))
    y = x @ w.T
    errs = {}
    for wf, af in itertools.product(("e1m2", "e2m1", "e3m0"), repeat=2):
        yq = fake_quantize(x, af, group_size=128) @ fake_quantize(w, wf, group_size=128).T
        errs[(wf, af)] = float((yq - y).double().pow(2).mean())
    best = min(errs, key=errs.get)
    assert (st.wspec.fmt, st.aspec.fmt) == best, errs


# ---------------------------------------------------------------- killed mutants (tools/mutation.py, rotation.py)
@pytest.mark.parametrize("block", [0, -4, 3, 6, 96])
def test_ght_block_must_be_a_power_of_two(block):
    from fpqvar.config import ConfigError

    with pytest.raises(ConfigError, match=f"power of two, got {block}"):
        GHT(block=block)
    assert GHT(block=1).block == 1 and GHT(block=64).block == 64  # 1 = the identity rotation


@pytest.mark.parametrize("kind", ["ght", "hadamard"])
def test_rotation_seed_label_and_report_stage(kind, calib):
    """The step's seed reaches the rotation (Q differs between seeds and equals the reference matrix), the report
    names the rotation, and the SQNR rows carry the step's stage."""
    from fpqvar.transforms.hadamard import block_hadamard_matrix, random_hadamard

    qs = {}
    for seed in (42, 7):
        _, var = make_small()
        step = GHT(seed=seed) if kind == "ght" else FullHadamard(seed=seed)
        rep = quantize_(var, Recipe("r", (Rule("blocks.*.attn.mat_qkv", QuantSpec("e2m1"), QuantSpec("e2m1")),),
                                    (dataclasses.replace(step, sites=("blocks.*.attn.mat_qkv",)),)),
                        calib, progress=False)
        qs[seed] = var.blocks[0].attn.mat_qkv.rotation.Q_bb.clone()
        want = block_hadamard_matrix(128, seed) if kind == "ght" else random_hadamard(256, seed)
        torch.testing.assert_close(qs[seed], want.to(qs[seed].dtype), rtol=0, atol=0)
        assert rep.layers["blocks.0.attn.mat_qkv"]["rotation"] == ("ght128" if kind == "ght" else "full256")
        assert {r["stage"] for r in rep.sqnr} >= {"rtn", "rotation", "final"}
    assert not torch.equal(qs[42], qs[7])
