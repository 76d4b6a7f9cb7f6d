"""Figures (matplotlib, Agg backend, PNGs written atomically): sample grids per recipe, the fc2-input histogram
(DFQ's motivation), and per-channel absmax heatmaps of the qkv / fc1 inputs across scales before and after
GHT + GALT. Each function returns the PNG path; the figure data come from fpqvar.eval.activations.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from fpqvar.io_utils import atomic_write_bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def tile_row(images_NHWC: np.ndarray, pad: int = 1) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one (H, N*(W+pad)-pad, 3) strip with white separators."""
    n, h, w, _ = images_NHWC.shape
    out = np.full((h, n * (w + pad) - pad, 3), 255, np.uint8)
    for i in range(n):
        out[:, i * (w + pad):i * (w + pad) + w] = images_NHWC[i]
    return out


def sample_grid(rows: list[tuple[str, np.ndarray]], path: str | os.PathLike, title: str = "") -> Path:
    """One row per recipe (label, (N, H, W, 3) uint8), same seeds in every row, so columns are comparable."""
    if not rows:
        raise ValueError("sample_grid: no rows")
    plt = _plt()
    strips = [tile_row(im) for _, im in rows]
    h, w = strips[0].shape[:2]
    fig_w = min(16.0, max(4.0, w / 24))
    fig, axes = plt.subplots(len(rows), 1, figsize=(fig_w, fig_w * h / w * len(rows) + 0.4 * len(rows)),
                             squeeze=False)
    for ax, (label, _), strip in zip(axes[:, 0], rows, strips):
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def fc2_histogram(stats, path: str | os.PathLike, title: str = "") -> Path:
    """Histogram of the fc2 input over all blocks (log counts), the [-0.17, 0] band shaded and its share printed."""
    from fpqvar.eval.activations import GELU_BAND

    plt = _plt()
    edges = stats.hist_edges
    counts = sum(stats.fc2_hist.values())
    total = sum(c["total"] for c in stats.fc2_counts.values())
    density = counts / max(1, total) / np.diff(edges)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    # one step artist (not one bar per bin): rendering stays fast
    ax.stairs(np.where(density > 0, density, np.nan), edges, fill=True, color="#3b6ea5")
    ax.axvspan(*GELU_BAND, color="#e8a33d", alpha=0.3, label=f"[{GELU_BAND[0]}, {GELU_BAND[1]}]")
    ax.set_yscale("log")
    ax.set_xlabel("fc2 input value (after GELU)")
    ax.set_ylabel("density (log)")
    share, pos = stats.band_share(), stats.positive_share()
    ax.set_title(title or "fc2 input: all blocks, all scales", fontsize=10)
    neg = stats.nonpositive_share()
    ax.text(0.98, 0.95, f"{100 * share:.1f} % in [{GELU_BAND[0]}, 0]\n{100 * neg:.1f} % <= 0\n{100 * pos:.1f} % > 0",
            transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.legend(loc="upper center", fontsize=8)
    return _save(fig, path)


def absmax_heatmaps(before_SC: np.ndarray, after_SC: np.ndarray | None, patch_nums, path: str | os.PathLike,
                    title: str = "", after_label: str = "after GHT + GALT") -> Path:
    """Per-channel absmax (channels x scales, log colour, one shared colour scale) before / after GHT + GALT."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    panels = [("before (float model)", before_SC)] + ([(after_label, after_SC)] if after_SC is not None else [])
    vals = np.concatenate([p.ravel() for _, p in panels])
    vals = vals[vals > 0]
    norm = LogNorm(vmin=max(float(vals.min()), 1e-3) if vals.size else 1e-3,
                   vmax=float(vals.max()) if vals.size else 1.0)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.2 + 1.1 * len(panels) * max(3, len(patch_nums)) / 4),
                             squeeze=False, layout="constrained")
    im = None
    for ax, (label, a) in zip(axes[:, 0], panels):
        im = ax.imshow(np.maximum(a, norm.vmin), aspect="auto", norm=norm, cmap="magma", interpolation="nearest")
        ax.set_yticks(range(len(patch_nums)))
        ax.set_yticklabels([f"{p}x{p}" for p in patch_nums], fontsize=7)
        ax.set_ylabel("scale", fontsize=8)
        ratio = a.max(axis=1) / np.maximum(np.median(a, axis=1), 1e-12)
        ax.set_title(f"{label}: max/median over channels per scale {ratio.min():.1f}..{ratio.max():.1f}",
                     fontsize=9)
    axes[-1, 0].set_xlabel("input channel")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="absmax")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def metric_bars(rows: list[dict], path: str | os.PathLike, keys=("fid", "is", "precision", "recall")) -> Path:
    """One small bar chart per metric, one bar per recipe; the bootstrap interval (``<key>_ci``) as an error bar."""
    plt = _plt()
    names = [r["method"] for r in rows]
    keys = [k for k in keys if any(r.get(k) is not None for r in rows)]
    titles = {"fid": "FID to real", "is": "IS", "fid_to_float": "FID to float",
              "psnr_to_float_db": "PSNR to float (dB)"}
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys):
        v = np.array([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float)
        cis = [r.get(f"{k}_ci") for r in rows]
        err = np.array([[0, 0] if not ci else [max(0.0, x - ci[0]), max(0.0, ci[1] - x)]
                        for x, ci in zip(v, cis)]).T
        ax.bar(range(len(v)), v, color="#3b6ea5", yerr=err if any(cis) else None, capsize=3)
        ax.set_xticks(range(len(v)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_title(titles.get(k, k), fontsize=9)
    return _save(fig, path)
