"""Pictures of an estimate (matplotlib, Agg, PNG written atomically):

- ``plot_roofline``: per scale, each GEMM operator at (FLOP per off-chip byte, achieved FLOP/s alone) against
  the design's compute roofs (one per GEMM engine) and its memory roof (all channels together);
- ``plot_heatmap``: exposed time (critical path) per scale x operator;
- ``plot_tornado``: images/s and J/image when one unknown assumption moves to its low / high value
  (``TORNADO_AXES``), the others at the design's values.
"""

from __future__ import annotations

import math

from fpqvar.hw.perf.designs import DesignPoint
from fpqvar.hw.perf.estimate import PerfResult
from fpqvar.io_utils import atomic_write_with
from fpqvar.model.zoo import VARConfig, VQVAEConfig

# name -> (label, override builder(design) -> (low overrides, high overrides), low / high value labels)
TORNADO_AXES = {
    "bandwidth efficiency": ("channel efficiency 0.6 / 1.0 (all channels)",
                             lambda a: ({"memory": {"offchip": _eff(a, 0.6)}}, {"memory": {"offchip": _eff(a, 1.0)}})),
    "clock": ("PL clock 250 / 500 MHz", lambda a: ({"clock_hz": 250e6}, {"clock_hz": 500e6})),
    "LUT budget": ("PE LUT budget 300k / 600k",
                   lambda a: ({"fmu": {"lut_budget_luts": 300e3}}, {"fmu": {"lut_budget_luts": 600e3}})
                   if a.fmu else ({}, {})),
    "power": ("static power 2 / 15 W (energy only)",
              lambda a: ({"power": {"static_watts": 2.0}}, {"power": {"static_watts": 15.0}})),
}


def _eff(acc, e: float) -> dict:
    return {n: {"efficiency": e} for n in acc.memory.offchip.channel_names}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, plt) -> None:
    try:
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def compute_roofs_flops_per_s(d: DesignPoint) -> dict[str, float]:
    """Peak FLOP/s of each GEMM engine (2 FLOPs per MAC)."""
    a = d.accelerator
    roofs = {}
    lanes = a.fmu.lanes_per_pe if a.fmu else 0
    if a.e2m1_pes:
        roofs[f"{a.fmu.main_pe_kind} array"] = 2 * a.e2m1_pes * lanes * a.clock_hz
    if a.dfq_pes:
        roofs["dfq array"] = 2 * a.dfq_pes * lanes * a.clock_hz
    if a.aie is not None:
        roofs["aie int8"] = 2 * a.aie.macs_per_pl_cycle(a.clock_hz) * a.clock_hz
    roofs["dsp fp16"] = 2 * a.dsp_gemm_dsps * a.dsp.fp16_macs_per_dsp_cycle * a.clock_hz
    return roofs


