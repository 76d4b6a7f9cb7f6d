"""Cost of one workload operator on one accelerator: cycles, busy unit, off-chip bytes and energy events.

GEMM dataflow (assumption, CHARM-style weight streaming): activations stay in the on-chip activation buffer
(if they fit; otherwise they are streamed from and to DDR with every weight tile); weights (or, for the
attention products, the cached keys / values) stream from their off-chip channel (``memory.py``) in column
tiles that fit the weight buffer; per tile, cycles = max(load, compute, store) in steady state
(``tiles.pipeline_cycles``). The qkv GEMM writes the new keys and values (2/3 of its outputs) to the KV
cache. Element-wise operators, the GHT and the quantizers run from on-chip buffers at their unit's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.hw.perf import tiles
from fpqvar.hw.perf.accelerator import Accelerator
from fpqvar.hw.perf.memory import transfer_cycles_by_channel
from fpqvar.hw.perf.recipes import COND_GEMMS, HWRecipe
from fpqvar.model.workload import Op

OUT_BYTES = 2  # GEMM outputs in FP16 (upstream keeps activations in FP16 outside the quantized GEMMs)
ACT_BYTES = 2  # element-wise operands in FP16


@dataclass(frozen=True)
class OpCost:
    """``cycles``: the op alone, start to finish; ``busy_cycles``: cycles its ``unit`` (and ``also_busy``, for a
    GEMM split over two engines) is computing; ``dram``: off-chip bytes per channel."""

    op: Op
    unit: str
    cycles: float
    busy_cycles: float
    dram: tuple[tuple[str, float], ...] = ()
    sram_bytes: float = 0.0
    events: tuple[tuple[str, float], ...] = ()
    latency_cycles: float = 0.0
    tiles: int = 0
    also_busy: tuple[str, ...] = ()

    @property
    def dram_bytes(self) -> float:
        return sum(b for _, b in self.dram)


def _dram(**by_channel: float) -> tuple[tuple[str, float], ...]:
    return tuple((ch, b) for ch, b in by_channel.items() if b)


def _add(into: dict[str, float], ch: str, b: float) -> None:
    if b:
        into[ch] = into.get(ch, 0.0) + b


def cost_op(op: Op, acc: Accelerator, recipe: HWRecipe, vae_on_host: bool = True, ada_lin: str = "per_scale") -> OpCost:
    """``ada_lin`` "table": the class-conditional MLPs (ada_lin, head_ada_lin) are a per-class table in DDR, so
    their op is a read of the row's outputs, no compute (the workload must then list them once per image)."""
    if op.category == "vae" and vae_on_host:
        return OpCost(op, "host", 0.0, 0.0)
    if ada_lin == "table" and op.name in ("ada_lin", "head_ada_lin"):
        return table_read_cost(op, acc)
    if op.kind in ("gemm", "attn_gemm", "conv"):
        return gemm_cost(op, acc, recipe)
    if op.kind == "elementwise":
        return sfu_cost(op, acc)
    if op.kind == "quant":
        return quant_cost(op, acc, recipe)
    if op.kind == "ght":
        return ght_cost(op, acc)
    raise ValueError(f"cost_op: unknown op kind {op.kind!r} ({op.name})")


def table_read_cost(op: Op, acc: Accelerator) -> OpCost:
    """A per-class table lookup: the m x n FP16 outputs read from the cond-weights channel into the on-chip
    buffer by DMA (no compute unit; cycles = bytes / channel bytes per cycle)."""
    ch = acc.memory.offchip.channel_of("cond_weights")
    nbytes = op.m * op.n * op.count * OUT_BYTES
    cycles = tiles.transfer_cycles(nbytes, acc.channel_bytes_per_cycle[ch])
    return OpCost(op, "dma", cycles, 0.0, dram=_dram(**{ch: nbytes}), sram_bytes=nbytes, tiles=1)


def _gemm_unit(op: Op, acc: Accelerator, recipe: HWRecipe) -> tuple[str, str, float, float]:
    """(unit, energy event, weight bits, activation bits) of a GEMM under the recipe."""
    if op.category == "vae":
        return "dsp", "mac:dsp:fp16", 16.0, 16.0
    p = recipe.placement(op.name)
    if p.unit in ("fmu", "dfq", "fmu+dsp") and acc.e2m1_pes == 0 and acc.dfq_pes == 0:
        raise ValueError(f"recipe {recipe.name!r} places {op.name} on the LUT arrays, but accelerator {acc.name!r} "
                         "has no PEs")
    if p.unit == "aie" and acc.aie is None:
        raise ValueError(f"recipe {recipe.name!r} places {op.name} on the AI Engines, but accelerator {acc.name!r} "
                         "has none")
    lut_event = "mac:lut_int4" if p.precision == "int4" else None
    if p.unit == "dfq" and acc.dfq_pes == 0:  # no DFQ array: fc2 on the main array (DFQ-capable if unified)
        return "fmu", lut_event or "mac:fmu", p.weight_bits, p.act_bits
    if p.unit == "fmu" and acc.e2m1_pes == 0:  # only a DFQ array: it runs E2M1 layers too
        return "dfq", lut_event or "mac:dfq", p.weight_bits, p.act_bits
    if p.unit in ("fmu", "dfq", "fmu+dsp"):
        return p.unit, lut_event or f"mac:{p.unit}", p.weight_bits, p.act_bits
    if p.unit == "aie":
        return "aie", "mac:aie:int8", p.weight_bits, p.act_bits
    return "dsp", f"mac:dsp:{p.precision}", p.weight_bits, p.act_bits


