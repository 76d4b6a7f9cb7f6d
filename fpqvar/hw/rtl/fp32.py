"""IEEE 754 binary32 arithmetic in Amaranth: unpack, normalise-round-pack, multiply, add (combinational).

Semantics (what numpy float32 does on x86 without flush-to-zero; checked bit for bit in the tests):

- every operation rounds once, to nearest, ties to even (RNE); no fused multiply-add;
- subnormal inputs and outputs are handled exactly (gradual underflow, no flush-to-zero);
- overflow rounds to +-inf; ``x + (-x)`` is ``+0``; ``-0 + -0`` is ``-0``; the product's sign is the XOR;
- special operands propagate: NaN in -> NaN; ``inf * 0`` and ``inf - inf`` -> NaN; the NaN produced is the
  quiet NaN ``0x7fc00000`` (sign and payload of NaNs are not specified to match; tests compare "is NaN").

:func:`round_pack` is the one rounding step every unit uses (the multiplier, the adder, the exact integer to
float conversion of the scale-and-accumulate unit, the quantizer's scale division and its threshold format
with more fraction bits). It takes a non-negative integer significand ``sig``, a sticky bit (nonzero value
below ``sig``'s LSB) and a signed exponent: value ``(sig + sticky * eps) * 2**exp``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FP32_BIAS", "QNAN", "unpack", "leading_zeros", "shift_right_sticky", "round_pack", "Fp32Mul",
           "Fp32Add"]

FP32_BIAS = 127
FP32_FRAC = 23
QNAN = 0x7FC00000
_EXP_W = 12  # signed width of the internal exponents (products span 2**-298 .. 2**257)


class _Unpacked:
    """Fields of a float32 ``x``: value ``(-1)**sign * sig * 2**(exp - 150)`` for finite ``x``."""

    def __init__(self, x):
        self.sign = x[31]
        e, f = x[23:31], x[:23]
        self.sig = Cat(f, e != 0)  # 24 bits, implicit one for normals
        self.exp = Mux(e == 0, 1, e)  # subnormals share the smallest normal exponent
        self.is_zero = (e == 0) & (f == 0)
        self.is_inf = (e == 255) & (f == 0)
        self.is_nan = (e == 255) & (f != 0)
        self.mag = x[:31]  # |x| as an integer: monotone in the value for non-negative floats


def unpack(x) -> _Unpacked:
    return _Unpacked(x)


def leading_zeros(m: Module, x, name: str) -> Signal:
    """Number of leading zeros of ``x`` (``len(x)`` for zero): a priority encoder."""
    w = len(x)
    lz = Signal(range(w + 1), name=name)
    m.d.comb += lz.eq(w)
    for i in range(w):  # a later assignment wins: the highest set bit decides
        with m.If(x[i]):
            m.d.comb += lz.eq(w - 1 - i)
    return lz


def shift_right_sticky(x, amount, max_shift: int):
    """``(x >> amount, OR of the shifted-out bits)``; ``amount`` saturates at ``max_shift`` (>= len(x))."""
    w = len(x)
    amt = Mux(amount > max_shift, max_shift, amount)
    lost = Cat(*[x[i] & (amt > i) for i in range(w)]).any()
    return (x >> amt)[:w], lost


def round_pack(m: Module, sign, sig, sticky, exp, name: str, frac_bits: int = FP32_FRAC,
               exp_bits: int = 8):
    """Round ``(-1)**sign * (sig + sticky*eps) * 2**exp`` to an IEEE-style float with ``frac_bits`` fraction
    and ``exp_bits`` exponent bits (bias ``2**(exp_bits-1) - 1``), RNE, gradual underflow, overflow to inf.

    Returns the ``1 + exp_bits + frac_bits``-bit pattern. ``sig == 0`` gives a signed zero (callers never
    set ``sticky`` with ``sig == 0``). Steps: left-justify by the leading-zero count; if the exponent is below
    the normal range, shift right (denormalise) collecting a sticky bit; keep ``frac_bits + 1`` bits, round
    on guard / sticky; the exponent field is added to the rounded significand so that a rounding carry moves
    into the exponent (and a subnormal becomes the smallest normal) without a special case.
    """
    n = frac_bits + 1
    bias = (1 << (exp_bits - 1)) - 1
    emin = 1 - bias
    pad = max(0, n + 2 - len(sig))
    w = len(sig) + pad
    s = Signal(w, name=f"{name}_sig")
    m.d.comb += s.eq(Cat(Const(0, pad), sig) if pad else sig)
    lz = leading_zeros(m, s, f"{name}_lz")
    e_lead = Signal(signed(_EXP_W), name=f"{name}_e")  # exponent of the leading one
    m.d.comb += e_lead.eq(exp - pad + (w - 1) - lz)
    y = Signal(w, name=f"{name}_norm")
    m.d.comb += y.eq((s << lz)[:w])
    under = Signal(_EXP_W, name=f"{name}_under")  # how far below the normal range (0 if normal)
    m.d.comb += under.eq(Mux(e_lead < emin, emin - e_lead, 0))
    y2, lost = shift_right_sticky(y, under, w + 1)
    q = y2[w - n:]
    guard = y2[w - n - 1]
    rest = y2[: w - n - 1].any() | lost | sticky
    q_rounded = q + (guard & (rest | q[0]))  # n + 1 bits
    e_field_m1 = Mux(e_lead < emin, 0, e_lead + bias - 1)  # exponent field minus one (subnormal: 0)
    packed = Signal(exp_bits + frac_bits + 2, name=f"{name}_packed")
    m.d.comb += packed.eq((e_field_m1 << frac_bits) + q_rounded)
    inf = ((1 << exp_bits) - 1) << frac_bits
    out = Signal(1 + exp_bits + frac_bits, name=name)
    overflow = e_lead + bias >= (1 << exp_bits) - 1
    m.d.comb += out.eq(Cat(Mux(s == 0, 0, Mux(overflow, inf, packed[: exp_bits + frac_bits])), sign))
    return out


class Fp32Mul(wiring.Component):
    """Combinational ``z = fl32(a * b)``."""

    def __init__(self):
        super().__init__({"a": In(32), "b": In(32), "z": Out(32)})

    def elaborate(self, platform):
        m = Module()
        a, b = unpack(self.a), unpack(self.b)
        sign = a.sign ^ b.sign
        exp = Signal(signed(_EXP_W))
        m.d.comb += exp.eq(a.exp + b.exp - 2 * (FP32_BIAS + FP32_FRAC))
        r = round_pack(m, sign, a.sig * b.sig, 0, exp, "mul")
        inf = Cat(Const(0xFF << 23, 31), sign)
        with m.If(a.is_nan | b.is_nan | (a.is_inf & b.is_zero) | (b.is_inf & a.is_zero)):
            m.d.comb += self.z.eq(QNAN)
        with m.Elif(a.is_inf | b.is_inf):
            m.d.comb += self.z.eq(inf)
        with m.Else():
            m.d.comb += self.z.eq(r)
        return m


class Fp32Add(wiring.Component):
    """Combinational ``z = fl32(a + b)``.

    Align the smaller operand to the larger with 3 extra low bits (guard, round, sticky) and fold the bits
    shifted out into the lowest one (a sticky "jam"); the larger operand's low bits are zero, so the jammed
    sum or difference is odd exactly when the true one is not an integer, and rounding it gives the RNE result
    of the exact sum."""

    def __init__(self):
        super().__init__({"a": In(32), "b": In(32), "z": Out(32)})

    def elaborate(self, platform):
        m = Module()
        a, b = unpack(self.a), unpack(self.b)
        a_big = Signal()
        m.d.comb += a_big.eq(a.mag >= b.mag)
        big_sig, small_sig = Mux(a_big, a.sig, b.sig), Mux(a_big, b.sig, a.sig)
        big_exp, small_exp = Mux(a_big, a.exp, b.exp), Mux(a_big, b.exp, a.exp)
        big_sign = Mux(a_big, a.sign, b.sign)
        d = Signal(8)
        m.d.comb += d.eq(big_exp - small_exp)
        small, lost = shift_right_sticky(Cat(Const(0, 3), small_sig), d, 28)
        small_j = small | lost
        big = Cat(Const(0, 3), big_sig)
        total = Signal(28)
        m.d.comb += total.eq(Mux(a.sign == b.sign, big + small_j, big - small_j))
        exp = Signal(signed(_EXP_W))
        m.d.comb += exp.eq(big_exp - (FP32_BIAS + FP32_FRAC) - 3)
        sign = Mux(total == 0, a.sign & b.sign, big_sign)  # exact zero: +0 unless both are -0
        r = round_pack(m, sign, total, 0, exp, "add")
        with m.If(a.is_nan | b.is_nan | (a.is_inf & b.is_inf & (a.sign != b.sign))):
            m.d.comb += self.z.eq(QNAN)
        with m.Elif(a.is_inf):
            m.d.comb += self.z.eq(self.a)
        with m.Elif(b.is_inf):
            m.d.comb += self.z.eq(self.b)
        with m.Else():
            m.d.comb += self.z.eq(r)
        return m
