"""Two implementations of the online GHT rotation ``x -> x @ blockdiag(Q, ..., Q)`` (fpqvar-method.md section 7).

- ``"matmul"`` (the reference): one GEMM with the dense ``(b, b)`` block, in ``x``'s dtype.
- ``"fwht"``: for a block of the randomized-Hadamard form ``Q = diag(D) H_b / sqrt(b)`` (``H_b`` Sylvester, the
  form of ``transforms.hadamard.random_hadamard`` at a power of two), sign flips, ``log2(b)`` butterfly stages and
  one scaling: ``b log2(b)`` additions per block instead of ``b**2`` multiply-adds. Same transform; the float
  rounding differs (a different summation order): within a few ulps of the exact product, the bound checked in
  ``tests/kernels/test_ght.py``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["GHT_IMPLS", "rotate_matmul", "rotate_fwht", "fwht_factors"]

GHT_IMPLS = ("matmul", "fwht")


def rotate_matmul(x: torch.Tensor, Q_bb: torch.Tensor) -> torch.Tensor:
    """``x @ blockdiag(Q_bb, ...)`` over the last dim, in ``x``'s dtype."""
    C, b = x.shape[-1], Q_bb.shape[0]
    return (x.reshape(*x.shape[:-1], C // b, b) @ Q_bb.to(x.dtype)).reshape(x.shape)


def _sylvester(b: int) -> torch.Tensor:
    h = torch.ones((1, 1), dtype=torch.float64)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    while h.shape[0] < b:
        h = torch.kron(h2, h)
    return h


def fwht_factors(Q_bb: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """``(signs_b, scale)`` with ``Q_bb == fl(diag(signs) H_b * scale)`` bit for bit, or ``None`` when ``Q_bb`` does
    not have that form (then only ``"matmul"`` applies)."""
    b = Q_bb.shape[0]
    if Q_bb.ndim != 2 or Q_bb.shape[1] != b or b < 2 or b & (b - 1):
        return None
    q = Q_bb.detach().cpu()
    signs = torch.sign(q[:, 0].to(torch.float64))
    if not bool((signs.abs() == 1).all()):
        return None
    scale = 1.0 / math.sqrt(b)
    rebuilt = (signs.view(b, 1) * _sylvester(b) * scale).to(q.dtype)
    if not torch.equal(rebuilt, q):
        return None
    return signs.to(q.dtype), scale


def rotate_fwht(x: torch.Tensor, signs_b: torch.Tensor, scale: float) -> torch.Tensor:
    """``((x * signs) H_b) * scale`` per block of ``b = len(signs_b)`` along the last dim (Sylvester order)."""
    C, b = x.shape[-1], signs_b.shape[0]
    y = x.reshape(-1, C // b, b) * signs_b.to(x.dtype)
    R = y.shape[0] * (C // b)
    h = 1
    while h < b:  # stage on index bit log2(h): (a, c) -> (a + c, a - c), as kron([[1, 1], [1, -1]], H_h)
        y = y.reshape(R, b // (2 * h), 2, h)
        a, c = y[:, :, 0], y[:, :, 1]
        y = torch.stack((a + c, a - c), dim=2)
        h *= 2
    return y.reshape(x.shape).mul_(scale)
