"""The FP quantizer's compare stage: a scaled fixed-point magnitude -> FP4 code (``datapath`` section 2).

Input: ``neg`` (the sign bit; for DFQ, ``x <= 0``) and ``mag``, the scale stage's output with ``frac_bits``
fractional bits whose LSB is the sticky bit (``quantizer_int.FIXED_POINT``). Seven comparators against the
grid midpoints (constants); each compares with ``>=`` or ``>`` by the tie rule and the sign
(``quantizer_int.tie_goes_up``); the magnitude code is the number of midpoints passed (a thermometer code's
count); ``code = neg << 3 | idx``. For DFQ both halves' comparators exist and ``neg`` selects one; a zero
result is coded 0 (``code = (neg & idx != 0) << 3 | idx``, the ``fpqvar.formats.dfq`` convention).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpqvar.hw.quantizer_int import FIXED_POINT, ROUNDINGS, thresholds_fixed, tie_goes_up

__all__ = ["FpQuantizer", "QUANT_FORMATS"]

QUANT_FORMATS = ("e2m1", "e1m2", "dfq")


class FpQuantizer(wiring.Component):
    """Combinational compare stage for ``fmt`` in ``QUANT_FORMATS`` and ``rounding`` in ``ROUNDINGS``."""

    def __init__(self, fmt: str = "e2m1", rounding: str = "rne"):
        if fmt not in QUANT_FORMATS:
            raise ValueError(f"FpQuantizer fmt must be one of {QUANT_FORMATS}, got {fmt!r}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"FpQuantizer rounding must be one of {ROUNDINGS}, got {rounding!r}")
        self.fmt, self.rounding = fmt, rounding
        self.frac_bits, self.mag_bits = FIXED_POINT[fmt]
        super().__init__({"neg": In(1), "mag": In(self.mag_bits), "code": Out(4)})

    def _index(self, half: str):
        t = thresholds_fixed(half, self.frac_bits)
        up_pos = tie_goes_up(self.rounding, False, len(t))
        up_neg = tie_goes_up(self.rounding, True, len(t))
        passed = []
        for k, tk in enumerate(t):
            ge, gt = self.mag >= tk, self.mag > tk
            pos = ge if up_pos[k] else gt
            neg = ge if up_neg[k] else gt
            passed.append(pos if up_pos[k] == up_neg[k] else Mux(self.neg, neg, pos))
        return sum(passed)

    def elaborate(self, platform):
        m = Module()
        if self.fmt == "dfq":
            idx = Mux(self.neg, self._index("e1m2"), self._index("e2m1"))[:3]
            m.d.comb += self.code.eq(Cat(idx, self.neg & idx.any()))
        else:
            m.d.comb += self.code.eq(Cat(self._index(self.fmt)[:3], self.neg))
        return m
