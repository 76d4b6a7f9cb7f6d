"""The report's figures for a finished plan (rank 0): sample grid, fc2-input histogram, qkv / fc1 absmax heatmaps
before and after GHT + GALT, metric bars; then the self-contained HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fpqvar.io_utils import atomic_write_json

GRID_CLASSES = 10  # columns: the first classes of the set (ImageNet: 10 of 1000)
GRID_PER_CLASS = 2
ACT_PER_CLASS = 2  # activation capture: 2 samples x up to 10 classes, both CFG halves


# the damage against the float model's samples first (issue 13), then the quality against real data
_BAR_KEYS = ("fid_to_float", "psnr_to_float_db", "fid", "is", "precision", "recall")


def _grid_rows(out: Path, methods, classes, per_class: int) -> list[tuple[str, np.ndarray]]:
    from fpqvar.eval.sample_set import PACKED, load_packed

    cols = list(classes[:GRID_CLASSES])
    n = min(GRID_PER_CLASS, per_class)
    rows = []
    for method, _, _ in methods:
        images, labels = load_packed(out / method / PACKED)
        pick = np.concatenate([np.flatnonzero(labels == c)[:n] for c in cols])
        rows.append((method, images[pick]))
    return rows


def _transformed_method(methods):
    """The first method whose recipe rotates (GHT) and learns GALT (else just rotates): the 'after' model."""
    from fpqvar.quant.export import read_header
    from fpqvar.quant.recipes import load_recipe

    best = None
    for method, src, is_file in methods:
        if not is_file and src == "fp16":
            continue
        try:
            recipe = load_recipe(read_header(src)["recipe"]) if is_file else load_recipe(src)
        except ValueError:
            continue
        if recipe.ght and recipe.galt is not None:
            return method, src, is_file, recipe
        if recipe.rotation is not None and best is None:
            best = (method, src, is_file, recipe)
    return best


def _peak_block(absmax: dict, site: str) -> int:
    from fpqvar.eval.activations import outlier_ratio

    blocks = sorted(b for b, s in absmax if s == site)
    return max(blocks, key=lambda b: max(outlier_ratio(absmax[(b, site)])))


def make_figures_and_report(runner, methods, classes, table: dict, out: Path) -> list[str]:
    from fpqvar.eval import plots
    from fpqvar.eval.activations import ABSMAX_SITES, collect_activation_stats
    from fpqvar.eval.html import write_report

    plan, figdir = runner.plan, out / "figures"
    figs: list[tuple[str, Path]] = []
    figs.append((f"Samples, one row per method, same seeds per column ({min(GRID_PER_CLASS, plan.per_class)} per "
                 f"class, classes {list(classes[:GRID_CLASSES])})",
                 plots.sample_grid(_grid_rows(out, methods, classes, plan.per_class), figdir / "samples.png")))
    figs.append(("Metrics per method", plots.metric_bars(table["rows"], figdir / "metrics.png", keys=_BAR_KEYS)))
    act_classes = list(classes[:GRID_CLASSES])
    kw = {"per_class": ACT_PER_CLASS, "seed": plan.seed, "cfg": plan.cfg, "top_k": plan.top_k, "top_p": plan.top_p}
    before = collect_activation_stats(runner.load_float(), act_classes, **kw)
    share = before.band_share()
    figs.append((f"fc2 input of the float model: {100 * share:.1f} % of values in [-0.17, 0] (paper, VAR-d30: "
                 f"97.6 %); the imbalance behind DFQ",
                 plots.fc2_histogram(before, figdir / "fc2_input_hist.png")))
    after, after_name, after_label = None, None, ""
    tm = _transformed_method(methods)
    if tm is not None:
        method, src, is_file, recipe = tm
        galt = " + GALT" if recipe.galt is not None else ""
        after_label = f"after {'GHT' if recipe.ght else 'Hadamard'}{galt} ({method})"
        qpath = Path(src) if is_file else out / method / "quantized.safetensors"
        qvar = runner.load_quantized(qpath)
        after, after_name = collect_activation_stats(qvar, act_classes, transformed=True, **kw), method
    summary = {"before": before.summary(), "after": None if after is None else after.summary(),
               "after_method": after_name, "classes": act_classes, **kw}
    for site in ABSMAX_SITES:
        b = _peak_block(before.absmax, site)
        a = None if after is None else after.absmax[(b, site)]
        what = f"before / {after_label}" if after is not None else "float model only"
        figs.append((f"Per-channel absmax of the {site} input across scales, block {b} (the block with the most "
                     f"peaked outliers), {what}",
                     plots.absmax_heatmaps(before.absmax[(b, site)], a, before.patch_nums,
                                           figdir / f"absmax_{site.replace('.', '_')}.png",
                                           title=f"block {b}: {site} input", after_label=after_label)))
    atomic_write_json(figdir / "activations.json", summary)
    notes = []
    notes.append(f"fc2 input (float model): {100 * share:.1f} % in [-0.17, 0], {100 * before.nonpositive_share():.1f}"
                 f" % <= 0, {100 * before.positive_share():.1f} % > 0 (paper, VAR-d30: 97.6 % in [-0.17, 0]).")
    write_report(out / "report.html", title=f"fpqvar evaluation: {plan.model}", table=table, figures=figs,
                 notes=notes, links=[("table.md", "table.md"), ("table.json", "table.json")] + [
                     (p.name, str(p.relative_to(out))) for _, p in figs],
                 extra_sections=[("Plan", json.dumps(plan.to_dict(), indent=2)),
                                              ("Activation summary", json.dumps(summary, indent=2))])
    return [str(p.relative_to(out)) for _, p in figs] + ["report.html"]
