"""Schedules: how operator costs combine into the latency of one generation call.

- ``sequential``: every operator runs alone, in workload order (tiles inside a GEMM still follow the
  ``Memory.double_buffered`` setting: that is the GEMM engine, not the paper's pipeline).
- ``level1``: GHT -> quantize -> matmul overlapped per 128-group (fpqvar-method.md, "Two-level pipeline"): the
  producers of a quantized GEMM (``ght_x``, ``quant_x``) run alongside it; the quantize -> matmul overlap of
  proj and fc2 (DFQ) is the same mechanism and is included.
- ``level2``: level 1, plus the condition MLP (``ada_lin``) of block i+1 overlapped with the fc2 group of
  block i (it depends only on the class condition). Within a scale; block 0's ada_lin stays exposed.

- ``stream``: per-block dataflow (as HLS dataflow designs do): every operator of a block segment runs at once
  on its own unit, row tiles flowing from producer to consumer. A block has two segments, split at the attention
  barrier (a scale's queries need all of its keys): [ln1, ght_qkv, quant_qkv, qkv, qk_norm] and [attn_qk ...
  residual2] + the next block's ada_lin (level 2's overlap). Fill = the sum of the members' pipeline latencies.
  Assumption (optimistic): fc1 -> fc2 and the other GEMM chains overlap at row-tile granularity without
  re-reading weights. Unit widths for it: ``streaming.size_for_stream``.

Overlapped operators form a segment: cycles = max(longest member, per-unit busy sums, per channel: its DDR bytes
/ its bytes per cycle) + the producers' fill latency (``overlap_cycles``). A unit cannot run two members at once,
and members share each channel's bandwidth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from fpqvar.hw.perf.cost import OpCost
from fpqvar.hw.perf.memory import transfer_cycles_by_channel

SCHEDULES = ("sequential", "level1", "level2", "stream")
_STREAM_FIRST = ("ln1", "ght_qkv", "quant_qkv", "qkv", "qk_norm")  # a block's segment before attention
_PRODUCER_PREFIXES = ("ght_", "quant_")


@dataclass(frozen=True)
class Segment:
    members: tuple[OpCost, ...]
    cycles: float

    @property
    def critical(self) -> OpCost:
        """The member the segment's time is attributed to (the longest standalone)."""
        return max(self.members, key=lambda c: c.cycles)


def overlap_cycles(members: list[OpCost], bytes_per_cycle: dict[str, float] | float,
                   fill_cycles: float = 0.0) -> float:
    """Concurrent operators on units that work in parallel and share the channels:
    max(max_i cycles_i, max_unit sum of busy cycles on that unit, max_channel its bytes / its bytes per cycle)
    + fill_cycles. A single member costs exactly its own cycles. A float ``bytes_per_cycle`` is one channel."""
    if len(members) == 1:
        return members[0].cycles + fill_cycles
    per_unit: dict[str, float] = defaultdict(float)
    per_channel: dict[str, float] = defaultdict(float)
    for c in members:
        for u in (c.unit, *c.also_busy):
            per_unit[u] += c.busy_cycles
        for ch, b in c.dram:
            per_channel[ch] += b
    if not isinstance(bytes_per_cycle, dict):
        bytes_per_cycle = {ch: bytes_per_cycle for ch in per_channel}
    dram = transfer_cycles_by_channel(dict(per_channel), bytes_per_cycle)
    return max(max(c.cycles for c in members), max(per_unit.values()), dram) + fill_cycles


def _is_producer(c: OpCost) -> bool:
    return c.op.name.startswith(_PRODUCER_PREFIXES)


def build_segments(costs: list[OpCost], schedule: str, bytes_per_cycle: dict[str, float] | float) -> list[Segment]:
    """Group the operator costs (in workload order) into segments according to the schedule."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    if schedule == "stream":
        return [Segment(tuple(g), overlap_cycles(g, bytes_per_cycle, sum(m.latency_cycles for m in g)
                                                 if len(g) > 1 else 0.0)) for g in _stream_groups(costs)]
    groups: list[list[OpCost]] = []
    pending: list[OpCost] = []  # level-1 producers waiting for their GEMM
    for c in costs:
        if schedule != "sequential" and _is_producer(c):
            pending.append(c)
            continue
        if pending:
            target = c.op.name
            if all(p.op.name.split("_", 1)[1] == target and (p.op.scale, p.op.block) == (c.op.scale, c.op.block)
                   for p in pending):
                groups.append([*pending, c])
                pending = []
                continue
            groups.extend([p] for p in pending)
            pending = []
        groups.append([c])
    groups.extend([p] for p in pending)
    if schedule == "level2":
        groups = _merge_ada_lin_into_fc2(groups)
    segments = []
    for g in groups:
        fill = sum(m.latency_cycles for m in g if _is_producer(m)) if len(g) > 1 else 0.0
        segments.append(Segment(tuple(g), overlap_cycles(g, bytes_per_cycle, fill)))
    return segments


def _merge_ada_lin_into_fc2(groups: list[list[OpCost]]) -> list[list[OpCost]]:
    """Move ada_lin of (scale s, block b+1) into the group holding fc2 of (s, b)."""
    ada_at = {(g[0].op.scale, g[0].op.block): i for i, g in enumerate(groups)
              if len(g) == 1 and g[0].op.name == "ada_lin"}
    moved: set[int] = set()
    out = [list(g) for g in groups]
    for i, g in enumerate(out):
        fc2 = [m for m in g if m.op.name == "fc2"]
        if not fc2:
            continue
        j = ada_at.get((fc2[0].op.scale, fc2[0].op.block + 1))
        if j is not None and j > i:
            g.append(groups[j][0])
            moved.add(j)
    return [g for i, g in enumerate(out) if i not in moved]


def _stream_groups(costs: list[OpCost]) -> list[list[OpCost]]:
    """Per block: [ln1 .. qk_norm] and [attn_qk .. residual2] as two segments; the next block's ada_lin joins the
    second (level 2). Operators outside blocks stay alone."""
    groups: list[list[OpCost]] = []
    cur: list[OpCost] = []
    key = None
    for c in costs:
        blk = (c.op.scale, c.op.block)
        part = 0 if c.op.name in _STREAM_FIRST else 1
        if c.op.block < 0 or c.op.name == "ada_lin":
            if cur:
                groups.append(cur)
            groups.append([c])
            cur, key = [], None
            continue
        if (blk, part) != key:
            if cur:
                groups.append(cur)
            cur, key = [], (blk, part)
        cur.append(c)
    if cur:
        groups.append(cur)
    return _merge_ada_lin_into_fc2(groups)
