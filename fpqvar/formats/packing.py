"""Bit packing of 4-bit and 6-bit codes along the last dim (``torch.uint8`` in and out, exact round trips).

4-bit: two codes per byte, element ``2i`` in the LOW nibble and ``2i + 1`` in the HIGH nibble:
``byte[i] = c[2i] | (c[2i + 1] << 4)``. The last dim must be even.

6-bit: four codes in three bytes, as one little-endian 24-bit word ``w = c0 | c1 << 6 | c2 << 12 | c3 << 18``:
``b0 = w & 0xFF``, ``b1 = (w >> 8) & 0xFF``, ``b2 = w >> 16``; i.e. ``b0 = c0 | c1[1:0] << 6``,
``b1 = c1[5:2] | c2[3:0] << 4``, ``b2 = c2[5:4] | c3 << 2``. The last dim must be a multiple of 4.

Codes wider than the field raise ``ValueError`` (no silent truncation).
"""

from __future__ import annotations

import torch

__all__ = ["pack_int4", "unpack_int4", "pack_int6", "unpack_int6"]


def _check_codes(codes: torch.Tensor, bits: int, what: str) -> None:
    if codes.dtype != torch.uint8:
        raise ValueError(f"{what}: codes must be torch.uint8, got {codes.dtype}")
    if codes.dim() == 0:
        raise ValueError(f"{what}: codes must have at least 1 dim")
    if codes.numel() and int(codes.max()) >= (1 << bits):
        raise ValueError(f"{what}: codes must be < {1 << bits}, got max {int(codes.max())}")


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """``(..., n)`` uint8 codes < 16 -> ``(..., n // 2)`` bytes; ``n`` must be even."""
    _check_codes(codes, 4, "pack_int4")
    n = codes.shape[-1]
    if n % 2:
        raise ValueError(f"pack_int4: last dim must be even, got shape {tuple(codes.shape)}")
    pairs = codes.reshape(*codes.shape[:-1], n // 2, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_int4(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: ``(..., n // 2)`` bytes -> ``(..., n)`` codes."""
    if packed.dtype != torch.uint8 or packed.dim() == 0:
        raise ValueError(f"unpack_int4: need uint8 with >= 1 dim, got {packed.dtype} {tuple(packed.shape)}")
    if n != 2 * packed.shape[-1]:
        raise ValueError(f"unpack_int4: n={n} codes do not fit packed shape {tuple(packed.shape)} "
                         "(n must be 2 * last dim)")
    out = torch.stack((packed & 0x0F, packed >> 4), dim=-1)
    return out.reshape(*packed.shape[:-1], n)


def pack_int6(codes: torch.Tensor) -> torch.Tensor:
    """``(..., n)`` uint8 codes < 64 -> ``(..., 3 * n // 4)`` bytes; ``n`` must be a multiple of 4."""
    _check_codes(codes, 6, "pack_int6")
    n = codes.shape[-1]
    if n % 4:
        raise ValueError(f"pack_int6: last dim must be a multiple of 4, got shape {tuple(codes.shape)}")
    c = codes.reshape(*codes.shape[:-1], n // 4, 4).to(torch.int32)
    w = c[..., 0] | (c[..., 1] << 6) | (c[..., 2] << 12) | (c[..., 3] << 18)
    b = torch.stack((w & 0xFF, (w >> 8) & 0xFF, w >> 16), dim=-1).to(torch.uint8)
    return b.reshape(*codes.shape[:-1], 3 * (n // 4))


def unpack_int6(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_int6`: ``(..., 3 * n // 4)`` bytes -> ``(..., n)`` codes."""
    if packed.dtype != torch.uint8 or packed.dim() == 0:
        raise ValueError(f"unpack_int6: need uint8 with >= 1 dim, got {packed.dtype} {tuple(packed.shape)}")
    m = packed.shape[-1]
    if m % 3 or n != 4 * (m // 3):
        raise ValueError(f"unpack_int6: n={n} codes do not fit packed shape {tuple(packed.shape)} "
                         "(last dim must be 3 * n / 4)")
    b = packed.reshape(*packed.shape[:-1], m // 3, 3).to(torch.int32)
    w = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    c = torch.stack((w & 63, (w >> 6) & 63, (w >> 12) & 63, w >> 18), dim=-1).to(torch.uint8)
    return c.reshape(*packed.shape[:-1], n)
