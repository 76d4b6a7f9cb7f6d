"""Hardware descriptions for the performance model: frozen dataclasses, every assumption a named field.

Each field carries ``metadata`` with its ``unit`` and ``source`` (where the value comes from, or
"assumption"), so reports can print the assumption table (``assumptions(obj)``). Known VCK190 facts come
from shared/spec/hardware.md section 2; LUT costs are "given" (hardware.md section 6) unless measured by
part 1's ``fpqvar hw area --json`` (``LutCosts.from_area_json``). Nothing here is fitted to the paper's
numbers; calibrated variants live in ``claims.py`` and say so.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from functools import cached_property

HW_VERSION = 1
SECTION6 = "given: hardware.md section 6 (Yosys 0.23 synth_xilinx -family xcup)"


def F(default, unit: str, source: str):  # noqa: N802 - a field constructor, reads like a type
    """A dataclass field with its unit and source in the metadata."""
    return field(default=default, metadata={"unit": unit, "source": source})


def adder_tree_luts(lanes: int, in_bits: int, luts_per_bit: float) -> float:
    """LUTs of a binary adder tree over ``lanes`` inputs of ``in_bits`` bits.

    Formula: sum over levels j = 1..log2(lanes) of (lanes / 2^j) adders of (in_bits + j - 1) bits, each
    bit one LUT on the carry chain (``luts_per_bit``). 128 lanes of 9 bits: 1263 LUTs at 1 LUT per bit.
    """
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"adder_tree_luts: lanes must be a power of two, got {lanes}")
    levels = int(math.log2(lanes))
    return luts_per_bit * sum((lanes >> j) * (in_bits + j - 1) for j in range(1, levels + 1))


@dataclass(frozen=True)
class LutCosts:
    """LUT cost of the FMU building blocks (one multiplier = one lane of a PE).

    Either the per-lane parts ("given", hardware.md section 6, combined by formula) or, when part 1's
    ``fpqvar hw area --json`` table is read (``from_area_json``), the synthesized dot-product PEs themselves
    (``*_pe_dot_luts``: multipliers + pipelined adder tree(s), without the group accumulator)."""

    e2m1_mult_luts: float = F(9.0, "LUT", SECTION6 + ": FP4xFP4 sign-magnitude multiplier")
    dfq_mult_luts: float = F(17.0, "LUT", SECTION6 + ": two sets per lane (paper summary): E2M1xE2M1 9 + "
                             "E1M2xE2M1 magnitude 7 + 1 select / sign")
    e2m1_product_bits: int = F(9, "bit", "derived: |E2M1 x E2M1| <= 36 = 144 quarter units, 8 bits + sign")
    dfq_product_bits: int = F(10, "bit", "derived: both DFQ products in 1/8 units, |p| <= 288: 9 bits + sign")
    adder_luts_per_bit: float = F(1.0, "LUT/bit", "assumption: one LUT per sum bit on the carry chain")
    pe_overhead_luts: float = F(256.0, "LUT", "assumption: group accumulator, scale alignment, control")
    fht128_luts: float = F(9856.0, "LUT", SECTION6 + ": 128-pt 8-bit FWHT, 7 pipeline stages")
    e2m1_pe_dot_luts: float | None = F(None, "LUT", "None: by formula; else measured (pe_fp4 of hw area)")
    dfq_pe_dot_luts: float | None = F(None, "LUT", "None: by formula; else measured (pe_dfq of hw area)")
    source: str = SECTION6
    version: int = HW_VERSION

    def e2m1_pe_luts(self, lanes: int) -> float:
        """lanes x multiplier + one adder tree over the signed products + per-PE overhead (or the measured
        dot-product PE + overhead)."""
        if self.e2m1_pe_dot_luts is not None:
            return self.e2m1_pe_dot_luts + self.pe_overhead_luts
        tree = adder_tree_luts(lanes, self.e2m1_product_bits, self.adder_luts_per_bit)
        return lanes * self.e2m1_mult_luts + tree + self.pe_overhead_luts

    def dfq_pe_luts(self, lanes: int) -> float:
        """A DFQ multiplier per lane (the activation's sign selects E2M1 x E2M1 or E1M2 x E2M1) and two adder
        trees, one per sign, since each sign has its own scale (fpqvar-method.md section 6); + overhead."""
        if self.dfq_pe_dot_luts is not None:
            return self.dfq_pe_dot_luts + self.pe_overhead_luts
        tree = adder_tree_luts(lanes, self.dfq_product_bits, self.adder_luts_per_bit)
        return lanes * self.dfq_mult_luts + 2 * tree + self.pe_overhead_luts

    @classmethod
    def from_area_json(cls, data: dict, path: str = "<json>") -> "LutCosts":
        """Measured counts from ``fpqvar hw area --json`` (``{"rows": [{"unit": ..., "luts": ...}, ...]}``)
        or a plain ``{unit: luts}`` / ``{"units": {unit: luts or {"luts": n}}}`` object.

        Units read: ``fp4_mul`` -> e2m1_mult_luts, ``dfq_mul`` -> dfq_mult_luts, ``fht128`` -> fht128_luts,
        ``pe_fp4`` -> e2m1_pe_dot_luts, ``pe_dfq`` -> dfq_pe_dot_luts (the 128-lane PEs; other lane counts use
        the formula, so keep ``lanes_per_pe`` = 128 with measured PEs)."""
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        if isinstance(data.get("rows"), list):
            try:
                units = {r["unit"]: r["luts"] for r in data["rows"]}
            except (KeyError, TypeError):
                raise ValueError(f"{path}: every entry of 'rows' needs 'unit' and 'luts'") from None
        else:
            units = data.get("units", data)
        if not isinstance(units, dict):
            raise ValueError(f"{path}: 'units' must be an object of LUT counts, got {type(units).__name__}")
        names = {"fp4_mul": "e2m1_mult_luts", "dfq_mul": "dfq_mult_luts", "fht128": "fht128_luts",
                 "pe_fp4": "e2m1_pe_dot_luts", "pe_dfq": "dfq_pe_dot_luts"}
        found = {}
        for key, fname in names.items():
            if key in units:
                v = units[key]
                v = v.get("luts") if isinstance(v, dict) else v
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise ValueError(f"{path}: unit {key!r} must give a positive LUT count, got {v!r}")
                found[fname] = float(v)
        if not found:
            raise ValueError(f"{path}: none of the units {sorted(names)} found")
        return replace(cls(), source=f"measured: {path} ({', '.join(k for k in names if k in units)})", **found)


@dataclass(frozen=True)
class FMU:
    """FP4 matrix unit: an array of LUT-based PEs, each a ``lanes_per_pe`` dot product per cycle, plus the DFQ
    GeMM (a second array for fc2), sized from a LUT budget."""

    lut_budget_luts: float = F(405_000.0, "LUT", "assumption: 45% of the 899,840 device LUTs (hardware.md "
                               "section 2, secondary source) for both PE arrays; the rest for GHTU, SFU, I/O")
    dfq_lut_fraction: float | None = F(None, "1", "None: the split minimising sequential linear time, "
                                       "P_e/P_d = sqrt(2 c_d / c_e) (qkv+proj+fc1 have 2x fc2's MACs)")
    lanes_per_pe: int = F(128, "lane", "fpqvar-method.md section 5: group size 128 = one group per PE cycle")
    mult_cycles: int = F(1, "cycle", "assumption: products registered once (as part 1's PE, fpqvar.hw.rtl.pe)")
    tree_cycles_per_level: int = F(1, "cycle", "assumption: a register after every adder-tree level (as part 1)")
    pe_initiation_interval_cycles: int = F(1, "cycle", "assumption: one group dot product per PE per cycle")
    accumulate_cycles: int = F(4, "cycle", "assumption: DSPFP32 scale-multiply-accumulate of group partial sums")
    dsps_per_pe: int = F(1, "DSP", "assumption: one DSP58 (FP32 mode) applies group scales, accumulates")
    e2m1_pes: int | None = F(None, "PE", "None: from the budget; an int overrides (array-size sweeps)")
    dfq_pes: int | None = F(None, "PE", "None: from the budget; 0 runs fc2 on the E2M1 array")
    costs: LutCosts = field(default_factory=LutCosts)

    def __post_init__(self) -> None:
        _positive(self, "lut_budget_luts", "lanes_per_pe", "pe_initiation_interval_cycles")
        if self.dfq_lut_fraction is not None and not 0 <= self.dfq_lut_fraction < 1:
            raise ValueError(f"FMU.dfq_lut_fraction must be in [0, 1), got {self.dfq_lut_fraction}")
        for name in ("e2m1_pes", "dfq_pes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"FMU.{name} must be >= 0 or None, got {v}")

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
        return self.costs.e2m1_pe_luts(self.lanes_per_pe)

    @cached_property
    def dfq_pe_luts(self) -> float:
        return self.costs.dfq_pe_luts(self.lanes_per_pe)

    def _split(self) -> float:
        if self.dfq_lut_fraction is not None:
            return self.dfq_lut_fraction
        ratio = math.sqrt(2 * self.dfq_pe_luts / self.e2m1_pe_luts)  # P_e / P_d at the optimum
        return self.dfq_pe_luts / (self.dfq_pe_luts + ratio * self.e2m1_pe_luts)

    @cached_property
    def num_e2m1_pes(self) -> int:
        if self.e2m1_pes is not None:
            return self.e2m1_pes
        return int(self.lut_budget_luts * (1 - self._split()) // self.e2m1_pe_luts)

    @cached_property
    def num_dfq_pes(self) -> int:
        if self.dfq_pes is not None:
            return self.dfq_pes
        return int(self.lut_budget_luts * self._split() // self.dfq_pe_luts)

    @cached_property
    def luts(self) -> float:
        return self.num_e2m1_pes * self.e2m1_pe_luts + self.num_dfq_pes * self.dfq_pe_luts


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
    """On-chip buffers (resource caps) and off-chip bandwidth."""

    bram_blocks: int = F(967, "block", "hardware.md section 2 (CHARM caps; UG1273)")
    bram_block_bits: int = F(36 * 1024, "bit", "hardware.md section 2: 36 Kb")
    uram_blocks: int = F(463, "block", "hardware.md section 2 (CHARM caps; UG1273)")
    uram_block_bits: int = F(288 * 1024, "bit", "hardware.md section 2: 288 Kb")
    weight_buffer_bytes: int = F(2 * 2**20, "byte", "assumption: double-buffered weight tiles in BRAM")
    act_buffer_bytes: int = F(14 * 2**20, "byte", "assumption: activations resident in URAM")
    offchip_bandwidth_bytes_per_s: float = F(25.6e9, "byte/s", "assumption: DDR4-3200 x 64 bit (hardware.md "
                                             "section 2, arithmetic; board figure unknown)")
    offchip_efficiency: float = F(1.0, "1", "assumption: ideal DDR efficiency (lower it to model losses)")
    double_buffered: bool = F(True, "-", "assumption: ping-pong tile buffers, so tile load / compute / store "
                              "overlap (CHARM-style); False: each tile loads, computes, stores in turn")

    def __post_init__(self) -> None:
        _positive(self, "weight_buffer_bytes", "act_buffer_bytes", "offchip_bandwidth_bytes_per_s")
        if self.weight_buffer_bytes + self.act_buffer_bytes > self.onchip_bytes:
            raise ValueError(f"Memory: weight_buffer_bytes + act_buffer_bytes = "
                             f"{self.weight_buffer_bytes + self.act_buffer_bytes} exceeds the on-chip "
                             f"BRAM + URAM capacity {self.onchip_bytes}")
        if not 0 < self.offchip_efficiency <= 1:
            raise ValueError(f"Memory.offchip_efficiency must be in (0, 1], got {self.offchip_efficiency}")

    @property
    def onchip_bytes(self) -> int:
        return (self.bram_blocks * self.bram_block_bits + self.uram_blocks * self.uram_block_bits) // 8

    @property
    def effective_bandwidth_bytes_per_s(self) -> float:
        return self.offchip_bandwidth_bytes_per_s * self.offchip_efficiency


def _positive(obj, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not v > 0:
            raise ValueError(f"{type(obj).__name__}.{n} must be > 0, got {v}")


def assumptions(obj, prefix: str = "") -> list[dict]:
    """Flatten a hardware description into rows {field, value, unit, source} (nested dataclasses included)."""
    rows = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if is_dataclass(v):
            rows.extend(assumptions(v, f"{prefix}{f.name}."))
        elif "unit" in f.metadata:
            rows.append({"field": prefix + f.name, "value": v, "unit": f.metadata["unit"],
                         "source": f.metadata["source"]})
    return rows


def to_dict(obj) -> dict:
    return asdict(obj)


def from_dict(cls, data: dict, path: str = ""):
    """Strict nested construction: unknown keys raise, naming the key path."""
    if not isinstance(data, dict):
        raise ValueError(f"{path or cls.__name__}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{path or cls.__name__}: unknown keys {unknown}; known: {sorted(known)}")
    kwargs = {}
    for k, v in data.items():
        sub = _dataclass_type(cls, known[k])
        kwargs[k] = from_dict(sub, v, f"{path}{k}.") if sub is not None and v is not None else v
    return cls(**kwargs)


def with_overrides(obj, overrides: dict, path: str = ""):
    """A copy of ``obj`` with (nested) fields replaced; unknown keys raise naming the key path."""
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for k, v in overrides.items():
        if k not in known:
            raise ValueError(f"{path}{k}: unknown field of {type(obj).__name__}; known: {sorted(known)}")
        cur = getattr(obj, k)
        if is_dataclass(cur) and isinstance(v, dict):
            changes[k] = with_overrides(cur, v, f"{path}{k}.")
        elif _dataclass_type(type(obj), known[k]) is not None and isinstance(v, dict):
            changes[k] = from_dict(_dataclass_type(type(obj), known[k]), v, f"{path}{k}.")
        else:
            changes[k] = v
    try:
        return replace(obj, **changes)
    except TypeError as e:
        raise ValueError(f"{path or type(obj).__name__}: {e}") from None


def _dataclass_type(cls, f) -> type | None:
    """The nested config type of field ``f`` (nested configs are declared with a default_factory)."""
    if f.default_factory is not MISSING:
        return type(f.default_factory())
    return None
