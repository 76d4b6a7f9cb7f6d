"""Hardware descriptions for the performance model: frozen dataclasses, every assumption a named field.

Each field carries ``metadata`` with its ``unit`` and ``source`` (where the value comes from, or
"assumption"), so reports can print the assumption table (``assumptions(obj)``). Known VCK190 facts come
from shared/spec/hardware.md section 2; LUT costs are "given" (hardware.md section 6) unless measured by
part 1's ``fpqvar hw area --json`` (``LutCosts.from_area_json``). Nothing here is fitted to the paper's
numbers; calibrated variants live in ``claims.py`` and say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from fpqvar.hw.perf.config import (  # noqa: F401 - re-exported: the descriptions' public helpers
    HW_VERSION,
    F,
    _positive,
    assumptions,
    from_dict,
    to_dict,
    with_overrides,
)
from fpqvar.hw.perf.lut_costs import SECTION6, LutCosts, adder_tree_luts  # noqa: F401 - re-exported
from fpqvar.hw.perf.memory import OffChip


@dataclass(frozen=True)
class FMU:
    """The LUT matrix unit: PE arrays, each PE a ``lanes_per_pe`` dot product per cycle, sized from a LUT budget.

    ``pe_kind`` "fp4": an E2M1 array (qkv, proj, fc1) and a DFQ array (fc2), ``arrays`` "separate" (split by
    ``dfq_lut_fraction``) or "unified" (one array of DFQ-capable PEs runs all four GEMMs, the whole budget);
    "int4_sm" / "int4_twos": one INT4 LUT array (the LUT baselines), the whole budget. An explicit count of one
    array leaves the rest of the budget to the other; 0 DFQ PEs gives the E2M1 array the whole budget."""

    lut_budget_luts: float = F(405_000.0, "LUT", "assumption: 45% of the 899,840 device LUTs (hardware.md "
                               "section 2, secondary source) for the PE arrays; the rest for GHTU, SFU, I/O")
    pe_kind: str = F("fp4", "-", "design choice: fp4 (E2M1 + DFQ), int4_sm, int4_twos")
    arrays: str = F("separate", "-", "design choice: separate E2M1 and DFQ arrays, or one unified DFQ-capable array")
    dfq_lut_fraction: float | None = F(None, "1", "None: the split minimising sequential linear time, "
                                       "P_e/P_d = sqrt(2 c_d / c_e) (qkv+proj+fc1 have 2x fc2's MACs)")
    lanes_per_pe: int = F(128, "lane", "fpqvar-method.md section 5: group size 128 = one group per PE cycle")
    mult_cycles: int = F(1, "cycle", "assumption: products registered once (as part 1's PE, fpqvar.hw.rtl.pe)")
    tree_cycles_per_level: int = F(1, "cycle", "assumption: a register after every adder-tree level (as part 1)")
    pe_initiation_interval_cycles: int = F(1, "cycle", "assumption: one group dot product per PE per cycle")
    accumulate_cycles: int = F(4, "cycle", "assumption: DSPFP32 scale-multiply-accumulate of group partial sums")
    dsps_per_pe: int = F(1, "DSP", "assumption: one DSP58 (FP32 mode) applies group scales, accumulates")
    e2m1_pes: int | None = F(None, "PE", "None: from the budget; an int overrides (array-size sweeps)")
    dfq_pes: int | None = F(None, "PE", "None: from the budget; 0 gives the E2M1 array the whole budget and runs "
                            "fc2 there")
    costs: LutCosts = field(default_factory=LutCosts)

    def __post_init__(self) -> None:
        _positive(self, "lut_budget_luts", "lanes_per_pe", "pe_initiation_interval_cycles")
        if self.pe_kind not in ("fp4", "int4_sm", "int4_twos"):
            raise ValueError(f"FMU.pe_kind must be fp4, int4_sm or int4_twos, got {self.pe_kind!r}")
        if self.arrays not in ("separate", "unified"):
            raise ValueError(f"FMU.arrays must be separate or unified, got {self.arrays!r}")
        if self.dfq_lut_fraction is not None and not 0 <= self.dfq_lut_fraction < 1:
            raise ValueError(f"FMU.dfq_lut_fraction must be in [0, 1), got {self.dfq_lut_fraction}")
        for name in ("e2m1_pes", "dfq_pes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"FMU.{name} must be >= 0 or None, got {v}")
        if self.single_array and self.dfq_pes:
            raise ValueError(f"FMU.dfq_pes = {self.dfq_pes}: a {self.pe_kind} {self.arrays} design has one array "
                             "(set e2m1_pes for its size)")

    @property
    def single_array(self) -> bool:
        """One PE array runs every quantized GEMM (unified DFQ-capable PEs, or the INT4 LUT array)."""
        return self.pe_kind != "fp4" or self.arrays == "unified"

    @property
    def main_pe_kind(self) -> str:
        """PE kind of the array behind ``num_e2m1_pes`` (the one that runs qkv / proj / fc1)."""
        if self.pe_kind != "fp4":
            return self.pe_kind
        return "unified" if self.arrays == "unified" else "e2m1"

    @property
    def group_dot_latency_cycles(self) -> int:
        """Cycles from a group's operands entering a PE to its dot product: mult + log2(lanes) tree levels."""
        return self.mult_cycles + self.tree_cycles_per_level * int(math.log2(self.lanes_per_pe))

    @property
    def pe_latency_cycles(self) -> int:
        """Pipeline fill of the PE array: the group dot product, then scale-and-accumulate."""
        return self.group_dot_latency_cycles + self.accumulate_cycles

    @cached_property
    def e2m1_pe_luts(self) -> float:
        """LUTs of one PE of the main array (E2M1, unified or INT4, see ``main_pe_kind``)."""
        return self.costs.pe_luts(self.main_pe_kind, self.lanes_per_pe)

    @cached_property
    def dfq_pe_luts(self) -> float:
        return self.costs.pe_luts("dfq", self.lanes_per_pe)

    def _split(self) -> float:
        """Fraction of the budget for the DFQ array when both counts come from the budget."""
        if self.single_array:
            return 0.0
        if self.dfq_lut_fraction is not None:
            return self.dfq_lut_fraction
        ratio = math.sqrt(2 * self.dfq_pe_luts / self.e2m1_pe_luts)  # P_e / P_d at the optimum
        return self.dfq_pe_luts / (self.dfq_pe_luts + ratio * self.e2m1_pe_luts)

    @cached_property
    def num_e2m1_pes(self) -> int:
        if self.e2m1_pes is not None:
            return self.e2m1_pes
        if self.dfq_pes is not None:  # what the fixed DFQ array leaves (all of it when dfq_pes = 0)
            return max(0, int((self.lut_budget_luts - self.dfq_pes * self.dfq_pe_luts) // self.e2m1_pe_luts))
        return int(self.lut_budget_luts * (1 - self._split()) // self.e2m1_pe_luts)

    @cached_property
    def num_dfq_pes(self) -> int:
        if self.dfq_pes is not None:
            return self.dfq_pes
        if self.single_array:
            return 0
        if self.e2m1_pes is not None:
            return max(0, int((self.lut_budget_luts - self.e2m1_pes * self.e2m1_pe_luts) // self.dfq_pe_luts))
        return int(self.lut_budget_luts * self._split() // self.dfq_pe_luts)

    @cached_property
    def luts(self) -> float:
        return self.num_e2m1_pes * self.e2m1_pe_luts + self.num_dfq_pes * self.dfq_pe_luts

    @cached_property
    def ffs(self) -> float:
        lanes = self.lanes_per_pe
        return (self.num_e2m1_pes * self.costs.pe_ffs(self.main_pe_kind, lanes)
                + self.num_dfq_pes * self.costs.pe_ffs("dfq", lanes))


@dataclass(frozen=True)
class DSPArray:
    """DSP58 engines used as GEMM units: integer modes for the baseline, FP32 mode for the FP16 operators."""

    device_dsps: int = F(1968, "DSP", "hardware.md section 2: 1,968 DSP58 on the XCVC1902")
    reserved_dsps: int = F(64, "DSP", "assumption: DSPs kept for the SFU (LayerNorm, softmax, GELU)")
    int8_macs_per_dsp_cycle: float = F(3.0, "MAC/cycle", "hardware.md section 2: INT8 mode = dot product of "
                                       "three 9x8 products (AM004)")
    int4_macs_per_dsp_cycle: float = F(3.0, "MAC/cycle", "hardware.md section 5: FINN PR #995, DSP58 packing "
                                       "gives 3 MACs/cycle for 4-8-bit operands")
    fp16_macs_per_dsp_cycle: float = F(1.0, "MAC/cycle", "assumption: FP16 computed in DSPFP32 mode, one FMA")
    latency_cycles: int = F(8, "cycle", "assumption: pipeline fill of a dot-product chain")
    gemm_dsps: int | None = F(None, "DSP", "None: every DSP not reserved or used by PEs; an int fixes the "
                              "DSP GEMM array size")

    def __post_init__(self) -> None:
        _positive(self, "device_dsps", "int8_macs_per_dsp_cycle", "int4_macs_per_dsp_cycle",
                  "fp16_macs_per_dsp_cycle")
        if not 0 <= self.reserved_dsps <= self.device_dsps:
            raise ValueError(f"DSPArray.reserved_dsps must be in [0, {self.device_dsps}], "
                             f"got {self.reserved_dsps}")

    def macs_per_dsp_cycle(self, precision: str) -> float:
        try:
            return {"int8": self.int8_macs_per_dsp_cycle, "int4": self.int4_macs_per_dsp_cycle,
                    "fp16": self.fp16_macs_per_dsp_cycle}[precision]
        except KeyError:
            raise ValueError(f"DSPArray: unknown precision {precision!r} (int8, int4, fp16)") from None


@dataclass(frozen=True)
class AIEArray:
    """The AI-Engine array as an INT8 GEMM engine (the AIE baseline; FP4 E2M1 x 2 and E1M2 x 4 are exact int8)."""

    tiles: int = F(400, "tile", "hardware.md section 2: 400 AI Engines on the XCVC1902")
    int8_macs_per_tile_cycle: float = F(128.0, "MAC/cycle", "UG1079 (AI Engine kernel guide): 128 int8 x int8 MACs "
                                        "per cycle per tile")
    clock_hz: float = F(1.25e9, "Hz", "hardware.md section 2: 1.25 GHz on the -2MP speed grade")
    efficiency: float = F(0.46, "1", "CHARM (hardware.md section 3): 2.94 of 6.4 TFLOP/s fp32 on an MLP = 0.46 of the "
                          "array peak, taken as the int8 GEMM efficiency (assumption)")
    latency_cycles: int = F(64, "cycle", "assumption: PL cycles to fill the PLIO -> AIE -> PLIO pipeline")

    def __post_init__(self) -> None:
        _positive(self, "tiles", "int8_macs_per_tile_cycle", "clock_hz")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"AIEArray.efficiency must be in (0, 1], got {self.efficiency}")

    def macs_per_pl_cycle(self, pl_clock_hz: float) -> float:
        """tiles * MACs/cycle * efficiency * AIE clock / PL clock."""
        return self.tiles * self.int8_macs_per_tile_cycle * self.efficiency * self.clock_hz / pl_clock_hz


@dataclass(frozen=True)
class GHTUnit:
    """GHTU: random sign flip + a 128-point FWHT (7 butterfly stages), fully pipelined."""

    points: int = F(128, "element", "fpqvar-method.md section 7: GHT block size 128")
    units: int = F(1, "unit", "assumption: one GHTU")
    vectors_per_cycle: float = F(1.0, "vector/cycle", "assumption: fully pipelined, one 128-vector per "
                                 "cycle per unit (the 7-stage FWHT of hardware.md section 6)")
    cycles_per_stage: int = F(1, "cycle", "assumption: one register per butterfly stage (hardware.md section 6: "
                              "7 pipeline stages for 128 points)")

    def __post_init__(self) -> None:
        _positive(self, "points", "units", "vectors_per_cycle")
        if self.points & (self.points - 1):
            raise ValueError(f"GHTUnit.points must be a power of two, got {self.points}")

    @property
    def latency_cycles(self) -> int:
        """log2(points) butterfly stages."""
        return self.cycles_per_stage * int(math.log2(self.points))


@dataclass(frozen=True)
class Quantizer:
    """Dynamic per-group activation quantizer: absmax, scale, grid comparisons (hardware.md section 1)."""

    lanes: int = F(128, "element/cycle", "assumption: one 128-group per cycle, matched to the PE width")
    latency_cycles: int = F(10, "cycle", "assumption: 7-level absmax tree + scale + compare")

    def __post_init__(self) -> None:
        _positive(self, "lanes")


@dataclass(frozen=True)
class SFU:
    """Special-function unit: LayerNorm, softmax, GELU, L2 norm, residual adds, sampling."""

    lanes: int = F(64, "element/cycle", "assumption")
    ln_passes: int = F(2, "pass", "assumption: statistics pass + normalise/modulate pass")
    softmax_passes: int = F(3, "pass", "assumption: max, exp-sum, normalise")
    gelu_passes: int = F(1, "pass", "assumption: pipelined tanh-GELU")
    l2norm_passes: int = F(2, "pass", "assumption")
    residual_passes: int = F(1, "pass", "assumption")
    sample_passes: int = F(4, "pass", "assumption: CFG mix, top-k threshold, top-p threshold, draw")
    latency_cycles: int = F(16, "cycle", "assumption")

    def __post_init__(self) -> None:
        _positive(self, "lanes")

    def passes(self, op_name: str) -> int:
        key = {"ln1": "ln", "ln2": "ln", "head_ln": "ln", "qk_norm": "l2norm", "residual1": "residual",
               "residual2": "residual"}.get(op_name, op_name)
        try:
            return getattr(self, f"{key}_passes")
        except AttributeError:
            raise ValueError(f"SFU: no pass count for op {op_name!r}") from None


@dataclass(frozen=True)
class Memory:
    """On-chip buffers (resource caps) and the off-chip channels (``memory.py``)."""

    bram_blocks: int = F(967, "block", "hardware.md section 2 (CHARM caps; UG1273)")
    bram_block_bits: int = F(36 * 1024, "bit", "hardware.md section 2: 36 Kb")
    uram_blocks: int = F(463, "block", "hardware.md section 2 (CHARM caps; UG1273)")
    uram_block_bits: int = F(288 * 1024, "bit", "hardware.md section 2: 288 Kb")
    weight_buffer_bytes: int = F(2 * 2**20, "byte", "assumption: double-buffered weight tiles in BRAM")
    act_buffer_bytes: int = F(14 * 2**20, "byte", "assumption: activations resident in URAM")
    offchip: OffChip = field(default_factory=OffChip)
    double_buffered: bool = F(True, "-", "assumption: ping-pong tile buffers, so tile load / compute / store "
                              "overlap (CHARM-style); False: each tile loads, computes, stores in turn")

    def __post_init__(self) -> None:
        _positive(self, "weight_buffer_bytes", "act_buffer_bytes")
        if self.weight_buffer_bytes + self.act_buffer_bytes > self.onchip_bytes:
            raise ValueError(f"Memory: weight_buffer_bytes + act_buffer_bytes = "
                             f"{self.weight_buffer_bytes + self.act_buffer_bytes} exceeds the on-chip "
                             f"BRAM + URAM capacity {self.onchip_bytes}")

    @property
    def onchip_bytes(self) -> int:
        return (self.bram_blocks * self.bram_block_bits + self.uram_blocks * self.uram_block_bits) // 8

    @property
    def effective_bandwidth_bytes_per_s(self) -> float:
        """All channels together (each min(peak * efficiency, NoC ports * port cap))."""
        return self.offchip.total_bandwidth_bytes_per_s
