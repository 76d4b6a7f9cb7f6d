"""Image grids and PNG output (Pillow; torchvision is not a dependency)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["make_grid", "to_uint8_hwc", "save_png"]


def to_uint8_hwc(images) -> np.ndarray:
    """``(B, 3, H, W)`` floats in [0, 1] (torch or numpy) -> ``(B, H, W, 3)`` uint8, rounded, clipped."""
    a = images.detach().float().cpu().numpy() if hasattr(images, "detach") else np.asarray(images, np.float32)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1|3, H, W), got shape {a.shape}")
    a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if a.shape[1] == 1:
        a = np.repeat(a, 3, axis=1)
    return a.transpose(0, 2, 3, 1)


def make_grid(images, nrow: int = 8, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile ``(B, 3, H, W)`` images in [0, 1] into one uint8 ``(H', W', 3)`` array, ``nrow`` images per row."""
    if nrow < 1 or padding < 0:
        raise ValueError(f"make_grid: nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    tiles = to_uint8_hwc(images)
    B, H, W, _ = tiles.shape
    if B == 0:
        raise ValueError("make_grid: no images")
    cols = min(nrow, B)
    rows = (B + cols - 1) // cols
    out = np.full((padding + rows * (H + padding), padding + cols * (W + padding), 3), pad_value, np.uint8)
    for i in range(B):
        r, c = divmod(i, cols)
        y, x = padding + r * (H + padding), padding + c * (W + padding)
        out[y:y + H, x:x + W] = tiles[i]
    return out


def save_png(path: str | os.PathLike, hwc_uint8: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as PNG, atomically."""
    from PIL import Image

    from fpqvar.io_utils import atomic_write_with

    a = np.ascontiguousarray(hwc_uint8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"save_png: need an (H, W, 3) uint8 array, got {a.dtype} {a.shape}")
    img = Image.fromarray(a)
    return atomic_write_with(path, lambda tmp: img.save(tmp, format="PNG"))
