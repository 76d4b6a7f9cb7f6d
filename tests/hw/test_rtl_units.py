"""Generated RTL simulated with amaranth.sim against the datapath model (and the grids for multipliers)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

pytest.importorskip("amaranth")

from fpqvar.formats.spec import get_format  # noqa: E402
from fpqvar.hw import datapath as dp  # noqa: E402
from fpqvar.hw import quantizer_int as qi  # noqa: E402
from fpqvar.hw.hadamard_int import fht_int, randomized_fht_int  # noqa: E402
from fpqvar.hw.rtl.dfq_mul import DfqMul  # noqa: E402
from fpqvar.hw.rtl.fht import FhtUnit  # noqa: E402
from fpqvar.hw.rtl.fp4_mul import Fp4Mul  # noqa: E402
from fpqvar.hw.rtl.int4_mul import Int4Mul  # noqa: E402
from fpqvar.hw.rtl.pe import DotProductPE  # noqa: E402
from fpqvar.hw.rtl.quantizer import FpQuantizer  # noqa: E402
from fpqvar.hw.rtl.sim import pack, run_comb, run_stream, unpack  # noqa: E402
from fpqvar.hw.rtl.units import unit_names, unit_verilog  # noqa: E402

E2M1 = get_format("e2m1").code_values
E1M2 = get_format("e1m2").code_values
PAIRS = [(a, b) for a in range(16) for b in range(16)]


def test_fp4_mul_exhaustive_equals_model_and_grid():
    got = run_comb(Fp4Mul(), [{"a": a, "b": b} for a, b in PAIRS], ["sign", "mag"])
    for (a, b), g in zip(PAIRS, got):
        sign, mag = dp.fp4_mul(a, b)
        assert (g["sign"], g["mag"]) == (int(sign), int(mag)), (a, b)
        ref = E2M1[a] * E2M1[b]  # from the grid
        assert (-1.0 if g["sign"] else 1.0) * g["mag"] / 4 == ref and bool(g["sign"]) == np.signbit(ref)


def test_fp4_mul_twos_complement_variant_exhaustive():
    got = run_comb(Fp4Mul("twos_complement"), [{"a": a, "b": b} for a, b in PAIRS], ["p"])
    for (a, b), g in zip(PAIRS, got):
        assert g["p"] / 4 == E2M1[a] * E2M1[b], (a, b)


def test_dfq_mul_exhaustive_equals_model_and_grid():
    got = run_comb(DfqMul(), [{"a": a, "w": w} for a, w in PAIRS], ["sign", "mag"])
    for (a, w), g in zip(PAIRS, got):
        sign, mag = dp.dfq_mul(a, w)
        assert (g["sign"], g["mag"]) == (int(sign), int(mag)), (a, w)
        act = -E1M2[a & 7] if a >> 3 else E2M1[a & 7]  # DFQ code: top bit selects the half
        ref = act * E2M1[w]
        assert (-1.0 if g["sign"] else 1.0) * g["mag"] / 8 == ref and bool(g["sign"]) == np.signbit(ref)


def test_int4_mul_exhaustive():
    vals = [(a, b) for a in range(-8, 8) for b in range(-8, 8)]
    got = run_comb(Int4Mul(), [{"a": a, "b": b} for a, b in vals], ["p"])
    for (a, b), g in zip(vals, got):
        assert g["p"] == a * b == int(dp.int4_mul(a & 15, b & 15)), (a, b)


@pytest.mark.parametrize("fmt", ["e2m1", "e1m2", "dfq"])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_quantizer_exhaustive(fmt, rounding):
    """Every (sign, fixed-point magnitude) input of the compare stage."""
    dut = FpQuantizer(fmt, rounding)
    frac, bits = qi.FIXED_POINT[fmt]
    ins = [(neg, v) for neg in (0, 1) for v in range(1 << bits)]
    got = run_comb(dut, [{"neg": n, "mag": v} for n, v in ins], ["code"])
    v = np.array([i[1] for i in ins])
    neg = np.array([i[0] for i in ins], bool)
    if fmt == "dfq":
        idx = np.where(neg, qi.compare_stage(v, neg, "e1m2", rounding, frac),
                       qi.compare_stage(v, neg, "e2m1", rounding, frac))
        top = neg & (idx > 0)  # a zero result is code 0 in DFQ
    else:
        idx = qi.compare_stage(v, neg, fmt, rounding, frac)
        top = neg
    np.testing.assert_array_equal([g["code"] for g in got], (top.astype(int) << 3) | idx)


def _pe_vectors(rng, n, lanes):
    a = rng.integers(0, 16, size=(n, lanes))
    w = rng.integers(0, 16, size=(n, lanes))
    a[0], w[0] = 7, 7  # FP4 / DFQ-positive max product on every lane (int4: 7 * 7)
    a[1], w[1] = 15, 7  # max negative product
    a[2], w[2] = 8, 8  # int4: -8 * -8 = 64, the int4 extreme; FP4: -0 * -0
    return a, w


@pytest.mark.parametrize("kind", ["fp4", "int4", "dfq"])
def test_pe_random_vectors_back_to_back(kind):
    lanes = 128
    rng = np.random.default_rng(len(kind))
    a, w = _pe_vectors(rng, 10, lanes)
    dut = DotProductPE(kind, lanes)
    outs = ["dot_neg", "dot_pos"] if kind == "dfq" else ["dot"]
    vecs = [{"a": pack(ai, 4), "w": pack(wi, 4)} for ai, wi in zip(a, w)]
    got, t_in, t_out = run_stream(dut, vecs, outs)
    if kind == "dfq":
        neg, pos = dp.group_dot_dfq(a, w)
        assert [g["dot_neg"] for g in got] == neg.tolist()
        assert [g["dot_pos"] for g in got] == pos.tolist()
    else:
        assert [g["dot"] for g in got] == dp.group_dot(kind, a, w).tolist()
    assert [o - i for i, o in zip(t_in, t_out)] == [dut.latency_cycles] * 10
    assert dut.latency_cycles == 8
    if kind == "dfq":
        assert (len(dut.dot_neg), len(dut.dot_pos)) == (15, 17)
    else:
        assert len(dut.dot) == dp.accumulator_bits(kind)


def test_pe_small_with_gaps():
    """A narrow PE (8 lanes) with idle cycles between inputs: valid tracking and values."""
    rng = np.random.default_rng(2)
    a, w = _pe_vectors(rng, 12, 8)
    dut = DotProductPE("fp4", 8)
    got, t_in, t_out = run_stream(dut, [{"a": pack(x, 4), "w": pack(y, 4)} for x, y in zip(a, w)], ["dot"],
                                  gap_cycles=2)
    assert [g["dot"] for g in got] == dp.group_dot("fp4", a, w).tolist()
    assert np.all(np.array(t_out) - np.array(t_in) == 1 + 3)


@pytest.mark.parametrize("signed_flips", [False, True])
def test_fht128_random_vectors(signed_flips):
    rng = np.random.default_rng(7)
    lo = -127 if signed_flips else -128
    x = rng.integers(lo, 128, size=(12, 128))
    x[0], x[1] = lo, 127
    d = rng.choice([-1, 1], size=128) if signed_flips else None
    dut = FhtUnit(128, 8, None if d is None else tuple(d))
    got, t_in, t_out = run_stream(dut, [{"x": pack(v, 8)} for v in x], ["y"])
    H = scipy.linalg.hadamard(128)
    ref = x @ (np.diag(d) @ H if signed_flips else H)  # (x D) H = H (D x): H is symmetric
    np.testing.assert_array_equal(ref, randomized_fht_int(x, d, 8) if signed_flips else fht_int(x, 8))
    for g, r in zip(got, ref):
        assert unpack(g["y"], 128, 15) == r.tolist()
    assert np.all(np.array(t_out) - np.array(t_in) == 7) and dut.latency_cycles == 7


def test_rtl_timing_matches_the_pipeline_structure():
    """PE: 1 multiplier register + log2(128) = 7 tree levels; FHT: 7 butterfly stages; one result per cycle."""
    from fpqvar.hw.rtl.timing import TIMED_UNITS, rtl_timing

    expected = {"pe_fp4": 8, "pe_int4": 8, "pe_int4_sym": 8, "pe_dfq": 8, "fht128": 7}
    for unit in TIMED_UNITS:
        t = rtl_timing(unit)
        assert t.latency_cycles == expected[unit]
        assert t.initiation_interval_cycles == 1 and t.ops_per_result == 128


_VERILOG_UNITS = ["fp4_mul", "dfq_mul", "quant_dfq"]


def test_verilog_export_is_deterministic_across_processes():
    """Same bytes in this process (twice) and in a fresh interpreter with another hash seed."""
    here = {u: unit_verilog(u) for u in _VERILOG_UNITS}
    assert all(unit_verilog(u) == here[u] for u in _VERILOG_UNITS)
    code = ("import sys, json; from fpqvar.hw.rtl.units import unit_verilog; "
            f"json.dump({{u: unit_verilog(u) for u in {_VERILOG_UNITS!r}}}, sys.stdout)")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    import json

    other = json.loads(out.stdout)
    for u in _VERILOG_UNITS:
        assert other[u] == here[u], u
        assert f"module {u}(" in here[u]


def test_unknown_unit_is_rejected():
    with pytest.raises(ValueError, match="unknown RTL unit"):
        unit_verilog("fp5_mul")
    assert "pe_fp4" in unit_names()
