"""Block DFQ (E1M2 negatives / E2M1 positives, MXFP4 / NVFP4 block scales): exact tier, against a brute-force
reference written here from the definition (fpqvar/formats/block_dfq.py docstring), element by element."""

import math

import numpy as np
import pytest
import torch

from fpqvar.formats.block_dfq import block_dfq_fake_quantize

F32 = np.float32
# magnitudes in code order (a minifloat's code order is its magnitude order): E1M2 = 1 exponent bit (bias 0:
# subnormals 0.m, normals 1.m), 2 mantissa bits; E2M1 = OCP FP4; E4M3 (fn, bias 7): every finite magnitude
E1M2 = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
E4M3 = [m / 8 * 2.0**-6 for m in range(8)] + [(1 + m / 8) * 2.0**(e - 7) for e in range(1, 16) for m in range(8)]
E4M3 = E4M3[:-1]  # S.1111.111 is NaN: max 448


def rne_index(a: float, grid: list[float]) -> int:
    """Index of the grid magnitude nearest to ``a >= 0`` (brute force), ties to the even index (= even code),
    saturating at the top."""
    best = min(range(len(grid)), key=lambda i: (abs(grid[i] - a), i % 2))
    return best


def rne(t: float, grid: list[float]) -> float:
    v = grid[rne_index(abs(t), grid)]
    return -v if t < 0 else v


def mx_exp(amax: float, emax: int) -> int:
    if amax == 0 or amax < 2.0**-126:  # zero / float32 subnormal: E8M0's smallest scale after the clamp
        return -127
    _, e = math.frexp(amax)  # amax = m 2**e, m in [0.5, 1): floor(log2 amax) = e - 1
    return max(-127, min(e - 1 - emax, 127 - emax))


def ref_mx(x: np.ndarray, block: int = 32) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    for r in range(x.shape[0]):
        for b0 in range(0, x.shape[1], block):
            blk = x[r, b0:b0 + block].astype(np.float64)
            a_neg = max([-v for v in blk if v <= 0], default=0.0)
            a_pos = max([v for v in blk if v > 0], default=0.0)
            X_neg, X_pos = 2.0**mx_exp(a_neg, 0), 2.0**mx_exp(a_pos, 2)  # emax: E1M2 0 (1.75), E2M1 2 (6)
            for j, v in enumerate(blk):
                out[r, b0 + j] = (rne(v / X_neg, E1M2) * X_neg if v <= 0 else rne(v / X_pos, E2M1) * X_pos) + 0.0
    return out.astype(F32)


def e4m3_rne(v: F32) -> F32:
    return F32(E4M3[rne_index(float(v), E4M3)])


def ref_nv(x: np.ndarray, block: int = 16) -> np.ndarray:
    x = x.astype(F32)
    a_neg_t, a_pos_t = F32(max(0.0, -float(x.min()))), F32(max(0.0, float(x.max())))
    ts_neg = F32(min(max(a_neg_t / F32(448 * 1.75), F32(2.0**-120)), F32(2.0**116)))
    ts_pos = F32(min(max(a_pos_t / F32(448 * 6), F32(2.0**-120)), F32(2.0**116)))
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        for b0 in range(0, x.shape[1], block):
            blk = x[r, b0:b0 + block]
            sides = {}
            for neg, mx, ts, grid in ((True, F32(1.75), ts_neg, E1M2), (False, F32(6.0), ts_pos, E2M1)):
                vals = [abs(v) for v in blk if (v <= 0) == neg]
                a = F32(max(vals, default=F32(0.0)))
                sb = e4m3_rne(F32(min(max(F32(F32(a / mx) / ts), F32(2.0**-6)), F32(448.0))))
                sides[neg] = (F32(F32(F32(1.0) / ts) / sb), F32(ts * sb), grid)
            for j, v in enumerate(blk):
                inv, s, grid = sides[bool(v <= 0)]
                q = F32(v * inv)
                out[r, b0 + j] = F32(F32(rne(float(q), grid)) * s) + F32(0.0)
    return out


def _inputs():
    gen = torch.Generator().manual_seed(0)
    h = torch.nn.functional.gelu(torch.randn(6, 64, generator=gen) * 3.0, approximate="tanh")  # an fc2 input
    wide = torch.randn(4, 64, generator=gen) * torch.logspace(-3, 3, 64)  # blocks of very different ranges
    special = torch.zeros(4, 64)
    special[0] = torch.linspace(0, 5, 64)  # all positive (no negative side)
    special[1] = -torch.linspace(0, 2, 64)  # all non-positive
    # every grid point and midpoint (ties) plus one value above the top, at scale 2**-3 (E2M1) / 2**-1 (E1M2)
    special[2, :16] = torch.tensor(E2M1 + [(a + b) / 2 for a, b in zip(E2M1, E2M1[1:])] + [6.5]) * 2.0**-3
    special[2, 16:32] = -torch.tensor(E1M2 + [(a + b) / 2 for a, b in zip(E1M2, E1M2[1:])] + [1.9]) * 0.5
    special[2, 32:48] = torch.tensor([6.0, 7.0, 7.9, -1.75, -1.9, 1e-40, -1e-40, 0.0, -0.0, 3, 3.5, 5, -0.125,
                                      -0.375, 0.25, 0.75]) * 2.0**5
    return [h, wide, special]


@pytest.mark.parametrize("case", range(3))
def test_mxfp4_dfq_matches_brute_force(case):
    x = _inputs()[case]
    got = block_dfq_fake_quantize(x, "mxfp4")
    want = torch.from_numpy(ref_mx(x.numpy()))
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))  # bit for bit, +0 for zeros


@pytest.mark.parametrize("case", range(3))
def test_nvfp4_dfq_matches_brute_force(case):
    x = _inputs()[case]
    got = block_dfq_fake_quantize(x, "nvfp4")
    want = torch.from_numpy(ref_nv(x.numpy()))
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


def test_block_dfq_sides_and_shapes():
    x = _inputs()[0]
    y = block_dfq_fake_quantize(x.to(torch.bfloat16), "mxfp4")
    assert y.dtype == torch.bfloat16  # exact for bf16 input: the values are the float32 result, cast
    torch.testing.assert_close(y.float(), block_dfq_fake_quantize(x.to(torch.bfloat16).float(), "mxfp4")
                               .to(torch.bfloat16).float(), rtol=0, atol=0)
    t = block_dfq_fake_quantize(x.t().contiguous(), "mxfp4", axis=0)  # blocks along another axis
    assert torch.equal(t.t(), block_dfq_fake_quantize(x, "mxfp4"))
    with pytest.raises(ValueError, match="defined for"):
        block_dfq_fake_quantize(x, "mxfp8_e4m3")
    with pytest.raises(ValueError, match="multiple|divisible|group"):
        block_dfq_fake_quantize(torch.randn(2, 40), "mxfp4")
    with pytest.raises(ValueError, match="scale_rule"):
        block_dfq_fake_quantize(x, "nvfp4", scale_rule="rceil")
