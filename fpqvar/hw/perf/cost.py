"""Cost of one workload operator on one accelerator: cycles, busy unit, off-chip bytes and energy events.

GEMM dataflow (assumption, CHARM-style weight streaming): activations stay in the on-chip activation buffer
(if they fit; otherwise they are streamed from and to DDR with every weight tile); weights (or, for the
attention products, the cached keys / values) stream from DDR in column tiles that fit the weight buffer;
per tile, cycles = max(load, compute, store) in steady state (``tiles.pipeline_cycles``). The qkv GEMM writes
the new keys and values (2/3 of its outputs) to the DDR KV cache. Element-wise operators, the GHT and the
quantizers run from on-chip buffers at their unit's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.hw.perf import tiles
from fpqvar.hw.perf.accelerator import Accelerator
from fpqvar.hw.perf.recipes import HWRecipe
from fpqvar.model.workload import Op

OUT_BYTES = 2  # GEMM outputs in FP16 (upstream keeps activations in FP16 outside the quantized GEMMs)
ACT_BYTES = 2  # element-wise operands in FP16


@dataclass(frozen=True)
class OpCost:
    """``cycles``: the op alone, start to finish; ``busy_cycles``: cycles its ``unit`` is computing."""

    op: Op
    unit: str
    cycles: float
    busy_cycles: float
    dram_bytes: float = 0.0
    sram_bytes: float = 0.0
    events: tuple[tuple[str, float], ...] = ()
    latency_cycles: float = 0.0
    tiles: int = 0


def cost_op(op: Op, acc: Accelerator, recipe: HWRecipe, vae_on_host: bool = True) -> OpCost:
    if op.category == "vae" and vae_on_host:
        return OpCost(op, "host", 0.0, 0.0)
    if op.kind in ("gemm", "attn_gemm", "conv"):
        return gemm_cost(op, acc, recipe)
    if op.kind == "elementwise":
        return sfu_cost(op, acc)
    if op.kind == "quant":
        return quant_cost(op, acc, recipe)
    if op.kind == "ght":
        return ght_cost(op, acc)
    raise ValueError(f"cost_op: unknown op kind {op.kind!r} ({op.name})")


def _gemm_unit(op: Op, acc: Accelerator, recipe: HWRecipe) -> tuple[str, str, float, float]:
    """(unit, energy event, weight bits, activation bits) of a GEMM under the recipe."""
    if op.category == "vae":
        return "dsp", "mac:dsp:fp16", 16.0, 16.0
    p = recipe.placement(op.name)
    if p.unit in ("fmu", "dfq") and acc.e2m1_pes == 0:
        raise ValueError(f"recipe {recipe.name!r} needs the FMU, but accelerator {acc.name!r} has no PEs")
    if p.unit == "dfq" and acc.dfq_pes == 0:
        return "fmu", "mac:fmu", p.weight_bits, p.act_bits  # no DFQ array: fc2 on the E2M1 array
    event = f"mac:dsp:{p.precision}" if p.unit == "dsp" else f"mac:{p.unit}"
    return p.unit, event, p.weight_bits, p.act_bits


def gemm_cost(op: Op, acc: Accelerator, recipe: HWRecipe) -> OpCost:
    """Weight-streaming tiled GEMM; see the module docstring for the dataflow.

    Per copy (``op.count`` copies, e.g. heads x rows): weight (or K / V) matrix k x n from DDR in n_tiles
    column tiles of tn; per tile load = tn*k*w_bytes (+ m*k*a_bytes if activations spill), compute on the
    unit, store = m*tn*out_bytes if outputs spill (+ the KV-cache share for qkv).
    cycles = max(pipeline over tiles, all DDR bytes / bytes per cycle) + the unit's pipeline latency."""
    unit, event, w_bits, a_bits = _gemm_unit(op, acc, recipe)
    mem, bpc = acc.memory, acc.bytes_per_cycle
    m, k, n, copies = op.m, op.k, op.n, op.count
    from_dram = op.weight_elems > 0 or op.kv_read_elems > 0
    w_bytes = (recipe.kv_bits if op.kv_read_elems else w_bits) / 8
    a_bytes = a_bits / 8
    # copies (heads x rows) run one after another: one copy's operands must fit. Convs count the implicit-GEMM
    # (im2col) operand, an upper bound on their traffic when they spill.
    spill = m * k * a_bytes + m * n * OUT_BYTES > mem.act_buffer_bytes
    n_tiles, tn = tiles.weight_tiles(k, n, w_bytes, mem.weight_buffer_bytes, mem.double_buffered)
    load_b = (tn * k * w_bytes if from_dram else 0.0) + (m * k * a_bytes if spill else 0.0)
    store_b = m * tn * OUT_BYTES if spill else 0.0
    if op.name == "qkv":  # the new keys and values go to the DDR KV cache
        store_b += m * tn * (2 / 3) * recipe.kv_bits / 8
    if unit == "dsp":
        macs_per_cycle = acc.dsp_gemm_dsps * acc.dsp.macs_per_dsp_cycle(event.rsplit(":", 1)[1])
        compute = tiles.dsp_array_cycles(m, k, tn, macs_per_cycle)
        latency = acc.dsp.latency_cycles
    else:
        pes = acc.e2m1_pes if unit == "fmu" else acc.dfq_pes
        compute = tiles.pe_array_cycles(m, k, tn, pes, acc.fmu.lanes_per_pe, acc.fmu.pe_initiation_interval_cycles)
        latency = acc.fmu.pe_latency_cycles
    total_tiles = n_tiles * copies
    load_c, store_c = tiles.transfer_cycles(load_b, bpc), tiles.transfer_cycles(store_b, bpc)
    cycles = tiles.pipeline_cycles(load_c, compute, store_c, total_tiles, mem.double_buffered)
    # loads and stores share one DDR: never faster than all its bytes at full bandwidth
    cycles = max(cycles, total_tiles * (load_c + store_c)) + latency
    weights_b = copies * k * n * w_bytes if from_dram else 0.0
    sram = 2 * weights_b + total_tiles * m * k * a_bytes + copies * m * n * OUT_BYTES
    return OpCost(op, unit, cycles, compute * total_tiles, dram_bytes=total_tiles * (load_b + store_b),
                  sram_bytes=sram, events=((event, op.macs),), latency_cycles=latency, tiles=total_tiles)


