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
    why = IG.unavailable(impl, torch.device("cpu"))
    if why:
        pytest.skip(why)
    i32 = torch.empty((9, 24), dtype=torch.int32) if impl == "int8" else None
    out = torch.empty((9, 24), dtype=torch.float32)
    if impl in ("int8", "u8s8") and lim == 127 and torch.backends.cpu.get_cpu_capability() == "AVX2":
        # oneDNN's AVX2 int8 kernels (vpmaddubsw) sum pairs of products in saturating int16: wrong at |n| = 127,
        # which is why each bound class has its own probe; the classes the fast path uses are checked below
        pytest.skip(f"{impl} with |values| 127 saturates in oneDNN's AVX2 kernel (the selector's probe drops it)")
    a_op, b_op = IG.to_operand(impl, a), IG.prepare_weight(impl, b)
    got = IG.gemm_to_f32(impl, a_op, b_op, out=out, scratch_i32=i32, k_chunk=IG.exact_chunk(127, lim))
    assert got is out and torch.equal(got, _ref(a, b))
    assert torch.equal(IG.gemm_to_f32(impl, a_op, b_op), _ref(a, b))  # no out / default chunk


def test_u8_operand_is_the_code_plus_128():
    n = torch.arange(-128, 128, dtype=torch.int8)
    assert torch.equal(IG.to_operand("u8s8", n).to(torch.int16), n.to(torch.int16) + 128)
    assert IG.to_operand("int8", n) is n and torch.equal(IG.to_operand("float32", n), n.float())


@pytest.mark.parametrize("lim", [16, 64])
def test_u8s8_exact_at_its_bound_classes_on_every_isa(lim):
    """The classes FP4 / FP6 codes use: exact even where vpmaddubsw saturates at 2**15 (2 * 192 * 64 < 2**15)."""
    if IG.unavailable("u8s8", torch.device("cpu")):
        pytest.skip(IG.unavailable("u8s8", torch.device("cpu")))
    a, b = _ints((33, 512), lim, 3), _ints((512, 40), lim, 4)
    a[0], a[1], b[:, 0], b[:, 1] = lim, -lim, lim, -lim
    got = IG.gemm_to_f32("u8s8", IG.to_operand("u8s8", a), IG.prepare_weight("u8s8", b))
    assert torch.equal(got, _ref(a, b))


def test_u8s8_refuses_bad_operands():
    if IG.unavailable("u8s8", torch.device("cpu")):
        pytest.skip(IG.unavailable("u8s8", torch.device("cpu")))
    w = IG.prepare_weight("u8s8", _ints((64, 8), 7, 5))
    with pytest.raises(ValueError, match="uint8 \\(M, 64\\)"):
        IG.u8s8_mm(torch.zeros((2, 32), dtype=torch.uint8), w)
    with pytest.raises(ValueError, match="int8 CPU tensor"):
        IG.U8S8Weight(torch.zeros((4, 4)))


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
