"""Processing element: a ``lanes``-wide dot product of 4-bit codes with a pipelined adder tree.

Per lane one multiplier (``fp4``: :class:`Fp4Mul` sign-magnitude, ``dfq``: :class:`DfqMul`, ``int4``:
:class:`Int4Mul`); products are registered, then a binary tree of adjacent pairs adds them with a register
after every level. The sign is applied in the tree: the first level adds ``+-mag`` of two sign-magnitude
products (hardware.md section 6). DFQ has two trees, fed with the products of each half (masked by ``sel``).

Widths follow ``datapath``: leaf ``leaf_bits(kind)``, one more bit per level, result ``accumulator_bits(kind,
lanes)`` (FP4 16 bits for 128 lanes). Timing: one dot product per cycle (initiation interval 1), latency
``1 + log2(lanes)`` cycles (8 for 128 lanes); ``valid_in`` is delayed alongside to ``valid_out``.
Ports: ``a``, ``w`` are ``lanes`` codes packed LSB-first (lane ``i`` at bits ``4i .. 4i+3``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpqvar.hw.datapath import accumulator_bits, leaf_bits
from fpqvar.hw.rtl.dfq_mul import DfqMul
from fpqvar.hw.rtl.fp4_mul import Fp4Mul
from fpqvar.hw.rtl.int4_mul import Int4Mul

__all__ = ["DotProductPE", "PE_KINDS"]

PE_KINDS = ("fp4", "dfq", "int4")


class DotProductPE(wiring.Component):
    """Pipelined ``lanes``-lane dot product of ``kind`` codes."""

    def __init__(self, kind: str = "fp4", lanes: int = 128):
        if kind not in PE_KINDS:
            raise ValueError(f"DotProductPE kind must be one of {PE_KINDS}, got {kind!r}")
        if lanes < 2 or lanes & (lanes - 1):
            raise ValueError(f"DotProductPE lanes must be a power of two >= 2, got {lanes}")
        self.kind, self.lanes = kind, lanes
        self.levels = lanes.bit_length() - 1
        self.acc_bits = accumulator_bits(kind, lanes)
        self.latency_cycles = 1 + self.levels
        sig = {"a": In(4 * lanes), "w": In(4 * lanes), "valid_in": In(1), "valid_out": Out(1)}
        if kind == "dfq":
            sig |= {"dot_neg": Out(signed(self.acc_bits)), "dot_pos": Out(signed(self.acc_bits))}
        else:
            sig["dot"] = Out(signed(self.acc_bits))
        super().__init__(sig)

    def _tree(self, m: Module, leaves: list, name: str):
        """Registered adder tree over ``leaves`` (signed values of ``leaf_bits``); returns the root signal."""
        level = leaves
        width = leaf_bits(self.kind)
        for lvl in range(1, self.levels + 1):
            width += 1
            nxt = []
            for i in range(0, len(level), 2):
                s = Signal(signed(width), name=f"{name}_l{lvl}_{i // 2}")
                m.d.sync += s.eq(level[i] + level[i + 1])
                nxt.append(s)
            level = nxt
        return level[0]

    def elaborate(self, platform):
        m = Module()
        leaf = leaf_bits(self.kind)
        leaves, leaves_neg, leaves_pos = [], [], []
        for i in range(self.lanes):
            a, w = self.a[4 * i : 4 * i + 4], self.w[4 * i : 4 * i + 4]
            if self.kind == "int4":
                mul = Int4Mul()
                m.submodules[f"mul{i}"] = mul
                m.d.comb += [mul.a.eq(a.as_signed()), mul.b.eq(w.as_signed())]
                p = Signal(signed(leaf), name=f"p{i}")
                m.d.sync += p.eq(mul.p)
                leaves.append(p)
                continue
            mul = Fp4Mul() if self.kind == "fp4" else DfqMul()
            m.submodules[f"mul{i}"] = mul
            m.d.comb += [mul.a.eq(a), (mul.b if self.kind == "fp4" else mul.w).eq(w)]
            sign = Signal(name=f"sign{i}")
            mag = Signal(len(mul.mag), name=f"mag{i}")
            m.d.sync += [sign.eq(mul.sign), mag.eq(mul.mag)]
            value = Mux(sign, -mag, mag)  # the sign enters at the tree's first adder level
            if self.kind == "fp4":
                leaves.append(value)
            else:
                sel = Signal(name=f"sel{i}")
                m.d.sync += sel.eq(a[3])
                leaves_neg.append(Mux(sel, value, 0))
                leaves_pos.append(Mux(sel, 0, value))
        if self.kind == "dfq":
            m.d.comb += [self.dot_neg.eq(self._tree(m, leaves_neg, "neg")),
                         self.dot_pos.eq(self._tree(m, leaves_pos, "pos"))]
        else:
            m.d.comb += self.dot.eq(self._tree(m, leaves, "t"))
        valid = self.valid_in
        for k in range(self.latency_cycles):
            v = Signal(name=f"valid_d{k + 1}")
            m.d.sync += v.eq(valid)
            valid = v
        m.d.comb += self.valid_out.eq(valid)
        return m
