"""GPTQ, SVDQuant and PTQ4ARVG on the harness (issue 14, methods): references written here, exact round trips.

Layer tables below are written from the authors' code as baseline-facts.md describes it (not from peers.py):
- SVDQuant (deepcompressor svdquant/__default__.yaml skips embed, transformer_norm = AdaLN linears, proj_in/out;
  int4.yaml: sint4 W groups of 64, dynamic A groups of 64): the four block linears only.
- PTQ4ARVG (VAR/quant/quant_model.py): every linear but word_embed; W per output channel asymmetric; A static
  asymmetric per tensor; TokenAware (per-scale sets) on mat_qkv / fc1, sink + rest on proj / fc2.
"""

import math

import pytest
import torch

from fpqvar.model.sites import model_sites
from fpqvar.quant import CalibConfig, calibrate, get_recipe, load_quantized, quantize_, save_quantized
from fpqvar.quant.export import read_header
from fpqvar.quant.qlinear import QuantLinear, quantize_weight, weight_from_codes
from fpqvar.quant.recipes import Recipe, Rule
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GHT, GPTQ, FormatSearch, SVDQuant
from fpqvar.quant.steps.gptq import gptq_round
from fpqvar.quant.steps.svdquant import lowrank_split, smooth_scale
from tests.quant.conftest import make_small
from tests.quant.test_export import _outputs
from tests.quant.test_quantize import fast  # fewer GALT epochs (fpqvar-w4a4's GALT), same algorithm

PEERS = ("fpqvar-w4a4-gptq", "svdquant-w4a4", "svdquant-nvfp4", "ptq4arvg-w8a8", "ptq4arvg-w6a6")


@pytest.fixture(scope="module")
def calib():
    _, var = make_small()
    return calibrate(var, CalibConfig(num_samples=2, batch_size=2, max_tokens_per_scale=32), progress=False)


