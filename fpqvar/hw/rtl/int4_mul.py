"""INT4 multiplier, the integer baseline: two's-complement ``int4 x int4 -> int8`` (Yosys maps ``$mul``)."""

from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpqvar.hw.datapath import PRODUCT_BITS

__all__ = ["Int4Mul"]


class Int4Mul(wiring.Component):
    """Combinational: signed ``a``, ``b`` (4 bits) -> signed ``p`` (8 bits, -56..64)."""

    def __init__(self):
        super().__init__({"a": In(signed(4)), "b": In(signed(4)), "p": Out(signed(PRODUCT_BITS["int4"]))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m