def plot_roofline(d: DesignPoint, r: PerfResult, path) -> None:
    plt = _plt()
    scales = sorted({int(k.split(":")[0]) for k in r.per_scale_op if int(k.split(":")[0]) >= 0})
    cols = 5
    rows = math.ceil(len(scales) / cols)
    fig, axs = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False, sharex=True, sharey=True)
    roofs = compute_roofs_flops_per_s(d)
    bw = d.accelerator.memory.effective_bandwidth_bytes_per_s
    xs = [10 ** (i / 10) for i in range(-10, 51)]
    colours = {"qkv": "tab:blue", "proj": "tab:cyan", "fc1": "tab:green", "fc2": "tab:olive", "ada_lin": "tab:red",
               "attn_qk": "tab:purple", "attn_av": "tab:pink", "head": "tab:brown", "head_ada_lin": "tab:orange"}
    for ax, s in zip(axs.flat, scales):
        ax.plot(xs, [bw * x for x in xs], "k--", lw=0.8)
        for name, peak in roofs.items():
            ax.axhline(peak, lw=0.8, color="grey")
            ax.text(xs[0], peak * 1.1, name, fontsize=6, color="grey")
        for key, cell in r.per_scale_op.items():
            sc, op = key.split(":", 1)
            if int(sc) != s or not cell["dram_bytes"] or not cell["flops"] or not cell["busy_s"]:
                continue
            ax.loglog(cell["flops"] / cell["dram_bytes"], cell["flops"] / cell["busy_s"], "o", ms=4,
                      color=colours.get(op, "k"), label=op)
        ax.set_title(f"scale {s}", fontsize=8)
        ax.grid(alpha=0.3, which="both")
    top = 10 * max(roofs.values())
    for ax in axs.flat:
        ax.set_ylim(top / 1e6, top)
    for ax in axs.flat[len(scales):]:
        ax.axis("off")
    handles = {h.get_label(): h for ax in axs.flat for h in ax.get_lines() if not h.get_label().startswith("_")}
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=9, fontsize=7)
    fig.supxlabel("FLOP per off-chip byte", fontsize=8)
    fig.supylabel("FLOP/s (operator alone)", fontsize=8)
    fig.suptitle(f"{d.name}: per-scale roofline ({bw / 1e9:.0f} GB/s memory roof, dashed)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path, plt)


def plot_heatmap(d: DesignPoint, r: PerfResult, path) -> None:
    plt = _plt()
    scales = sorted({int(k.split(":")[0]) for k in r.per_scale_op})
    ops = sorted({k.split(":", 1)[1] for k in r.per_scale_op},
                 key=lambda o: -sum(v["exposed_s"] for k, v in r.per_scale_op.items() if k.endswith(":" + o)))
    ops = [o for o in ops if any(r.per_scale_op.get(f"{s}:{o}", {}).get("exposed_s") for s in scales)]
    grid = [[r.per_scale_op.get(f"{s}:{o}", {}).get("exposed_s", 0.0) * 1e3 for o in ops] for s in scales]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(ops), 0.9 + 0.4 * len(scales)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(ops)), ops, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(scales)), [str(s) for s in scales], fontsize=7)
    ax.set_ylabel("scale")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v >= 0.05:
                ax.text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center", fontsize=5, color="w")
    fig.colorbar(im, ax=ax, label="exposed ms")
    ax.set_title(f"{d.name}: critical-path time per scale x operator", fontsize=9)
    fig.tight_layout()
    _save(fig, path, plt)


def tornado(d: DesignPoint, model: str, var: VARConfig, vae: VQVAEConfig | None,
            base: PerfResult | None = None) -> list[dict]:
    """Rows {axis, label, low/high images/s and J/image}; an axis that does not apply is skipped."""
    from dataclasses import replace

    base = base or d.run(model, var, vae)
    rows = []
    for axis, (label, build) in TORNADO_AXES.items():
        lo, hi = build(d.accelerator)
        if not lo:
            continue
        out = {"axis": axis, "label": label, "base_images_per_s": base.images_per_s,
               "base_energy_j": base.energy_per_image_j}
        for tag, ov in (("low", lo), ("high", hi)):
            r = replace(d, accelerator=d.accelerator.with_overrides(ov)).run(model, var, vae)
            out[f"{tag}_images_per_s"], out[f"{tag}_energy_j"] = r.images_per_s, r.energy_per_image_j
        rows.append(out)
    return rows


def plot_tornado(d: DesignPoint, rows: list[dict], path) -> None:
    plt = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(11, 0.8 + 0.6 * len(rows)))
    for ax, key, unit in ((axs[0], "images_per_s", "images/s"), (axs[1], "energy_j", "J/image")):
        base = rows[0][f"base_{key}"] if rows else 0.0
        order = sorted(rows, key=lambda r: abs(r[f"high_{key}"] - r[f"low_{key}"]))
        for i, r in enumerate(order):
            lo, hi = r[f"low_{key}"], r[f"high_{key}"]
            ax.barh(i, lo - base, left=base, color="tab:red", alpha=0.7)
            ax.barh(i, hi - base, left=base, color="tab:blue", alpha=0.7)
        ax.set_yticks(range(len(order)), [r["label"] for r in order], fontsize=7)
        ax.axvline(base, color="k", lw=0.8)
        ax.set_xlabel(f"{unit} (red: low value, blue: high value)")
    fig.suptitle(f"{d.name}: sensitivity to the unknown assumptions", fontsize=9)
    fig.tight_layout()
    _save(fig, path, plt)
