"""Fast path (fpqvar.quant.fast / kernels): EXACT tier, rtol=0 atol=0.

References: the datapath model (fpqvar.hw.datapath, its quantizer hw.quantizer_int) where it covers the case, and
otherwise a numpy model written here from the datapath's documented arithmetic (FP6: one exact integer dot product,
one float32 rounding). Every test runs once per integer-GEMM candidate of the kernel selector (int8, float32, u8s8,
native)."""

import contextlib

import numpy as np
import pytest
import torch
import torch.nn as nn

from fpqvar import kernels
from fpqvar.formats import fake_quantize, get_format
from fpqvar.hw import datapath as dp
from fpqvar.hw.quantizer_int import quantize_groups, quantize_groups_dfq
from fpqvar.kernels import int_gemm as IG
from fpqvar.kernels import native
from fpqvar.quant import fast
from fpqvar.quant import kernels as K
from fpqvar.quant import kernels_gemm as KG
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec
from fpqvar.transforms.hadamard import OnlineRotation, block_hadamard_matrix, rotate_weight_in

# Token counts of VAR's scales (patch_nums 1..16), times 2 for classifier-free guidance.
RAGGED_T = [2 * n * n for n in (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)]
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
FP4_G = QuantSpec("e2m1", "group", 128)


@pytest.fixture(autouse=True, params=IG.INT_GEMM_IMPLS)
def gemm_impl(request):
    """Every test of this file with each exact integer GEMM (an explicit choice overrides the measurement)."""
    why = IG.unavailable(request.param, torch.device("cpu"))
    if why:
        pytest.skip(f"{request.param}: {why}")
    with kernels.override(int_gemm=request.param):
        yield request.param


@contextlib.contextmanager
def torch_or_native(op: str, name: str):
    """The selector operation ``op`` (candidates torch / native) forced to ``name``; native is skipped with the
    reason where the C kernels cannot run."""
    if name == "native" and native.unavailable() is not None:
        pytest.skip(f"native: {native.unavailable()}")
    with kernels.override(**{op: name}):
        yield name


@pytest.fixture(autouse=True, params=["torch", "native"])
def sums_impl(request):
    """Every test of this file with the scales and sums by PyTorch ops and by the C loop (operation int_sums)."""
    with torch_or_native("int_sums", request.param) as name:
        yield name


def test_the_requested_gemm_runs(gemm_impl, monkeypatch):
    kernels.choose(KG.SUMS_OP)  # decided first: its measurement runs GEMMs of its own
    used = []
    orig = IG.gemm_to_f32
    monkeypatch.setattr(IG, "gemm_to_f32", lambda impl, *a, **k: used.append(impl) or orig(impl, *a, **k))
    orig_b = IG.batched_gemm_to_f32
    monkeypatch.setattr(IG, "batched_gemm_to_f32", lambda impl, *a, **k: used.append(impl) or orig_b(impl, *a, **k))
    orig_i = KG._int_mm  # the few-row int8 path's per-segment int32 products
    monkeypatch.setattr(KG, "_int_mm", lambda *a, **k: used.append("int8") or orig_i(*a, **k))
    orig_u = IG.u8s8_mm  # the u8s8 GEMM's per-segment products
    monkeypatch.setattr(IG, "u8s8_mm", lambda *a, **k: used.append("u8s8") or orig_u(*a, **k))
    orig_n, orig_l = native.int_dot, native.int_linear  # the C GEMM, every strategy (int_linear: with its sums)
    monkeypatch.setattr(native, "int_dot", lambda *a, **k: used.append("native") or orig_n(*a, **k))
    monkeypatch.setattr(native, "int_linear", lambda *a, **k: used.append("native") or orig_l(*a, **k))
    x = _rng(1).standard_normal((40, 256)).astype(np.float32)
    w = _rng(2).standard_normal((16, 256)).astype(np.float32)
    assert np.array_equal(_pure_fast(x, w, None, "rne", False), dp.linear_through_datapath(x, w))
    assert used and set(used) == {gemm_impl}


def _rng(seed):
    return np.random.default_rng(seed)


def _signed_values(codes, fmt):
    return get_format(fmt).code_values[codes.astype(np.int64)]


