"""EXACT tier, property based (hypothesis): idempotence, monotonicity, half-step error bound, no NaN from
finite input, dequantize(quantize(x)) == fake_quantize(x)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fpqvar.formats import FORMATS, dequantize, fake_quantize, get_format, quantize, round_to_grid
from tests.formats import _reference as ref

NAMES = list(FORMATS)
ROUNDINGS = ["rne", "ties_up"]
SETTINGS = settings(max_examples=60, deadline=None)

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
arrays = hnp.arrays(np.float32, st.integers(1, 64), elements=finite32)


def _grid(name: str) -> np.ndarray:
    f = get_format(name)
    return ref.float_grid(name) if f.kind == "float" else ref.int_grid(f.qmin, f.qmax)


@SETTINGS
@given(x=arrays, name=st.sampled_from(NAMES), rounding=st.sampled_from(ROUNDINGS))
def test_idempotent_and_on_grid(x, name, rounding):
    q = round_to_grid(torch.from_numpy(x), name, rounding)
    assert torch.equal(round_to_grid(q, name, rounding), q)
    assert np.isin(q.numpy(), _grid(name)).all()


@SETTINGS
@given(x=arrays, name=st.sampled_from(NAMES), rounding=st.sampled_from(ROUNDINGS))
def test_monotone(x, name, rounding):
    xs = np.sort(x)
    q = round_to_grid(torch.from_numpy(xs), name, rounding).numpy()
    assert (np.diff(q) >= 0).all()


@SETTINGS
@given(data=st.data(), name=st.sampled_from(NAMES), rounding=st.sampled_from(ROUNDINGS))
def test_error_at_most_half_the_local_gap(data, name, rounding):
    g = _grid(name)
    x = data.draw(hnp.arrays(np.float32, st.integers(1, 64),
                             elements=st.floats(float(g[0]), float(g[-1]), width=32)))
    q = round_to_grid(torch.from_numpy(x), name, rounding).numpy().astype(np.float64)
    hi = np.clip(np.searchsorted(g, x, side="left"), 1, len(g) - 1)
    gap = g[hi] - g[hi - 1]  # the two grid neighbours around x
    assert (np.abs(q - x) <= gap / 2).all()


@SETTINGS
@given(
    x=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.sampled_from([8, 16, 32])), elements=finite32),
    name=st.sampled_from(NAMES),
    rounding=st.sampled_from(ROUNDINGS),
    group=st.sampled_from([None, 8]),
)
def test_no_nan_from_finite_input_and_quantize_roundtrip(x, name, rounding, group):
    xt = torch.from_numpy(x)
    y = fake_quantize(xt, name, group_size=group, rounding=rounding)
    assert torch.isfinite(y).all()
    z = dequantize(quantize(xt, name, group_size=group, rounding=rounding))
    assert torch.equal(y.view(torch.int32), z.view(torch.int32))


@SETTINGS
@given(x=arrays, name=st.sampled_from([n for n in NAMES if FORMATS[n].kind == "float"]))
def test_fake_quantize_idempotent_with_power_of_two_scales(x, name):
    # With E8M0 scales x / s is exact, so quantizing twice changes nothing.
    xt = torch.from_numpy(x)
    y = fake_quantize(xt, name, power_of_two=True)
    assert torch.equal(fake_quantize(y, name, power_of_two=True), y)
