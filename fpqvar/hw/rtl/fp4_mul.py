"""FP4 (E2M1 x E2M1) lookup-table multiplier.

Default ``output="sign_magnitude"`` (hardware.md section 6 lesson): ``sign = a[3] ^ b[3]`` and an 8-bit
magnitude from a 64-entry ROM over the two 3-bit magnitude codes (units of 1/4, ``datapath.fp4_mul_rom``), so each
product bit is a 6-input function (one LUT6); the sign is applied later, in the adder tree.

``output="twos_complement"`` is the design the lesson warns against, kept as a measured counter-example: a
256-entry ROM over both full codes producing a signed 9-bit product (negation inside the multiplier).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpqvar.hw.datapath import PRODUCT_BITS, fp4_mul_rom

__all__ = ["Fp4Mul", "OUTPUTS"]

OUTPUTS = ("sign_magnitude", "twos_complement")


class Fp4Mul(wiring.Component):
    """Combinational: ``a``, ``b`` (4-bit E2M1 codes) -> ``sign``, ``mag`` (or ``p`` in two's complement)."""

    def __init__(self, output: str = "sign_magnitude"):
        if output not in OUTPUTS:
            raise ValueError(f"Fp4Mul output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        bits = PRODUCT_BITS["fp4"]
        if output == "sign_magnitude":
            sig = {"a": In(4), "b": In(4), "sign": Out(1), "mag": Out(bits)}
        else:
            sig = {"a": In(4), "b": In(4), "p": Out(signed(bits + 1))}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        rom = fp4_mul_rom()
        if self.output == "sign_magnitude":
            m.d.comb += self.sign.eq(self.a[3] ^ self.b[3])
            with m.Switch(Cat(self.b[:3], self.a[:3])):  # index (ma << 3) | mb
                for i, v in enumerate(rom):
                    with m.Case(i):
                        m.d.comb += self.mag.eq(v)
            return m
        p = Signal(signed(PRODUCT_BITS["fp4"] + 1))
        with m.Switch(Cat(self.b, self.a)):  # full 8-bit index: (a << 4) | b
            for a in range(16):
                for b in range(16):
                    v = rom[((a & 7) << 3) | (b & 7)]
                    with m.Case((a << 4) | b):
                        m.d.comb += p.eq(-v if (a >> 3) ^ (b >> 3) else v)
        m.d.comb += self.p.eq(p)
        return m