def _macs_per_cycle(unit: str, event: str, acc: Accelerator) -> float:
    lanes = acc.fmu.lanes_per_pe if acc.fmu else 0
    ii = acc.fmu.pe_initiation_interval_cycles if acc.fmu else 1
    if unit == "fmu":
        return acc.e2m1_pes * lanes / ii
    if unit == "dfq":
        return acc.dfq_pes * lanes / ii
    if unit == "aie":
        return acc.aie.macs_per_pl_cycle(acc.clock_hz)
    return acc.dsp_gemm_dsps * acc.dsp.macs_per_dsp_cycle(event.rsplit(":", 1)[1])


def gemm_cost(op: Op, acc: Accelerator, recipe: HWRecipe) -> OpCost:
    """Weight-streaming tiled GEMM; see the module docstring for the dataflow.

    Per copy (``op.count`` copies, e.g. heads x rows): weight (or K / V) matrix k x n from its channel in
    n_tiles column tiles of tn; per tile load = tn*k*w_bytes (+ m*k*a_bytes on the spill channel if activations
    spill), compute on the unit, store = m*tn*out_bytes if outputs spill (+ the KV-cache share for qkv).
    Transfers on different channels overlap: a tile's load (store) takes the max over channels.
    cycles = max(pipeline over tiles, per channel: all its bytes / its bytes per cycle) + the unit's latency."""
    unit, event, w_bits, a_bits = _gemm_unit(op, acc, recipe)
    mem, bpc = acc.memory, acc.channel_bytes_per_cycle
    off = mem.offchip
    m, k, n, copies = op.m, op.k, op.n, op.count
    from_dram = op.weight_elems > 0 or op.kv_read_elems > 0
    w_bytes = (recipe.kv_bits if op.kv_read_elems else w_bits) / 8
    a_bytes = a_bits / 8
    # copies (heads x rows) run one after another: one copy's operands must fit. Convs count the implicit-GEMM
    # (im2col) operand, an upper bound on their traffic when they spill.
    spill = m * k * a_bytes + m * n * OUT_BYTES > mem.act_buffer_bytes
    n_tiles, tn = tiles.weight_tiles(k, n, w_bytes, mem.weight_buffer_bytes, mem.double_buffered)
    src = off.channel_of("kv_cache" if op.kv_read_elems else
                         "cond_weights" if op.name in COND_GEMMS else "linear_weights")
    spill_ch, kv_ch = off.channel_of("act_spill"), off.channel_of("kv_cache")
    load: dict[str, float] = {}
    store: dict[str, float] = {}
    _add(load, src, tn * k * w_bytes if from_dram else 0.0)
    _add(load, spill_ch, m * k * a_bytes if spill else 0.0)
    _add(store, spill_ch, m * tn * OUT_BYTES if spill else 0.0)
    if op.name == "qkv":  # the new keys and values go to the DDR KV cache
        _add(store, kv_ch, m * tn * (2 / 3) * recipe.kv_bits / 8)
    if unit in ("fmu", "dfq"):
        pes = acc.e2m1_pes if unit == "fmu" else acc.dfq_pes
        compute = tiles.pe_array_cycles(m, k, tn, pes, acc.fmu.lanes_per_pe, acc.fmu.pe_initiation_interval_cycles)
        latency = acc.fmu.pe_latency_cycles
    elif unit == "fmu+dsp":  # columns split in proportion to the two engines' peaks
        event_dsp = f"mac:dsp:{recipe.placement(op.name).precision}"
        compute = tiles.dsp_array_cycles(m, k, tn, _macs_per_cycle("fmu", "", acc) +
                                         _macs_per_cycle("dsp", event_dsp, acc))
        latency = max(acc.fmu.pe_latency_cycles, acc.dsp.latency_cycles)
    else:
        compute = tiles.dsp_array_cycles(m, k, tn, _macs_per_cycle(unit, event, acc))
        latency = acc.aie.latency_cycles if unit == "aie" else acc.dsp.latency_cycles
    total_tiles = n_tiles * copies
    load_c = transfer_cycles_by_channel(load, bpc)
    store_c = transfer_cycles_by_channel(store, bpc)
    cycles = tiles.pipeline_cycles(load_c, compute, store_c, total_tiles, mem.double_buffered)
    # loads and stores share each channel: never faster than a channel's bytes at its full bandwidth
    both = dict(load)
    for ch, b in store.items():
        _add(both, ch, b)
    cycles = max(cycles, total_tiles * transfer_cycles_by_channel(both, bpc)) + latency
    weights_b = copies * k * n * w_bytes if from_dram else 0.0
    sram = 2 * weights_b + total_tiles * m * k * a_bytes + copies * m * n * OUT_BYTES
    events: tuple[tuple[str, float], ...] = ((event, op.macs),)
    also: tuple[str, ...] = ()
    if unit == "fmu+dsp":
        f_lut = _macs_per_cycle("fmu", "", acc) / (_macs_per_cycle("fmu", "", acc) +
                                                   _macs_per_cycle("dsp", event_dsp, acc))
        events = (("mac:lut_int4", op.macs * f_lut), (event_dsp, op.macs * (1 - f_lut)))
        unit, also = "fmu", ("dsp",)
    return OpCost(op, unit, cycles, compute * total_tiles, dram=tuple((ch, b * total_tiles) for ch, b in both.items()),
                  sram_bytes=sram, events=events, latency_cycles=latency, tiles=total_tiles, also_busy=also)


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