def _rows(seed: int, n: int, i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # correlated inputs with a few outlier channels (what makes GPTQ's error feedback matter)
    x = torch.randn(n, i, generator=g) @ (torch.randn(i, i, generator=g) / math.sqrt(i))
    return x * (1 + 4 * (torch.rand(i, generator=g) > 0.95))


def _out_err(x, w_ref, w_hat) -> float:
    return float((x.double() @ (w_hat.double() - w_ref.double()).T).pow(2).mean())


def _deq(rw):
    return weight_from_codes(rw.codes, rw.scale, rw.zero_point, rw.spec, torch.float32)


def _rtn(w, spec):
    c, s, z = quantize_weight(w, spec)
    return weight_from_codes(c, s, z, spec, torch.float32)


# ---------------------------------------------------------------------------------------------------- GPTQ
SPECS = [QuantSpec("int4", "channel", None), QuantSpec("e2m1", "group", 128), QuantSpec("uint4", "group", 64),
         QuantSpec("e2m3", "channel", None), QuantSpec("e1m2", "group", 32)]


@pytest.mark.parametrize("spec", SPECS, ids=[s.short() for s in SPECS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gptq_never_worse_than_rtn_on_its_calibration_set(spec, seed):
    g = torch.Generator().manual_seed(100 + seed)
    w = torch.randn(48, 256, generator=g) * 0.05
    x = _rows(seed, 384, 256)
    rw = gptq_round(w, x, spec)
    _, s_rtn, _ = quantize_weight(w, spec)
    assert torch.equal(rw.scale, s_rtn)  # group scales fixed by RTN (static groups)
    assert _out_err(x, w, _deq(rw)) <= _out_err(x, w, _rtn(w, spec))


def test_gptq_on_a_default_model_layer():
    from fpqvar.model import load_model

    var = load_model("default")
    site = "blocks.1.ffn.fc1"
    cal = calibrate(var, CalibConfig(num_samples=4, batch_size=4, max_tokens_per_scale=64,
                                     reservoir_sites=(site,)), progress=False)
    x = torch.cat(cal.x_per_scale(site))
    w = var.get_submodule(site).weight.detach().float()
    for spec in (QuantSpec("e2m1", "group", 128), QuantSpec("int4", "channel", None)):
        e_g, e_r = _out_err(x, w, _deq(gptq_round(w, x, spec))), _out_err(x, w, _rtn(w, spec))
        assert e_g <= e_r, (spec.short(), e_g, e_r)


def _textbook_gptq(w, x, spec, damp=0.01):
    """Optimal Brain Quantization column by column (Frantar et al. 2022, eq. 2-3): quantize column i with the
    fixed per-row scale, spread its error over the remaining columns with the inverse Hessian of the remaining
    columns, then remove column i from that inverse (Gaussian elimination). No blocks, no Cholesky."""
    O, I = w.shape
    _, scale, _ = quantize_weight(w, spec)  # symmetric per-channel: one scale per row
    s = scale.double().reshape(O)
    qmax = float(spec.format.qmax)
    H = 2.0 * x.double().T @ x.double() / x.shape[0]
    H += damp * torch.diagonal(H).mean() * torch.eye(I, dtype=torch.float64)
    Hinv = torch.linalg.inv(H)
    W = w.double().clone()
    codes = torch.zeros(O, I, dtype=torch.int64)
    for i in range(I):
        q_int = torch.clamp(torch.round((W[:, i].float() / s.float()).double()), -qmax, qmax)  # fp32 divide, RNE
        codes[:, i] = q_int.long()
        q = (q_int.float() * s.float()).double()
        err = (W[:, i] - q) / Hinv[i, i]
        W[:, i + 1:] -= err[:, None] * Hinv[i, i + 1:][None, :]
        Hinv = Hinv - Hinv[:, i:i + 1] @ Hinv[i:i + 1, :] / Hinv[i, i]
    return codes, s


def test_gptq_int4_equals_textbook_reference_bit_exactly():
    """torchao 0.18's GPTQ asserts CUDA and gptqmodel / auto-gptq are GPU-only (baseline-facts.md 5.2), so the
    oracle is the textbook OBQ recursion written above; the library's blocked Cholesky form must give the same
    integer codes."""
    g = torch.Generator().manual_seed(7)
    w = torch.randn(16, 64, generator=g) * 0.1
    x = _rows(3, 200, 64)
    spec = QuantSpec("int4", "channel", None)
    rw = gptq_round(w, x, spec, block=16)  # several lazy-update blocks
    codes_ref, _ = _textbook_gptq(w, x, spec)
    from fpqvar.formats import decode

    ints = decode(rw.codes, spec.format).long()
    assert torch.equal(ints, codes_ref)
    assert not torch.equal(rw.codes, quantize_weight(w, spec)[0])  # GPTQ did change some roundings


def test_gptq_recipe_installs_the_gptq_codes(calib):
    _, var_g = make_small()
    _, var_r = make_small()
    quantize_(var_g, fast(get_recipe("fpqvar-w4a4-gptq")), calib, progress=False, report=False)
    rtn = fast(get_recipe("fpqvar-w4a4"))
    quantize_(var_r, rtn, calib, progress=False, report=False)
    differ = 0
    for s in model_sites(var_g):
        if s.kind == "linear" and s.role in ("mat_qkv", "proj", "fc1", "fc2"):
            mg, mr = var_g.get_submodule(s.module), var_r.get_submodule(s.module)
            assert torch.equal(mg.weight_scale, mr.weight_scale)  # same grid, same scales
            assert torch.equal(mg.weight, weight_from_codes(mg.weight_codes, mg.weight_scale, None,
                                                            mg.weight_spec, torch.float32))
            differ += int(not torch.equal(mg.weight_codes, mr.weight_codes))
    assert differ == 8  # every block linear of the 2-block model re-rounded


def test_gptq_must_come_after_format_and_transform_steps(calib):
    _, var = make_small()
    fp4 = QuantSpec("e2m1")
    bad = Recipe("t", (Rule("blocks.*", fp4, fp4, roles=("mat_qkv",)),), (GPTQ(sites=("blocks.*.attn.mat_qkv",)),
                                                                         GHT()))
    with pytest.raises(ValueError, match="after rounded weights"):
        quantize_(var, bad, calib, progress=False)
    _, var = make_small()
    bad = Recipe("t", (Rule("blocks.*", fp4, fp4, roles=("mat_qkv",)),),
                 (GPTQ(sites=("blocks.*.attn.mat_qkv",)), FormatSearch(sites=("blocks.*.attn.mat_qkv",))))
    with pytest.raises(ValueError, match="put GPTQ after the format steps"):
        quantize_(var, bad, calib, progress=False)


# ---------------------------------------------------------------------------------------------------- SVDQuant
def test_svdquant_split_preserves_the_layer_in_float64():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(96, 128, generator=g, dtype=torch.float64)
    x = torch.randn(50, 128, generator=g, dtype=torch.float64) * torch.logspace(-1, 1, 128, dtype=torch.float64)
    s = smooth_scale(x.abs().amax(0), w.abs().amax(0), 0.5, 0.5)
    ws = w * s
    up, down = lowrank_split(ws, 32, torch.float64)
    r = ws - up @ down
    y = (x / s) @ (r + up @ down).T
    y_ref = x @ w.T
    # float64 round-off of a 128-term dot product: relative error ~1e-15
    assert float((y - y_ref).norm() / y_ref.norm()) < 1e-12
    # the branch is the best rank-32 approximation (Eckart-Young): residual norm = the tail singular values
    sv = torch.linalg.svdvals(ws)
    torch.testing.assert_close(r.norm(), sv[32:].norm(), rtol=1e-10, atol=0)


@pytest.fixture(scope="module")
def svdq(calib):
    vae, var = make_small()
    rep = quantize_(var, "svdquant-w4a4", calib, progress=False)
    return vae, var, rep


def test_svdquant_lowrank_branch_stored_counted_and_exact_on_load(svdq, tmp_path):
    vae, var, _ = svdq
    mods = {n: m for n, m in var.named_modules() if isinstance(m, QuantLinear)}
    assert len(mods) == 8 and all(m.lowrank_up.dtype == torch.float16 and m.lowrank_up.shape[1] == 32
                                  for m in mods.values())
    a = _outputs(var, vae)
    p = save_quantized(var, "svdquant-w4a4", tmp_path / "q.safetensors")
    size = read_header(p)["size"]
    lr_bytes = sum((m.in_features + m.out_features) * 32 * 2 for m in mods.values())
    codes = sum(m.in_features * m.out_features // 2 for m in mods.values())  # two int4 codes per byte
    scales = sum(m.in_features * m.out_features // 64 * 4 for m in mods.values())  # float32 scale per 64
    n = sum(m.in_features * m.out_features for m in mods.values())
    assert size["lowrank_bytes"] == lr_bytes
    assert size["bits_per_quantized_weight"] == pytest.approx(8 * (codes + scales + lr_bytes) / n, rel=1e-12)
    b = _outputs(load_quantized(p, vae=vae), vae)
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    torch.testing.assert_close(b[1], a[1], rtol=0, atol=0)
    torch.testing.assert_close(b[2], a[2], rtol=0, atol=0)


def test_svdquant_beats_rtn_of_the_same_grid(calib, svdq):
    """On the calibration rows, the smoothed + low-rank layer has a higher output SQNR than plain RTN INT4 g64
    (SVDQuant's claim; with rank 32 of 256 it holds by a wide margin on random layers)."""
    def sqnr(rep):
        return {r["layer"]: r["sqnr_db"] for r in rep.sqnr if r["scale"] == "all" and r["stage"] == "final"}

    g64 = QuantSpec("int4", "group", 64)
    rtn = Recipe("rtn", (Rule("blocks.*", g64, g64, roles=("mat_qkv", "proj", "fc1", "fc2")),))
    _, var = make_small()
    a, b = sqnr(svdq[2]), sqnr(quantize_(var, rtn, calib, progress=False))
    assert len(a) == 8 and all(a[k] > b[k] for k in a), (a, b)


def test_svdquant_refuses_a_later_rotation(calib):
    _, var = make_small()
    with pytest.raises(ValueError, match="after a low-rank branch"):
        quantize_(var, Recipe("t", (), (SVDQuant(sites=("blocks.*.attn.mat_qkv",)), GHT())), calib, progress=False)


# ---------------------------------------------------------------------------------------------------- PTQ4ARVG
def test_gps_scales_match_a_loop_reference():
    from fpqvar.quant.steps.ptq4arvg import gps_scales

    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 32, generator=g) * torch.linspace(0.2, 3, 32)
    w = torch.randn(24, 32, generator=g)
    spec = QuantSpec("uint8", "channel", None)
    s = gps_scales(x, w, spec, 8)
    xd, wd = x.double(), w.double()
    rng = [float(xd[:, i].max() - xd[:, i].min()) for i in range(32)]
    idx = max(range(32), key=lambda i: rng[i])
    s_std = rng[idx] ** 0.5 / float(wd[:, idx].max() - wd[:, idx].min()) ** 0.5
    # channel idx's asymmetric 8-bit params, written out: s = (max - min) / 255, zp = -round(min / s)
    lo, hi = float(x[:, idx].min()), float(x[:, idx].max())
    sc = (hi - lo) / 255
    zp = -round(lo / sc)
    qw = torch.stack([_rtn(w[o:o + 1], spec)[0] for o in range(24)]).double()
    for i in range(32):
        xi = x[:, i]
        q = (torch.clamp(torch.round(xi / sc) + zp, 0, 255) - zp) * sc
        dx2 = float((xi.double() - q.double()).pow(2).sum())
        num = float(xd[:, i].pow(2).sum() * (wd[:, i] - qw[:, i]).pow(2).sum())
        want = s_std if i == idx else s_std * (num / (dx2 * float(qw[:, i].pow(2).sum()))) ** 0.25
        assert float(s[i]) == pytest.approx(want, rel=1e-5), i


def test_static_asymmetric_sets_per_scale_reference():
    """STWQ params: per set, s = (max - min) / (2^b - 1), zp = -round(min / s) over the set's rows (written here);
    a teacher-forced input uses each scale's set, a single scale's tokens are looked up by their count."""
    from fpqvar.quant.static_act import calibrate_static, quantize_static

    pn = (1, 2, 3)
    g = torch.Generator().manual_seed(0)
    rows = [torch.randn(5 * p * p, 8, generator=g) * (si + 1) + si for si, p in enumerate(pn)]
    spec = QuantSpec("uint8", "tensor", None, static=True, static_sets="sink")
    s, zp = calibrate_static(rows, spec, "t")
    sets = [rows[0], torch.cat(rows[1:])]
    for k, r in enumerate(sets):
        want_s = (float(r.max()) - float(r.min())) / 255
        assert float(s[k, 0]) == pytest.approx(want_s, rel=1e-6)
        assert float(zp[k, 0]) == -round(float(r.min()) / float(s[k, 0]))
    x = torch.randn(2, 14, 8, generator=g) * 2  # the 1 + 4 + 9 tokens of a teacher-forced pass
    y = quantize_static(x, spec, s, zp, pn)
    def fq(t, k):
        return (torch.clamp(torch.round(t / s[k, 0]) + zp[k, 0], 0, 255) - zp[k, 0]) * s[k, 0]
    torch.testing.assert_close(y, torch.cat([fq(x[:, :1], 0), fq(x[:, 1:], 1)], 1), rtol=0, atol=0)
    torch.testing.assert_close(quantize_static(x[:, 5:], spec, s, zp, pn), fq(x[:, 5:], 1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="neither one scale"):
        quantize_static(x[:, :7], spec, s, zp, pn)


def test_static_percentile_range_search_reference():
    """PTQ4ARVG's range search, written here from its quantizer.py: for p in (0.999, 0.9999, 0.99999) the range
    is the (1 - p, p) quantiles (linear interpolation), s = (hi - lo) / (2^b - 1), zp = -round(lo / s); the
    candidate with the lowest MSE of the fake-quantized rows wins (the first on a tie)."""
    import numpy as np

    from fpqvar.quant.static_act import calibrate_static

    g = torch.Generator().manual_seed(1)

    def student_t2(n, c):  # heavy tails: z / sqrt(chi2_2 / 2), from the seeded generator
        return torch.randn(n, c, generator=g) / (torch.randn(n, c, 2, generator=g).square().mean(-1)).sqrt()

    rows = [student_t2(300, 16) * (si + 1) for si in range(3)]
    for bits in (4, 8):
        spec = QuantSpec(f"uint{bits}", "tensor", None, static=True, static_sets="scale", range_search="percentile")
        s, zp = calibrate_static(rows, spec, "t")
        lv = 2**bits - 1
        for k, r in enumerate(rows):
            a = r.double().numpy().ravel()
            best = None
            for p in (0.999, 0.9999, 0.99999):
                lo, hi = np.quantile(a, 1 - p), np.quantile(a, p)
                ss = (hi - lo) / lv
                z = -round(lo / ss)
                q = (np.clip(np.round(a / ss) + z, 0, lv) - z) * ss
                err = float(np.mean((q - a) ** 2))
                if best is None or err < best[0]:
                    best = (err, ss, z)
            # rel 1e-4: torch.quantile runs in the rows' float32, the reference in float64
            assert float(s[k, 0]) == pytest.approx(best[1], rel=1e-4) and float(zp[k, 0]) == best[2], (bits, k)
        mm, _ = calibrate_static(rows, QuantSpec(f"uint{bits}", "tensor", None, static=True, static_sets="scale"),
                                 "t")
        assert bool((s <= mm).all()) and bool((s < mm).any())  # clipped ranges: narrower than min / max
    for bad in (dict(fmt="int8", granularity="tensor", group_size=None, static=True),
                dict(fmt="uint8", granularity="token", group_size=None)):
        with pytest.raises(ValueError, match="range_search"):
            QuantSpec(**bad, range_search="percentile")
    with pytest.raises(ValueError, match="range_search"):
        QuantSpec("uint8", "tensor", None, static=True, range_search="mse")


def test_weight_percentile_range_search_per_channel_reference():
    """PTQ4ARVG's channel_wise weight quantizer: the same search per output channel (reference written here)."""
    import numpy as np

    from fpqvar.config import ConfigError
    from fpqvar.quant.qlinear import quantize_weight, weight_from_codes

    g = torch.Generator().manual_seed(2)
    w = torch.randn(12, 4096, generator=g) * torch.rand(12, 1, generator=g)
    w[:, :3] *= 30  # a few outliers per channel: the clipped ranges win
    spec = QuantSpec("uint4", "channel", None, range_search="percentile")
    codes, s, zp = quantize_weight(w, spec)
    for o in range(12):
        a = w[o].double().numpy()
        best = None
        for p in (0.999, 0.9999, 0.99999):
            lo, hi = np.quantile(a, 1 - p), np.quantile(a, p)
            ss = (hi - lo) / 15
            z = -round(lo / ss)
            err = float(np.mean(((np.clip(np.round(a / ss) + z, 0, 15) - z) * ss - a) ** 2))
            if best is None or err < best[0]:
                best = (err, ss, z)
        # rel 1e-4: the search runs in float32, the reference in float64
        assert float(s[o, 0]) == pytest.approx(best[1], rel=1e-4) and float(zp[o, 0]) == best[2], o
    _, s_mm, _ = quantize_weight(w, QuantSpec("uint4", "channel", None))
    assert bool((s < s_mm).all())
    back = weight_from_codes(codes, s, zp, spec, torch.float32)  # the codes decode with the searched scales
    ref = (torch.clamp(torch.round(w / s) + zp, 0, 15) - zp) * s
    assert float((back - ref).abs().max()) <= 1e-6 * float(s.max())
    with pytest.raises(ConfigError, match="range_search"):
        Rule("blocks.*", None, QuantSpec("uint8", "tensor", None, range_search="percentile"))


def test_ptq4arvg_round_trip_exact(calib, tmp_path):
    vae, var = make_small()
    quantize_(var, "ptq4arvg-w6a6", calib, progress=False)
    assert var.blocks[0].attn.mat_qkv.act_scale.shape == (4, 1)  # one set per scale of patch_nums (1, 2, 3, 4)
    assert var.blocks[0].ffn.fc2.act_scale.shape == (2, 1)  # sink + rest
    assert var.blocks[0].attn.mat_qkv.input_scale is None  # SmoothQuant + GPS folded into AdaLN
    a = _outputs(var, vae)
    p = save_quantized(var, "ptq4arvg-w6a6", tmp_path / "q.safetensors")
    b = _outputs(load_quantized(p, vae=vae), vae)
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    torch.testing.assert_close(b[2], a[2], rtol=0, atol=0)


def test_dgc_mahalanobis_against_scipy():
    scipy_distance = pytest.importorskip("scipy.spatial.distance")
    import numpy as np

    from fpqvar.quant.dgc import cond_share, mahalanobis_distances

    g = torch.Generator().manual_seed(4)
    f = torch.randn(40, 5, generator=g) @ torch.randn(5, 5, generator=g)
    d = mahalanobis_distances(f)
    fn = f.double().numpy()
    VI = np.linalg.inv(np.cov(fn, rowvar=False))
    ref = [scipy_distance.mahalanobis(r, fn.mean(0), VI) for r in fn]
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-9)
    # the share: conditional rows among the top-k of both sets' distances (scipy's, sorted here)
    fc, fu = f[:25], f[25:] * 3
    dists = []
    for part, is_cond in ((fc, True), (fu, False)):
        pn = part.double().numpy()
        vi = np.linalg.inv(np.cov(pn, rowvar=False))
        dists += [(scipy_distance.mahalanobis(r, pn.mean(0), vi), is_cond) for r in pn]
    top = sorted(dists, key=lambda t: -t[0])[:12]
    assert cond_share(fc, fu, top=12) == pytest.approx(sum(c for _, c in top) / 12, abs=1e-12)


# ---------------------------------------------------------------------------------------------------- layer tables
_ALL = ("word_embed", "ada_lin", "mat_qkv", "proj", "fc1", "fc2", "head_ada_lin", "head")
# role -> (weight fmt, weight granularity, act fmt, act granularity, static, static sets)
EXPECTED = {
    "svdquant-w4a4": {r: ("int4", "group", "int4", "group", False, None) for r in ("mat_qkv", "proj", "fc1", "fc2")},
    "svdquant-nvfp4": {r: ("nvfp4", "group", "nvfp4", "group", False, None) for r in ("mat_qkv", "proj", "fc1", "fc2")},
    "fpqvar-w4a4-gptq": {**{r: ("e2m1", "group", "e2m1", "group", False, None) for r in ("mat_qkv", "proj", "fc1")},
                         "fc2": ("e2m1", "group", "e2m1", "group", False, None)},
    **{f"ptq4arvg-w{b}a{b}": {
        **{r: (f"uint{b}", "channel", f"uint{b}", "tensor", True, None) for r in ("ada_lin", "head_ada_lin", "head")},
        **{r: (f"uint{b}", "channel", f"uint{b}", "tensor", True, "scale") for r in ("mat_qkv", "fc1")},
        **{r: (f"uint{b}", "channel", f"uint{b}", "tensor", True, "sink") for r in ("proj", "fc2")}}
       for b in (8, 6)},
}


@pytest.mark.parametrize("name", PEERS)
def test_layer_set_formats_granularity(name, calib, svdq):
    if name == "svdquant-w4a4":
        var = svdq[1]
    else:
        _, var = make_small()
        quantize_(var, fast(get_recipe(name)), calib, progress=False, report=False)
    got = {}
    for s in model_sites(var):
        m = var.get_submodule(s.module) if s.kind == "linear" else None
        if isinstance(m, QuantLinear) and (m.weight_spec or m.act_spec):
            w, a = m.weight_spec, m.act_spec
            got[s.role] = (w.fmt, w.granularity, a.fmt, a.granularity, a.static, a.static_sets)
    assert got == EXPECTED[name]
    assert all(not b.attn.operand_hooks and b.attn.kv_quantizer is None for b in var.blocks)
    if name == "svdquant-w4a4":
        assert {m.weight_spec.group_size for m in var.modules() if isinstance(m, QuantLinear)} == {64}
    if name.startswith("ptq4arvg"):  # its quantizer's percentile range search on every static activation
        qs = [m for m in var.modules() if isinstance(m, QuantLinear)]
        assert {m.act_spec.range_search for m in qs} == {m.weight_spec.range_search for m in qs} == {"percentile"}


def test_peer_recipes_cite_their_sources():
    for name in PEERS:
        r = get_recipe(name)
        assert r.source and r.description
    assert "IST-DASLab/gptq" in get_recipe("fpqvar-w4a4-gptq").source
    assert "deepcompressor" in get_recipe("svdquant-w4a4").source and "nunchaku" in get_recipe("svdquant-nvfp4").source
    assert "BienLuky/PTQ4ARVG" in get_recipe("ptq4arvg-w8a8").source


def test_svdquant_nvfp4_stores_the_branch_and_loads_exactly(calib, tmp_path):
    """The NVFP4 variant: the same smoothing + low-rank step with NVFP4 block specs; the packed file (E2M1 codes,
    E4M3 block scales, float32 tensor scale, fp16 branch) loads back to the same outputs bit for bit."""
    vae, var = make_small()
    rep = quantize_(var, "svdquant-nvfp4", calib, progress=False)
    mods = [m for m in var.modules() if isinstance(m, QuantLinear)]
    assert len(mods) == 8 and all(m.lowrank_up is not None and m.weight_spec.block is not None for m in mods)
    assert rep.summary()["mean_gain_vs_rtn_db"]["svdquant"] > 0  # the branch + smoothing beat plain NVFP4 RTN
    a = _outputs(var, vae)
    p = save_quantized(var, "svdquant-nvfp4", tmp_path / "q.safetensors")
    assert read_header(p)["size"]["lowrank_bytes"] == sum((m.in_features + m.out_features) * 32 * 2 for m in mods)
    b = _outputs(load_quantized(p, vae=vae), vae)
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    torch.testing.assert_close(b[1], a[1], rtol=0, atol=0)
