"""Symmetric INT4 multiplier, sign-magnitude: the integer baseline built the way the FP4 multiplier is.

Codes ``[s | m2 m1 m0]`` hold the symmetric grid -7..7 (``datapath.int4_sym_value``); ``sign = a[3] ^ b[3]``
and a 6-bit magnitude ``ma * mb`` (0..49) from a 64-entry ROM over the two 3-bit magnitudes
(``datapath.int4_sym_mul_rom``), so, as for FP4, each product bit is a 6-input function and the sign is
applied in the PE's adder tree (hardware.md section 6). Against :class:`~fpqvar.hw.rtl.int4_mul.Int4Mul`
(two's complement, -8..7, ``$mul``) this is the like-for-like comparison with ``Fp4Mul``: same operand
width, same ROM structure, only the grid differs.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpqvar.hw.datapath import PRODUCT_BITS, int4_sym_mul_rom

__all__ = ["Int4SymMul"]


class Int4SymMul(wiring.Component):
    """Combinational: ``a``, ``b`` (sign-magnitude INT4 codes) -> ``sign``, ``mag`` (0..49)."""

    def __init__(self):
        super().__init__({"a": In(4), "b": In(4), "sign": Out(1), "mag": Out(PRODUCT_BITS["int4_sym"])})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.sign.eq(self.a[3] ^ self.b[3])
        with m.Switch(Cat(self.b[:3], self.a[:3])):  # index (ma << 3) | mb
            for i, v in enumerate(int4_sym_mul_rom()):
                with m.Case(i):
                    m.d.comb += self.mag.eq(v)
        return m
