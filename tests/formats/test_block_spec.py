"""EXACT tier: MX / NVFP4 against references written here from the definitions (OCP MX v1.0 section 6.3;
NVIDIA's two-level NVFP4 scaling), needing no torchao: the spec's floor rule in float64, the regions where we
deviate from torchao on purpose, the whole float32 range (issue 16 item 5), bits per value, packing, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fpqvar.formats.block_formats import BLOCK_FORMATS, MX_SCALE_RULES, bits_per_value, get_block_format
from fpqvar.formats.block_quantizer import (
    block_scale_values,
    dequantize_codes,
    pack_block,
    quantize_codes,
    quantize_dequantize,
    unpack_block,
)
from tests.formats import _reference as ref

MX = [n for n, f in BLOCK_FORMATS.items() if f.scale_kind == "e8m0"]
F32_MAX = float(np.finfo(np.float32).max)
EMAX = {"mxfp4": 2, "mxfp6_e2m3": 2, "mxfp6_e3m2": 4, "mxfp8_e4m3": 8}  # OCP MX v1.0 table 1 (emax_elem)


def _ref_mx_floor(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(dequantized values, biased E8M0 scale bytes) per 32-block of the last dim, float64, from the spec:
    X = 2**(floor(log2(amax)) - emax_elem) clamped to E8M0's 2**-127 .., P = nearest-even(clamp(x / X))."""
    g = ref.float_grid(BLOCK_FORMATS[name].element.name)
    xb = x.astype(np.float64).reshape(-1, 32)
    out, scales = np.empty_like(xb), []
    for i, row in enumerate(xb):
        amax = np.abs(row).max()
        e = (math.frexp(amax)[1] - 1 if amax > 0 else -127) - EMAX[name]  # frexp: amax = m * 2**(e+1)
        e = max(e, -127)
        t = np.clip(row / 2.0**e, g[0], g[-1])
        out[i] = ref.nearest_rne(t, g) * 2.0**e
        scales.append(e + 127)
    return out.reshape(x.shape), np.array(scales, dtype=np.uint8).reshape(*x.shape[:-1], -1)


@pytest.mark.parametrize("name", MX)
def test_mx_floor_rule_matches_the_spec_reference(name):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 64, generator=g) * torch.exp2(torch.randint(-140, 120, (40, 1), generator=g).float())
    x[0] = 0.0  # all-zero blocks: scale code 0 (2**-127), values 0
    x[1, :32] = 2.0**-149  # the smallest subnormal: scale 2**-127, x / X = 2**-22 rounds to 0
    want, want_scales = _ref_mx_floor(x.numpy(), name)
    q = quantize_codes(x, name)
    assert np.array_equal(q.scales.numpy(), want_scales)
    assert np.array_equal(dequantize_codes(q).numpy().astype(np.float64), want)


@pytest.mark.parametrize("name", MX)
def test_mx_tiny_blocks_use_the_e8m0_scale_2_to_minus_127(name):
    # torchao divides such blocks by 2**-126 (its float32 minimum-normal clamp) while storing 2**-127; we
    # follow the spec: codes and stored scale agree, x_hat = P * 2**-127
    x = torch.full((1, 32), 2.0**-128) * torch.linspace(-1, 1, 32)
    q = quantize_codes(x, name)
    assert int(q.scales.max()) == 0
    want, _ = _ref_mx_floor(x.numpy(), name)
    assert np.array_equal(dequantize_codes(q).numpy().astype(np.float64), want)


def test_rceil_is_an_exact_ceiling():
    # amax / 6 = 2**k * (1 + 2**-23): the smallest power of two that does not saturate is 2**(k+1)
    r = np.float32(2.0**3 * (1 + 2.0**-23))
    x = torch.zeros(1, 32)
    x[0, 0] = float(np.float32(r * np.float32(6.0)))
    q = quantize_codes(x, "mxfp4", scale_rule="rceil")
    ratio = np.float32(x[0, 0].item()) / np.float32(6.0)  # the float32 ratio the rule uses
    m, e = math.frexp(float(ratio))
    assert int(q.scales[0, 0]) - 127 == (e - 1 if m == 0.5 else e)
    assert float(dequantize_codes(q).abs().max()) >= float(x.abs().max()) * (1 - 2.0**-20)  # no saturation


