"""The FP4 quantizer front end: float32 activations -> group scale and FP4 codes, without a divider.

Input format: **IEEE float32** activations (what ``datapath.quantize_groups`` takes and what the SFU /
previous GEMM produce), finite (the datapath model rejects inf / NaN), ``lanes`` elements per beat, groups of
128 consecutive elements (``128 / lanes`` beats). Output per element: the code ``datapath.quantize_groups``
gives (equal to ``fpqvar.formats`` by the datapath's own tests), per group: the float32 scale(s). Three
steps, each exact:

1. **absmax**: the maximum of ``|x|``'s bit pattern (31 bits); for non-negative floats the bit pattern is
   monotone in the value, so this is an integer max, subnormals included. DFQ keeps two: ``x <= 0`` and
   ``x > 0`` (fpqvar-method.md section 6).
2. **scale** ``s = fl32(absmax / max_value)``, RNE, with ``s = 1`` for a zero or underflowed result
   (``quantizer_int.absmax_scales``). ``max_value = d * 2**k`` with ``d`` odd (E2M1: 6 = 3 * 2; E1M2: 1.75 =
   7 / 4), so the division is by the small constant ``d``: a restoring long division of the 24-bit
   significand (shifted left by 5 bits) one bit per step with a 2- or 3-bit remainder, the remainder's
   nonzero-ness is the sticky bit, then :func:`fp32.round_pack`.
3. **compare**: ``|x|`` against the seven midpoints times ``s``, exactly. A midpoint is ``c * 2**j`` with
   ``c`` odd and small (E2M1 x 4: 1, 3, 5, 7, 10, 14, 20; E1M2 x 8: 1, 3, ..., 13), so ``T_k = c * s`` is a
   shift-and-add of ``s``'s significand (at most 28 significant bits) and is held, once per group, as a float
   with 27 fraction bits and float32's exponent range (``THRESHOLD_FRAC_BITS``): every ``T_k`` is exactly
   representable there (subnormal ``T_k`` are multiples of ``2**-152``), and comparing two non-negative
   floats of one format is comparing their bit patterns. So the per-element work is seven 35-bit integer
   comparisons of ``|x|``'s bits (4 zero bits appended) against ``T_k``; each is ``>=`` or ``>`` by the tie
   rule (``quantizer_int.tie_goes_up``). This is the same decision as the datapath's ``|x| / s`` against the
   midpoints (``s > 0``), so ties land where the datapath puts them.

Codes: ``sign << 3 | idx`` with the float's sign bit (``-0.0`` -> ``0b1000``); DFQ: ``sel = x <= 0``,
``idx`` from the selected half's thresholds, ``code = (sel & idx != 0) << 3 | idx``.

Pipeline: beats are written into a two-bank group buffer while the absmax runs; on a group's last beat
(cycle ``c``) the absmax is registered, the scale on ``c + 1``, the thresholds on ``c + 2`` while the buffer
read of the first beat is issued; beat ``j``'s codes are valid on ``c + 4 + j`` (``valid_out``, with
``first_out`` / ``last_out`` and the group's scale). One beat per cycle in, no back-pressure (the consumer
takes a beat per cycle); two banks suffice because the reads of a group start before the group after next
can write. Latency from a group's first beat to its first codes: ``128 / lanes + 3`` cycles.
"""

from __future__ import annotations

from fractions import Fraction

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fpqvar.formats.spec import get_format
from fpqvar.hw.quantizer_int import ROUNDINGS, magnitude_grid, tie_goes_up
from fpqvar.hw.rtl.fp32 import FP32_BIAS, FP32_FRAC, round_pack, unpack

__all__ = ["QuantFrontEnd", "FRONT_FORMATS", "THRESHOLD_FRAC_BITS", "scale_stage", "midpoint_terms"]

FRONT_FORMATS = ("e2m1", "e1m2", "dfq")
GROUP = 128
THRESHOLD_FRAC_BITS = FP32_FRAC + 4  # c * significand < 2**28 for c <= 13 (E1M2's largest midpoint x 8)
_DIV_SHIFT = 5  # quotient bits beyond the significand: >= 26 significant quotient bits for d <= 7
_ONE = 0x3F800000


def _odd_power(v: Fraction) -> tuple[int, int]:
    """``v = c * 2**j`` with ``c`` an odd integer: ``(c, j)``."""
    j = 0
    while v.denominator != 1:
        v, j = v * 2, j - 1
    n = v.numerator
    while n % 2 == 0:
        n, j = n // 2, j + 1
    return n, j


def midpoint_terms(fmt: str) -> tuple[tuple[int, int], ...]:
    """The seven midpoints of ``fmt``'s magnitude grid as ``(c, j)``: midpoint ``= c * 2**j``, ``c`` odd."""
    g = [Fraction(v) for v in magnitude_grid(fmt)]
    return tuple(_odd_power((a + b) / 2) for a, b in zip(g, g[1:]))


