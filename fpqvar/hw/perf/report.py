"""Plain-text report of an estimate, the claims table and the assumption list."""

from __future__ import annotations

from fpqvar.hw.perf.claims import Claim
from fpqvar.hw.perf.estimate import PerfResult
from fpqvar.hw.perf.gpu import GPUResult

KEY_ASSUMPTIONS = ("clock_hz", "fmu.lut_budget_luts", "memory.offchip.ddr4.peak_bandwidth_bytes_per_s",
                   "memory.offchip.ddr4.efficiency", "memory.offchip.lpddr4.peak_bandwidth_bytes_per_s",
                   "memory.offchip.lpddr4.efficiency", "memory.offchip.ddr4.port_cap_bytes_per_s",
                   "memory.weight_buffer_bytes", "memory.act_buffer_bytes", "power.static_watts",
                   "power.dram_byte_joules")


def _table(rows: list[list[str]], header: list[str], left: tuple[int, ...] = (0,)) -> list[str]:
    """Fixed-width table; columns in ``left`` are left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i in left else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header).rstrip(), *(fmt.format(*map(str, r)).rstrip() for r in rows)]


def format_result(r: PerfResult, top_ops: int = 14) -> str:
    hw = r.hardware
    lines = [f"{r.model}  recipe {r.recipe}  schedule {r.schedule}  on {r.accelerator}  (batch {r.batch_images})",
             f"  hardware: {hw['e2m1_pes']} E2M1 PEs + {hw['dfq_pes']} DFQ PEs x {hw['lanes_per_pe']} lanes "
             f"({hw['luts_used'] / 1e3:.0f} kLUT of {hw['device_luts'] / 1e3:.0f}k; LUT costs {hw['lut_costs_source']}"
             f"), {hw['dsp_gemm_dsps']} DSPs in the DSP array, {hw['clock_hz'] / 1e6:.0f} MHz, off-chip "
             + " + ".join(f"{k} {v / 1e9:.1f}" for k, v in hw["channels"].items()) + " GB/s effective",
             f"  latency {r.latency_s * 1e3:.1f} ms per call -> {r.images_per_s:.3f} images/s; "
             f"energy {r.energy_per_image_j:.2f} J/image (average {r.avg_power_w:.1f} W); "
             f"off-chip {r.dram_bytes / 1e9:.2f} GB per call ("
             + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in r.dram_bytes_by_channel.items())
             + f"), {100 * r.dram_utilisation:.0f}% of the channels' time", ""]
    lines.append("per scale:")
    rows = [[str(k), f"{v * 1e3:.1f}", f"{100 * v / r.latency_s:.1f}%"] for k, v in r.per_scale_s.items()]
    lines += ["  " + s for s in _table(rows, ["scale", "ms", "share"])]
    lines.append("")
    lines.append("per operator (exposed = time on the critical path; busy = time its unit works on it):")
    ops = sorted(r.per_op.items(), key=lambda kv: -kv[1]["exposed_s"])[:top_ops]
    rows = [[k, v["unit"], f"{v['exposed_s'] * 1e3:.1f}", f"{v['busy_s'] * 1e3:.1f}",
             f"{100 * v['exposed_s'] / r.latency_s:.1f}%", f"{v['flops'] / 1e9:.1f}", f"{v['dram_bytes'] / 1e9:.2f}"]
            for k, v in ops]
    lines += ["  " + s for s in _table(rows, ["op", "unit", "exposed ms", "busy ms", "share", "GFLOP", "DDR GB"])]
    lines.append("")
    util = ", ".join(f"{u} {100 * v:.0f}%" for u, v in sorted(r.utilisation.items()))
    mac = ", ".join(f"{u} {100 * v:.0f}%" for u, v in sorted(r.mac_utilisation.items()))
    lines += [f"unit busy / latency: {util}", f"MAC utilisation (MACs / peak): {mac}"]
    energy = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.energy_breakdown_j.items(), key=lambda kv: -kv[1]))
    lines.append(f"energy per image (J): {energy}")
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def format_gpu(g: GPUResult) -> str:
    return (f"GPU roofline ({g.gpu}): {g.latency_s * 1e3:.1f} ms/call, {g.images_per_s:.2f} images/s, "
            f"{g.energy_per_image_j:.1f} J/image ({g.kernels} kernels; compute-bound {g.compute_bound_s * 1e3:.1f} ms, "
            f"memory-bound {g.memory_bound_s * 1e3:.1f} ms, launch {g.overhead_s * 1e3:.1f} ms)")


def format_designs(designs: dict[str, dict], model: str) -> str:
    lines = [f"named designs ({model}):"]
    rows = [[n, d["family"], f"{d['images_per_s']:.3f}", f"{d['energy_per_image_j']:.2f}", d["schedule"],
             d["ada_lin"], str(d["batch_images"]), f"{d['e2m1_pes']}+{d['dfq_pes']} {d['pe_kind']}",
             "+".join(d["channels"])] for n, d in designs.items()]
    lines += ["  " + s for s in _table(rows, ["design", "family", "images/s", "J/image", "schedule", "ada_lin", "batch",
                                              "PEs", "memory"], left=(0, 1, 4, 5, 7, 8))]
    return "\n".join(lines)


def format_claims(claims: list[Claim], model: str) -> str:
    lines = [f"paper's claims vs the named designs ({model}; no constant is fitted to them; holds = reaches the "
             "figure within 15 %):"]
    for c in claims:
        lines.append(f"  {c.key}: {c.text} (paper {c.paper:g})" + (f" -- {c.note}" if c.note else ""))
        rows = [[e.design, e.reference, f"{e.value:.2f}", e.verdict] for e in c.entries]
        lines += ["    " + s for s in _table(rows, ["design", "vs", "model", "verdict"], left=(0, 1, 3))]
    return "\n".join(lines)


def format_assumptions(rows: list[dict], only: tuple[str, ...] | None = None) -> str:
    sel = [r for r in rows if only is None or r["field"] in only]
    table = [[r["field"], f"{r['value']:g}" if isinstance(r["value"], float) else str(r["value"]), r["unit"],
              r["source"]] for r in sel]
    return "\n".join("  " + s for s in _table(table, ["field", "value", "unit", "source"], left=(0, 2, 3)))
