"""Beat packing for the GEMM tile's streams and the expected results from ``fpqvar.hw.datapath``.

Shared by the Amaranth-simulation tests and the cocotb testbench's driver (which reads the JSON this writes).
Shapes: activation codes ``a_TK`` (uint, ``K = groups * lanes``), scales ``sa_TG``; weights ``w_OK``,
``sw_OG``; bias ``b_O`` (float32).
"""

from __future__ import annotations

import numpy as np

from fpqvar.hw import datapath as dp
from fpqvar.hw.rtl.tile_model import TileConfig, check_layer

__all__ = ["f32_bits", "activation_beats", "weight_beats", "expected_outputs", "unpack_output"]


def f32_bits(x) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32).astype(np.int64)


def _beat(codes, scale_bits: int, lanes: int) -> int:
    word = 0
    for i, c in enumerate(codes):
        word |= int(c) << (4 * i)
    return word | (int(scale_bits) << (4 * lanes))


def activation_beats(cfg: TileConfig, a_TK, sa_TG) -> list[int]:
    """Token-major beats ``(t, g)``: codes of group ``g`` of token ``t``, then its scale."""
    L = cfg.lanes
    s = f32_bits(sa_TG)
    return [_beat(a_TK[t, g * L:(g + 1) * L], s[t, g], L) for t in range(a_TK.shape[0])
            for g in range(a_TK.shape[1] // L)]


def weight_beats(cfg: TileConfig, w_OK, sw_OG, b_O) -> list[list[int]]:
    """Per pass, the beats of its ``n_pe`` outputs: each output's groups, then its bias."""
    L, n = cfg.lanes, cfg.n_pe
    s, b = f32_bits(sw_OG), f32_bits(b_O)
    G = w_OK.shape[1] // L
    passes = []
    for p in range(w_OK.shape[0] // n):
        beats = []
        for o in range(p * n, (p + 1) * n):
            beats += [_beat(w_OK[o, g * L:(g + 1) * L], s[o, g], L) for g in range(G)]
            beats.append(_beat([], b[o], L))
        passes.append(beats)
    return passes


def expected_outputs(cfg: TileConfig, a_TK, sa_TG, w_OK, sw_OG, b_O) -> np.ndarray:
    """float32 ``(T, O)`` from the datapath model: PE group sums, then ``scale_accumulate``'s order."""
    T, K = a_TK.shape
    O = w_OK.shape[0]
    check_layer(cfg, T, K, O)
    L = cfg.lanes
    partials = []
    for g in range(K // L):
        sl = slice(g * L, (g + 1) * L)
        d_TO = dp.group_dot(cfg.kind, a_TK[:, None, sl], w_OK[None, :, sl])
        partials.append((d_TO, sa_TG[:, g], sw_OG[:, g]))
    return dp.scale_accumulate(partials, dp.PRODUCT_UNIT[cfg.kind], b_O)


def unpack_output(cfg: TileConfig, word: int) -> list[int]:
    """The ``n_pe`` float32 bit patterns of one output beat."""
    return [(word >> (32 * j)) & 0xFFFFFFFF for j in range(cfg.n_pe)]