def scale_stage(m: Module, absmax, fmt: str, name: str):
    """Combinational ``fl32(absmax / max_value(fmt))`` (1.0 if zero) from ``absmax``'s 31-bit pattern."""
    d, k = _odd_power(Fraction(get_format(fmt).max_value))
    u = unpack(Cat(absmax, Const(0, 1)))
    num = Cat(Const(0, _DIV_SHIFT), u.sig)  # significand * 2**5
    rem = Const(0, d.bit_length())
    q_bits = []
    for i in reversed(range(len(num))):  # restoring division by the constant d, MSB first
        t = Cat(num[i], rem)
        ge = t >= d
        q_bits.append(ge)
        # a signal per step: the expression would otherwise nest 2**steps deep (rem is read twice per step)
        r = Signal(d.bit_length(), name=f"{name}_rem{i}")
        m.d.comb += r.eq(Mux(ge, t - d, t)[: d.bit_length()])
        rem = r
    quotient = Signal(len(num), name=f"{name}_q")
    m.d.comb += quotient.eq(Cat(*reversed(q_bits)))
    sticky = Signal(name=f"{name}_sticky")
    m.d.comb += sticky.eq(rem != 0)
    # absmax / (d * 2**k) = (sig * 2**5 / d) * 2**(exp - 150 - 5 - k)
    s = round_pack(m, 0, quotient, sticky, u.exp - (FP32_BIAS + FP32_FRAC) - _DIV_SHIFT - k, f"{name}_div")
    out = Signal(32, name=name)
    m.d.comb += out.eq(Mux(s == 0, _ONE, s))
    return out


def _thresholds(m: Module, s, fmt: str, name: str) -> list:
    """``T_k = midpoint_k * s`` exactly, as ``THRESHOLD_FRAC_BITS``-fraction floats (bit patterns, no sign)."""
    u = unpack(s)
    out = []
    for k, (c, j) in enumerate(midpoint_terms(fmt)):
        prod = sum((u.sig << i) for i in range(c.bit_length()) if c >> i & 1)  # shift-and-add c * sig
        t = round_pack(m, 0, prod, 0, u.exp - (FP32_BIAS + FP32_FRAC) + j, f"{name}_t{k}",
                       frac_bits=THRESHOLD_FRAC_BITS)
        out.append(t[: 8 + THRESHOLD_FRAC_BITS])
    return out