def _nearest_index(t, grid, rounding, no_mantissa=False):
    """Index into the ascending ``grid`` of the nearest value to float64 ``t``, brute force.

    Ties: "rne" -> the even magnitude code (codes are monotone in magnitude, so the mantissa LSB is the code's
    parity); for a format without mantissa bits (e3m0) IEEE's rule reads the significand 1.1b * 2**e -> 10b * 2**e,
    i.e. the larger power of two (0 stays 0); "ties_up" -> the larger value."""
    d = np.abs(t[..., None] - grid)
    best = d.min(axis=-1, keepdims=True)
    cand = d == best
    mag_idx = np.searchsorted(np.unique(np.abs(grid)), np.abs(grid))  # magnitude code of each grid entry
    if rounding == "rne" and no_mantissa:
        hi = np.where(cand, mag_idx, -1).max(-1, keepdims=True)  # larger magnitude code among the candidates
        lo = np.where(cand, mag_idx, 99).min(-1, keepdims=True)
        return (cand & (mag_idx == np.where(lo == 0, lo, hi))).argmax(-1)
    if rounding == "rne":
        pick = cand & (mag_idx % 2 == 0)
        pick = np.where(pick.any(-1, keepdims=True), pick, cand)
        return pick.argmax(-1)
    return len(grid) - 1 - cand[..., ::-1].argmax(-1)


def _tie_heavy(T, G, seed, mids=(0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0), max_value=6.0):
    """Groups whose elements sit on, or one float32 ulp beside, ``midpoint * s``: ``fl32(x / s)`` is then often
    exactly a midpoint while ``x / s`` is not (the quantizer's hard case)."""
    r = _rng(seed)
    x = np.zeros((T, G, 128), np.float32)
    a = r.uniform(0.5, 2.0, (T, G)).astype(np.float32)
    s = (a / np.float32(max_value)).astype(np.float32)
    m = r.choice(np.array(mids), (T, G, 127)) * r.choice([-1.0, 1.0], (T, G, 127))
    c = (m * s[..., None].astype(np.float64)).astype(np.float32)
    step = r.integers(-1, 2, (T, G, 127))
    c = np.where(step == 0, c, np.nextafter(c, np.where(step > 0, np.inf, -np.inf).astype(np.float32)))
    x[..., 0], x[..., 1:] = a, c
    return x.reshape(T, G * 128)


# --- integer grids --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,k", [("e2m1", 1), ("e1m2", 2), ("e3m0", 2), ("e2m3", 3), ("int4", 0),
                                   ("int8", 0), ("neg32", 0)])
def test_int_grid_is_the_format_grid_times_2k(fmt, k):
    g = K.int_grid(fmt)
    f = get_format(fmt)
    assert g.k == k
    vals = f.grid * 2.0**k
    assert np.array_equal(vals, np.round(vals)) and g.lo == vals.min() and g.hi == vals.max()
    assert g.max_value == f.max_value


@pytest.mark.parametrize("fmt", ["e3m2", "e4m3", "e5m2", "uint4"])
def test_int_grid_refuses_wide_formats(fmt):
    assert K.int_grid(fmt) is None


def test_weight_operand_decodes_every_code():
    for fmt in ("e2m1", "e1m2", "e2m3", "int4"):
        f = get_format(fmt)
        codes = torch.arange(1 << f.bits, dtype=torch.uint8).reshape(1, -1).repeat(3, 1)  # (O=3, I=all codes)
        w = K.weight_operand(codes, fmt)
        assert w.dtype == torch.int8 and w.shape == (1 << f.bits, 3)
        if fmt == "int4":
            ref = np.where(np.arange(16) >= 8, np.arange(16) - 16, np.arange(16))
        else:
            ref = f.code_values * 2 ** K.int_grid(fmt).k
        assert np.array_equal(w[:, 0].numpy(), ref)


