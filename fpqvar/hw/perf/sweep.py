"""Design-space sweeps: array size (FMU LUT budget), clock and off-chip bandwidth, one at a time around a base
design; throughput and energy per image for each point, and a PNG plot (matplotlib, Agg, written atomically).
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.hw.perf.accelerator import Accelerator
from fpqvar.hw.perf.estimate import EstimateOptions, estimate
from fpqvar.hw.perf.recipes import HWRecipe
from fpqvar.model.zoo import VARConfig, VQVAEConfig

# (override path, label, unit scale for the axis, values)
DEFAULT_AXES: dict[str, tuple[str, str, float, tuple[float, ...]]] = {
    "array": ("fmu.lut_budget_luts", "FMU LUT budget (kLUT)", 1e3,
              (50e3, 100e3, 200e3, 300e3, 405e3, 500e3, 600e3, 700e3)),
    "clock": ("clock_hz", "clock (MHz)", 1e6, (150e6, 200e6, 250e6, 300e6, 350e6, 400e6, 450e6, 500e6)),
    "bandwidth": ("memory.offchip.ddr4.peak_bandwidth_bytes_per_s", "DDR4 peak bandwidth (GB/s; LPDDR4 fixed)", 1e9,
                  (6.4e9, 12.8e9, 19.2e9, 25.6e9, 38.4e9, 51.2e9, 76.8e9, 102.4e9)),
}


@dataclass(frozen=True)
class SweepPoint:
    axis: str
    value: float
    images_per_s: float
    latency_s: float
    energy_per_image_j: float
    e2m1_pes: int
    dfq_pes: int
    note: str = ""


def _override(path: str, value: float) -> dict:
    d: dict = {}
    cur = d
    *heads, last = path.split(".")
    for h in heads:
        cur = cur.setdefault(h, {})
    cur[last] = value
    return d


def sweep(model: str, var: VARConfig, vae: VQVAEConfig | None, acc: Accelerator, recipe: HWRecipe,
          opts: EstimateOptions = EstimateOptions(),
          axes: dict[str, tuple[str, str, float, tuple[float, ...]]] | None = None) -> list[SweepPoint]:
    """One estimate per value of each axis, the other parameters at the base design. Points whose design is
    invalid (e.g. the LUT budget exceeds the device) are reported with a note instead of numbers."""
    points = []
    for axis, (path, _label, _scale, values) in (axes or DEFAULT_AXES).items():
        if axis == "array" and acc.fmu is None:
            continue
        for v in values:
            try:
                a = acc.with_overrides(_override(path, v))
            except ValueError as e:
                points.append(SweepPoint(axis, v, 0.0, 0.0, 0.0, 0, 0, note=str(e)))
                continue
            r = estimate(model, var, vae, a, recipe, opts)
            points.append(SweepPoint(axis, v, r.images_per_s, r.latency_s, r.energy_per_image_j, a.e2m1_pes,
                                     a.dfq_pes))
    return points


def plot_sweep(points: list[SweepPoint], path, title: str,
               axes: dict[str, tuple[str, str, float, tuple[float, ...]]] | None = None) -> None:
    """Throughput (left axis) and energy per image (right axis) against each swept parameter; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fpqvar.io_utils import atomic_write_with

    axes = axes or DEFAULT_AXES
    names = [a for a in axes if any(p.axis == a for p in points)]
    fig, subplots = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(subplots[0], names):
        _, label, scale, _ = axes[name]
        pts = [p for p in points if p.axis == name and not p.note]
        xs = [p.value / scale for p in pts]
        ax.plot(xs, [p.images_per_s for p in pts], "o-", color="tab:blue")
        ax.set_xlabel(label)
        ax.set_ylabel("images / s", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(xs, [p.energy_per_image_j for p in pts], "s--", color="tab:red")
        ax2.set_ylabel("energy / image (J)", color="tab:red")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def format_sweep(points: list[SweepPoint], axes: dict[str, tuple[str, str, float, tuple[float, ...]]] | None = None
                 ) -> list[str]:
    """One line per point: the swept value in its axis unit, throughput, energy per image, PE counts."""
    axes = axes or DEFAULT_AXES
    lines = []
    for p in points:
        _, label, scale, _ = axes[p.axis]
        head = f"  {label:28s} {p.value / scale:8.4g}"
        lines.append(f"{head}  invalid: {p.note}" if p.note else
                     f"{head}  {p.images_per_s:7.3f} images/s  {p.energy_per_image_j:7.2f} J/image  "
                     f"{p.e2m1_pes}+{p.dfq_pes} PEs")
    return lines

