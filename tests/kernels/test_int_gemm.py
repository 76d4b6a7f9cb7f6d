"""Exact integer GEMMs (fpqvar.kernels.int_gemm): EXACT tier against an int64 matmul written here."""

import numpy as np
import pytest
import torch

from fpqvar.kernels import int_gemm as IG


def _ints(shape, lim, seed):
    return torch.randint(-lim, lim + 1, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


def _ref(a, b):
    """Exact integer product, then one float32 rounding (RNE, as numpy's int64 -> float32 cast)."""
    return torch.from_numpy((a.numpy().astype(np.int64) @ b.numpy().astype(np.int64)).astype(np.float32))


def test_exact_chunk_is_the_largest_exact_length():
    for a, b in ((127, 127), (12, 12), (127, 60), (7, 12), (1, 1)):
        k = IG.exact_chunk(a, b)
        assert k * a * b <= 2**24 < (k + 1) * a * b


@pytest.mark.parametrize("impl", IG.INT_GEMM_IMPLS)
@pytest.mark.parametrize("lim,K", [(12, 128), (12, 4096), (60, 7680), (127, 2048), (127, 1 << 14)])
def test_every_impl_is_exact(impl, lim, K):
    """All-extreme rows reach |D| = K * lim**2 (beyond 2**24 for the last cases: one rounding, as int32 -> fl32)."""
    a, b = _ints((9, K), lim, 1), _ints((K, 24), lim, 2)
    a[0] = lim
    b[:, 0] = lim
    dt = IG.operand_dtype(impl)
    i32 = torch.empty((9, 24), dtype=torch.int32) if impl == "int8" else None
    out = torch.empty((9, 24), dtype=torch.float32)
    got = IG.gemm_to_f32(impl, a.to(dt), b.to(dt), out=out, scratch_i32=i32, k_chunk=IG.exact_chunk(127, lim))
    if impl == "int8" and lim == 127 and torch.backends.cpu.get_cpu_capability() == "AVX2":
        pytest.skip("int8 with |values| 127 saturates in oneDNN's AVX2 kernel (the selector's probe drops it)")
    assert got is out and torch.equal(got, _ref(a, b))
    assert torch.equal(IG.gemm_to_f32(impl, a.to(dt), b.to(dt)), _ref(a, b))  # no out / default chunk


def test_float32_chunked_reduction_rounds_once_like_int32():
    """|D| > 2**24 with 25 significant bits: summing float32 chunk results in float32 would round twice."""
    K = 1 << 12
    a = torch.full((1, K), 127, dtype=torch.int8)
    b = torch.full((K, 2), 127, dtype=torch.int8)
    b[0, 1] = 126  # D = 127 * (127 K - 1): odd, > 2**24
    d_exact = 127 * (127 * K - 1)
    got = IG.gemm_to_f32("float32", a.float(), b.float(), k_chunk=1000)
    assert got[0, 1].item() == float(np.float32(d_exact)) and d_exact > 2**24
    assert torch.equal(got, _ref(a, b))


def test_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="int8, float32|one of"):
        IG.operand_dtype("bf16")
    with pytest.raises(ValueError, match="one of"):
        IG.gemm_to_f32("bf16", torch.zeros(1, 1), torch.zeros(1, 1))