@pytest.mark.parametrize("name", MX)
@pytest.mark.parametrize("rule", MX_SCALE_RULES)
def test_mx_scale_never_overflows_near_float32_max(name, rule):
    x = torch.tensor([[F32_MAX, -F32_MAX, 1.5e38, 1.0] * 8])
    q = quantize_codes(x, name, scale_rule=rule)
    assert int(q.scales.max()) - 127 <= 127 - EMAX[name]
    y = dequantize_codes(q)
    assert torch.isfinite(y).all() and torch.equal(quantize_dequantize(x, name, scale_rule=rule), y)
    assert float(y.max()) >= 0.5 * F32_MAX  # saturates near the top, not to 0


@pytest.mark.parametrize("x", [torch.zeros(4, 32), torch.full((4, 32), 1e-38), torch.full((4, 32), 1e-45)])
def test_nvfp4_zero_and_tiny_tensors_are_finite(x):
    # torchao: tensor scale 0 -> NaN block scales; 1e-38 / 2688 -> 1 / scale = Inf
    q = quantize_codes(x, "nvfp4")
    assert float(q.tensor_scale) >= 2.0**-120
    y = dequantize_codes(q)
    assert torch.isfinite(y).all()
    assert torch.equal(y, quantize_dequantize(x, "nvfp4"))
    assert float((y - x).abs().max()) <= float(x.abs().max())


def test_nvfp4_near_zero_tensor_keeps_its_shape():
    # torchao here: 1 / (amax / 2688) = Inf, every element saturates and zeros come out as -amax / 4
    x = torch.zeros(1, 16)
    x[0, :3] = torch.tensor([1e-36, 0.5e-36, 0.2e-36])
    y = quantize_dequantize(x, "nvfp4")
    assert torch.equal(y[0, 3:], torch.zeros(13))
    # E2M1's largest gap is 2 (4 .. 6) in units of S ~ amax / 6: error <= amax / 6, E4M3 rounding of S aside
    assert float((y - x).abs().max()) <= 1e-36 / 6 * (1 + 1 / 16)


def test_nvfp4_two_level_scale_reference():
    # NVIDIA's definition written out in float64 except where float32 rounding is part of it
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(6)) * 3
    q = quantize_codes(x, "nvfp4")
    ts = np.float32(np.float32(np.abs(x.numpy()).max()) / np.float32(2688.0))
    assert q.tensor_scale.item() == ts
    amax_b = np.abs(x.numpy()).reshape(8, 4, 16).max(-1)
    sb_ref, _ = ref.ml_cast(np.clip(amax_b.astype(np.float32) / np.float32(6) / ts, 2.0**-6, 448), "e4m3")
    got = block_scale_values(q).numpy() / ts
    assert np.allclose(got, sb_ref, rtol=2.0**-22, atol=0)  # ts * sb rounds once in float32


_CASES = [(n, r) for n in MX for r in MX_SCALE_RULES] + [("nvfp4", "floor")]
wide32 = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32),
                   st.sampled_from([F32_MAX, -F32_MAX, 2e38, -2e38, 2.0**-126, 1e-45, -1e-45, 0.0, 1.0]))


@settings(max_examples=200, deadline=None)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.sampled_from([32, 64])), elements=wide32),
       case=st.sampled_from(_CASES))
def test_whole_float32_range_finite_valid_codes_error_bounded(x, case):
    name, rule = case
    fmt = get_block_format(name)
    xt = torch.from_numpy(x)
    q = quantize_codes(xt, name, scale_rule=rule)
    y = quantize_dequantize(xt, name, scale_rule=rule)
    assert torch.isfinite(y).all()
    assert torch.equal(dequantize_codes(q), y)
    s = block_scale_values(q)  # raises on a NaN scale code
    assert torch.isfinite(s).all() and (s > 0).all()
    if name == "mxfp8_e4m3":
        assert not ((q.codes & 0x7F) == 0x7F).any()  # never the E4M3 NaN code
    # |x_hat - x| <= half the local grid gap * S + saturation beyond the grid + float32 rounding slop
    g = ref.float_grid(fmt.element.name)
    xw = x.astype(np.float64).reshape(-1, fmt.block_size)
    sw = s.numpy().astype(np.float64).reshape(-1, 1)  # one scale per block row
    t = np.clip(xw / sw, g[0], g[-1])
    hi = np.clip(np.searchsorted(g, t, side="left"), 1, len(g) - 1)
    bound = 0.5 * (g[hi] - g[hi - 1]) * sw + np.abs(xw - t * sw)
    slop = 2.0**-20 * np.abs(xw).max(axis=-1, keepdims=True)  # NVFP4's reciprocal: three float32 roundings
    err = np.abs(y.numpy().astype(np.float64).reshape(xw.shape) - xw)
    assert (err <= bound + slop).all()


