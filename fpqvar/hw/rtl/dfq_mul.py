"""DFQ multiplier: a DFQ activation code (E1M2 negative half / E2M1 positive half) times an E2M1 weight.

Activation code ``[sel | m]``: ``sel = 1`` is the negative half (``-E1M2(m)``), ``sel = 0`` the positive half
(``+E2M1(m)``); ``sign = sel ^ w[3]``; a 9-bit magnitude from a 128-entry ROM over ``(sel, ma, mw)`` in units
of 1/8 (``datapath.dfq_mul_rom``). The PE routes the product to the accumulator of its half by ``sel``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpqvar.hw.datapath import PRODUCT_BITS, dfq_mul_rom

__all__ = ["DfqMul"]


class DfqMul(wiring.Component):
    """Combinational: ``a`` (DFQ code), ``w`` (E2M1 code) -> ``sign``, ``mag`` (units of 1/8)."""

    def __init__(self):
        super().__init__({"a": In(4), "w": In(4), "sign": Out(1), "mag": Out(PRODUCT_BITS["dfq"])})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.sign.eq(self.a[3] ^ self.w[3])
        with m.Switch(Cat(self.w[:3], self.a[:3], self.a[3])):  # index (sel << 6) | (ma << 3) | mw
            for i, v in enumerate(dfq_mul_rom()):
                with m.Case(i):
                    m.d.comb += self.mag.eq(v)
        return m
