"""Per-group scale-and-accumulate unit: integer group sums -> one float32 output, in the datapath's order.

For one output ``(t, o)`` the PE delivers the group sums ``D_g`` (g ascending, one per cycle) with the two
scales of the group; this unit computes exactly ``datapath.scale_accumulate`` (module docstring there)::

    p_g = fl32( fl32(s_a * s_w) * fl32(D_g * unit) )    unit = 2**-unit_log2 (FP4 1/4, DFQ 1/8, INT4 1)
    acc = p_0;  acc = fl32(acc + p_g) for g = 1 .. G-1  (sequential; the first partial is taken as is)
    y = fl32(acc + bias)                                (only with ``bias=True``)

Arithmetic: :mod:`fpqvar.hw.rtl.fp32` (unfused: every multiply and add rounds, RNE, subnormals kept, no
flush-to-zero). ``fl32(D * unit)`` is exact (``|D| < 2**24``), an integer-to-float conversion with the
exponent lowered by ``unit_log2``. DFQ's two partials per group (negative half first) are two entries of the
stream. A ``first`` input starts a new output; ``last`` ends it.

Pipeline (one partial per cycle, initiation interval 1): stage 1 registers ``fl32(s_a * s_w)`` and the
converted ``D``; stage 2 the partial ``p``; stage 3 the accumulator (a one-cycle float32 adder in the loop, so
back-to-back partials of one output need no interleaving); stage 4 ``y`` (the bias adder). ``y`` is valid
``latency_cycles`` (4; 3 without bias) after the ``last`` partial entered.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpqvar.hw.rtl.fp32 import Fp32Add, Fp32Mul, round_pack

__all__ = ["ScaleAccumulate"]


class ScaleAccumulate(wiring.Component):
    """Stream of ``(d, s_a, s_w, first, last)`` partials -> ``y`` (float32 bits) per output."""

    def __init__(self, d_bits: int = 16, unit_log2: int = 2, bias: bool = True):
        if not 2 <= d_bits <= 25:
            raise ValueError(f"ScaleAccumulate d_bits must be in 2..25 (exact float32 conversion), got {d_bits}")
        if not 0 <= unit_log2 <= 8:
            raise ValueError(f"ScaleAccumulate unit_log2 must be in 0..8, got {unit_log2}")
        self.d_bits, self.unit_log2, self.has_bias = d_bits, unit_log2, bias
        self.latency_cycles = 4 if bias else 3
        sig = {"d": In(signed(d_bits)), "s_a": In(32), "s_w": In(32), "first": In(1), "last": In(1),
               "valid_in": In(1), "y": Out(32), "valid_out": Out(1)}
        if bias:
            sig["bias"] = In(32)  # read with the ``last`` partial
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul_s = mul_s = Fp32Mul()
        m.submodules.mul_p = mul_p = Fp32Mul()
        m.submodules.add_acc = add_acc = Fp32Add()
        # stage 1: scale product and the exact conversion of D
        neg = self.d < 0
        d_mag = Signal(self.d_bits, name="d_mag")
        m.d.comb += d_mag.eq(Mux(neg, -self.d, self.d))
        d32 = round_pack(m, neg, d_mag, 0, -self.unit_log2, "d32")
        m.d.comb += [mul_s.a.eq(self.s_a), mul_s.b.eq(self.s_w)]
        s1_s, s1_d = Signal(32, name="s1_s"), Signal(32, name="s1_d")
        s1_v, s1_first, s1_last = Signal(name="s1_valid"), Signal(name="s1_first"), Signal(name="s1_last")
        m.d.sync += [s1_s.eq(mul_s.z), s1_d.eq(d32), s1_v.eq(self.valid_in), s1_first.eq(self.first),
                     s1_last.eq(self.last)]
        # stage 2: the partial
        m.d.comb += [mul_p.a.eq(s1_s), mul_p.b.eq(s1_d)]
        s2_p = Signal(32, name="s2_p")
        s2_v, s2_first, s2_last = Signal(name="s2_valid"), Signal(name="s2_first"), Signal(name="s2_last")
        m.d.sync += [s2_p.eq(mul_p.z), s2_v.eq(s1_v), s2_first.eq(s1_first), s2_last.eq(s1_last)]
        # stage 3: the accumulator
        acc, acc_done = Signal(32, name="acc"), Signal(name="acc_done")
        m.d.comb += [add_acc.a.eq(acc), add_acc.b.eq(s2_p)]
        with m.If(s2_v):
            m.d.sync += acc.eq(Mux(s2_first, s2_p, add_acc.z))
        m.d.sync += acc_done.eq(s2_v & s2_last)
        bias_regs = []
        if self.has_bias:  # the bias travels with the last partial to the output stage
            b = self.bias
            for k in range(3):
                r = Signal(32, name=f"bias_d{k + 1}")
                m.d.sync += r.eq(b)
                bias_regs.append(r)
                b = r
        if not self.has_bias:
            m.d.comb += [self.y.eq(acc), self.valid_out.eq(acc_done)]
            return m
        # stage 4: y = acc + bias
        m.submodules.add_bias = add_bias = Fp32Add()
        m.d.comb += [add_bias.a.eq(acc), add_bias.b.eq(bias_regs[-1])]
        y, y_v = Signal(32, name="y_r"), Signal(name="y_valid")
        m.d.sync += [y.eq(add_bias.z), y_v.eq(acc_done)]
        m.d.comb += [self.y.eq(y), self.valid_out.eq(y_v)]
        return m
