"""One estimate: workload x accelerator x recipe x schedule -> latency, throughput, breakdowns, energy.

The VQVAE decoder is kept on the host by default (``vae_on_host``): its FLOPs are reported, its time and
energy are not part of the accelerator's figures (the paper's summary says it is ~3 % of compute and not
quantized; where it ran is unknown). ``vae_on_host=False`` runs it in FP16 on the DSP array instead.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from fpqvar.hw.perf.accelerator import Accelerator
from fpqvar.hw.perf.cost import cost_op
from fpqvar.hw.perf.energy import energy_breakdown_joules
from fpqvar.hw.perf.recipes import HWRecipe
from fpqvar.hw.perf.schedule import SCHEDULES, build_segments
from fpqvar.model.workload import WorkloadOptions, var_workload
from fpqvar.model.zoo import VARConfig, VQVAEConfig

ADA_LIN_MODES = ("per_scale", "once", "table")


@dataclass(frozen=True)
class EstimateOptions:
    """``ada_lin``: "per_scale" (upstream: the condition MLPs at every scale), "once" (once per image, kept on
    chip; its input is the class embedding only), "table" (a precomputed per-class table read once per image)."""

    schedule: str = "level2"
    batch_images: int = 1
    cfg: bool = True
    ada_lin: str = "per_scale"
    vae_on_host: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"EstimateOptions.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.ada_lin not in ADA_LIN_MODES:
            raise ValueError(f"EstimateOptions.ada_lin must be one of {ADA_LIN_MODES}, got {self.ada_lin!r}")
        if self.batch_images < 1:
            raise ValueError(f"EstimateOptions.batch_images must be >= 1, got {self.batch_images}")

    @property
    def ada_lin_per_scale(self) -> bool:
        return self.ada_lin == "per_scale"

    def workload_options(self, recipe: HWRecipe) -> WorkloadOptions:
        return WorkloadOptions(batch_images=self.batch_images, cfg=self.cfg,
                               ada_lin_per_scale=self.ada_lin_per_scale, ght_block=recipe.ght_block,
                               quantize_acts=recipe.quantize_acts, include_vae_decode=True)


@dataclass
class PerfResult:
    model: str
    recipe: str
    schedule: str
    accelerator: str
    batch_images: int
    clock_hz: float
    cycles: float
    latency_s: float
    images_per_s: float
    energy_per_image_j: float
    avg_power_w: float
    per_scale_s: dict[int, float]
    per_op: dict[str, dict[str, float]]
    per_scale_op: dict[str, dict[str, float]]  # "scale:op" -> the same fields as per_op
    unit_busy_s: dict[str, float]
    utilisation: dict[str, float]
    mac_utilisation: dict[str, float]
    dram_bytes: float
    dram_utilisation: float
    dram_bytes_by_channel: dict[str, float]
    energy_breakdown_j: dict[str, float]
    host_flops: float
    hardware: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["per_scale_s"] = {str(k): v for k, v in self.per_scale_s.items()}
        return d


def estimate(model: str, var: VARConfig, vae: VQVAEConfig | None, acc: Accelerator, recipe: HWRecipe,
             opts: EstimateOptions = EstimateOptions()) -> PerfResult:
    if recipe.ght_block is not None and (acc.ghtu is None or acc.ghtu.points != recipe.ght_block):
        raise ValueError(f"recipe {recipe.name!r} uses a GHT of block {recipe.ght_block}, accelerator "
                         f"{acc.name!r} has {'no GHTU' if acc.ghtu is None else f'a {acc.ghtu.points}-point GHTU'}")
    ops = var_workload(var, vae, opts.workload_options(recipe))
    costs = [cost_op(op, acc, recipe, opts.vae_on_host, opts.ada_lin) for op in ops]
    segments = build_segments([c for c in costs if c.unit != "host"], opts.schedule, acc.channel_bytes_per_cycle)
    cycles = sum(s.cycles for s in segments)
    f = acc.clock_hz
    latency_s = cycles / f
    per_scale: dict[int, float] = defaultdict(float)
    per_op: dict[str, dict[str, float]] = {}
    per_scale_op: dict[str, dict[str, float]] = {}
    for s in segments:
        crit = s.critical
        per_scale[crit.op.scale] += s.cycles / f
        for m in s.members:
            cell = per_scale_op.setdefault(f"{m.op.scale}:{m.op.name}", {"exposed_s": 0.0, "busy_s": 0.0,
                                                                         "flops": 0.0, "dram_bytes": 0.0,
                                                                         "unit": m.unit})
            cell["busy_s"] += m.cycles / f
            cell["flops"] += m.op.flops
            cell["dram_bytes"] += m.dram_bytes
            if m is crit:
                cell["exposed_s"] += s.cycles / f
            row = per_op.setdefault(m.op.name, {"exposed_s": 0.0, "busy_s": 0.0, "flops": 0.0,
                                                "dram_bytes": 0.0, "unit": m.unit})
            row["busy_s"] += m.cycles / f
            row["flops"] += m.op.flops
            row["dram_bytes"] += m.dram_bytes
            if m is crit:
                row["exposed_s"] += s.cycles / f
    busy: dict[str, float] = defaultdict(float)
    events: dict[str, float] = defaultdict(float)
    dram_ch: dict[str, float] = defaultdict(float)
    sram = 0.0
    for c in costs:
        for u in (c.unit, *c.also_busy):
            busy[u] += c.busy_cycles / f
        for ev, n in c.events:
            events[ev] += n
        for ch, b in c.dram:
            dram_ch[ch] += b
        sram += c.sram_bytes
    dram = sum(dram_ch.values())
    for ch, b in dram_ch.items():
        events[f"dram_bytes:{ch}"] += b
    events["sram_bytes"] += sram
    mac_util = _mac_utilisation(acc, events, cycles)
    B = opts.batch_images
    energy = energy_breakdown_joules(dict(events), latency_s, acc.power)
    if acc.aie is not None and events.get("mac:aie:int8"):
        energy["aie_active"] = acc.power.aie_active_watts * latency_s
    energy_per_image = {k: v / B for k, v in energy.items()}
    e_img = sum(energy_per_image.values())
    host = sum(c.op.flops for c in costs if c.unit == "host")
    notes = _notes(acc, recipe, opts, host)
    return PerfResult(
        model=model, recipe=recipe.name, schedule=opts.schedule, accelerator=acc.name, batch_images=B,
        clock_hz=f, cycles=cycles, latency_s=latency_s, images_per_s=B / latency_s if latency_s else 0.0,
        energy_per_image_j=e_img, avg_power_w=e_img * B / latency_s if latency_s else 0.0,
        per_scale_s=dict(sorted(per_scale.items())), per_op=per_op, per_scale_op=per_scale_op,
        unit_busy_s={u: v for u, v in busy.items() if u not in ("host", "dma")},
        utilisation={u: v / latency_s for u, v in busy.items() if u not in ("host", "dma") and latency_s},
        mac_utilisation=mac_util, dram_bytes=dram,
        dram_utilisation=dram / (acc.memory.effective_bandwidth_bytes_per_s * latency_s) if latency_s else 0.0,
        dram_bytes_by_channel=dict(dram_ch),
        energy_breakdown_j=energy_per_image, host_flops=host / B, hardware=hardware_summary(acc), notes=notes)


def _mac_utilisation(acc: Accelerator, events: dict[str, float], cycles: float) -> dict[str, float]:
    """Per GEMM unit: MACs done / (peak MACs per cycle x latency cycles); the DSP array sums its precisions
    (each against its own peak), i.e. the fraction of DSP cycles spent on MACs."""
    lanes = acc.fmu.lanes_per_pe if acc.fmu else 0
    out: dict[str, float] = {}
    if not cycles:
        return out
    fmu_macs = events.get("mac:fmu", 0.0) + events.get("mac:lut_int4", 0.0)
    for unit, pes, macs in (("fmu", acc.e2m1_pes, fmu_macs), ("dfq", acc.dfq_pes, events.get("mac:dfq", 0.0))):
        if macs and pes:
            out[unit] = macs / (pes * lanes * cycles)
    if events.get("mac:aie:int8") and acc.aie is not None:
        out["aie"] = events["mac:aie:int8"] / (acc.aie.macs_per_pl_cycle(acc.clock_hz) / acc.aie.efficiency * cycles)
    dsp = sum(n / (acc.dsp_gemm_dsps * acc.dsp.macs_per_dsp_cycle(ev.rsplit(":", 1)[1]) * cycles)
              for ev, n in events.items() if ev.startswith("mac:dsp:"))
    if dsp:
        out["dsp"] = dsp
    return out


def hardware_summary(acc: Accelerator) -> dict:
    return {"clock_hz": acc.clock_hz, "e2m1_pes": acc.e2m1_pes, "dfq_pes": acc.dfq_pes,
            "lanes_per_pe": acc.fmu.lanes_per_pe if acc.fmu else 0,
            "e2m1_pe_luts": acc.fmu.e2m1_pe_luts if acc.fmu else 0.0,
            "dfq_pe_luts": acc.fmu.dfq_pe_luts if acc.fmu else 0.0,
            "luts_used": acc.luts_used, "device_luts": acc.device_luts,
            "lut_costs_source": acc.fmu.costs.source if acc.fmu else "-",
            "dsp_gemm_dsps": acc.dsp_gemm_dsps, "pe_dsps": acc.pe_dsps,
            "offchip_bandwidth_bytes_per_s": acc.memory.effective_bandwidth_bytes_per_s,
            "channels": {n: acc.memory.offchip.channel(n).effective_bandwidth_bytes_per_s
                         for n in acc.memory.offchip.channel_names},
            "placement": dict(acc.memory.offchip.placement.__dict__),
            "pe_kind": acc.fmu.main_pe_kind if acc.fmu else "-", "ffs_used": acc.ffs_used,
            "aie_tiles": acc.aie.tiles if acc.aie else 0,
            "units": {"quantizer_lanes": acc.quantizer.lanes, "sfu_lanes": acc.sfu.lanes,
                      "ghtu_vectors_per_cycle": (acc.ghtu.units * acc.ghtu.vectors_per_cycle) if acc.ghtu else 0},
            "weight_buffer_bytes": acc.memory.weight_buffer_bytes, "act_buffer_bytes": acc.memory.act_buffer_bytes}


def _notes(acc: Accelerator, recipe: HWRecipe, opts: EstimateOptions, host_flops: float) -> list[str]:
    notes = []
    if host_flops:
        notes.append(f"VQVAE decoder kept on the host: {host_flops / 1e9 / opts.batch_images:.1f} GFLOPs per "
                     "image not in the accelerator's latency or energy")
    if opts.ada_lin_per_scale:
        notes.append("ada_lin recomputed at every scale as upstream does; once per image or a per-class table "
                     "suffice (--ada-lin once|table)")
    if recipe.needs_fmu and acc.dfq_pes == 0 and acc.fmu is not None:
        notes.append("one DFQ-capable array runs all four block GEMMs" if acc.fmu.arrays == "unified" else
                     "no DFQ array: fc2 runs on the E2M1 array (E2M1 numerics, not DFQ)")
    return notes
