"""The C integer dot products (fpqvar.kernels.native.int_dot, the GEMM "native") and the linear on them
(native.int_linear): EXACT tier, rtol=0 atol=0, against an int64 matmul and a float32 sum written here, for every
instruction set this CPU has (portable C always; AVX2 where present), at the extremes of the int8 range and on shapes
that leave remainders (rows not a multiple of 4, outputs not a multiple of 8 or 16, segments not a multiple of 4),
that span several token chunks (1 MiB of codes each) and several 128-output chunks."""

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


def _operands(R, G, S, O, lim, wmax, signs):
    wl = min(wmax, 127)
    a, w = _ints((R, G * S), lim, R * 7 + S), _ints((G * S, O), wl, O * 3 + G)
    a[0], w[:, 0] = -128 if lim == 127 else -lim, -wl  # the extremes: lim * wl * S (-128: |a| = 128)
    if wmax == 128:
        w[0, 0] = -128
    if R > 1:
        a[1], w[:, -1] = lim, -wl
    if signs == "definite":
        a[::2] = -a[::2].abs()
        a[1::2] = a[1::2].abs()
        a[R // 2:] = -a[R // 2:].abs() if R > 2 else a[R // 2:]
    return a, w


SHAPES = [(1, 1, 128, 8), (2, 2, 128, 33), (3, 1, 16, 5), (4, 3, 128, 16), (5, 2, 100, 7), (7, 1, 130, 9),
          (9, 4, 32, 3), (16, 2, 128, 64), (6, 1, 1, 4), (11, 1, 2048, 6), (5, 1, 6, 200), (3, 2, 3, 17)]


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("R,G,S,O", SHAPES)
@pytest.mark.parametrize("lim,wmax", [(12, 12), (12, 128), (60, 12), (60, 127), (127, 127), (127, 128)])
@pytest.mark.parametrize("signs", ["mixed", "definite"])
def test_int_dot_is_exact(isa, R, G, S, O, lim, wmax, signs):
    """Codes of FP4 (12), FP6 (60) and int8 (127) magnitudes against weights bounded by ``wmax``. On AVX2, FP4
    codes take vpmaddubsw in one int16 chunk per segment; FP6 codes of both signs (2 * 120 * 12 per pair), FP4
    codes against int8 weights, and definite int8 rows against FP4 weights take it in several chunks, FP6 codes
    against int8 weights (2 * 120 * 127 per pair) in chunks of one step; int8 codes of both signs against int8
    weights take vpmaddwd. Rows of both signs (offset by their minimum), or DFQ-like
    rows that are each sign-definite."""
    a, w = _operands(R, G, S, O, lim, wmax, signs)
    got = native.int_dot(a, native.pack_weight(w, S), isa_=isa)
    assert got.dtype == torch.int32 and torch.equal(got, _ref(a, w, S))


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("lim", [12, 127])
def test_int_dot_over_several_token_chunks(isa, lim):
    """80 rows of 7 segments of 2048 codes: more than the 1 MiB of prepared codes per token chunk."""
    a, w = _operands(80, 7, 2048, 9, lim, 12, "mixed")
    assert torch.equal(native.int_dot(a, native.pack_weight(w, 2048), isa_=isa), _ref(a, w, 2048))


def _ref_linear(a_RI, w_IO, S, s_PTG, sw_GPO, bias_O):
    """The datapath's sums, in float32 ops written here: y = sum over (g, p) in order of fl32(fl32(s_x * s_w) *
    fl32(D)), the first assigned, then fl32(y + b)."""
    P, T, G = s_PTG.shape
    D = _ref(a_RI, w_IO, S).to(torch.float32)  # exact: |D| < 2**24 on these operands
    y = None
    for g in range(G):
        for p in range(P):
            term = (s_PTG[p, :, g, None] * sw_GPO[g, p]) * D[g, p * T:(p + 1) * T]
            y = term if y is None else y + term
    return y if bias_O is None else y + bias_O


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("T,P,G,S,O", [(1, 1, 1, 128, 8), (3, 2, 2, 128, 33), (9, 2, 3, 128, 200), (5, 1, 2, 6, 7),
                                       (70, 2, 1, 128, 16), (80, 2, 7, 2048, 9)])
@pytest.mark.parametrize("lim", [12, 127])
@pytest.mark.parametrize("bias", [False, True])
def test_int_linear_is_the_datapath_sum_of_int_dot(isa, T, P, G, S, O, lim, bias):
    """DFQ-like parts (the negative half first, then the positive one) or one part of both signs; scales of
    many binades, so that a different order or rounding of the float32 sums would show."""
    gen = torch.Generator().manual_seed(T * 31 + O)
    a, w = _operands(P * T, G, S, O, lim, 12, "mixed")
    if P == 2:
        a[:T], a[T:] = -a[:T].abs(), a[T:].abs()
    s = torch.exp2(torch.randint(-8, 8, (P, T, G), generator=gen).float()) * (1 + torch.rand((P, T, G), generator=gen))
    sw = torch.rand((G, P, O), generator=gen) * 1e-3 + 1e-4
    b = torch.randn(O, generator=gen) if bias else None
    got = native.int_linear(a, native.pack_weight(w, S), s, sw, b, isa_=isa)
    assert got.dtype == torch.float32 and torch.equal(got, _ref_linear(a, w, S, s, sw, b))


def test_int_linear_refuses_bad_operands():
    w = native.pack_weight(_ints((256, 4), 7, 5), 128)
    a, s, sw = torch.zeros((4, 256), dtype=torch.int8), torch.ones((2, 2, 2)), torch.ones((2, 2, 4))
    with pytest.raises(ValueError, match="6 rows of codes for 2 part"):
        native.int_linear(torch.zeros((6, 256), dtype=torch.int8), w, s, sw)
    with pytest.raises(ValueError, match=r"sw must be contiguous float32 \(2, 2, 4\)"):
        native.int_linear(a, w, s, sw[:, :1])
    with pytest.raises(ValueError, match=r"s must be contiguous float32"):
        native.int_linear(a, w, s.double(), sw)
    with pytest.raises(ValueError, match=r"bias must be float32 \(4,\)"):
        native.int_linear(a, w, s, sw, torch.ones(3))
    with pytest.raises(ValueError, match="DotWeight"):
        native.int_linear(a, w.data, s, sw)


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


def test_pack_weight_interleaves_8_outputs_by_4_codes():
    """data[g, ob, k4, i, kk] = W[g * S + 4 * k4 + kk, 8 * ob + i], zero past O and S; colsum per segment."""
    I, O, S = 10, 11, 5
    w = _ints((I, O), 127, 9)
    p = native.pack_weight(w, S)
    assert p.data.shape == (2, 2, 2, 8, 4) and p.data.is_contiguous() and (p.O, p.S, p.G) == (O, S, 2)
    for g, ob, k4, i, kk in np.ndindex(*p.data.shape):
        k, o = 4 * k4 + kk, 8 * ob + i
        assert int(p.data[g, ob, k4, i, kk]) == (int(w[g * S + k, o]) if k < S and o < O else 0)
    assert p.colsum_GO.dtype == torch.int32 and p.colsum_GO.shape == (2, 16)
    assert p.colsum_GO[:, :O].tolist() == w.view(2, S, O).long().sum(1).tolist() and not p.colsum_GO[:, O:].any()
    assert p.absmax == int(w.long().abs().max())
    assert native.pack_weight(torch.full((4, 2), -128, dtype=torch.int8), 4).absmax == 128
    S = native.MAX_DOT_SEGMENT
    assert native.pack_weight(torch.full((S, 1), 127, dtype=torch.int8), S).absmax == 127
    with pytest.raises(ValueError, match="could overflow the int32 sums"):
        native.pack_weight(torch.full((S, 1), -128, dtype=torch.int8), S)


def test_int_dot_refuses_bad_operands():
    w = native.pack_weight(_ints((256, 4), 7, 5), 128)
    with pytest.raises(ValueError, match=r"int8 \(R, 256\)"):
        native.int_dot(torch.zeros((2, 128), dtype=torch.int8), w)
    with pytest.raises(ValueError, match=r"int8 \(R, 256\)"):
        native.int_dot(torch.zeros((256, 2), dtype=torch.int8).t(), w)  # column stride 2
    with pytest.raises(ValueError, match="DotWeight"):
        native.int_dot(torch.zeros((2, 256), dtype=torch.int8), w.data)
    with pytest.raises(ValueError, match="segments 1..3"):
        native.int_dot(torch.zeros((2, 256), dtype=torch.int8), w, 1, 3)
    with pytest.raises(ValueError, match="out must be"):
        native.int_dot(torch.zeros((2, 256), dtype=torch.int8), w, out=torch.zeros((1, 2, 4), dtype=torch.int32))
    with pytest.raises(ValueError, match="segment 100"):
        native.pack_weight(torch.zeros((256, 4), dtype=torch.int8), 100)
    with pytest.raises(ValueError, match=r"segment \d+ \(1 \.\. "):
        native.pack_weight(torch.zeros((native.MAX_DOT_SEGMENT + 1, 1), dtype=torch.int8), native.MAX_DOT_SEGMENT + 1)


def test_output_ranges_split_whole_pairs_of_blocks():
    """Ranges of output blocks of 8, in whole pairs (a tile is 16 outputs), one per thread, each with enough work."""
    big = 10**12
    assert native.output_ranges(40, big, 3) == [(0, 2), (2, 4), (4, 5)]  # 5 blocks: pairs 0-1, 2-3, 4
    assert native.output_ranges(1024, big, 2) == [(0, 64), (64, 128)]
    assert native.output_ranges(1024, big, 1) == [(0, 128)]
    assert native.output_ranges(16, big, 4) == [(0, 2)]  # one pair: one thread
    assert native.output_ranges(1024, 3 * native.MIN_THREAD_MACS - 1, 8) == [(0, 64), (64, 128)]


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("threads", [2, 3])
def test_threads_split_the_outputs_same_bits(isa, threads, monkeypatch):
    """int_dot and int_linear on 3 threads (ranges of 16, 16 and 8 outputs) and 2: the single-thread bits."""
    monkeypatch.setattr(native, "MIN_THREAD_MACS", 1)
    T, P, G, S, O = 9, 2, 3, 128, 40
    a, w = _operands(P * T, G, S, O, 12, 12, "mixed")
    a[:T], a[T:] = -a[:T].abs(), a[T:].abs()
    pw = native.pack_weight(w, S)
    assert torch.equal(native.int_dot(a, pw, 1, 3, isa_=isa, threads=threads), _ref(a, w, S)[1:3])
    gen = torch.Generator().manual_seed(5)
    s, sw = torch.rand((P, T, G), generator=gen) + 0.5, torch.rand((G, P, O), generator=gen) * 1e-3
    assert torch.equal(native.int_linear(a, pw, s, sw, isa_=isa, threads=threads), _ref_linear(a, w, S, s, sw, None))
