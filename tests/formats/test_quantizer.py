"""EXACT tier: fake_quantize / quantize / dequantize against a reference written here (scale rule of
fpqvar-method.md section 4: s = absmax / grid_max; exhaustive nearest search; x_hat = q * s)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpqvar.formats import FORMATS, QuantizedTensor, dequantize, fake_quantize, get_format, quantize
from fpqvar.formats.blocks import BLOCK_ELEMS
from tests.formats import _reference as ref

SYM = [n for n, f in FORMATS.items() if not (f.kind == "int" and not f.symmetric)]
ASYM = [n for n, f in FORMATS.items() if f.kind == "int" and not f.symmetric]


def _ref_round(t: np.ndarray, name: str, rounding: str) -> np.ndarray:
    f = get_format(name)
    g = ref.float_grid(name) if f.kind == "float" else ref.int_grid(f.qmin, f.qmax)
    return ref.nearest_rne(t, g) if rounding == "rne" else ref.ascending_scan_le(t, g)


def _ref_fake_group(x: torch.Tensor, name: str, g: int, rounding: str) -> torch.Tensor:
    """Per group of g along the last dim, float32 arithmetic as the definition reads."""
    xw = x.reshape(-1, g).float()
    s = xw.abs().amax(-1, keepdim=True) / get_format(name).max_value
    s = torch.where(s == 0, torch.ones_like(s), s)
    t = (xw / s).numpy()
    q = torch.from_numpy(_ref_round(t.ravel(), name, rounding).reshape(t.shape).astype(np.float32))
    return (q * s).reshape(x.shape)


@pytest.mark.parametrize("name", SYM)
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_fake_quantize_per_group_matches_reference(name, rounding):
    x = torch.randn(8, 512, generator=torch.Generator().manual_seed(1)) * 3
    x[0, :128] = 0.0  # an all-zero group
    got = fake_quantize(x, name, group_size=128, rounding=rounding)
    assert torch.equal(got, _ref_fake_group(x, name, 128, rounding))


@pytest.mark.parametrize("name", ["e2m1", "int4", "e4m3"])
def test_multi_block_and_long_rows_match_reference(name):
    x = torch.randn(3 * BLOCK_ELEMS // 128 + 7, 128, generator=torch.Generator().manual_seed(2))
    assert torch.equal(fake_quantize(x, name, group_size=128), _ref_fake_group(x, name, 128, "rne"))
    # per tensor: one row longer than a block (scales first, then blocks of columns)
    flat = x.reshape(-1)
    assert torch.equal(fake_quantize(x, name).reshape(-1), _ref_fake_group(flat, name, flat.numel(), "rne"))


_KWS = [dict(), dict(granularity="channel"), dict(granularity="token"), dict(group_size=32),
        dict(group_size=16, dim=0), dict(power_of_two=True)]
_CASES = [(n, kw) for n in ["e2m1", "e2m3", "int8", "uint4", "e5m2"] for kw in _KWS
          if not (n.startswith("uint") and kw.get("power_of_two"))]  # E8M0 scales: symmetric formats only


@pytest.mark.parametrize("name,kw", _CASES)
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_dequantize_quantize_is_fake_quantize_bit_exact(name, kw, rounding):
    x = torch.randn(48, 64, generator=torch.Generator().manual_seed(3)) * 5
    q = quantize(x, name, rounding=rounding, **kw)
    assert isinstance(q, QuantizedTensor) and q.codes.dtype == torch.uint8 and q.codes.shape == x.shape
    y = fake_quantize(x, name, rounding=rounding, **kw)
    assert torch.equal(dequantize(q).view(torch.int32), y.view(torch.int32))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_preserved_computed_in_float32(dtype):
    x = (torch.randn(4, 256, generator=torch.Generator().manual_seed(4)) * 3).to(dtype)
    y = fake_quantize(x, "e2m1", group_size=128)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.equal(y, _ref_fake_group(x, "e2m1", 128, "rne").to(dtype))
    assert torch.equal(dequantize(quantize(x, "e2m1", group_size=128)), y)


@pytest.mark.parametrize("name", ASYM)
def test_asymmetric_minmax_reference(name):
    f = get_format(name)
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(5)) + 0.7
    mn, mx = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
    s = (mx - mn) / float(f.qmax - f.qmin)
    zp = float(f.qmin) - torch.round(mn / s)
    q = torch.clamp(torch.round(x / s) + zp, f.qmin, f.qmax)
    expect = (q - zp) * s
    assert torch.equal(fake_quantize(x, name, granularity="token"), expect)
    qt = quantize(x, name, granularity="token")
    assert torch.equal(qt.codes, q.to(torch.uint8)) and torch.equal(qt.zero_point, zp)


def test_static_scale():
    x = torch.tensor([[0.3, -1.2, 2.6, 9.0]])
    y = fake_quantize(x, "e2m1", scale=0.5)  # x / 0.5 = 0.6, -2.4, 5.2, 18 -> 0.5, -2, 6, 6 (saturated)
    assert y.tolist() == [[0.25, -1.0, 3.0, 3.0]]
    s = torch.tensor([[0.5], [1.0]])
    y2 = fake_quantize(torch.cat([x, x]), "e2m1", granularity="token", scale=s)
    assert y2[1].tolist() == [0.5, -1.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="does not broadcast"):
        fake_quantize(x, "e2m1", group_size=2, scale=torch.ones(3))
    with pytest.raises(ValueError, match="> 0"):
        fake_quantize(x, "e2m1", scale=0.0)
    with pytest.raises(ValueError, match="zero_point"):
        fake_quantize(x, "uint4", scale=1.0)
    with pytest.raises(ValueError, match="power_of_two"):
        fake_quantize(x, "uint4", power_of_two=True)


def test_nan_inf_policy():
    x = torch.tensor([[1.0, float("inf"), -float("inf"), float("nan"), -3.0, 0.0, 0.0, 0.0]])
    y = fake_quantize(x, "e2m1")  # scale from finite values: 3 / 6
    assert y[0, :3].tolist() == [1.0, 3.0, -3.0] and torch.isnan(y[0, 3]) and y[0, 4].item() == -3.0
    with pytest.raises(ValueError, match="NaN"):
        quantize(x, "e2m1")
    q = quantize(x[:, [0, 1, 2, 4]], "e2m1")
    assert dequantize(q).tolist() == [[1.0, 3.0, -3.0, -3.0]]


def test_empty_and_errors():
    assert fake_quantize(torch.zeros(0, 128), "e2m1", group_size=128).shape == (0, 128)
    with pytest.raises(ValueError, match="float tensor"):
        fake_quantize(torch.ones(4, dtype=torch.int32), "e2m1")
    with pytest.raises(ValueError, match="group_size 128 does not divide"):
        fake_quantize(torch.ones(2, 100), "e2m1", group_size=128)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_cuda_matches_cpu_bit_exact(rounding):
    from fpqvar.formats import dfq_fake_quantize

    x = torch.randn(64, 512, generator=torch.Generator().manual_seed(6)) * 3
    for name in ["e2m1", "e1m2", "e4m3", "int4", "uint4"]:
        for kw in [dict(group_size=128), dict(granularity="token"), dict()]:
            cpu = fake_quantize(x, name, rounding=rounding, **kw)
            gpu = fake_quantize(x.cuda(), name, rounding=rounding, **kw).cpu()
            assert torch.equal(cpu.view(torch.int32), gpu.view(torch.int32)), (name, kw)
            q = quantize(x.cuda(), name, rounding=rounding, **kw)
            assert torch.equal(dequantize(q).cpu().view(torch.int32), cpu.view(torch.int32))
    for variant in ["fp4", "fp6"]:
        cpu = dfq_fake_quantize(x, variant=variant, rounding=rounding)
        gpu = dfq_fake_quantize(x.cuda(), variant=variant, rounding=rounding).cpu()
        assert torch.equal(cpu.view(torch.int32), gpu.view(torch.int32)), variant