def sfu_cost(op: Op, acc: Accelerator) -> OpCost:
    """cycles = latency + ceil(elems * passes / lanes); operands from and to the on-chip buffers."""
    passes = acc.sfu.passes(op.name)
    work = op.elems * passes
    cycles = tiles.stream_cycles(work, acc.sfu.lanes, acc.sfu.latency_cycles)
    return OpCost(op, "sfu", cycles, cycles, sram_bytes=(passes + 1) * op.elems * ACT_BYTES,
                  events=(("sfu", work),), latency_cycles=acc.sfu.latency_cycles)


def quant_cost(op: Op, acc: Accelerator, recipe: HWRecipe) -> OpCost:
    """cycles = latency + ceil(elems / lanes): one group of ``lanes`` elements per cycle."""
    q = acc.quantizer
    cycles = tiles.stream_cycles(op.elems, q.lanes, q.latency_cycles)
    out_bits = recipe.fc2.act_bits if op.name == "quant_fc2" else recipe.linear.act_bits
    return OpCost(op, "quant", cycles, cycles, sram_bytes=op.elems * (ACT_BYTES + out_bits / 8),
                  events=(("quant", op.elems),), latency_cycles=q.latency_cycles)


def ght_cost(op: Op, acc: Accelerator) -> OpCost:
    """cycles = latency + ceil(vectors / (units * vectors_per_cycle)), vectors = elems / points."""
    g = acc.ghtu
    if g is None:
        raise ValueError(f"op {op.name!r} needs a GHT unit, but accelerator {acc.name!r} has none")
    vectors = tiles.ceil_div(op.elems, g.points)
    cycles = tiles.stream_cycles(vectors, g.units * g.vectors_per_cycle, g.latency_cycles)
    return OpCost(op, "ghtu", cycles, cycles, sram_bytes=2 * op.elems * ACT_BYTES,
                  events=(("ght", op.flops),), latency_cycles=g.latency_cycles)
