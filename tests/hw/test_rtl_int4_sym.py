"""The symmetric sign-magnitude INT4 multiplier and PE (the fair integer baseline), against a reference
written here (integer products of the decoded -7..7 values) and the datapath model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("amaranth")

from fpqvar.formats.spec import get_format  # noqa: E402
from fpqvar.hw import datapath as dp  # noqa: E402
from fpqvar.hw.rtl.int4_sym_mul import Int4SymMul  # noqa: E402
from fpqvar.hw.rtl.pe import DotProductPE  # noqa: E402
from fpqvar.hw.rtl.sim import pack, run_comb, run_stream  # noqa: E402

PAIRS = [(a, b) for a in range(16) for b in range(16)]


def _value(c: int) -> int:  # reference decode, written independently of datapath: [s | m2 m1 m0]
    return -(c & 7) if c & 8 else c & 7


def test_int4_sym_mul_exhaustive():
    got = run_comb(Int4SymMul(), [{"a": a, "b": b} for a, b in PAIRS], ["sign", "mag"])
    for (a, b), g in zip(PAIRS, got):
        ref = _value(a) * _value(b)
        assert g["mag"] == abs(ref) and g["sign"] == ((a >> 3) ^ (b >> 3)), (a, b)
        sign, mag = dp.int4_sym_mul(a, b)
        assert (g["sign"], g["mag"]) == (int(sign), int(mag))


def test_sym_codes_cover_the_formats_int4_grid():
    """``fpqvar.formats`` int4 is the symmetric grid -7..7 (two's-complement codes); the conversion to
    sign-magnitude codes keeps every value and rejects -8."""
    f = get_format("int4")
    assert (f.symmetric, f.qmin, f.qmax) == (True, -7, 7)
    twos = np.arange(16)
    ok = twos != 8
    sm = dp.int4_sym_from_twos(twos[ok])
    np.testing.assert_array_equal(dp.int4_sym_value(sm), dp.int4_value(twos[ok]))
    with pytest.raises(ValueError, match="-8"):
        dp.int4_sym_from_twos([8])


def test_int4_sym_pe_random_and_extremes():
    rng = np.random.default_rng(11)
    a = rng.integers(0, 16, size=(8, 128))
    w = rng.integers(0, 16, size=(8, 128))
    a[0], w[0] = 7, 7  # +49 on every lane: 6272, the tree's positive extreme
    a[1], w[1] = 15, 7  # -49 on every lane
    dut = DotProductPE("int4_sym", 128)
    vecs = [{"a": pack(x, 4), "w": pack(y, 4)} for x, y in zip(a, w)]
    got, t_in, t_out = run_stream(dut, vecs, ["dot"])
    ref = [sum(_value(int(x)) * _value(int(y)) for x, y in zip(ai, wi)) for ai, wi in zip(a, w)]
    assert [g["dot"] for g in got] == ref == dp.group_dot("int4_sym", a, w).tolist()
    assert ref[0] == 6272 and ref[1] == -6272
    assert len(dut.dot) == dp.accumulator_bits("int4_sym") == 14
    assert [o - i for i, o in zip(t_in, t_out)] == [8] * 8