class QuantFrontEnd(wiring.Component):
    """``lanes`` float32 elements per beat -> codes and the group scale (``scale``; DFQ: ``scale_neg``,
    ``scale_pos``)."""

    def __init__(self, fmt: str = "e2m1", rounding: str = "rne", lanes: int = 16):
        err = (f"fmt must be one of {FRONT_FORMATS}, got {fmt!r}" if fmt not in FRONT_FORMATS else
               f"rounding must be one of {ROUNDINGS}, got {rounding!r}" if rounding not in ROUNDINGS else
               f"lanes must divide the group size {GROUP}, got {lanes}" if lanes < 1 or GROUP % lanes else None)
        if err:
            self._MustUse__silence = True  # a rejected unit is not an "unused elaboratable" (Amaranth warns)
            raise ValueError(f"QuantFrontEnd {err}")
        self.fmt, self.rounding, self.lanes = fmt, rounding, lanes
        self.beats = GROUP // lanes
        self.latency_cycles = self.beats + 3  # first beat in -> first codes out, beats back to back
        self.halves = ("e1m2", "e2m1") if fmt == "dfq" else (fmt,)
        sig = {"x": In(32 * lanes), "valid_in": In(1), "codes": Out(4 * lanes), "valid_out": Out(1),
               "first_out": Out(1), "last_out": Out(1)}
        if fmt == "dfq":
            sig |= {"scale_neg": Out(32), "scale_pos": Out(32)}
        else:
            sig["scale"] = Out(32)
        super().__init__(sig)

    def _sel(self, mag, sign):
        """Which half an element belongs to: DFQ ``x <= 0`` (1 = negative half); otherwise the sign bit."""
        return (sign | (mag == 0)) if self.fmt == "dfq" else sign

    def _index(self, mag_ext, thr: list, half: str, neg):
        up_pos = tie_goes_up(self.rounding, False, len(thr))
        up_neg = tie_goes_up(self.rounding, True, len(thr))
        passed = []
        for k, t in enumerate(thr):
            ge, gt = mag_ext >= t, mag_ext > t
            pos = ge if up_pos[k] else gt
            ng = ge if up_neg[k] else gt
            passed.append(pos if up_pos[k] == up_neg[k] else Mux(neg, ng, pos))
        return sum(passed)[:3]

    def elaborate(self, platform):
        m = Module()
        L, B = self.lanes, self.beats
        mags = [self.x[32 * i : 32 * i + 31] for i in range(L)]
        signs = [self.x[32 * i + 31] for i in range(L)]
        sels = [self._sel(mg, sg) for mg, sg in zip(mags, signs)]
        # --- absmax (per half) and the group buffer
        m.submodules.buf = buf = Memory(shape=32 * L, depth=2 * B, init=[])
        wr = buf.write_port()
        rd = buf.read_port()  # synchronous, not transparent: a same-cycle write is seen next cycle
        beat = Signal(range(max(B, 2)), name="beat")
        wbank = Signal(name="wbank")
        m.d.comb += [wr.addr.eq(Cat(beat, wbank) if B > 1 else wbank), wr.data.eq(self.x),
                     wr.en.eq(self.valid_in)]
        gmax, gvalid, gbank = [], Signal(name="gmax_valid"), Signal(name="gmax_bank")
        for h, half in enumerate(self.halves):
            if len(self.halves) == 2:  # DFQ: half 0 = negative (x <= 0), half 1 = positive
                vals = [Mux(s if h == 0 else ~s, mg, 0) for mg, s in zip(mags, sels)]
            else:
                vals = mags
            lvl = 0
            while len(vals) > 1:  # comparator tree over the beat; a signal per node keeps expressions flat
                nodes = []
                for j, (a, b) in enumerate(zip(vals[0::2], vals[1::2])):
                    n = Signal(31, name=f"amax_{half}_l{lvl}_{j}")
                    m.d.comb += n.eq(Mux(a >= b, a, b))
                    nodes.append(n)
                vals = nodes + ([vals[-1]] if len(vals) % 2 else [])
                lvl += 1
            run = Signal(31, name=f"amax_{half}")
            nxt = Mux((beat == 0) | (vals[0] > run), vals[0], run)
            g = Signal(31, name=f"gmax_{half}")
            with m.If(self.valid_in):
                m.d.sync += run.eq(nxt)
                with m.If(beat == B - 1):
                    m.d.sync += g.eq(nxt)
            gmax.append(g)
        m.d.sync += gvalid.eq(self.valid_in & (beat == B - 1))
        with m.If(self.valid_in):
            m.d.sync += beat.eq(Mux(beat == B - 1, 0, beat + 1))
            with m.If(beat == B - 1):
                m.d.sync += [wbank.eq(~wbank), gbank.eq(wbank)]
        # --- scale (cycle c + 1)
        s_reg, s_valid, s_bank = [], Signal(name="s_valid"), Signal(name="s_bank")
        for half, g in zip(self.halves, gmax):
            s = Signal(32, name=f"s_{half}")
            with m.If(gvalid):
                m.d.sync += s.eq(scale_stage(m, g, half, f"scale_{half}"))
            s_reg.append(s)
        m.d.sync += [s_valid.eq(gvalid), s_bank.eq(gbank)]
        # --- thresholds and the buffer reads (from cycle c + 2)
        thr_reg, scale_out = [], []
        for half, s in zip(self.halves, s_reg):
            regs = [Signal(8 + THRESHOLD_FRAC_BITS, name=f"t_{half}_{k}") for k in range(7)]
            so = Signal(32, name=f"scale_hold_{half}")
            with m.If(s_valid):
                m.d.sync += [r.eq(t) for r, t in zip(regs, _thresholds(m, s, half, f"thr_{half}"))]
                m.d.sync += so.eq(s)
            thr_reg.append(regs)
            scale_out.append(so)
        rd_active, rd_beat, rd_bank = Signal(name="rd_active"), Signal(range(max(B, 2)), name="rd_beat"), Signal()
        issue = s_valid | rd_active
        issue_beat = Mux(s_valid, 0, rd_beat)
        issue_bank = Mux(s_valid, s_bank, rd_bank)
        m.d.comb += rd.addr.eq(Cat(issue_beat, issue_bank) if B > 1 else issue_bank)
        with m.If(s_valid):
            m.d.sync += [rd_bank.eq(s_bank), rd_beat.eq(1), rd_active.eq(B > 1)]
        with m.Elif(rd_active):
            m.d.sync += [rd_beat.eq(rd_beat + 1), rd_active.eq(rd_beat != B - 1)]
        data_valid, data_first, data_last = Signal(name="data_valid"), Signal(), Signal()
        m.d.sync += [data_valid.eq(issue), data_first.eq(s_valid), data_last.eq(issue_beat == B - 1)]
        # --- compare (cycle c + 3 + j), registered out
        codes = []
        for i in range(L):
            word = rd.data[32 * i : 32 * i + 32]
            mag, sign = word[:31], word[31]
            sel = self._sel(mag, sign)
            mag_ext = Cat(Const(0, THRESHOLD_FRAC_BITS - FP32_FRAC), mag)
            idx = [self._index(mag_ext, t, half, sel) for half, t in zip(self.halves, thr_reg)]
            if self.fmt == "dfq":
                ix = Mux(sel, idx[0], idx[1])
                codes.append(Cat(ix, sel & (ix != 0)))
            else:
                codes.append(Cat(idx[0], sign))
        m.d.sync += [self.codes.eq(Cat(*codes)), self.valid_out.eq(data_valid),
                     self.first_out.eq(data_valid & data_first), self.last_out.eq(data_valid & data_last)]
        if self.fmt == "dfq":
            m.d.sync += [self.scale_neg.eq(scale_out[0]), self.scale_pos.eq(scale_out[1])]
        else:
            m.d.sync += self.scale.eq(scale_out[0])
        return m
