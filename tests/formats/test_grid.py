"""EXACT tier: rounding and codes against ml_dtypes and against exhaustive searches written from the grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpqvar.formats import FORMATS, decode, encode, get_format, grid_step, round_to_grid
from fpqvar.formats.blocks import BLOCK_ELEMS
from tests.formats import _reference as ref

ML_NAMES = ["e2m1", "e2m3", "e3m2", "e4m3", "e5m2"]
FLOAT_NAMES = ["e2m1", "e1m2", "e3m0", "e2m3", "e3m2", "e4m3", "e5m2"]
INT_NAMES = [n for n, f in FORMATS.items() if f.kind == "int"]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _bits_equal(a: torch.Tensor, b: np.ndarray) -> bool:
    """Bit-for-bit float32 equality (distinguishes -0 and +0)."""
    return np.array_equal(a.numpy().view(np.int32), np.asarray(b, dtype=np.float32).view(np.int32))


def _ml_domain(name: str, x: np.ndarray) -> np.ndarray:
    """Inputs on which ml_dtypes saturates like we do (e4m3 / e5m2 give NaN / Inf beyond a limit)."""
    x = x[np.isfinite(x)]
    lim = ref.ML_FINITE_LIMIT.get(name)
    return x if lim is None else x[np.abs(x) <= lim]


# ---- spec grids ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_grid_matches_reference_grid(name):
    assert np.array_equal(get_format(name).positive_grid, ref.pos_grid(name))
    assert get_format(name).max_value == ref.pos_grid(name)[-1]


# ---- ml_dtypes: every code, every midpoint, dense sweeps ------------------------------------------------
@pytest.mark.parametrize("name", ML_NAMES)
def test_decode_all_codes_matches_ml_dtypes(name):
    bits = ref.ML_BITS[name]
    codes = np.arange(1 << bits, dtype=np.uint8)
    expect = codes.view(ref.ML_DTYPES[name]).astype(np.float32)
    got = decode(torch.from_numpy(codes), name).numpy()
    nan = np.isnan(expect)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.int32), expect[~nan].view(np.int32))


@pytest.mark.parametrize("name", ML_NAMES)
def test_encode_every_finite_value_roundtrips(name):
    bits = ref.ML_BITS[name]
    codes = np.arange(1 << bits, dtype=np.uint8)
    vals = codes.view(ref.ML_DTYPES[name]).astype(np.float32)
    fin = np.isfinite(vals)
    got = encode(_t(vals[fin]), name).numpy()
    assert np.array_equal(got, codes[fin])


@pytest.mark.parametrize("name", ML_NAMES)
def test_midpoints_rne_match_ml_dtypes(name):
    g = ref.float_grid(name)
    x = _ml_domain(name, ref.midpoints(g))
    vals, codes = ref.ml_cast(x, name)
    assert _bits_equal(round_to_grid(_t(x), name), vals)
    assert np.array_equal(encode(_t(x), name).numpy(), codes)


@pytest.mark.parametrize("name", ML_NAMES)
def test_dense_sweep_matches_ml_dtypes(name):
    f = get_format(name)
    x = ref.sweep(1 - f.bias, f.mbits, f.max_value, 200_000, seed=ML_NAMES.index(name))
    # also values just around every grid point and midpoint (nextafter on both sides)
    g = ref.midpoints(ref.float_grid(name))
    near = np.concatenate([np.nextafter(g, np.float32(np.inf)), np.nextafter(g, np.float32(-np.inf))])
    x = _ml_domain(name, np.concatenate([x, near.astype(np.float32)]))
    vals, codes = ref.ml_cast(x, name)
    assert _bits_equal(round_to_grid(_t(x), name), vals)
    assert np.array_equal(encode(_t(x), name).numpy(), codes)


@pytest.mark.parametrize("name", ["e4m3", "e5m2"])
def test_saturation_where_ml_dtypes_overflows(name):
    mx = get_format(name).max_value
    x = np.array([mx, mx * 1.07, mx * 1.2, 1e6, 3e38, np.inf], dtype=np.float32)
    x = np.concatenate([x, -x])
    expect = np.sign(x) * mx
    assert np.array_equal(round_to_grid(_t(x), name).numpy(), expect)
    assert np.array_equal(decode(encode(_t(x), name), name).numpy(), expect)


# ---- formats without an ml_dtypes type, and ties_up, against exhaustive searches ---------------------------
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_rne_matches_exhaustive_search(name):
    f = get_format(name)
    g = ref.float_grid(name)
    x = np.concatenate([ref.sweep(1 - f.bias, f.mbits, f.max_value, 20_000, seed=1), ref.midpoints(g),
                        g.astype(np.float32)])
    got = round_to_grid(_t(x), name).numpy()
    assert np.array_equal(got, ref.nearest_rne_float(x, name))
    # codes: sign bit from the input's sign (negative zero included), magnitude = index in the positive grid
    mag = np.searchsorted(ref.pos_grid(name), np.abs(ref.nearest_rne_float(x, name)))
    expect_codes = (np.signbit(x).astype(np.int64) << (f.bits - 1)) | mag
    assert np.array_equal(encode(_t(x), name).numpy(), expect_codes)


@pytest.mark.parametrize("name", FLOAT_NAMES + INT_NAMES)
def test_ties_up_matches_ascending_scan(name):
    f = get_format(name)
    g = ref.float_grid(name) if f.kind == "float" else ref.int_grid(f.qmin, f.qmax)
    if f.kind == "float":
        x = ref.sweep(1 - f.bias, f.mbits, f.max_value, 20_000, seed=2)
    else:
        x = np.random.default_rng(2).uniform(f.qmin - 3, f.qmax + 3, 20_000).astype(np.float32)
    x = np.concatenate([x, ref.midpoints(g), g.astype(np.float32)])
    got = round_to_grid(_t(x), name, rounding="ties_up").numpy()
    assert np.array_equal(got, ref.ascending_scan_le(x, g))


@pytest.mark.parametrize("name", INT_NAMES)
def test_int_rne_matches_exhaustive_search(name):
    f = get_format(name)
    g = ref.int_grid(f.qmin, f.qmax)
    x = np.random.default_rng(3).uniform(f.qmin - 3, f.qmax + 3, 20_000).astype(np.float32)
    x = np.concatenate([x, ref.midpoints(g), g.astype(np.float32)])
    q = ref.nearest_rne_int(x, f.qmin, f.qmax)
    assert _bits_equal(round_to_grid(_t(x), name), q + 0.0)  # one zero: +0
    codes = encode(_t(x), name).numpy().astype(np.int64)
    expect = q.astype(np.int64) % (1 << f.bits)  # two's complement (uint: the value itself)
    assert np.array_equal(codes, expect)
    assert np.array_equal(decode(torch.from_numpy(codes.astype(np.uint8)), name).numpy(), q)


def test_tie_rules_on_e2m1_examples():
    # fpqvar-method.md section 4: 0.25 -> 0.5, 2.5 -> 3, 5 -> 6 upstream; 0, 2, 4 under RNE.
    x = torch.tensor([0.25, 2.5, 5.0, -0.25, -2.5, -5.0])
    assert round_to_grid(x, "e2m1").tolist() == [0.0, 2.0, 4.0, -0.0, -2.0, -4.0]
    assert round_to_grid(x, "e2m1", rounding="ties_up").tolist() == [0.5, 3.0, 6.0, 0.0, -2.0, -4.0]


# ---- NaN / Inf policy, dtypes, blocks -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["e2m1", "e1m2", "e4m3", "e5m2", "int4", "uint4", "neg32"])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_nan_inf_policy(name, rounding):
    f = get_format(name)
    x = torch.tensor([float("inf"), float("-inf"), float("nan"), 1.0])
    q = round_to_grid(x, name, rounding)
    lo, hi = (-f.max_value, f.max_value) if f.kind == "float" else (f.qmin, f.qmax)
    assert q[0].item() == hi and q[1].item() == lo
    assert torch.isnan(q[2])
    with pytest.raises(ValueError, match="NaN"):
        encode(x, name, rounding)
    codes = encode(x[[0, 1, 3]], name, rounding)
    assert decode(codes, name).tolist() == [hi, lo, q[3].item()]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype_in_float32_out(dtype):
    x = torch.linspace(-8, 8, 257, dtype=dtype)
    q = round_to_grid(x, "e2m1")
    assert q.dtype == torch.float32
    assert torch.equal(q, round_to_grid(x.float(), "e2m1"))


def test_blocked_path_equals_reference():
    n = 3 * BLOCK_ELEMS + 5  # several blocks and a ragged last one
    x = ref.sweep(0, 1, 6.0, n, seed=7)
    assert np.array_equal(round_to_grid(_t(x), "e2m1").numpy(), ref.nearest_rne_float(x, "e2m1"))


def test_grid_step_is_spacing_of_the_binade():
    x = torch.tensor([0.1, 0.75, 1.0, 1.9, 2.0, 3.9, 4.0, 5.0, 100.0])
    assert grid_step(x, "e2m1").tolist() == [0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert grid_step(x, "int4").tolist() == [1.0] * 9


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="rounding"):
        round_to_grid(torch.zeros(2), "e2m1", rounding="nearest")
    with pytest.raises(ValueError, match="unknown number format"):
        round_to_grid(torch.zeros(2), "e9m9")
    with pytest.raises(ValueError, match="0..15"):
        decode(torch.tensor([16]), "e2m1")
    with pytest.raises(ValueError, match="integer"):
        decode(torch.tensor([1.0]), "e2m1")
