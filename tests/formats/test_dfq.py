"""EXACT tier: DFQ against a reference written from fpqvar-method.md section 6 (exhaustive search on the
negative grid and on the positive grid, separate scales), plus codes, edge groups and representable inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fpqvar.formats import DFQTensor, dfq_dequantize, dfq_fake_quantize, dfq_quantize
from tests.formats import _reference as ref

# (negative grid <= 0, its max magnitude, positive grid >= 0, its max), section 6
NEG_E1M2 = -np.array(ref.SPEC_POS_GRIDS["e1m2"][::-1])
POS_E2M1 = np.array(ref.SPEC_POS_GRIDS["e2m1"], dtype=np.float64)
NEG_INT32 = np.arange(-32, 1, dtype=np.float64)
POS_E2M3 = ref.ml_pos_grid("e2m3")
VARIANTS = {"fp4": (NEG_E1M2, 1.75, POS_E2M1, 6.0), "fp6": (NEG_INT32, 32.0, POS_E2M3, 7.5)}


def _round(t, grid, rounding):
    return ref.nearest_rne(t, grid) if rounding == "rne" else ref.ascending_scan_le(t, grid)


def ref_dfq(x: torch.Tensor, variant: str, group: int | None, rounding: str) -> torch.Tensor:
    neg_g, neg_max, pos_g, pos_max = VARIANTS[variant]
    xw = x.reshape(-1, group if group else x.shape[-1]).float()
    x_neg = torch.where(xw <= 0, xw, 0.0)
    x_pos = torch.where(xw > 0, xw, 0.0)
    s_neg = x_neg.abs().amax(-1, keepdim=True) / neg_max
    s_pos = x_pos.amax(-1, keepdim=True) / pos_max
    s_neg = torch.where(s_neg == 0, 1.0, s_neg)  # empty half: any finite scale, its values are all 0
    s_pos = torch.where(s_pos == 0, 1.0, s_pos)
    q_neg = _round((xw / s_neg).numpy().ravel(), neg_g, rounding).reshape(xw.shape)
    q_pos = _round((xw / s_pos).numpy().ravel(), pos_g, rounding).reshape(xw.shape)
    neg = (xw <= 0).numpy()
    out = np.where(neg, q_neg.astype(np.float32) * s_neg.numpy(), q_pos.astype(np.float32) * s_pos.numpy())
    return torch.from_numpy(out + np.float32(0.0)).reshape(x.shape)


def _gelu(*shape, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.gelu(torch.randn(*shape, generator=g) * scale, approximate="tanh")


@pytest.mark.parametrize("variant,group", [("fp4", 128), ("fp4", 32), ("fp6", None), ("fp6", 128)])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])  # fp4 + rne takes the fused fast path
def test_matches_reference(variant, group, rounding):
    x = _gelu(16, 256, seed=1)
    x[0, :128] = -torch.rand(128, generator=torch.Generator().manual_seed(9)) * 0.1  # no positives
    x[1, :128] = torch.rand(128, generator=torch.Generator().manual_seed(8))  # no negatives
    x[2, :128] = 0.0
    got = dfq_fake_quantize(x, group_size=group, variant=variant, rounding=rounding)
    assert torch.isfinite(got).all()
    assert torch.equal(got.view(torch.int32), ref_dfq(x, variant, group, rounding).view(torch.int32))


def test_default_groups_fp4_128_fp6_per_token():
    x = _gelu(4, 256, seed=2)
    assert torch.equal(dfq_fake_quantize(x), ref_dfq(x, "fp4", 128, "rne"))
    assert torch.equal(dfq_fake_quantize(x, variant="fp6"), ref_dfq(x, "fp6", None, "rne"))


def test_ties_on_both_halves():
    # fp4 with s_neg = 1 (min -1.75) and s_pos = 1 (max 6): exact ties on each grid
    x = torch.tensor([[-1.75, -0.125, -0.375, 0.25, 2.5, 5.0, 6.0, 0.0]])
    assert dfq_fake_quantize(x, group_size=None).tolist() == [[-1.75, 0.0, -0.5, 0.0, 2.0, 4.0, 6.0, 0.0]]
    up = dfq_fake_quantize(x, group_size=None, rounding="ties_up").tolist()
    assert up == [[-1.75, 0.0, -0.25, 0.5, 3.0, 6.0, 6.0, 0.0]]


@pytest.mark.parametrize("variant,group", [("fp4", 128), ("fp6", None), ("fp6", 64)])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_dequantize_quantize_bit_exact_and_codes(variant, group, rounding):
    x = _gelu(8, 256, seed=3)
    x[0, :128] = 0.0
    q = dfq_quantize(x, group_size=group, variant=variant, rounding=rounding)
    assert isinstance(q, DFQTensor) and q.codes.dtype == torch.uint8
    y = dfq_fake_quantize(x, group_size=group, variant=variant, rounding=rounding)
    assert torch.equal(dfq_dequantize(q).view(torch.int32), y.view(torch.int32))
    bits = 4 if variant == "fp4" else 6
    top = 1 << (bits - 1)
    assert int(q.codes.max()) < (1 << bits)
    is_neg_code = (q.codes.int() & top) != 0
    assert torch.equal(is_neg_code, y < 0)  # top bit set exactly for negative results; zero is code 0
    assert (q.codes[y == 0] == 0).all()


def test_fp4_code_table():
    # s_neg = s_pos = 1: the codes spell the grids. Positive half: E2M1 magnitude codes; negative half: 8 | E1M2
    x = torch.tensor([[-1.75, -1.0, -0.25, 0.0, 0.5, 1.0, 4.0, 6.0]])
    q = dfq_quantize(x, group_size=None)
    assert q.codes.tolist() == [[8 | 7, 8 | 4, 8 | 1, 0, 1, 2, 6, 7]]
    assert q.scale_neg.item() == 1.0 and q.scale_pos.item() == 1.0


def test_fp6_code_table():
    x = torch.tensor([[-32.0, -1.0, 0.0, 0.125, 7.5]])
    q = dfq_quantize(x, variant="fp6")
    assert q.codes.tolist() == [[32 | 31, 32 | 0, 0, 1, 31]]


@settings(max_examples=40, deadline=None)
@given(
    variant=st.sampled_from(["fp4", "fp6"]),
    e_neg=st.integers(-10, 10),
    e_pos=st.integers(-10, 10),
    data=st.data(),
)
def test_exact_on_representable_inputs(variant, e_neg, e_pos, data):
    neg_g, _, pos_g, _ = VARIANTS[variant]
    n = 32
    qn = data.draw(st.lists(st.sampled_from(list(neg_g)), min_size=n, max_size=n))
    qp = data.draw(st.lists(st.sampled_from(list(pos_g[1:])), min_size=n, max_size=n))
    qn[0], qp[0] = neg_g[0], pos_g[-1]  # each half reaches its grid max: the scales are 2**e exactly
    x = torch.tensor(qn + qp, dtype=torch.float64)
    x = torch.where(x <= 0, x * 2.0**e_neg, x * 2.0**e_pos).float().reshape(1, -1)
    assert torch.equal(dfq_fake_quantize(x, group_size=None, variant=variant), x)


def test_nan_inf_policy():
    x = torch.tensor([[float("inf"), -float("inf"), float("nan"), 3.0, -0.5, 0.0, 1.0, -1.0]])
    y = dfq_fake_quantize(x, group_size=None)
    s_neg = torch.tensor(1.0) / 1.75  # float32, as computed
    assert y[0, 0].item() == 3.0 and y[0, 1] == -1.75 * s_neg and torch.isnan(y[0, 2])
    with pytest.raises(ValueError, match="NaN"):
        dfq_quantize(x)


def test_errors():
    with pytest.raises(ValueError, match="variant"):
        dfq_fake_quantize(torch.ones(2, 128), variant="fp8")
    with pytest.raises(ValueError, match="group_size 128 does not divide"):
        dfq_fake_quantize(torch.ones(2, 100))
    assert dfq_fake_quantize(torch.ones(0, 128)).shape == (0, 128)
