"""Named design points: (accelerator, hardware recipe, estimate options) as frozen configs, and the baselines.

FPQVAR design points (the recipe given, default ``fpqvar-w4a4``), on the board's DDR4 + LPDDR4 unless named:

- ``fpqvar``: separate E2M1 and DFQ arrays, level-2 schedule, ada_lin per scale (upstream), batch 1;
- ``fpqvar-seq`` / ``fpqvar-level1``: the same, operator at a time / level 1 only;
- ``fpqvar-unified``: one DFQ-capable array for all four GEMMs (the whole LUT budget);
- ``fpqvar-ada-once`` / ``fpqvar-ada-table``: ada_lin once per image / a per-class table;
- ``fpqvar-stream`` (+ ``-table``, ``fpqvar-unified-stream``): per-block dataflow, helper units sized for it;
- ``fpqvar-b2`` / ``-b4`` / ``-b8``: batch 2, 4, 8 images per call;
- ``fpqvar-ddr4-only``: the issue-8 memory system (one DDR4 DIMM).

Baselines (integer, quantizing the same four block GEMMs as FPQVAR; ``-seq`` = without the pipeline):
``dsp58-int8`` (DSP58 INT8 mode), ``lut-int4-sm`` / ``lut-int4-twos`` (INT4 LUT PEs, same LUT budget,
sign-magnitude / two's complement), ``dsp-lut-int4`` (both engines, same resources), ``aie-int8`` (the AI
Engines, UG1079). Each baseline also comes as ``-seq`` (sequential schedule).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fpqvar.hw.perf.accelerator import Accelerator, fpqvar_vck190, integer_vck190
from fpqvar.hw.perf.estimate import EstimateOptions, PerfResult, estimate
from fpqvar.hw.perf.hardware import FMU, AIEArray
from fpqvar.hw.perf.lut_costs import measured_lut_costs
from fpqvar.hw.perf.memory import ddr4_only
from fpqvar.hw.perf.recipes import HWRecipe, Placement, get_hw_recipe
from fpqvar.hw.perf.streaming import size_for_stream
from fpqvar.model.zoo import VARConfig, VQVAEConfig

DESIGN_VERSION = 1


@dataclass(frozen=True)
class DesignPoint:
    name: str
    accelerator: Accelerator
    recipe: HWRecipe
    options: EstimateOptions = field(default_factory=EstimateOptions)
    description: str = ""
    family: str = "fpqvar"  # "fpqvar" or "baseline"
    version: int = DESIGN_VERSION

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("DesignPoint.name must be non-empty")
        if self.family not in ("fpqvar", "baseline"):
            raise ValueError(f"DesignPoint.family must be fpqvar or baseline, got {self.family!r}")

    def run(self, model: str, var: VARConfig, vae: VQVAEConfig | None) -> PerfResult:
        return estimate(model, var, vae, self.accelerator, self.recipe, self.options)

    def summary(self) -> dict:
        a = self.accelerator
        return {"name": self.name, "family": self.family, "description": self.description, "recipe": self.recipe.name,
                "schedule": self.options.schedule, "batch_images": self.options.batch_images,
                "ada_lin": self.options.ada_lin, "e2m1_pes": a.e2m1_pes, "dfq_pes": a.dfq_pes,
                "pe_kind": a.fmu.main_pe_kind if a.fmu else "-", "luts_used": a.luts_used,
                "channels": list(a.memory.offchip.channel_names), "quantizer_lanes": a.quantizer.lanes,
                "sfu_lanes": a.sfu.lanes,
                "ghtu_vectors_per_cycle": a.ghtu.units * a.ghtu.vectors_per_cycle if a.ghtu else 0.0}


def _lut_int4_recipe(unit: str = "fmu", name: str = "int4-lut") -> HWRecipe:
    p = Placement(unit, "int4", 4, 4)
    return HWRecipe(name, p, p, Placement("dsp", "fp16", 16, 16), ght_block=None, quantize_acts=True,
                    description=f"W4A4 INT on all four block GEMMs ({unit}), FP16 elsewhere on the DSP array")


def _aie_recipe() -> HWRecipe:
    p = Placement("aie", "int8", 8, 8)
    return HWRecipe("int8-aie", p, p, Placement("dsp", "fp16", 16, 16), ght_block=None, quantize_acts=True,
                    description="W8A8 INT on all four block GEMMs on the AI Engines, FP16 elsewhere on the DSPs")


def baselines(var: VARConfig) -> list[DesignPoint]:
    """The integer designs, each with the pipeline (level 2) and without (``-seq``)."""
    costs = measured_lut_costs()
    pts = [
        ("dsp58-int8", integer_vck190(), get_hw_recipe("int8-fc2"),
         "DSP58 INT8 mode (3 MACs/cycle/DSP), all four block GEMMs INT8, no LUT PEs"),
        ("lut-int4-sm", Accelerator(name="lut-int4-sm", fmu=FMU(pe_kind="int4_sm", costs=costs), ghtu=None),
         _lut_int4_recipe(), "INT4 sign-magnitude LUT PEs on the same LUT budget, all four block GEMMs INT4"),
        ("lut-int4-twos", Accelerator(name="lut-int4-twos", fmu=FMU(pe_kind="int4_twos", costs=costs), ghtu=None),
         _lut_int4_recipe(), "INT4 two's-complement LUT PEs (pe_int4) on the same LUT budget"),
        ("dsp-lut-int4", Accelerator(name="dsp-lut-int4", fmu=FMU(pe_kind="int4_sm", costs=costs), ghtu=None),
         _lut_int4_recipe("fmu+dsp", "int4-lut+dsp"),
         "INT4 on the sign-magnitude LUT array and the DSP58s together (same LUTs and DSPs as FPQVAR)"),
        ("aie-int8", Accelerator(name="aie-int8", fmu=None, ghtu=None, aie=AIEArray()), _aie_recipe(),
         "AI-Engine INT8 (400 tiles x 128 MACs/cycle, UG1079), FP16 operators on the DSPs"),
    ]
    out = []
    for name, acc, rec, desc in pts:
        out.append(DesignPoint(name, replace(acc, name=name), rec, EstimateOptions("level2"), desc, "baseline"))
        out.append(DesignPoint(f"{name}-seq", replace(acc, name=name), rec, EstimateOptions("sequential"),
                               desc + "; sequential (no pipeline)", "baseline"))
    return out


def fpqvar_designs(var: VARConfig, recipe: HWRecipe) -> list[DesignPoint]:
    base = fpqvar_vck190()
    uni = replace(base, name="fpqvar-unified", fmu=replace(base.fmu, arrays="unified"))
    stream = size_for_stream(base, var, recipe)
    uni_stream = size_for_stream(uni, var, recipe)
    E = EstimateOptions
    pts = [
        ("fpqvar", base, E("level2"), "separate E2M1 + DFQ arrays, level-2 pipeline, ada_lin per scale"),
        ("fpqvar-seq", base, E("sequential"), "separate arrays, operator at a time"),
        ("fpqvar-level1", base, E("level1"), "separate arrays, level-1 pipeline only"),
        ("fpqvar-unified", uni, E("level2"), "one DFQ-capable array (the whole LUT budget), level 2"),
        ("fpqvar-unified-seq", uni, E("sequential"), "one DFQ-capable array, operator at a time"),
        ("fpqvar-ada-once", base, E("level2", ada_lin="once"), "ada_lin once per image"),
        ("fpqvar-ada-table", base, E("level2", ada_lin="table"), "ada_lin as a per-class table"),
        ("fpqvar-stream", stream, E("stream"), "per-block dataflow, helper units sized for it, ada_lin per scale"),
        ("fpqvar-stream-table", stream, E("stream", ada_lin="table"), "per-block dataflow + per-class ada_lin table"),
        ("fpqvar-unified-stream", uni_stream, E("stream"), "one DFQ-capable array, per-block dataflow"),
        ("fpqvar-b2", base, E("level2", batch_images=2), "batch 2"),
        ("fpqvar-b4", base, E("level2", batch_images=4), "batch 4"),
        ("fpqvar-b8", base, E("level2", batch_images=8), "batch 8"),
        ("fpqvar-ddr4-only", replace(base, name="fpqvar-ddr4-only", memory=replace(base.memory, offchip=ddr4_only())),
         E("level2"), "the DDR4 DIMM only (the issue-8 memory model)"),
    ]
    return [DesignPoint(n, a, recipe, o, d) for n, a, o, d in pts]


def named_designs(var: VARConfig, recipe: HWRecipe | None = None) -> dict[str, DesignPoint]:
    """Every named design point, FPQVAR family first. A recipe that needs no LUT array (e.g. fpqvar-w6a6) still
    runs on the FPQVAR board (its GHTU and DSP array); the unified variants then equal the separate ones."""
    recipe = recipe or get_hw_recipe("fpqvar-w4a4")
    pts = fpqvar_designs(var, recipe) + baselines(var)
    return {p.name: p for p in pts}


def ddr4_only_variant(d: DesignPoint) -> DesignPoint:
    """The same design without the LPDDR4 (every tensor on the DDR4 DIMM)."""
    a = d.accelerator
    return replace(d, name=d.name + "@ddr4", accelerator=replace(a, memory=replace(a.memory, offchip=ddr4_only())))


def with_overrides(designs: dict[str, DesignPoint], fpqvar_overrides: dict, baseline_overrides: dict
                   ) -> dict[str, DesignPoint]:
    """Every design with the config file's accelerator overrides (``fpqvar_overrides`` on the FPQVAR family,
    ``baseline_overrides`` on the baselines); errors name the design and the field."""
    out = {}
    for n, d in designs.items():
        ov = fpqvar_overrides if d.family == "fpqvar" else baseline_overrides
        if not ov:
            out[n] = d
            continue
        try:
            out[n] = replace(d, accelerator=d.accelerator.with_overrides(ov))
        except (ValueError, TypeError) as e:
            raise ValueError(f"design {n!r}: {e}") from None
    return out
