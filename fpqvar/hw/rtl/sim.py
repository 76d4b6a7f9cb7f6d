"""Amaranth simulation drivers: apply input vectors to a unit and read its outputs.

``run_comb`` settles a combinational unit per vector; ``run_stream`` feeds a pipelined unit one vector per
cycle (``valid_in`` high), collects outputs whenever ``valid_out`` is high, and records on which cycle each
input went in and each output came out (for latency / initiation-interval measurement).
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.sim import Simulator

__all__ = ["pack", "unpack", "run_comb", "run_stream"]


def pack(values: Sequence[int], bits: int) -> int:
    """Pack integers LSB-first, ``bits`` each (two's complement for negatives)."""
    mask = (1 << bits) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * bits)
    return out


def unpack(word: int, n: int, bits: int, signed: bool = True) -> list[int]:
    """Inverse of :func:`pack`."""
    mask = (1 << bits) - 1
    out = []
    for i in range(n):
        v = (word >> (i * bits)) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


def run_comb(dut, vectors: Sequence[dict[str, int]], outputs: Sequence[str]) -> list[dict[str, int]]:
    """Set each vector's ports on a combinational ``dut`` and read ``outputs`` after settling."""
    results: list[dict[str, int]] = []

    async def bench(ctx):
        for vec in vectors:
            for port, value in vec.items():
                ctx.set(getattr(dut, port), value)
            results.append({o: int(ctx.get(getattr(dut, o))) for o in outputs})

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return results


def run_stream(dut, vectors: Sequence[dict[str, int]], outputs: Sequence[str], *, max_cycles: int = 10_000,
               gap_cycles: int = 0):
    """Stream ``vectors`` into a clocked ``dut`` (``gap_cycles`` idle cycles between them).

    Returns ``(results, in_cycles, out_cycles)``: output dicts in arrival order and the cycle numbers on which
    each vector was applied and each valid output was seen (sampled before the clock edge of that cycle).
    """
    results: list[dict[str, int]] = []
    in_cycles: list[int] = []
    out_cycles: list[int] = []

    async def bench(ctx):
        schedule = []
        for vec in vectors:
            schedule.append(vec)
            schedule.extend([None] * gap_cycles)
        cycle = 0
        while len(results) < len(vectors):
            if cycle >= max_cycles:
                raise RuntimeError(f"run_stream: {len(results)}/{len(vectors)} outputs after {cycle} cycles")
            vec = schedule[cycle] if cycle < len(schedule) else None
            if vec is not None:
                for port, value in vec.items():
                    ctx.set(getattr(dut, port), value)
                in_cycles.append(cycle)
            ctx.set(dut.valid_in, vec is not None)
            if ctx.get(dut.valid_out):
                results.append({o: int(ctx.get(getattr(dut, o))) for o in outputs})
                out_cycles.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results, in_cycles, out_cycles
