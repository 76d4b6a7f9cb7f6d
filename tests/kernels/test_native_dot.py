"""The C integer dot products (fpqvar.kernels.native.int_dot, the GEMM "native"): EXACT tier, rtol=0 atol=0,
against an int64 matmul written here, for every instruction set this CPU has (portable C always; AVX2 where
present), at the extremes of the int8 range and on shapes that leave remainders (rows not a multiple of 4, segments
not a multiple of 16)."""

import numpy as np
import pytest
import torch

from fpqvar.kernels import native

pytestmark = pytest.mark.skipif(native.unavailable() is not None,
                                reason=f"native kernels unavailable: {native.unavailable()}")


def _isas():
    have = native.isa() if native.unavailable() is None else 0
    return [i for i in native.ISA_NAMES if i <= have]


def _ref(a_RI, w_IO, S):
    """(G, R, O) int32 from int64 sums per segment."""
    a, w = a_RI.numpy().astype(np.int64), w_IO.numpy().astype(np.int64)
    G = w.shape[0] // S
    return torch.from_numpy(np.stack([a[:, g * S:(g + 1) * S] @ w[g * S:(g + 1) * S] for g in range(G)])
                            .astype(np.int32))


def _ints(shape, lim, seed):
    return torch.randint(-lim, lim + 1, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("R,G,S,O", [(1, 1, 128, 8), (2, 2, 128, 33), (3, 1, 16, 5), (4, 3, 128, 16),
                                     (5, 2, 100, 7), (7, 1, 130, 9), (9, 4, 32, 3), (16, 2, 128, 64), (6, 1, 1, 4),
                                     (11, 1, 2048, 6)])
@pytest.mark.parametrize("lim,wmax", [(12, 12), (12, 128), (60, 12), (127, 127), (127, 128)])
@pytest.mark.parametrize("signs", ["mixed", "definite"])
def test_int_dot_is_exact(isa, R, G, S, O, lim, wmax, signs):
    """Codes of FP4 (12), FP6 (60) and int8 (127) magnitudes against weights bounded by ``wmax`` (the bound given to
    the kernel: 12 and 127 take AVX2's vpmaddubsw form, whose int16 sums are chunked; 128 its vpmaddwd form); rows
    of both signs, or DFQ-like rows that are each sign-definite (the negative ones summed as -|a| w)."""
    wl = min(wmax, 127)
    a, w = _ints((R, G * S), lim, R * 7 + S), _ints((G * S, O), wl, O * 3 + G)
    a[0], w[:, 0] = -128 if lim == 127 else -lim, -wl  # the extremes: lim * wl * S (-128: |a| = 128 as uint8)
    if wmax == 128:
        w[0, 0] = -128
    if R > 1:
        a[1], w[:, -1] = lim, -wl
    if signs == "definite":
        a[::2] = -a[::2].abs()
        a[1::2] = a[1::2].abs()
        a[R // 2:] = -a[R // 2:].abs() if R > 2 else a[R // 2:]
    got = native.int_dot(a, native.pack_weight(w, S), isa_=isa, w_absmax=wmax)
    assert got.dtype == torch.int32 and torch.equal(got, _ref(a, w, S))


@pytest.mark.parametrize("isa", _isas())
def test_int_dot_segment_ranges_strided_rows_and_out(isa):
    """Segments g0 .. g1 of a wider operand, rows of a larger tensor (row stride > I), into a given buffer."""
    S, G, O = 64, 5, 24
    big = _ints((10, G * S + 40), 127, 1)
    a = big[1:8, 40:]  # 7 rows, row stride G * S + 40
    w = _ints((G * S, O), 127, 2)
    ref = _ref(a.contiguous(), w, S)
    out = torch.full((3, 7, O), 99, dtype=torch.int32)
    got = native.int_dot(a, native.pack_weight(w, S), 1, 4, out=out, isa_=isa)
    assert got is out and torch.equal(got, ref[1:4])
    assert native.int_dot(a, native.pack_weight(w, S), 2, 2, isa_=isa).shape == (0, 7, O)


def test_an_isa_the_cpu_lacks_falls_back_to_portable_c():
    a, w = _ints((3, 256), 127, 3), _ints((256, 5), 127, 4)
    assert torch.equal(native.int_dot(a, native.pack_weight(w, 128), isa_=99), _ref(a, w, 128))


def test_pack_weight_puts_each_segment_column_contiguous():
    w = torch.arange(12, dtype=torch.int8).view(6, 2)  # I = 6, O = 2, segments of 3
    p = native.pack_weight(w, 3)
    assert p.shape == (2, 2, 3) and p.is_contiguous()
    assert p[1, 0].tolist() == [6, 8, 10] and p[0, 1].tolist() == [1, 3, 5]


def test_int_dot_refuses_bad_operands():
    w = native.pack_weight(_ints((256, 4), 7, 5), 128)
    with pytest.raises(ValueError, match=r"int8 \(R, 256\)"):
        native.int_dot(torch.zeros((2, 128), dtype=torch.int8), w)
    with pytest.raises(ValueError, match=r"int8 \(R, 256\)"):
        native.int_dot(torch.zeros((256, 2), dtype=torch.int8).t(), w)  # column stride 2
    with pytest.raises(ValueError, match="contiguous int8"):
        native.int_dot(torch.zeros((2, 256), dtype=torch.int8), w.float())
    with pytest.raises(ValueError, match="segments 1..3"):
        native.int_dot(torch.zeros((2, 256), dtype=torch.int8), w, 1, 3)
    with pytest.raises(ValueError, match="out must be"):
        native.int_dot(torch.zeros((2, 256), dtype=torch.int8), w, out=torch.zeros((1, 2, 4), dtype=torch.int32))
    with pytest.raises(ValueError, match="segment 100"):
        native.pack_weight(torch.zeros((256, 4), dtype=torch.int8), 100)
    with pytest.raises(ValueError, match="segment length"):
        native.int_dot(torch.zeros((1, native.MAX_DOT_SEGMENT + 1), dtype=torch.int8),
                       torch.zeros((1, 1, native.MAX_DOT_SEGMENT + 1), dtype=torch.int8))