@pytest.mark.parametrize("name", list(BLOCK_FORMATS))
def test_pack_unpack_round_trip_is_exact(name):
    x = torch.randn(6, 96, generator=torch.Generator().manual_seed(7))
    q = quantize_codes(x, name)
    packed = pack_block(q)
    bits = BLOCK_FORMATS[name].element_bits
    assert packed["codes"].shape == (6, 96 * bits // 8) and packed["codes"].dtype == torch.uint8
    back = unpack_block(packed, name, x.shape)
    assert torch.equal(back.codes, q.codes) and torch.equal(back.scales, q.scales)
    assert torch.equal(dequantize_codes(back), dequantize_codes(q))
    stored_bits = sum(t.numel() * t.element_size() * 8 for t in packed.values())
    assert stored_bits / x.numel() == bits_per_value(name, numel=x.numel())


def test_bits_per_value():
    assert bits_per_value("mxfp4") == 4.25 and bits_per_value("mxfp8_e4m3") == 8.25
    assert bits_per_value("mxfp6_e2m3") == bits_per_value("mxfp6_e3m2") == 6.25
    assert bits_per_value("nvfp4") == 4.5 and bits_per_value("nvfp4", numel=1024) == 4.5 + 32 / 1024
    assert bits_per_value("e2m1", group_size=128) == 4.25  # FPQVAR's FP4: a float32 scale per 128
    assert bits_per_value("uint4", group_size=128) == 4.5  # + a float32 zero point


def test_errors_name_the_problem():
    x = torch.randn(2, 48)
    with pytest.raises(ValueError, match="group_size 32 does not divide size 48"):
        quantize_codes(x, "mxfp4")
    with pytest.raises(ValueError, match="unknown block format 'mxfp5'"):
        quantize_codes(torch.randn(2, 32), "mxfp5")
    with pytest.raises(ValueError, match="scale_rule must be one of"):
        quantize_codes(torch.randn(2, 32), "mxfp4", scale_rule="round")
    with pytest.raises(ValueError, match="MX formats only"):
        quantize_codes(torch.randn(2, 32), "nvfp4", scale_rule="ceil")
    with pytest.raises(ValueError, match="tensor_scale= is for nvfp4"):
        quantize_codes(torch.randn(2, 32), "mxfp4", tensor_scale=1.0)
    with pytest.raises(ValueError, match="tensor_scale must be one float32"):
        quantize_codes(torch.randn(2, 32), "nvfp4", tensor_scale=0.0)
    with pytest.raises(ValueError, match="contains NaN"):
        quantize_codes(torch.full((1, 32), float("nan")), "mxfp8_e4m3")
    with pytest.raises(ValueError, match="float tensor"):
        quantize_codes(torch.ones(1, 32, dtype=torch.int32), "mxfp4")
    q = quantize_codes(torch.randn(2, 32), "mxfp4")
    with pytest.raises(ValueError, match="'scales' has shape"):
        unpack_block({"codes": pack_block(q)["codes"], "scales": torch.zeros(2, 2, dtype=torch.uint8)}, "mxfp4",
                     (2, 32))
    with pytest.raises(ValueError, match="missing tensor 'tensor_scale'"):
        unpack_block(pack_block(q), "nvfp4", (2, 32))


def test_non_finite_policy():
    x = torch.randn(1, 32, generator=torch.Generator().manual_seed(8))
    x[0, 3], x[0, 4], x[0, 5] = float("inf"), float("-inf"), float("nan")
    for name in BLOCK_FORMATS:
        y = quantize_dequantize(x, name)
        fin = torch.isfinite(x)
        assert torch.isnan(y[~torch.isfinite(x) & torch.isnan(x)]).all()
        # Inf saturates to +-elem_max * the block's scale; that scale comes from the finite values
        s = block_scale_values(quantize_codes(x.nan_to_num(0.0, 0.0, 0.0), name))[0, 0]
        top = float(BLOCK_FORMATS[name].element.max_value * s)  # in float32, as dequantization computes it
        assert float(y[0, 3]) == top and float(y[0, 4]) == -top
        assert float((y[fin] - x[fin]).abs().max()) < 0.5 * float(x[fin].abs().max())


@pytest.mark.parametrize("case", _CASES)
def test_float16_input_at_its_maximum_stays_finite(case):
    # ceil-like rules and NVFP4's rounded block scale may put a grid point above 65504: it saturates there
    name, rule = case
    x = torch.tensor([[65504.0, -65504.0, 1.0, 0.0] * 8], dtype=torch.float16)
    y = quantize_dequantize(x, name, scale_rule=rule)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    assert torch.equal(dequantize_codes(quantize_codes(x, name, scale_rule=rule)), y)
