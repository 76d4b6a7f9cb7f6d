"""Two parts in one float32 GEMM (fpqvar.quant.kernels_pack): EXACT tier, rtol=0 atol=0.

References: integer arithmetic in int64 (the packing's bound and decoding), and the datapath model
(fpqvar.hw.datapath.linear_dfq_through_datapath) for the whole DFQ layer on every path: packed, packed with rows
redone, the two-GEMM fallback, and packing off."""

import numpy as np
import pytest
import torch

from fpqvar import kernels
from fpqvar.hw import datapath as dp
from fpqvar.hw.quantizer_int import quantize_groups
from fpqvar.quant import kernels as K
from fpqvar.quant import kernels_gemm as KG
from fpqvar.quant import kernels_pack as KP


def _edge_values(hi: int, rng, n_random: int = 20) -> list[int]:
    vals = {0, 1, -1, hi, -hi, hi - 1, -(hi - 1)}
    vals |= set(rng.integers(-hi, hi + 1, n_random).tolist())
    return sorted(v for v in vals if abs(v) <= hi)


@pytest.mark.parametrize("M", [9, 11, 13, 101, 4097, 65537, (1 << 22) + 1, (1 << 24) - 1])
def test_decode_exact_at_the_edges(M):
    """Every ``Y = P + M Q`` with ``|P| <= (M - 9) / 2`` and ``|Y| < 2**24`` (the plan's guarantee) decodes to
    (Q, P) exactly: the extreme remainders and quotients of each M, and random ones between."""
    rng = np.random.default_rng(M)
    p_hi = (M - 9) // 2
    ys, qs, ps = [], [], []
    for P in _edge_values(p_hi, rng):
        q_hi = ((1 << 24) - 1 - abs(P)) // M
        for Q in _edge_values(q_hi, rng):
            ys.append(P + M * Q)
            qs.append(Q)
            ps.append(P)
    y = torch.tensor(ys, dtype=torch.float64).to(torch.float32)
    assert torch.equal(y.to(torch.float64), torch.tensor(ys, dtype=torch.float64))  # exact integers
    Mt = torch.full_like(y, float(M))
    dq, dp_ = torch.empty_like(y), torch.empty_like(y)
    KP.decode_(y, Mt, torch.reciprocal(Mt), dq, dp_)
    assert dq.to(torch.int64).tolist() == qs
    assert dp_.to(torch.int64).tolist() == ps


def _codes(rng, T, I, hi, zero_frac=None):
    """Random codes, each row with its own share of zeros (from 50% to 99.5% unless given)."""
    n = rng.integers(-hi, hi + 1, (T, I))
    frac = np.linspace(0.5, 0.995, T)[:, None] if zero_frac is None else zero_frac
    n[rng.random((T, I)) < frac] = 0
    return torch.from_numpy(n.astype(np.int8))


@pytest.mark.parametrize("hi_q,hi_p,hi_w", [(7, 12, 12), (32, 60, 12), (127, 127, 127)])
def test_plan_bound_covers_every_partial_sum(hi_q, hi_p, hi_w):
    """Where the plan says the bound holds, every prefix sum of the packed dot product, in both orders, is an integer
    below 2**24 (checked in int64), the packed operand is exact, and the dot products recovered from the exact Y
    are the two parts' own; extreme rows (all codes at the bound) must be reported as failing when they exceed it."""
    rng = np.random.default_rng(hi_q + hi_p)
    T, G, S, O = 24, 3, 128, 40
    q, p = _codes(rng, T, G * S, hi_q), _codes(rng, T, G * S, hi_p)
    q[0], p[0] = -hi_q, hi_p  # the largest norms: fails for the large grids
    w = _codes(rng, G * S, O, hi_w, zero_frac=0.2)
    w[:, 0] = hi_w
    pl = KP.plan(q, p, KP.weight_norm2_G(w, G))
    a = q.to(torch.int64) * pl.M_TG.to(torch.int64).repeat_interleave(S, 1) + p.to(torch.int64)
    assert torch.equal(pl.a_TI.to(torch.int64)[pl.fits_TG.repeat_interleave(S, 1)],
                       a[pl.fits_TG.repeat_interleave(S, 1)])
    w64 = w.to(torch.int64)
    checked = 0
    for t in range(T):
        for g in range(G):
            cols = slice(g * S, (g + 1) * S)
            terms = a[t, cols, None] * w64[cols]  # (S, O)
            worst = max(terms.cumsum(0).abs().max(), terms.flip(0).cumsum(0).abs().max())
            if bool(pl.fits_TG[t, g]):
                checked += 1
                assert worst < 1 << 24
                y = terms.sum(0)
                Mi = int(pl.M_TG[t, g])
                dq = (q[t, cols].to(torch.int64)[:, None] * w64[cols]).sum(0)
                dpp = (p[t, cols].to(torch.int64)[:, None] * w64[cols]).sum(0)
                assert torch.equal(y, dpp + Mi * dq)
                assert int(dpp.abs().max()) <= (Mi - 9) // 2
                # M leaves the decoding margin beyond the Cauchy-Schwarz bound of the positive part itself
                w_max = float((w64[cols] ** 2).sum(0).max()) ** 0.5
                assert (Mi - 9) // 2 >= float((p[t, cols].to(torch.int64) ** 2).sum()) ** 0.5 * w_max
    assert checked > 0
    if hi_q * hi_p * hi_w > 7 * 12 * 12:
        assert not bool(pl.fits_TG[0].any())


