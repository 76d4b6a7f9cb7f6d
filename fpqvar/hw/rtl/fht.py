"""Pipelined fast Hadamard unit: ``y = H x`` for ``points`` signed integers per cycle (``hadamard_int``).

``log2(points)`` butterfly stages (7 for 128), ascending stride ``1, 2, ..., points/2``, each registered;
stage ``k`` outputs ``in_bits + k + 1`` bits, the output ``in_bits + log2(points)`` bits (exact). Optional
constant sign flips ``signs`` (the GHT's diagonal ``D``) are applied to the inputs inside the first stage;
then the input must avoid ``-2**(in_bits-1)`` (``hadamard_int.randomized_fht_int``). Latency
``log2(points)`` cycles, initiation interval 1. Ports pack element ``i`` at bits ``i*w .. i*w + w - 1``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FhtUnit"]


class FhtUnit(wiring.Component):
    """``points``-point integer FHT, fully parallel and pipelined."""

    def __init__(self, points: int = 128, in_bits: int = 8, signs: tuple[int, ...] | None = None):
        if points < 2 or points & (points - 1):
            raise ValueError(f"FhtUnit points must be a power of two >= 2, got {points}")
        if not 2 <= in_bits <= 32:
            raise ValueError(f"FhtUnit in_bits must be in 2..32, got {in_bits}")
        if signs is not None and (len(signs) != points or any(d not in (1, -1) for d in signs)):
            raise ValueError(f"FhtUnit signs must be {points} values of +-1")
        self.points, self.in_bits = points, in_bits
        self.signs = None if signs is None else tuple(int(d) for d in signs)
        self.stages = points.bit_length() - 1
        self.out_bits = in_bits + self.stages
        self.latency_cycles = self.stages
        super().__init__({"x": In(points * in_bits), "valid_in": In(1),
                          "y": Out(points * self.out_bits), "valid_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        b = self.in_bits
        vals = [self.x[i * b : (i + 1) * b].as_signed() for i in range(self.points)]
        if self.signs is not None:
            vals = [v if d > 0 else -v for v, d in zip(vals, self.signs)]
        for k in range(self.stages):
            h = 1 << k
            nxt = [None] * self.points
            for i in range(self.points):
                if i & h:
                    continue
                lo = Signal(signed(b + k + 1), name=f"s{k}_{i}")
                hi = Signal(signed(b + k + 1), name=f"s{k}_{i + h}")
                m.d.sync += [lo.eq(vals[i] + vals[i + h]), hi.eq(vals[i] - vals[i + h])]
                nxt[i], nxt[i + h] = lo, hi
            vals = nxt
        m.d.comb += self.y.eq(Cat(*vals))
        valid = self.valid_in
        for k in range(self.stages):
            v = Signal(name=f"valid_d{k + 1}")
            m.d.sync += v.eq(valid)
            valid = v
        m.d.comb += self.valid_out.eq(valid)
        return m
