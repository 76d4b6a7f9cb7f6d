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
from fpqvar.hw.perf.schedule import build_segments
from fpqvar.model.workload import WorkloadOptions, var_workload
from fpqvar.model.zoo import VARConfig, VQVAEConfig


@dataclass(frozen=True)
class EstimateOptions:
    schedule: str = "level2"
    batch_images: int = 1
    cfg: bool = True
    ada_lin_per_scale: bool = True  # upstream recomputes it per scale; once per sample suffices
    vae_on_host: bool = True

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
    unit_busy_s: dict[str, float]
    utilisation: dict[str, float]
    mac_utilisation: dict[str, float]
    dram_bytes: float
    dram_utilisation: float
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
    costs = [cost_op(op, acc, recipe, opts.vae_on_host) for op in ops]
    segments = build_segments([c for c in costs if c.unit != "host"], opts.schedule, acc.bytes_per_cycle)
    cycles = sum(s.cycles for s in segments)
    f = acc.clock_hz
    latency_s = cycles / f
    per_scale: dict[int, float] = defaultdict(float)
    per_op: dict[str, dict[str, float]] = {}
    for s in segments:
        crit = s.critical
        per_scale[crit.op.scale] += s.cycles / f
        for m in s.members:
            row = per_op.setdefault(m.op.name, {"exposed_s": 0.0, "busy_s": 0.0, "flops": 0.0,
                                                "dram_bytes": 0.0, "unit": m.unit})
            row["busy_s"] += m.cycles / f
            row["flops"] += m.op.flops
            row["dram_bytes"] += m.dram_bytes
            if m is crit:
                row["exposed_s"] += s.cycles / f
    busy: dict[str, float] = defaultdict(float)
    events: dict[str, float] = defaultdict(float)
    dram = sram = 0.0
    for c in costs:
        busy[c.unit] += c.busy_cycles / f
        for ev, n in c.events:
            events[ev] += n
        dram += c.dram_bytes
        sram += c.sram_bytes
    events["dram_bytes"] += dram
    events["sram_bytes"] += sram
    mac_util = _mac_utilisation(acc, events, cycles)
    B = opts.batch_images
    energy = energy_breakdown_joules(dict(events), latency_s, acc.power)
    energy_per_image = {k: v / B for k, v in energy.items()}
    e_img = sum(energy_per_image.values())
    host = sum(c.op.flops for c in costs if c.unit == "host")
    notes = _notes(acc, recipe, opts, host)
    return PerfResult(
        model=model, recipe=recipe.name, schedule=opts.schedule, accelerator=acc.name, batch_images=B,
        clock_hz=f, cycles=cycles, latency_s=latency_s, images_per_s=B / latency_s if latency_s else 0.0,
        energy_per_image_j=e_img, avg_power_w=e_img * B / latency_s if latency_s else 0.0,
        per_scale_s=dict(sorted(per_scale.items())), per_op=per_op,
        unit_busy_s={u: v for u, v in busy.items() if u != "host"},
        utilisation={u: v / latency_s for u, v in busy.items() if u != "host" and latency_s},
        mac_utilisation=mac_util, dram_bytes=dram,
        dram_utilisation=dram / (acc.memory.effective_bandwidth_bytes_per_s * latency_s) if latency_s else 0.0,
        energy_breakdown_j=energy_per_image, host_flops=host / B, hardware=hardware_summary(acc), notes=notes)


def _mac_utilisation(acc: Accelerator, events: dict[str, float], cycles: float) -> dict[str, float]:
    """Per GEMM unit: MACs done / (peak MACs per cycle x latency cycles); the DSP array sums its precisions
    (each against its own peak), i.e. the fraction of DSP cycles spent on MACs."""
    lanes = acc.fmu.lanes_per_pe if acc.fmu else 0
    out: dict[str, float] = {}
    if not cycles:
        return out
    for unit, pes in (("fmu", acc.e2m1_pes), ("dfq", acc.dfq_pes)):
        if events.get(f"mac:{unit}") and pes:
            out[unit] = events[f"mac:{unit}"] / (pes * lanes * cycles)
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
            "weight_buffer_bytes": acc.memory.weight_buffer_bytes, "act_buffer_bytes": acc.memory.act_buffer_bytes}


def _notes(acc: Accelerator, recipe: HWRecipe, opts: EstimateOptions, host_flops: float) -> list[str]:
    notes = []
    if host_flops:
        notes.append(f"VQVAE decoder kept on the host: {host_flops / 1e9 / opts.batch_images:.1f} GFLOPs per "
                     "image not in the accelerator's latency or energy")
    if opts.ada_lin_per_scale:
        notes.append("ada_lin recomputed at every scale as upstream does; once per sample suffices "
                     "(--ada-lin-once)")
    if recipe.needs_fmu and acc.dfq_pes == 0:
        notes.append("no DFQ array: fc2 runs on the E2M1 array")
    return notes
