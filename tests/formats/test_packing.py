"""EXACT tier: 4-bit and 6-bit packing layouts (written out bit by bit here) and round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fpqvar.formats import pack_int4, pack_int6, unpack_int4, unpack_int6

u8 = torch.uint8


def test_int4_nibble_order():
    codes = torch.tensor([[0x1, 0x2, 0xA, 0xF], [0x0, 0x7, 0x8, 0x0]], dtype=u8)
    # element 2i in the low nibble, 2i + 1 in the high nibble
    assert pack_int4(codes).tolist() == [[0x21, 0xFA], [0x70, 0x08]]


def test_int6_bit_order():
    c = [0b000001, 0b100010, 0b000011, 0b111111]
    w = c[0] | c[1] << 6 | c[2] << 12 | c[3] << 18  # one little-endian 24-bit word
    expect = [w & 0xFF, (w >> 8) & 0xFF, w >> 16]
    assert pack_int6(torch.tensor([c], dtype=u8)).tolist() == [expect]


@settings(max_examples=50, deadline=None)
@given(a=hnp.arrays(np.uint8, st.tuples(st.integers(0, 3), st.integers(0, 20).map(lambda k: 2 * k)),
                    elements=st.integers(0, 15)))
def test_int4_roundtrip(a):
    t = torch.from_numpy(a)
    p = pack_int4(t)
    assert p.dtype == u8 and p.shape == (a.shape[0], a.shape[1] // 2)
    assert torch.equal(unpack_int4(p, a.shape[1]), t)


@settings(max_examples=50, deadline=None)
@given(a=hnp.arrays(np.uint8, st.tuples(st.integers(0, 3), st.integers(0, 10).map(lambda k: 4 * k)),
                    elements=st.integers(0, 63)))
def test_int6_roundtrip(a):
    t = torch.from_numpy(a)
    p = pack_int6(t)
    assert p.dtype == u8 and p.shape == (a.shape[0], 3 * a.shape[1] // 4)
    assert torch.equal(unpack_int6(p, a.shape[1]), t)


def test_errors():
    with pytest.raises(ValueError, match="even"):
        pack_int4(torch.zeros(3, 5, dtype=u8))
    with pytest.raises(ValueError, match="< 16"):
        pack_int4(torch.tensor([3, 16], dtype=u8))
    with pytest.raises(ValueError, match="uint8"):
        pack_int4(torch.zeros(4, dtype=torch.int32))
    with pytest.raises(ValueError, match="multiple of 4"):
        pack_int6(torch.zeros(6, dtype=u8))
    with pytest.raises(ValueError, match="< 64"):
        pack_int6(torch.tensor([0, 1, 2, 64], dtype=u8))
    with pytest.raises(ValueError, match="n=5"):
        unpack_int4(torch.zeros(3, dtype=u8), 5)
    with pytest.raises(ValueError, match="n=8"):
        unpack_int6(torch.zeros(3, dtype=u8), 8)
