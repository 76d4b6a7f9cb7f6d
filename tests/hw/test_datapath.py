"""Bit-exact datapath: multipliers, adder tree, FHT, against references written here from the format grids."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from fpqvar.formats.spec import get_format
from fpqvar.hw import datapath as dp
from fpqvar.hw import hadamard_int as hi

E2M1 = get_format("e2m1").code_values  # float64 value of every code, sign in bit 3
E1M2 = get_format("e1m2").code_values
ALL_A, ALL_B = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")


def _dfq_activation_value(code: np.ndarray) -> np.ndarray:
    """DFQ activation: top bit 1 -> negative half, -E1M2 magnitude; 0 -> +E2M1 magnitude (spec section 6)."""
    mag = code & 7
    return np.where(code >> 3, -E1M2[mag], E2M1[mag])


def _signed_bits(v: int) -> int:
    """Smallest signed width that holds +-v."""
    return int(v).bit_length() + 1


def test_fp4_products_exhaustive():
    sign, mag = dp.fp4_mul(ALL_A, ALL_B)
    ref = E2M1[ALL_A] * E2M1[ALL_B]  # float64, exact for these values
    got = np.where(sign == 1, -1.0, 1.0) * mag * 0.25
    np.testing.assert_array_equal(got, ref)
    # sign is the XOR of the sign bits, as IEEE's product sign (also on zeros)
    np.testing.assert_array_equal(sign.astype(bool), np.signbit(ref))
    assert mag.max() == 144 and int(mag.max()).bit_length() == dp.PRODUCT_BITS["fp4"]


def test_dfq_products_exhaustive():
    sign, mag = dp.dfq_mul(ALL_A, ALL_B)
    ref = _dfq_activation_value(ALL_A) * E2M1[ALL_B]
    got = np.where(sign == 1, -1.0, 1.0) * mag * 0.125
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(sign.astype(bool), np.signbit(ref))
    assert mag.max() == 288 and int(mag.max()).bit_length() == dp.PRODUCT_BITS["dfq"]


def test_int4_products_exhaustive():
    val = np.where(np.arange(16) >= 8, np.arange(16) - 16, np.arange(16))  # two's complement
    np.testing.assert_array_equal(dp.int4_mul(ALL_A, ALL_B), val[ALL_A] * val[ALL_B])


def test_rom_equals_product_of_units():
    # linear_through_datapath relies on this identity (ROM entry == product of the operand units)
    h = np.array(dp.magnitude_units("e2m1", 1))
    q = np.array(dp.magnitude_units("e1m2", 2))
    np.testing.assert_array_equal(h, get_format("e2m1").positive_grid * 2)
    np.testing.assert_array_equal(q, get_format("e1m2").positive_grid * 4)
    rom = np.array(dp.fp4_mul_rom()).reshape(8, 8)
    np.testing.assert_array_equal(rom, np.outer(h, h))
    drom = np.array(dp.dfq_mul_rom()).reshape(2, 8, 8)
    np.testing.assert_array_equal(drom[0], 2 * np.outer(h, h))
    np.testing.assert_array_equal(drom[1], np.outer(q, h))


@pytest.mark.parametrize("kind", ["fp4", "int4", "dfq_neg", "dfq_pos"])
def test_accumulator_width_is_derived_and_tight(kind):
    if kind == "fp4":
        prods = (E2M1[ALL_A] * E2M1[ALL_B] / 0.25).astype(np.int64)
    elif kind.startswith("dfq"):
        half = (ALL_A >> 3) == (1 if kind == "dfq_neg" else 0)
        prods = (_dfq_activation_value(ALL_A[half]) * E2M1[ALL_B[half]] / 0.125).astype(np.int64)
    else:
        val = np.where(np.arange(16) >= 8, np.arange(16) - 16, np.arange(16))
        prods = val[ALL_A] * val[ALL_B]
    worst = 128 * int(np.abs(prods).max())
    assert dp.accumulator_bits(kind, 128) == _signed_bits(worst)
    # both extremes pass the tree without overflow
    for extreme in (prods.max(), prods.min()):
        assert dp.adder_tree(np.full(128, extreme), dp.leaf_bits(kind)) == 128 * extreme
    assert dp.accumulator_bits("fp4") == 16 and dp.accumulator_bits("int4") == 15
    assert dp.accumulator_bits("dfq_neg") == 15 and dp.accumulator_bits("dfq_pos") == 17


def test_adder_tree_overflow_is_detected():
    with pytest.raises(OverflowError):
        dp.adder_tree(np.full(8, 200), 8)  # 200 does not fit signed 8 bits


def test_group_dot_random_vectors():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 16, size=(50, 128))
    w = rng.integers(0, 16, size=(50, 128))
    np.testing.assert_array_equal(dp.group_dot("fp4", a, w) * 0.25, (E2M1[a] * E2M1[w]).sum(-1))
    neg, pos = dp.group_dot_dfq(a, w)
    prod = _dfq_activation_value(a) * E2M1[w]
    np.testing.assert_array_equal(neg * 0.125, np.where(a >> 3, prod, 0).sum(-1))
    np.testing.assert_array_equal(pos * 0.125, np.where(a >> 3, 0, prod).sum(-1))
    val = np.where(np.arange(16) >= 8, np.arange(16) - 16, np.arange(16))
    np.testing.assert_array_equal(dp.group_dot("int4", a, w), (val[a] * val[w]).sum(-1))


@pytest.mark.parametrize("in_bits", [4, 8, 12])
def test_fht_equals_hadamard_matrix(in_bits):
    rng = np.random.default_rng(in_bits)
    lo, hi_ = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    x = rng.integers(lo, hi_ + 1, size=(64, 128))
    x[0] = lo  # extremes: the widest outputs
    x[1] = hi_
    x[2] = np.where(scipy.linalg.hadamard(128)[5] > 0, hi_, lo)
    H = scipy.linalg.hadamard(128).astype(np.int64)
    y = hi.fht_int(x, in_bits)
    np.testing.assert_array_equal(y, x @ H.T)
    lim = 1 << (in_bits + 7 - 1)
    assert -lim <= y.min() and y.max() < lim  # output fits in_bits + 7 bits
    assert hi.fht_stage_bits(in_bits)[-1] == in_bits + 7


def test_fht_rejects_out_of_range_input():
    with pytest.raises(ValueError, match="signed 8 bits"):
        hi.fht_int(np.full(128, 128), 8)


def test_randomized_fht_matches_ght_matrix():
    rng = np.random.default_rng(5)
    d = rng.choice([-1, 1], size=128)
    x = rng.integers(-127, 128, size=(16, 128))
    Q_unnorm = np.diag(d) @ scipy.linalg.hadamard(128)  # Q * sqrt(128), fpqvar-method.md section 7
    np.testing.assert_array_equal(hi.randomized_fht_int(x, d, 8), x @ Q_unnorm)
    with pytest.raises(ValueError, match="symmetric range"):
        hi.randomized_fht_int(np.full((1, 128), -128), d, 8)