@pytest.mark.parametrize("fmt", ["e2m1", "e1m2", "e3m0", "e2m3", "int4", "int8"])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_rounding_on_every_grid_point_and_midpoint(fmt, rounding):
    """Static scale 1 (so x / s is exact): every grid value, every midpoint and their float32 neighbours,
    against the brute-force nearest grid value with the tie rule."""
    f = get_format(fmt)
    grid = f.grid
    pts = np.concatenate([grid, (grid[1:] + grid[:-1]) / 2, [grid[-1] * 1.5, grid[-1] * 100]]).astype(np.float32)
    x = np.concatenate([pts, np.nextafter(pts, np.float32(np.inf)), np.nextafter(pts, np.float32(-np.inf))])
    x = np.resize(x, (-(-x.size // 128)) * 128).reshape(-1, 128).astype(np.float32)
    g = K.int_grid(fmt)
    n, s = K.quantize_act(torch.from_numpy(x), g, group_size=128, rounding=rounding, scale=torch.ones(1))
    idx = _nearest_index(np.clip(x.astype(np.float64), grid[0], grid[-1]), grid, rounding,
                         no_mantissa=getattr(f, "mbits", 1) == 0)
    ref = grid[idx] * 2.0**g.k
    assert np.array_equal(n.numpy(), ref) and torch.equal(s, torch.ones_like(s))


# --- activation quantizer vs the datapath's ---------------------------------------------------------------


@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
@pytest.mark.parametrize("fmt", ["e2m1", "e1m2"])
def test_quantize_act_equals_datapath_quantizer_on_ties(rounding, fmt):
    mids = tuple((a + b) / 2 for a, b in zip(get_format(fmt).positive_grid, get_format(fmt).positive_grid[1:]))
    x = np.concatenate([_tie_heavy(48, 2, 1, mids, get_format(fmt).max_value),
                        _rng(2).standard_normal((16, 256)).astype(np.float32),
                        np.zeros((1, 256), np.float32)])
    codes, sc = quantize_groups(x, fmt, rounding=rounding)
    n, s = K.quantize_act(torch.from_numpy(x), K.int_grid(fmt), group_size=128, rounding=rounding)
    assert np.array_equal(n.numpy(), _signed_values(codes, fmt) * 2 ** K.int_grid(fmt).k)
    assert np.array_equal(s.numpy(), sc)
    # the data does exercise the exact-quotient repair: formats' float32-quotient rounding differs there
    fq = fake_quantize(torch.from_numpy(x), fmt, group_size=128, rounding=rounding).numpy()
    dq = (_signed_values(codes, fmt).reshape(-1, 2, 128) * sc[..., None]).astype(np.float32).reshape(x.shape)
    assert (fq != dq).sum() > 10


@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_quantize_act_dfq_equals_datapath(rounding):
    x = np.concatenate([_tie_heavy(32, 2, 3), -_tie_heavy(32, 2, 4, (0.125, 0.375, 0.625, 1.625), 1.75),
                        _rng(5).standard_normal((8, 256)).astype(np.float32),
                        np.abs(_rng(6).standard_normal((2, 256))).astype(np.float32), np.zeros((1, 256), np.float32)])
    codes, sn, sp = quantize_groups_dfq(x, rounding=rounding)
    nn_, np_, s_neg, s_pos = K.quantize_act_dfq(torch.from_numpy(x), K.int_grid("e1m2"), K.int_grid("e2m1"),
                                                group_size=128, rounding=rounding)
    sel = codes >> 3
    neg_ref = np.where(sel == 1, -get_format("e1m2").code_values[codes & 7] * 4, 0)
    pos_ref = np.where(sel == 0, E2M1[codes & 7] * 2, 0)
    assert np.array_equal(nn_.numpy(), neg_ref) and np.array_equal(np_.numpy(), pos_ref)
    assert np.array_equal(s_neg.numpy(), sn) and np.array_equal(s_pos.numpy(), sp)


# --- the linear layer vs the datapath -------------------------------------------------------------------


def _pure_fast(x, w, b, rounding, dfq, monkeypatch=None):
    wc, sw = quantize_groups(w, "e2m1", rounding=rounding)
    w_IO = K.weight_operand(torch.from_numpy(wc), "e2m1")
    xt = torch.from_numpy(x)
    bt = None if b is None else torch.from_numpy(b)
    if dfq:
        n_neg, n_pos, s_neg, s_pos = K.quantize_act_dfq(xt, K.int_grid("e1m2"), K.int_grid("e2m1"), group_size=128,
                                                        rounding=rounding)
        parts = [(n_neg, s_neg, 2.0**-3), (n_pos, s_pos, 2.0**-2)]
    else:
        n, s = K.quantize_act(xt, K.int_grid("e2m1"), group_size=128, rounding=rounding)
        parts = [(n, s, 2.0**-2)]
    return KG.linear_int(parts, KG.PreparedWeight(w_IO, torch.from_numpy(sw), 128), bt).numpy()


@pytest.mark.parametrize("T", RAGGED_T)
@pytest.mark.parametrize("dfq", [False, True])
def test_linear_bit_exact_vs_datapath_ragged_tokens(T, dfq):
    I = (256, 1024, 4096)[RAGGED_T.index(T) % 3]
    r = _rng(T)
    x = r.standard_normal((T, I)).astype(np.float32) * r.uniform(0.1, 10, (T, 1)).astype(np.float32)
    w = (r.standard_normal((40, I)) * 0.05).astype(np.float32)
    b = r.standard_normal(40).astype(np.float32)
    ref = (dp.linear_dfq_through_datapath if dfq else dp.linear_through_datapath)(x, w, b)
    assert np.array_equal(_pure_fast(x, w, b, "rne", dfq), ref)


@pytest.mark.parametrize("strategy", ["bmm", "loop", "loop_unfolded", "chunked"])
@pytest.mark.parametrize("dfq", [False, True])
def test_linear_strategies_bit_exact(strategy, dfq, monkeypatch, gemm_impl):
    """Every code path of linear_int (batched float32 GEMM, segment loop, literal unit order, row chunks; the native
    GEMM's fused sums)."""
    bmm_calls, fused_calls = [], []
    real_bmm, real_fused = KG._linear_bmm, native.int_linear
    monkeypatch.setattr(KG, "_linear_bmm", lambda *a: bmm_calls.append(1) or real_bmm(*a))
    monkeypatch.setattr(native, "int_linear", lambda *a, **k: fused_calls.append(1) or real_fused(*a, **k))
    r = _rng(11)
    T, I = 37, 512
    x = np.concatenate([_tie_heavy(T, I // 128, 12), r.standard_normal((T, I)).astype(np.float32)])
    w = (r.standard_normal((72, I)) * 0.05).astype(np.float32)
    b = r.standard_normal(72).astype(np.float32)
    monkeypatch.setattr(KG, "BMM_MAX_ROWS", 10**6 if strategy == "bmm" else 0)
    if strategy == "chunked":
        monkeypatch.setattr(KG, "ROW_CHUNK_ELEMS", 7 * 72)  # 7 rows per chunk, a ragged last chunk
        monkeypatch.setattr(KG, "ROW_CHUNK_ELEMS_F32", 7 * 72)
    if strategy == "loop_unfolded":
        monkeypatch.setattr(KG, "_foldable", lambda parts, w: False)
    for rounding in ("rne", "ties_up"):
        ref = (dp.linear_dfq_through_datapath if dfq else dp.linear_through_datapath)(x, w, b, rounding=rounding)
        assert np.array_equal(_pure_fast(x, w, b, rounding, dfq), ref)
    # the path under test really ran (the native GEMM makes its own sums wherever the unit folds)
    fused = gemm_impl == "native" and strategy != "loop_unfolded"
    assert bool(bmm_calls) == (strategy == "bmm" and not fused) and bool(fused_calls) == fused


def test_unit_folding_guard_and_extreme_scales():
    """Scales near the float32 range: products that would leave the normal range take the literal order."""
    r = _rng(21)
    x = r.standard_normal((5, 256)).astype(np.float32)
    w = (r.standard_normal((8, 256))).astype(np.float32)
    for xs, ws, foldable in ((1e-19, 1e-19, False), (1e20, 1e19, False), (1.0, 1e-30, True), (1.0, 1e-37, False)):
        xx, ww = (x * np.float32(xs)).astype(np.float32), (w * np.float32(ws)).astype(np.float32)
        n, s = K.quantize_act(torch.from_numpy(xx), K.int_grid("e2m1"), group_size=128)
        w_IO = K.weight_operand(torch.from_numpy(quantize_groups(ww, "e2m1")[0]), "e2m1")
        pw = KG.PreparedWeight(w_IO, torch.from_numpy(quantize_groups(ww, "e2m1")[1]), 128)
        assert KG._foldable([(n, s, 0.25)], pw) == foldable
        with np.errstate(over="ignore", invalid="ignore"):  # (1e20, 1e19): s_x * s_w overflows, in both models
            ref = dp.linear_through_datapath(xx, ww)
        assert np.array_equal(_pure_fast(xx, ww, None, "rne", False), ref, equal_nan=True)


def test_zero_rows_and_all_zero_groups():
    x = np.zeros((3, 256), np.float32)
    x[1, :128] = _rng(0).standard_normal(128)
    w = _rng(1).standard_normal((16, 256)).astype(np.float32)
    assert np.array_equal(_pure_fast(x, w, None, "rne", False), dp.linear_through_datapath(x, w))
    assert np.array_equal(_pure_fast(x, w, None, "rne", True), dp.linear_dfq_through_datapath(x, w))
    assert _pure_fast(np.zeros((0, 256), np.float32), w, None, "rne", False).shape == (0, 16)


# --- FP6: no datapath model; the reference is written here ---------------------------------------------


def _fp6_reference(x, w, b, dfq, rounding="rne"):
    """Per-token E2M3 (or DFQ INT -32..0 / E2M3) activations, per-channel E2M3 weights; exact integer dot
    product over the whole input dim, then ``fl32(fl32(s_x s_w) * fl32(D * unit)) + b`` (kernels docstring)."""
    e2m3 = get_format("e2m3").grid
    s_w = (np.abs(w).max(1) / np.float32(7.5)).astype(np.float32)
    wv = e2m3[_nearest_index(w.astype(np.float64) / s_w[:, None], e2m3, rounding)] * 8  # integers
    if dfq:
        neg = x <= 0
        s_n = (np.where(neg, -x, 0).max(1) / np.float32(32)).astype(np.float32)
        s_p = (np.where(neg, 0, x).max(1) / np.float32(7.5)).astype(np.float32)
        s_n, s_p = np.where(s_n == 0, 1, s_n).astype(np.float32), np.where(s_p == 0, 1, s_p).astype(np.float32)
        ints = np.arange(-32.0, 1.0)
        xn = np.where(neg, ints[_nearest_index(x / s_n[:, None].astype(np.float64), ints, rounding)], 0)
        xp = np.where(neg, 0, e2m3[_nearest_index(x / s_p[:, None].astype(np.float64), e2m3, rounding)] * 8)
        parts = [(xn, s_n, 1 / 8), (xp, s_p, 1 / 64)]
    else:
        s_x = (np.abs(x).max(1) / np.float32(7.5)).astype(np.float32)
        parts = [(e2m3[_nearest_index(x / s_x[:, None].astype(np.float64), e2m3, rounding)] * 8, s_x, 1 / 64)]
    acc = None
    for xi, s, unit in parts:
        d = xi.astype(np.int64) @ wv.astype(np.int64).T
        p = (s[:, None] * s_w[None, :]).astype(np.float32) * (d * unit).astype(np.float32)
        acc = p if acc is None else (acc + p).astype(np.float32)
    return acc + b.astype(np.float32) if b is not None else acc


def _qlinear(w, b, wspec, aspec, rotation=None):
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        if b is not None:
            lin.bias.copy_(torch.from_numpy(b))
    return QuantLinear.from_linear(lin, wspec, aspec, rotation=rotation)


@pytest.mark.parametrize("dfq", [None, "fp6"])
def test_fp6_per_token_per_channel_exact(dfq):
    r = _rng(31)
    x = r.standard_normal((50, 1024)).astype(np.float32)
    w = (r.standard_normal((24, 1024)) * 0.05).astype(np.float32)
    b = r.standard_normal(24).astype(np.float32)
    q = _qlinear(w, b, QuantSpec("e2m3", "channel", None), QuantSpec("e2m3", "token", None, dfq=dfq))
    q.backend = "exact"
    y = q(torch.from_numpy(x)).numpy()
    assert np.array_equal(y, _fp6_reference(x, w, b, dfq is not None))


def test_fp6_dot_product_beyond_2_24_rounds_once():
    """Odd products (1.875 * 8 = 15) over 2**17 inputs: |D| > 2**24 with 25 significant bits, so fl32(D) rounds;
    the fast path rounds the exact integer once (RNE), as the reference."""
    I = 1 << 17
    x = np.full((2, I), 1.875, np.float32)
    x[:, 0] = 7.5
    x[1, 5::7] = -1.625
    w = np.full((3, I), 1.875, np.float32)
    w[:, 0] = 7.5
    w[2, 1::5] = 1.375
    q = _qlinear(w, None, QuantSpec("e2m3", "channel", None), QuantSpec("e2m3", "token", None))
    q.backend = "exact"
    y = q(torch.from_numpy(x)).numpy()
    d = (x * 8).astype(np.int64) @ (w * 8).astype(np.int64).T  # scales are 1: x, w are on the grid
    assert (np.abs(d) > 2**24).all() and (d.astype(np.float32).astype(np.int64) != d).any()
    assert np.array_equal(y, _fp6_reference(x, w, None, False))


# --- the module: dispatch, rotation, dtype, caching, fallbacks ----------------------------------------


@pytest.mark.parametrize("dfq", [None, "fp4"])
def test_module_forward_equals_datapath_with_ght(dfq):
    r = _rng(41)
    I, O = 512, 96
    Q = block_hadamard_matrix()
    w = (r.standard_normal((O, I)) * 0.05).astype(np.float32)
    w_rot = rotate_weight_in(torch.from_numpy(w), Q).numpy()
    b = r.standard_normal(O).astype(np.float32)
    q = _qlinear(w_rot, b, FP4_G, QuantSpec("e2m1", "group", 128, dfq=dfq), rotation=OnlineRotation(Q, I))
    x = torch.from_numpy(r.standard_normal((2, 25, I)).astype(np.float32))
    # the module's weight codes (formats.quantize) agree with the datapath's quantizer on this data
    assert np.array_equal(q.weight_codes.numpy(), quantize_groups(w_rot, "e2m1")[0])
    q.backend = "exact"
    y = q(x)
    f = dp.linear_dfq_through_datapath if dfq else dp.linear_through_datapath
    ref = f(q.rotation(x).numpy().reshape(-1, I), w_rot, b).reshape(2, 25, O)
    assert y.shape == (2, 25, O) and y.dtype == torch.float32 and np.array_equal(y.numpy(), ref)
    # bf16 activations: the same float32 result, cast once
    yb = q(x.bfloat16())
    refb = f(q.rotation(x.bfloat16()).float().numpy().reshape(-1, I), w_rot, b).reshape(2, 25, O)
    assert yb.dtype == torch.bfloat16 and torch.equal(yb, torch.from_numpy(refb).bfloat16())


def test_fast_vs_reference_fake_quant_within_accumulation_bound():
    """Against the reference path's operands (formats.fake_quantize of x, the module's dequantized W) in float64:
    within the datapath's documented bound, which is all the float32 scale/accumulation order can cost."""
    r = _rng(51)
    for I in (256, 1024, 4096):
        x = torch.from_numpy(r.standard_normal((36, I)).astype(np.float32))
        w = (r.standard_normal((64, I)) * 0.05).astype(np.float32)
        b = r.standard_normal(64).astype(np.float32)
        q = _qlinear(w, b, FP4_G, FP4_G)
        xq = fake_quantize(x, "e2m1", group_size=128)
        n, s = K.quantize_act(x, K.int_grid("e2m1"), group_size=128)
        # no exact-quotient tie in this data, so the two quantizers agree (else change the seed)
        assert torch.equal((n.float().reshape(36, -1, 128) / 2 * s[..., None]).reshape(36, I), xq)
        prods = xq.double()[:, None, :] * q.weight.double()[None, :, :]
        y64 = prods.sum(-1) + torch.from_numpy(b).double()
        q.backend = "exact"
        y = q(x)
        bound = dp.accumulation_error_bound(prods.abs().sum(-1).numpy(), I // 128, y64.numpy())
        err = (y.double() - y64).abs().numpy()
        assert (err <= bound).all() and err.max() > 0  # the float32 order does round somewhere


def test_power_of_two_scales_are_exact_against_float64():
    """Group absmax = 6 * 2**e (scales are powers of two): every partial is exact, so is the float32 sum."""
    r = _rng(61)
    T, I, O = 18, 1024, 32
    x = r.uniform(-1, 1, (T, I // 128, 128)) * 6
    x[..., 0] = 6.0
    x = (x * 2.0 ** r.integers(-3, 4, (T, 1, 1))).reshape(T, I).astype(np.float32)
    w = r.uniform(-1, 1, (O, I // 128, 128)) * 6
    w[..., 0] = -6.0
    w = (w * 2.0 ** r.integers(-6, -2, (O, 1, 1))).reshape(O, I).astype(np.float32)
    q = _qlinear(w, None, FP4_G, FP4_G)
    xq = fake_quantize(torch.from_numpy(x), "e2m1", group_size=128).double()
    q.backend = "exact"
    assert torch.equal(q(torch.from_numpy(x)).double(), xq @ q.weight.double().T)


def test_plan_is_cached_and_rebuilt_when_codes_change():
    r = _rng(71)
    w = (r.standard_normal((16, 256)) * 0.05).astype(np.float32)
    q = _qlinear(w, None, FP4_G, FP4_G)
    q.backend = "exact"
    x = torch.from_numpy(r.standard_normal((4, 256)).astype(np.float32))
    y0 = q(x)
    p0 = fast.plan_for(q)
    assert fast.plan_for(q) is p0 and p0.weight.w_IO.dtype == torch.int8
    sd = {k: v.clone() for k, v in q.state_dict().items()}
    with torch.no_grad():
        q.weight_codes.copy_(torch.flip(q.weight_codes, dims=[0]))
        q.weight_scale.copy_(torch.flip(q.weight_scale, dims=[0]))
        q.refresh_weight()
    assert fast.plan_for(q) is not p0
    assert torch.equal(q(x), torch.flip(y0, dims=[1]))
    q.load_state_dict(sd)
    assert torch.equal(q(x), y0)


def test_unsupported_specs_and_non_finite_inputs_take_the_reference_path():
    r = _rng(81)
    w = (r.standard_normal((16, 256)) * 0.05).astype(np.float32)
    x = torch.from_numpy(r.standard_normal((4, 256)).astype(np.float32))
    for ws, as_ in ((QuantSpec("uint4", "channel", None), QuantSpec("uint4", "token", None)),
                    (FP4_G, QuantSpec("e3m2", "token", None)), (FP4_G, None)):
        q = _qlinear(w, None, ws, as_)
        ref = q(x)
        q.backend = "exact"
        assert fast.unsupported_reason(q) is not None and torch.equal(q(x), ref)
    q = _qlinear(w, None, FP4_G, FP4_G)
    xi = x.clone()
    xi[0, 3] = float("inf")
    ref = q(xi)
    q.backend = "exact"
    assert torch.equal(q(xi), ref)


def test_static_activation_scale():
    r = _rng(91)
    w = (r.standard_normal((16, 256)) * 0.05).astype(np.float32)
    lin = nn.Linear(256, 16, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    act_scale = torch.tensor([0.2, 0.05])  # group 1 saturates
    q = QuantLinear.from_linear(lin, FP4_G, QuantSpec("e2m1", "group", 128, static=True), act_scale=act_scale)
    x = r.standard_normal((9, 256)).astype(np.float32)
    q.backend = "exact"
    y = q(torch.from_numpy(x)).numpy()
    t = np.abs(x.reshape(9, 2, 128).astype(np.float64)) / act_scale.numpy()[:, None].astype(np.float64)
    xv = E2M1[_nearest_index(np.minimum(t, 6.0), E2M1, "rne")] * np.sign(x.reshape(9, 2, 128))
    xu = (xv * 2).astype(np.int64)
    wc, sw = q.weight_codes.numpy(), q.weight_scale.numpy()
    wu = (_signed_values(wc, "e2m1") * 2).astype(np.int64).reshape(16, 2, 128)
    partials = [(xu[:, g] @ wu[:, g].T, np.full(9, act_scale[g].item(), np.float32), sw[:, g]) for g in range(2)]
    assert np.array_equal(y, dp.scale_accumulate(partials, 0.25))


def test_backend_errors_name_the_backend():
    q = _qlinear(np.ones((4, 128), np.float32), None, FP4_G, FP4_G)
    q.backend = "fastest"
    with pytest.raises(ValueError, match="fastest"):
        q(torch.ones(1, 128))
    if not torch.cuda.is_available():
        q.backend = "triton"
        with pytest.raises(ValueError, match="triton"):
            q(torch.ones(1, 128))
