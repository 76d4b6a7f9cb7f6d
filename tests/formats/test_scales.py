"""EXACT tier: scale granularities, guards and E8M0 scales, against reductions written in the test."""

from __future__ import annotations

import pytest
import torch

from fpqvar.formats import absmax_scale, get_format, minmax_scale_zero_point, resolve_layout


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_tensor_channel_token_group_shapes_and_values():
    x = _x(6, 256)
    a = x.abs()
    assert torch.equal(absmax_scale(x, "e2m1"), (a.max() / 6).reshape(1, 1))
    assert torch.equal(absmax_scale(x, "e2m1", granularity="channel"), a.amax(1, keepdim=True) / 6)
    assert torch.equal(absmax_scale(x, "e2m1", granularity="token"), a.amax(1, keepdim=True) / 6)
    g = absmax_scale(x, "e2m1", group_size=128)
    assert g.shape == (6, 2)
    assert torch.equal(g, a.reshape(6, 2, 128).amax(-1) / 6)
    assert torch.equal(absmax_scale(x, "e2m1", granularity="group"), g)  # default group size 128


def test_channel_reduces_all_dims_but_0_and_token_the_last():
    x = _x(4, 3, 8)
    a = x.abs()
    assert torch.equal(absmax_scale(x, "int4", granularity="channel"),
                       a.reshape(4, -1).amax(1).reshape(4, 1, 1) / 7)
    assert torch.equal(absmax_scale(x, "int4", granularity="token"), a.amax(-1, keepdim=True) / 7)


def test_group_along_another_dim():
    x = _x(256, 5)
    s = absmax_scale(x, "e2m1", group_size=64, dim=0)
    assert s.shape == (4, 5)
    assert torch.equal(s, x.abs().reshape(4, 64, 5).amax(1) / 6)


def test_short_last_group_is_refused_with_shape_dim_and_size():
    with pytest.raises(ValueError) as e:
        absmax_scale(_x(3, 200), "e2m1", group_size=128)
    msg = str(e.value)
    assert "128" in msg and "200" in msg and "(3, 200)" in msg and "dim -1" in msg


@pytest.mark.parametrize("bad", [dict(granularity="row"), dict(group_size=0), dict(group_size=32, granularity="token")])
def test_bad_granularity_arguments(bad):
    with pytest.raises(ValueError):
        resolve_layout((4, 64), **bad)


def test_all_zero_group_gets_scale_one_and_no_nan():
    x = torch.zeros(2, 256)
    x[1, 128:] = torch.linspace(-3, 3, 128)
    s = absmax_scale(x, "e2m1", group_size=128)
    assert s[0].tolist() == [1.0, 1.0] and s[1, 0].item() == 1.0 and s[1, 1].item() == 0.5
    from fpqvar.formats import fake_quantize

    y = fake_quantize(x, "e2m1", group_size=128)
    assert torch.isfinite(y).all() and torch.equal(y[0], torch.zeros(256))


def test_inf_and_nan_are_left_out_of_the_dynamic_scale():
    x = torch.tensor([[1.0, -3.0, float("inf"), 0.5], [float("nan"), 2.0, 1.0, -1.0]])
    s = absmax_scale(x, "e2m1", granularity="token")
    assert torch.equal(s.flatten(), torch.tensor([3.0, 2.0]) / 6)


def test_power_of_two_scales_are_e8m0_and_never_clip():
    x = torch.cat([_x(64, 32) * 10.0 ** torch.arange(-20, 20, 40 / 64).reshape(-1, 1),
                   torch.full((1, 32), 6.0 * 2.0**-3)])  # last row: absmax / max is exactly 2**-3
    s = absmax_scale(x, "e2m1", granularity="token", power_of_two=True)
    m, e = torch.frexp(s)
    assert (m == 0.5).all()  # a power of two
    r = x.abs().amax(1, keepdim=True) / 6
    assert (s >= r).all() and (s < 2 * r).all()  # ceil: 2**ceil(log2 r), no clipping
    assert s[-1].item() == 2.0**-3


def test_power_of_two_range_and_zero():
    x = torch.tensor([[0.0, 0.0], [1e-44, 0.0], [3e38, 1.0]])
    s = absmax_scale(x, "e2m1", granularity="token", power_of_two=True)
    # 3e38 / 6 = 2**125.2 would round up to 2**126, but 6 * 2**126 = 2**128.6 overflows float32: the exponent
    # is capped at 2**125 (6 * 2**125 < FLT_MAX) and the largest inputs saturate instead of dequantizing to Inf.
    assert s.flatten().tolist() == [1.0, 2.0**-127, 2.0**125]
    assert torch.isfinite(6 * s).all()
    assert absmax_scale(x, "e1m2", power_of_two=True).item() == 2.0**127  # 3e38 / 1.75 > 2**127: clamped


def test_minmax_scale_zero_point_for_unsigned_formats():
    x = torch.tensor([[-1.0, 0.0, 2.0, 0.5], [3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    s, zp = minmax_scale_zero_point(x, "uint4", granularity="token")
    # LiteVAR-style: s = (max - min) / 15, zp = -round(min / s); a constant row uses |value| / 15.
    fifth = torch.tensor(3.0) / 15  # float32, as computed
    assert torch.equal(s.flatten(), torch.stack([fifth, fifth, torch.tensor(1.0)]))
    assert zp.flatten().tolist() == [5.0, -15.0, 0.0]
    with pytest.raises(ValueError, match="asymmetric"):
        minmax_scale_zero_point(x, "int4")


def test_scale_uses_format_max():
    x = torch.tensor([[-32.0, 4.0]])
    assert absmax_scale(x, "neg32").item() == 1.0
    assert torch.equal(absmax_scale(x, get_format("e1m2")).flatten(), torch.tensor([32.0]) / 1.75)
