"""The FP quantizer model: scale stage (round to odd), compare stage (exhaustive), whole per-group quantizer.

References are written here from the definition: nearest grid point by distance, ties by the stated rule.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from fpqvar.formats.spec import get_format
from fpqvar.hw import quantizer_int as qi


def _nearest(q: np.ndarray, fmt: str, rounding: str) -> np.ndarray:
    """Reference rounding of signed normalized values ``q`` (float64) -> magnitude index (0..7).

    Nearest point of the signed grid by |q - g|; ties: "rne" -> the even magnitude code, "ties_up" -> the
    larger signed value (upstream FPQVAR). Saturates (max is a grid point). Returns the magnitude code.
    """
    mags = get_format(fmt).positive_grid  # index == magnitude code for e2m1 / e1m2
    signed = np.concatenate([-mags[::-1], mags])  # both zeros present; same distance, same magnitude
    mag_idx = np.concatenate([np.arange(8)[::-1], np.arange(8)])
    dist = np.abs(q[..., None] - signed)
    best = dist.min(-1, keepdims=True)
    cand = dist == best
    if rounding == "rne":
        score = np.where(cand, (mag_idx % 2 == 0) * 1.0, -1.0)
    else:
        score = np.where(cand, signed + 100.0, -np.inf)
    return mag_idx[np.argmax(score, axis=-1)]


@pytest.mark.parametrize("fmt", ["e2m1", "e1m2", "dfq"])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_compare_stage_exhaustive(fmt, rounding):
    frac, bits = qi.FIXED_POINT[fmt]
    v = np.arange(1 << bits)
    # an odd v (sticky set) stands for any quotient strictly between its even neighbours: use v itself,
    # which is no tie because every midpoint is an even integer here
    q = v / 2.0**frac
    halves = ["e2m1", "e1m2"] if fmt == "dfq" else [fmt]
    for half in halves:
        for negative in (False, True):
            got = qi.compare_stage(v, np.full(v.shape, negative), half, rounding, frac)
            ref = _nearest(-q if negative else q, half, rounding)
            np.testing.assert_array_equal(got, ref, err_msg=f"{half} negative={negative}")


def test_tie_rules_on_exact_midpoints():
    frac, _ = qi.FIXED_POINT["e2m1"]
    mids = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    v = (mids * 2**frac).astype(np.int64)
    mags = get_format("e2m1").positive_grid
    rne = mags[qi.compare_stage(v, np.zeros(7, bool), "e2m1", "rne", frac)]
    np.testing.assert_array_equal(rne, [0, 1, 1, 2, 2, 4, 4])  # even mantissa: 0, 1.0, 1.0, 2, 2, 4, 4
    up_pos = mags[qi.compare_stage(v, np.zeros(7, bool), "e2m1", "ties_up", frac)]
    np.testing.assert_array_equal(up_pos, [0.5, 1, 1.5, 2, 3, 4, 6])
    up_neg = mags[qi.compare_stage(v, np.ones(7, bool), "e2m1", "ties_up", frac)]
    np.testing.assert_array_equal(up_neg, [0, 0.5, 1, 1.5, 2, 3, 4])  # -2.5 -> -2: towards +inf


def test_scale_to_fixed_is_round_to_odd_of_exact_quotient():
    rng = np.random.default_rng(0)
    s = (np.abs(rng.standard_normal(3000)) + 1e-3).astype(np.float32)
    mag = (np.abs(rng.standard_normal(3000)) * s * 4).astype(np.float32)
    mag[:200] = (s[:200].astype(np.float64) * rng.integers(0, 60, 200) / 8).astype(np.float32)  # near-exact
    frac, bits = qi.FIXED_POINT["e2m1"]
    got = qi.scale_to_fixed(mag, s, frac, bits)
    for m, sc, g in zip(mag, s, got):
        qq = Fraction(float(m)) / Fraction(float(sc)) * 2 ** (frac - 1)
        fl = qq.numerator // qq.denominator
        ref = min(2 * fl + (qq != fl), (1 << bits) - 1)
        assert g == ref, (m, sc)


def _ref_quantize(x: np.ndarray, fmt: str, rounding: str, group: int = 128):
    """Per-group absmax quantization from the definition: s = fl32(absmax / max) (1 if 0), q = x / s."""
    f = get_format(fmt)
    xg = x.astype(np.float32).reshape(x.shape[:-1] + (-1, group))
    s = (np.abs(xg).max(-1) / np.float32(f.max_value)).astype(np.float32)
    s = np.where(s == 0, np.float32(1), s)
    # float64 division of float32 operands decides every midpoint comparison exactly: x - m*s is 0 or at least
    # 2**-28 relative (28 significant bits), far above float64's 2**-53
    q = xg.astype(np.float64) / s[..., None].astype(np.float64)
    idx = _nearest(q, fmt, rounding)
    return ((np.signbit(xg).astype(np.uint8) << 3) | idx).reshape(x.shape), s


@pytest.mark.parametrize("fmt", ["e2m1", "e1m2"])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_quantize_groups_matches_reference(fmt, rounding):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((40, 384)) * rng.uniform(0.01, 10, (40, 1))).astype(np.float32)
    x[0, :128] = 0.0  # empty group -> scale 1, codes 0
    x[1, :128] = -0.0
    # exact ties: absmax = max -> s = 1, values on every midpoint
    mids = get_format(fmt).positive_grid
    mids = (mids[1:] + mids[:-1]) / 2
    x[2, : len(mids)] = mids
    x[2, 64 : 64 + len(mids)] = -mids
    x[2, 127] = get_format(fmt).max_value
    codes, s = qi.quantize_groups(x, fmt, rounding=rounding)
    ref_codes, ref_s = _ref_quantize(x, fmt, rounding)
    np.testing.assert_array_equal(s, ref_s)
    np.testing.assert_array_equal(codes, ref_codes)
    assert s[0, 0] == 1 and np.all(codes[0, :128] == 0) and np.all(codes[1, :128] == 8)


@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_codes_and_scales_match_fpqvar_formats(rounding):
    """Against the software quantizers (fpqvar.formats.quantize / dfq_quantize), codes and scales.

    The software divides x / s in float32 before rounding; that can only differ from the datapath's exact
    decision when x / s lies within half a float32 ulp of a midpoint, which none of these seeded values does
    (the exact-midpoint rows of the tests above use s = 1, where the division is exact).
    """
    torch = pytest.importorskip("torch")
    from fpqvar.formats import dfq_quantize, quantize

    rng = np.random.default_rng(4)
    x = (rng.standard_normal((64, 256)) * rng.uniform(0.01, 10, (64, 1))).astype(np.float32)
    x[0, :128] = 0.0
    x[1, :128] = np.abs(x[1, :128])  # DFQ: no negative values in a group
    codes, s = qi.quantize_groups(x, "e2m1", rounding=rounding)
    q = quantize(torch.from_numpy(x), "e2m1", group_size=128, rounding=rounding)
    np.testing.assert_array_equal(codes, q.codes.numpy())
    np.testing.assert_array_equal(s, q.scale.numpy())
    x = np.where(x < 0, 0.05 * x, x).astype(np.float32)  # GELU-like fc2 input
    codes, s_neg, s_pos = qi.quantize_groups_dfq(x, rounding=rounding)
    d = dfq_quantize(torch.from_numpy(x), rounding=rounding)
    np.testing.assert_array_equal(codes, d.codes.numpy())
    np.testing.assert_array_equal(s_neg, d.scale_neg.numpy())
    np.testing.assert_array_equal(s_pos, d.scale_pos.numpy())


@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_quantize_groups_dfq_matches_reference(rounding):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((30, 256)).astype(np.float32)
    x = np.where(x < 0, x * 0.1, x)  # GELU-like: small negative side
    x[0, :128] = np.abs(x[0, :128]) + 0.1  # no negatives: s_neg = 1
    x[1, :128] = -np.abs(x[1, :128])  # no positives: s_pos = 1
    x[2, :5] = 0.0
    codes, s_neg, s_pos = qi.quantize_groups_dfq(x, rounding=rounding)
    xg = x.reshape(30, 2, 128)
    neg = xg <= 0
    rn = (np.where(neg, -xg, 0).max(-1) / np.float32(1.75)).astype(np.float32)
    rp = (np.where(neg, 0, xg).max(-1) / np.float32(6.0)).astype(np.float32)
    rn, rp = np.where(rn == 0, np.float32(1), rn), np.where(rp == 0, np.float32(1), rp)
    np.testing.assert_array_equal(s_neg, rn)
    np.testing.assert_array_equal(s_pos, rp)
    qn = _nearest(xg.astype(np.float64) / rn[..., None].astype(np.float64), "e1m2", rounding)
    qp = _nearest(xg.astype(np.float64) / rp[..., None].astype(np.float64), "e2m1", rounding)
    ref = np.where(neg & (qn > 0), 8 | qn, np.where(neg, 0, qp)).reshape(30, 256)
    np.testing.assert_array_equal(codes, ref)
    assert np.all(codes[2, :5] == 0)  # zero results are code 0 (fpqvar.formats.dfq convention)


def test_quantizer_rejects_bad_input():
    with pytest.raises(ValueError, match="multiple of group_size"):
        qi.quantize_groups(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        qi.quantize_groups(np.full((1, 128), np.inf, np.float32))
    with pytest.raises(ValueError, match="rounding"):
        qi.quantize_groups(np.zeros((1, 128), np.float32), rounding="nearest")


# --- whole linear layers through the datapath ------------------------------------------------------------

U = 2.0**-24  # float32 unit roundoff


def _ref_fake_quant(x: np.ndarray, rounding: str) -> np.ndarray:
    """E2M1 fake quantization per group of 128 along the last dim: float32 ``fl32(value * s)``."""
    codes, s = _ref_quantize(x, "e2m1", rounding)
    vals = get_format("e2m1").code_values[codes].astype(np.float32)
    return (vals.reshape(s.shape + (128,)) * s[..., None]).reshape(x.shape)


def _ref_dfq_fake_quant(x: np.ndarray, rounding: str) -> np.ndarray:
    """DFQ from the definition (spec section 6): x <= 0 on E1M2 with s_neg, x > 0 on E2M1 with s_pos."""
    xg = x.astype(np.float32).reshape(x.shape[:-1] + (-1, 128))
    neg = xg <= 0
    xn, xp = np.where(neg, xg, 0).astype(np.float32), np.where(neg, 0, xg).astype(np.float32)
    out = np.zeros_like(xg)
    for part, fmt, mask in ((xn, "e1m2", neg), (xp, "e2m1", ~neg)):
        codes, s = _ref_quantize(part.reshape(x.shape), fmt, rounding)
        vals = get_format(fmt).code_values[codes].astype(np.float32).reshape(xg.shape)
        out = np.where(mask, vals * s[..., None], out)
    return out.reshape(x.shape)


def _ref_linear(xq, wq, bias):
    y = xq.reshape(-1, xq.shape[-1]).astype(np.float64) @ wq.astype(np.float64).T
    if bias is not None:
        y = y + bias.astype(np.float64)
    S = np.abs(xq.reshape(-1, xq.shape[-1])).astype(np.float64) @ np.abs(wq).astype(np.float64).T
    return y.reshape(xq.shape[:-1] + (wq.shape[0],)), S.reshape(xq.shape[:-1] + (wq.shape[0],))


def _pow2_groups(rng, shape, top: float, exps) -> np.ndarray:
    """Random values whose per-group absmax is exactly ``top * 2**k`` (k drawn from ``exps``): s = 2**k."""
    g = shape[:-1] + (shape[-1] // 128,)
    k = rng.choice(exps, size=g)
    x = rng.uniform(-0.99, 0.99, size=g + (128,)) * top * 2.0 ** k[..., None]
    j = rng.integers(0, 128, size=g)
    np.put_along_axis(x, j[..., None], (rng.choice([-1, 1], size=g) * top * 2.0**k)[..., None], axis=-1)
    return x.reshape(shape).astype(np.float32)


@pytest.mark.parametrize("tokens,c_in,c_out", [(9, 256, 24), (169, 384, 16)])
def test_linear_exact_with_power_of_two_scales(tokens, c_in, c_out):
    """Power-of-two scales and small partial sums: every float step is exact, so equality is exact."""
    from fpqvar.hw.datapath import linear_through_datapath

    rng = np.random.default_rng(tokens)
    x = _pow2_groups(rng, (tokens, c_in), 6.0, [-1, 0])
    w = _pow2_groups(rng, (c_out, c_in), 6.0, [-2, -1])
    b = (rng.integers(-3000, 3000, c_out) * 2.0**-5).astype(np.float32)
    y = linear_through_datapath(x, w, b)
    ref, _ = _ref_linear(_ref_fake_quant(x, "rne"), _ref_fake_quant(w, "rne"), b)
    np.testing.assert_array_equal(y.astype(np.float64), ref)


def test_linear_dfq_exact_with_power_of_two_scales():
    from fpqvar.hw.datapath import linear_dfq_through_datapath

    rng = np.random.default_rng(11)
    pos = _pow2_groups(rng, (9, 256), 6.0, [-1, 0])
    neg = _pow2_groups(rng, (9, 256), 1.75, [-3, -2])
    x = np.where(rng.random((9, 256)) < 0.5, np.abs(pos), -np.abs(neg)).astype(np.float32)
    # keep one exact extreme of each sign per group
    x[:, ::128] = 6.0 * 2.0**0
    x[:, 1::128] = -1.75 * 2.0**-2
    w = _pow2_groups(rng, (24, 256), 6.0, [-2, -1])
    y = linear_dfq_through_datapath(x, w)
    ref, _ = _ref_linear(_ref_dfq_fake_quant(x, "rne"), _ref_fake_quant(w, "rne"), None)
    np.testing.assert_array_equal(y.astype(np.float64), ref)


@pytest.mark.parametrize("shape_x,c_out,rounding", [((9, 256), 40, "rne"), ((169, 384), 24, "ties_up"),
                                                    ((2, 9, 384), 8, "rne")])
@pytest.mark.parametrize("dfq", [False, True])
def test_linear_within_documented_rounding(shape_x, c_out, rounding, dfq):
    """General scales: |y - y_ref| within the documented float32 bound.

    y_ref = float64 matmul of the float32 fake-quantized operands. Allowed: the datapath's bound against the
    exact result, (n + 1) u S + u |y| (n = number of partials), plus the reference's own rounding: each
    fake-quantized operand is fl32(value * s) (relative u), so each product is off by <= 2u (2 u S in all),
    and the float64 sum adds < C * 2**-53 * S.
    """
    from fpqvar.hw.datapath import (
        accumulation_error_bound,
        linear_dfq_through_datapath,
        linear_through_datapath,
    )

    rng = np.random.default_rng(sum(shape_x) + dfq)
    c_in = shape_x[-1]
    x = (rng.standard_normal(shape_x) * rng.uniform(0.05, 20, shape_x[:-1] + (1,))).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in)) * 0.05).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    if dfq:
        x = np.where(x < 0, 0.05 * x, x).astype(np.float32)
        y = linear_dfq_through_datapath(x, w, b, rounding=rounding)
        xq, n = _ref_dfq_fake_quant(x, rounding), 2 * c_in // 128
    else:
        y = linear_through_datapath(x, w, b, rounding=rounding)
        xq, n = _ref_fake_quant(x, rounding), c_in // 128
    ref, S = _ref_linear(xq, _ref_fake_quant(w, rounding), b)
    assert y.shape == shape_x[:-1] + (c_out,) and y.dtype == np.float32
    allowed = accumulation_error_bound(S, n, y) + 2 * U * S + c_in * 2.0**-53 * S
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= allowed), float((err / allowed).max())
    assert np.abs(ref).max() > 1.0  # a meaningful layer output, not all zeros


def test_linear_rejects_bad_shapes():
    from fpqvar.hw.datapath import linear_through_datapath

    with pytest.raises(ValueError, match="in_features"):
        linear_through_datapath(np.zeros((2, 256), np.float32), np.zeros((4, 384), np.float32))
    with pytest.raises(ValueError, match="multiple of group_size"):
        linear_through_datapath(np.zeros((2, 200), np.float32), np.zeros((4, 200), np.float32))
    with pytest.raises(ValueError, match="bias"):
        linear_through_datapath(np.zeros((2, 128), np.float32), np.zeros((4, 128), np.float32), np.zeros(3))


@pytest.mark.parametrize("shape_x,c_out", [((169, 384), 24), ((2, 9, 256), 16)])
@pytest.mark.parametrize("dfq", [False, True])
def test_linear_matches_fpqvar_quantized_layer(shape_x, c_out, dfq):
    """The software quantized layer: fpqvar.formats fake_quantize (E2M1, group 128 along in_features) or
    dfq_fake_quantize on both operands, matmul in float64; within the bound of the test above."""
    torch = pytest.importorskip("torch")
    from fpqvar.formats import dfq_fake_quantize, fake_quantize
    from fpqvar.hw.datapath import accumulation_error_bound, linear_dfq_through_datapath, linear_through_datapath

    rng = np.random.default_rng(99 + dfq)
    c_in = shape_x[-1]
    x = (rng.standard_normal(shape_x) * rng.uniform(0.05, 20, shape_x[:-1] + (1,))).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in)) * 0.05).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    wq = fake_quantize(torch.from_numpy(w), "e2m1", group_size=128).numpy()
    if dfq:
        x = np.where(x < 0, 0.05 * x, x).astype(np.float32)
        xq, n = dfq_fake_quantize(torch.from_numpy(x)).numpy(), 2 * c_in // 128
        y = linear_dfq_through_datapath(x, w, b)
    else:
        xq, n = fake_quantize(torch.from_numpy(x), "e2m1", group_size=128).numpy(), c_in // 128
        y = linear_through_datapath(x, w, b)
    ref, S = _ref_linear(xq, wq, b)
    allowed = accumulation_error_bound(S, n, y) + 2 * U * S + c_in * 2.0**-53 * S
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= allowed), float((err / allowed).max())


def test_linear_equals_the_pe_path_in_the_documented_float32_order():
    """linear_through_datapath (integer matmul route) == ROM + adder tree group sums, scaled and summed by a
    scalar loop written here in the documented order: p = fl32(fl32(s_x s_w) * fl32(D / 4)), acc ascending."""
    from fpqvar.hw import datapath as dp

    rng = np.random.default_rng(21)
    x = (rng.standard_normal((5, 384)) * 3).astype(np.float32)
    w = (rng.standard_normal((3, 384)) * 0.1).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    xc, sx = qi.quantize_groups(x)
    wc, sw = qi.quantize_groups(w)
    xd, sn, sp = qi.quantize_groups_dfq(np.where(x < 0, 0.1 * x, x).astype(np.float32))
    f32 = np.float32
    y_ref = np.zeros((5, 3), np.float32)
    yd_ref = np.zeros((5, 3), np.float32)
    for t in range(5):
        for o in range(3):
            acc, accd = f32(0), f32(0)
            for g in range(3):
                sl = slice(128 * g, 128 * (g + 1))
                d = dp.group_dot("fp4", xc[t, sl], wc[o, sl])
                acc = f32(acc + f32(f32(sx[t, g] * sw[o, g]) * f32(d / 4)))
                dn, dpos = dp.group_dot_dfq(xd[t, sl], wc[o, sl])
                accd = f32(accd + f32(f32(sn[t, g] * sw[o, g]) * f32(dn / 8)))
                accd = f32(accd + f32(f32(sp[t, g] * sw[o, g]) * f32(dpos / 8)))
            y_ref[t, o] = f32(acc + b[o])
            yd_ref[t, o] = f32(accd + b[o])
    np.testing.assert_array_equal(dp.linear_through_datapath(x, w, b), y_ref)
    np.testing.assert_array_equal(dp.linear_dfq_through_datapath(np.where(x < 0, 0.1 * x, x), w, b), yd_ref)
