"""Blocks for the elementwise quantization passes on CPU (speed and robustness, same results).

A quantizer is a chain of about fifteen small torch ops. On CPU each op over a big tensor is an intra-op
parallel region; on the shared 2-core dev machine (a higher-priority background job on both cores) every
parallel region waits on a preempted worker at its barrier, and a (4096, 1920) fake quantization measured
from 70 ms to 1.4 s (median). Blocks smaller than torch's intra-op grain (32768 elements) run every op on the
calling thread, stay in L1/L2 cache and reuse small buffers: measured 70-80 ms, steady, under the same load,
and 20-30 ms on one idle core. Results do not depend on the blocking: every op is elementwise or reduces within
one scale row. On CUDA the whole tensor is one block (kernels are cheap, host loops are not).

``blocks(rows, n, device)`` yields ``(row_slice, col_slice)`` pairs over a ``(rows, n)`` work view; a block
holds whole rows (``col_slice == slice(None)``) unless a single row is longer than the block size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["BLOCK_ELEMS", "blocks", "whole_rows"]

# Just below at::internal::GRAIN_SIZE (32768): TensorIterator ops on fewer elements never start a parallel region.
BLOCK_ELEMS = 32767


def whole_rows(n: int, device: torch.device) -> bool:
    """Whether :func:`blocks` keeps every row of length ``n`` inside one block."""
    return device.type != "cpu" or n <= BLOCK_ELEMS


def blocks(rows: int, n: int, device: torch.device) -> Iterator[tuple[slice, slice]]:
    everything = slice(None)
    if device.type != "cpu" or rows * n <= BLOCK_ELEMS:
        yield everything, everything
    elif n <= BLOCK_ELEMS:
        k = BLOCK_ELEMS // n
        for r0 in range(0, rows, k):
            yield slice(r0, r0 + k), everything
    else:
        for r in range(rows):
            for c0 in range(0, n, BLOCK_ELEMS):
                yield slice(r, r + 1), slice(c0, c0 + BLOCK_ELEMS)