def _dfq_layer(x, w, b):
    wc, sw = quantize_groups(w, "e2m1")
    pw = KG.PreparedWeight(K.weight_operand(torch.from_numpy(wc), "e2m1"), torch.from_numpy(sw), 128)
    n_neg, n_pos, s_neg, s_pos = K.quantize_act_dfq(torch.from_numpy(x), K.int_grid("e1m2"), K.int_grid("e2m1"),
                                                    group_size=128)
    parts = [(n_neg, s_neg, 2.0**-3), (n_pos, s_pos, 2.0**-2)]
    return KG.linear_int(parts, pw, torch.from_numpy(b), impl="float32").numpy()


MODES = ("packed", "rows_redone", "fallback", "off")


@pytest.mark.parametrize("strategy,mode", [(s, m) for s in ("loop", "bmm") for m in MODES
                                           if (s, m) != ("bmm", "rows_redone")])  # bmm packs all rows or none
def test_dfq_layer_bit_exact_on_every_packing_path(strategy, mode, monkeypatch):
    calls = {"mm_packed": 0, "fix": 0}
    real_fix = KG._redo_rows
    monkeypatch.setattr(KG, "_redo_rows", lambda *a: calls.__setitem__("fix", calls["fix"] + 1) or real_fix(*a))
    real_decode = KP.decode_
    monkeypatch.setattr(KP, "decode_", lambda *a: calls.__setitem__("mm_packed", calls["mm_packed"] + 1)
                        or real_decode(*a))
    monkeypatch.setattr(KG, "BMM_MAX_ROWS", 10**6 if strategy == "bmm" else 0)
    monkeypatch.setattr(KG, "ROW_CHUNK_ELEMS_F32", 16 * 48 * 2)  # 16-row chunks: several, one ragged
    monkeypatch.setattr(KG, "BMM_BLOCK_ELEMS", 2 * 2 * 37 * 48)  # blocks of two segments, one ragged
    rng = np.random.default_rng(5)
    T, I, O = 37, 5 * 128, 48
    x = rng.standard_normal((T, I)).astype(np.float32) * rng.uniform(0.1, 10, (T, 1)).astype(np.float32)
    x[3, :128] = 0.0  # an all-zero group
    x[4, 128:256] = -1.0  # a group of one negative value: both halves' edge cases
    w = (rng.standard_normal((O, I)) * 0.05).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    ref = dp.linear_dfq_through_datapath(x, w, b)
    if mode == "rows_redone":  # a limit some tokens' bounds pass and others fail
        n_neg, n_pos, *_ = K.quantize_act_dfq(torch.from_numpy(x), K.int_grid("e1m2"), K.int_grid("e2m1"),
                                              group_size=128)
        wc, _ = quantize_groups(w, "e2m1")
        w_op = K.weight_operand(torch.from_numpy(wc), "e2m1")
        w2 = (w_op.to(torch.int64) ** 2).view(I // 128, 128, O).sum(1).amax(1).double()
        b_q, b_p = (torch.ceil(torch.sqrt((n.to(torch.int64) ** 2).view(T, -1, 128).sum(-1).double() * w2))
                    for n in (n_neg, n_pos))
        need = b_p + (2 * b_p + 9) * b_q  # what the bound must stay below, per (token, segment)
        monkeypatch.setattr(KP, "LIMIT", float(torch.quantile(need.flatten(), 0.9)))
    elif mode == "fallback":
        monkeypatch.setattr(KP, "LIMIT", 1.0)  # no token fits
    elif mode == "off":
        monkeypatch.setattr(KG, "PACK", False)
    with kernels.override(int_gemm="float32"):
        assert np.array_equal(_dfq_layer(x, w, b), ref)
    if mode == "packed":
        assert calls["mm_packed"] > 0 and calls["fix"] == 0
    elif mode == "rows_redone":
        assert calls["mm_packed"] > 0 and calls["fix"] > 0
    else:
        assert calls["mm_packed"] == 0


def test_segment_norms_exact_for_long_segments_and_empty_weights():
    """Squared norms are exact integers for any segment length (a float32 sum of 2048 squares of 127 would round)
    and a weight without outputs has zero norms."""
    v = torch.full((2, 1, 2049), 127.0)
    v[1, 0, ::2] = 125.0
    exact = (v.to(torch.int64) ** 2).sum(-1).to(torch.float64)
    assert torch.equal(KP._seg_norm2(v), exact)
    assert torch.equal(KP._seg_norm2(v[:, :, :128]), (v[:, :, :128].to(torch.int64) ** 2).sum(-1).double())
    no_outputs = torch.zeros((256, 0), dtype=torch.int8)
    assert torch.equal(KP.weight_norm2_G(no_outputs, 2), torch.zeros(2, dtype=torch.float64))


def test_no_packing_when_float32_matmuls_may_round(monkeypatch):
    """Under ``set_float32_matmul_precision("medium")`` (bf16 / TF32 float32 GEMMs) packed operands would round:
    the packing is off and the layer stays exact on the two-GEMM path."""
    calls = []
    real_decode = KP.decode_
    monkeypatch.setattr(KP, "decode_", lambda *a: calls.append(1) or real_decode(*a))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((40, 256)).astype(np.float32)
    w = (rng.standard_normal((24, 256)) * 0.05).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    ref = dp.linear_dfq_through_datapath(x, w, b)
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert not KP.exact_f32_matmul(torch.device("cpu"))
        assert np.array_equal(_dfq_layer(x, w, b), ref)
    finally:
        torch.set_float32_matmul_precision(old)
    assert not calls
    assert KP.exact_f32_matmul(torch.device("cpu"))
    _dfq_layer(x, w, b)
    assert calls
