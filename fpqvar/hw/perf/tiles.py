"""Tile-level cycle estimates (CHARM / FINN style): each a short formula with its assumptions.

Cycles are floats (transfer times are fractional); compute cycles round up to whole cycles.
"""

from __future__ import annotations

import math


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def transfer_cycles(nbytes: float, bytes_per_cycle: float) -> float:
    """Off-chip transfer: nbytes / bytes_per_cycle, with bytes_per_cycle = bandwidth / clock.

    Assumes the transfer streams at the full effective bandwidth (no burst or page overheads beyond
    the channel's ``efficiency``)."""
    if bytes_per_cycle <= 0:
        raise ValueError(f"transfer_cycles: bytes_per_cycle must be > 0, got {bytes_per_cycle}")
    return nbytes / bytes_per_cycle


def pe_array_cycles(m: int, k: int, n: int, pes: int, lanes: int, interval: int = 1) -> int:
    """A (m x k) @ (k x n) GEMM on ``pes`` PEs, each one ``lanes``-wide group dot product every ``interval``
    cycles.

    cycles = ceil(m * n * ceil(k / lanes) / pes) * interval: every (row, column, group) is one PE slot; work is
    spread evenly over the PEs, so the only utilisation loss is rounding (k padded to whole groups)."""
    if pes < 1:
        raise ValueError(f"pe_array_cycles: needs at least one PE, got {pes}")
    return ceil_div(m * n * ceil_div(k, lanes), pes) * interval


def dsp_array_cycles(m: int, k: int, n: int, macs_per_cycle: float) -> int:
    """A GEMM on a DSP array: cycles = ceil(m * k * n / macs_per_cycle) (perfect packing assumed)."""
    if macs_per_cycle <= 0:
        raise ValueError(f"dsp_array_cycles: macs_per_cycle must be > 0, got {macs_per_cycle}")
    return math.ceil(m * k * n / macs_per_cycle)


def last_output_cycle(items: int, interval_cycles: int, latency_cycles: int) -> int:
    """A pipelined unit taking one item every ``interval_cycles``, the first on cycle 0: the last result is
    valid on cycle latency + (items - 1) * interval (compared with RTL simulation in the tests)."""
    if items <= 0:
        raise ValueError(f"last_output_cycle: needs at least one item, got {items}")
    return latency_cycles + (items - 1) * interval_cycles


def stream_cycles(items: int, items_per_cycle: float, latency_cycles: int) -> float:
    """Occupancy of a pipelined unit: latency + ceil(items / items_per_cycle); with one item per cycle this is
    last_output_cycle(items, 1, latency) + 1 (the unit is done the cycle after its last result). 0 items: 0."""
    if items <= 0:
        return 0.0
    return latency_cycles + math.ceil(items / items_per_cycle)


def weight_tiles(k: int, n: int, bytes_per_weight: float, buffer_bytes: float,
                 double_buffered: bool) -> tuple[int, int]:
    """Split the n output columns of a (k x n) weight matrix into tiles that fit the weight buffer.

    A tile of tn columns holds tn * k * bytes_per_weight bytes; with double buffering two tiles share the
    buffer. n_tiles = ceil(n / tn_max), then tiles are balanced: tn = ceil(n / n_tiles) (every tile costed as
    the largest one). Returns (n_tiles, tn)."""
    per_col = k * bytes_per_weight
    usable = buffer_bytes / 2 if double_buffered else buffer_bytes
    tn_max = max(1, int(usable // per_col)) if per_col > 0 else n
    n_tiles = ceil_div(n, min(tn_max, n))
    return n_tiles, ceil_div(n, n_tiles)


def pipeline_cycles(load: float, compute: float, store: float, n_tiles: int, double_buffered: bool = True) -> float:
    """n identical tiles through load -> compute -> store.

    Double buffered: fill + steady state = load + compute + store + (n - 1) * max(load, compute, store).
    Not double buffered: n * (load + compute + store)."""
    if n_tiles <= 0:
        return 0.0
    if not double_buffered:
        return n_tiles * (load + compute + store)
    return load + compute + store + (n_tiles - 1) * max(load, compute, store)


def pipeline_cycles_sim(tiles: list[tuple[float, float, float]]) -> float:
    """The same pipeline, simulated tile by tile with two buffers between stages (the reference the closed
    form is tested against). Load i waits for the buffer freed by compute i-2; compute i waits for load i,
    compute i-1 and the output buffer freed by store i-2; store i waits for compute i and store i-1."""
    load_end: list[float] = []
    comp_end: list[float] = []
    store_end: list[float] = []
    for i, (ld, c, st) in enumerate(tiles):
        lp = load_end[i - 1] if i >= 1 else 0.0
        cb = comp_end[i - 2] if i >= 2 else 0.0
        load_end.append(max(lp, cb) + ld)
        cp = comp_end[i - 1] if i >= 1 else 0.0
        sb = store_end[i - 2] if i >= 2 else 0.0
        comp_end.append(max(load_end[i], cp, sb) + c)
        sp = store_end[i - 1] if i >= 1 else 0.0
        store_end.append(max(comp_end[i], sp) + st)
    return store_end[-1] if store_end else 0.0
