"""EXACT tier: the whole float32 range (issue 16 item 5). Finite in -> finite out, never an Inf / NaN scale,
codes in range, and the error within half a grid step (plus float32 rounding slop) wherever the scale is a
normal float32. Regressions: asymmetric ``uint*`` groups whose ``max - min`` overflows float32 gave all-NaN
(an Inf scale); ``int6`` / ``int8`` / ``uint5`` / ``uint7`` gave Inf at the float32 maximum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fpqvar.formats import (
    DFQ_VARIANTS,
    FORMATS,
    dequantize,
    dfq_fake_quantize,
    dfq_quantize,
    fake_quantize,
    get_format,
    quantize,
)
from tests.formats import _reference as ref

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal, 2**-126
NAMES = list(FORMATS)
ASYM = [n for n, f in FORMATS.items() if f.kind == "int" and not f.symmetric]
# a few float32 roundings (s = amax / max, x / s, q * s), each <= 2**-24 relative, on values <= amax
SLOP = 2.0**-20

# Values that break naive float32 arithmetic: the maximum, max - min overflowing, subnormals.
EXTREMES = [F32_MAX, -F32_MAX, 2e38, -2e38, 1.7e38, -1.7e38, F32_TINY, -F32_TINY, 1e-45, -1e-45, 0.0, 1.0]
wide32 = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.sampled_from(EXTREMES))


def _grid(name: str) -> np.ndarray:
    f = get_format(name)
    return ref.float_grid(name) if f.kind == "float" else ref.int_grid(f.qmin, f.qmax)


def _check_error(x: np.ndarray, y: np.ndarray, s: np.ndarray, name: str) -> None:
    """|y - x| <= half the local grid gap times s (+ slop), per row of (rows, n) arrays with per-row s."""
    f = get_format(name)
    x64, y64, s64 = x.astype(np.float64), y.astype(np.float64), s.astype(np.float64)
    amax = np.abs(x64).max(axis=-1, keepdims=True)
    if f.kind == "int" and not f.symmetric:
        half = 0.5 * s64  # one uniform step
    else:
        g = _grid(name)
        t = np.clip(x64 / s64, g[0], g[-1])
        hi = np.clip(np.searchsorted(g, t, side="left"), 1, len(g) - 1)
        half = 0.5 * (g[hi] - g[hi - 1]) * s64
        half = half + np.abs(x64 - t * s64)  # saturation: x / s beyond the grid by float32 rounding of s
    ok_rows = (s64 >= F32_TINY).ravel()  # "where representable": a subnormal scale is itself inexact
    bound = half + SLOP * amax
    bad = (np.abs(y64 - x64) > bound) & ok_rows[:, None]
    assert not bad.any(), (name, x[bad], y[bad], np.broadcast_to(s64, x.shape)[bad])


@pytest.mark.parametrize("name", ASYM)
def test_asymmetric_range_overflowing_float32_is_finite(name):
    x = torch.tensor([[2e38, -2e38, 1.0, 0.0], [F32_MAX, -F32_MAX, 0.0, 5.0]])
    q = quantize(x, name, granularity="token")
    assert torch.isfinite(q.scale).all() and (q.scale > 0).all()
    assert torch.isfinite(q.zero_point).all()
    y = fake_quantize(x, name, granularity="token")
    assert torch.isfinite(y).all()
    assert torch.equal(dequantize(q), y)
    _check_error(x.numpy(), y.numpy(), q.scale.numpy(), name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kw", [dict(), dict(group_size=4), dict(power_of_two=True)])
def test_float32_max_gives_no_inf(name, kw):
    if kw.get("power_of_two") and name in ASYM:
        pytest.skip("E8M0 scales are for symmetric formats")
    x = torch.tensor([F32_MAX, -F32_MAX, 1.0, 3e38, -F32_MAX, 1.0, 0.0, F32_MAX])
    y = fake_quantize(x, name, **kw)
    assert torch.isfinite(y).all(), y
    q = quantize(x, name, **kw)
    assert torch.isfinite(q.scale).all()
    assert torch.equal(dequantize(q), y)


def test_quantize_never_stores_an_inf_scale():
    # every amax within a few ulps below the float32 maximum, every format
    top = np.nextafter(np.float32(F32_MAX), np.float32(0), dtype=np.float32)
    for v in [F32_MAX, float(top), float(np.nextafter(top, np.float32(0)))]:
        x = torch.tensor([v, -v, 0.5 * v, 0.0])
        for name in NAMES:
            q = quantize(x, name)
            assert torch.isfinite(q.scale).all(), (name, v)
            assert torch.isfinite(dequantize(q)).all(), (name, v)


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.sampled_from([4, 8])), elements=wide32),
    name=st.sampled_from(NAMES),
    granularity=st.sampled_from(["tensor", "token", "group"]),
)
def test_whole_float32_range_finite_codes_in_range_error_bounded(x, name, granularity):
    f = get_format(name)
    xt = torch.from_numpy(x)
    kw = dict(granularity=granularity, group_size=4 if granularity == "group" else None)
    q = quantize(xt, name, **kw)
    y = fake_quantize(xt, name, **kw)
    assert torch.isfinite(y).all()
    assert torch.isfinite(q.scale).all() and (q.scale > 0).all()
    assert torch.equal(dequantize(q), y)
    assert int(q.codes.max()) < (1 << f.bits)
    if q.zero_point is not None:
        assert torch.isfinite(q.zero_point).all()
        assert int(q.codes.min()) >= f.qmin and int(q.codes.max()) <= f.qmax
    layout = q.layout
    xw = layout.to_work(xt).numpy()
    _check_error(xw, layout.to_work(y).numpy(), layout.scale_to_work(q.scale).numpy(), name)


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.just(128)), elements=wide32),
       variant=st.sampled_from(list(DFQ_VARIANTS)))
def test_dfq_whole_float32_range_is_finite(x, variant):
    xt = torch.from_numpy(x)
    y = dfq_fake_quantize(xt, variant=variant, group_size=128)
    assert torch.isfinite(y).all()
    q = dfq_quantize(xt, variant=variant, group_size=128)
    assert torch.isfinite(q.scale_neg).all() and torch.isfinite(q.scale_pos).all()


F16_MAX = 65504.0
wide16 = st.one_of(st.floats(-F16_MAX, F16_MAX, width=16), st.sampled_from([F16_MAX, -F16_MAX, 6e-8, 0.0]))


@settings(max_examples=100, deadline=None)
@given(x=hnp.arrays(np.float16, st.tuples(st.integers(1, 3), st.just(8)), elements=wide16),
       name=st.sampled_from(NAMES), group=st.sampled_from([None, 4]))
def test_float16_range_stays_finite(x, name, group):
    # values are computed in float32 and cast: a grid point above the float16 maximum saturates there
    xt = torch.from_numpy(x)
    y = fake_quantize(xt, name, group_size=group)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    assert torch.equal(dequantize(quantize(xt, name, group_size=group)), y)
