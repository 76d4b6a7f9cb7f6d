"""The exact fast path's integer GEMM chosen per layer shape, by measurement on the first call's own operands.

Why: the operations ``int_gemm:<bound>`` are measured once on a representative layer (512 -> 2048 at 2, 32 and 256
rows, :func:`fpqvar.quant.kernels_gemm_ops._bench_layer`), but which GEMM is faster depends on the shape. Under AVX2
caps on the dev CPU u8s8 wins that layer, while float32 wins the default model's 256-wide layers at a few rows
(README, benchmarks section). So at the first call of each (weight shape, parts, row bucket), the candidates that
survived the base operation's measurement (its exactness probe included) are timed on that call's own operands (at
most ``TUNE_MAX_ROWS`` rows of them), checked bit for bit against each other, and the faster is kept for the
process. The base operation's choice is the baseline of each decision and a rival must beat it by ``TUNE_MARGIN``:
at a few rows a call takes 50 to 300 us and its first timings are noisy (in stop 22's batch-1 sampling 16 of 48
shapes left int8 for float32, and the run was slower than with int8 forced), so a shape leaves the base choice only
on a clear win; each candidate is also timed for at least ``TUNE_MIN_SECONDS`` in all. Each decision is an
operation of the kernel selector, named
``int_gemm:<bound>@<I>x<O>s<seg>p<parts>r<rows>``: explicit choices (``FPQVAR_KERNELS=int_gemm=...``,
``kernels.override(int_gemm=...)``, ``--backend``) name the family and win, and reports list the decisions.
"""

from __future__ import annotations

import weakref

import torch

from fpqvar import kernels
from fpqvar.kernels import int_gemm as IG
from fpqvar.kernels.select import Candidate, KernelUnavailable, Operation, refinement
from fpqvar.quant import kernels_gemm as KG

__all__ = ["TUNE_MAX_ROWS", "TUNE_MARGIN", "TUNE_MIN_SECONDS", "row_bucket", "op_for", "decided", "choose"]

TUNE_MAX_ROWS = 256  # rows a decision is measured on (a larger call decides like 256 rows: the per-row cost is flat)
TUNE_MARGIN = 1.10  # how much faster than the base choice a rival must measure on a shape (the docstring: why)
TUNE_MIN_SECONDS = 0.005  # per candidate and decision: about 50 timed runs of a 100 us call (at most MAX_ROUNDS)
_PROBE_ROWS = 8
# op name -> the latest layer of that shape (weakly: a decision must not keep a model alive), which its candidates
# measure on; decisions are per shape, so they outlive the layer they were first measured on
_LAYER: dict[str, weakref.ref] = {}


def row_bucket(T: int) -> int:
    """1, 2, 4, ..., ``TUNE_MAX_ROWS``: the power of two at or above ``T``, capped."""
    return min(TUNE_MAX_ROWS, 1 << max(0, int(T) - 1).bit_length())


def op_for(parts, w: KG.PreparedWeight, max_abs: int) -> str:
    """The selector operation deciding the GEMM of this call's shape."""
    return _op_name(w, len(parts), parts[0][0].shape[0], max_abs)


def _op_name(w: KG.PreparedWeight, P: int, T: int, max_abs: int) -> str:
    I, O = w.w_IO.shape
    return refinement(IG.op_name(max_abs), f"{I}x{O}s{w.seg}p{P}r{row_bucket(T)}")


def _bench(impl: str, parts, name: str):
    rows = min(parts[0][0].shape[0], TUNE_MAX_ROWS)
    sub = [(n[:rows], s[:rows], unit) for n, s, unit, *_ in parts]  # the first call's operands (<= 256 rows)

    def bench(device: torch.device, size: str):
        pw = _LAYER[name]()
        if pw is None:
            raise RuntimeError(f"no live layer of shape {name} to measure on")
        use = sub if size == "full" else [(n[:_PROBE_ROWS], s[:_PROBE_ROWS], u) for n, s, u in sub]
        return lambda: KG.linear_int(use, pw, None, impl=impl)

    return bench


def decided(w: KG.PreparedWeight, P: int, T: int, max_abs: int, device: torch.device, default: str) -> str | None:
    """:func:`choose` for a call of ``P`` parts and ``T`` rows, from the shape alone: ``None`` when the shape has not
    been decided yet (then :func:`choose`, which measures on the call's operands, must run first)."""
    name = _op_name(w, P, T, max_abs)
    sel = kernels.SELECTOR
    if name in sel.operations:
        _LAYER[name] = weakref.ref(w)
        try:
            return kernels.choose(name, device)
        except KernelUnavailable:  # every candidate failed on this shape's operands: the base choice
            return default
    base = sel.choice(IG.op_name(max_abs), device)
    if base.source == "explicit" or len(_rivals(base)) < 2:
        return default
    return None


def _rivals(base) -> list[str]:
    """The candidates that survived the base operation's measurement (its exactness probe included)."""
    return [n for n in base.times_ms if n not in base.dropped]


def choose(parts, w: KG.PreparedWeight, max_abs: int, device: torch.device, default: str) -> str:
    """The GEMM for this call: ``default`` (the base operation's choice) when that was explicit or had no rival,
    else the per-shape decision (measured at the first call of the shape)."""
    P, T = len(parts), parts[0][0].shape[0]
    impl = decided(w, P, T, max_abs, device, default)
    if impl is not None:
        return impl
    name = _op_name(w, P, T, max_abs)
    sel = kernels.SELECTOR
    _LAYER[name] = weakref.ref(w)
    base_op = IG.op_name(max_abs)
    rivals = _rivals(sel.choice(base_op, device))
    order = sorted((c for c in sel.operation(base_op).candidates if c.name in rivals),
                   key=lambda c: c.name != default)  # the base choice first: the baseline the margin protects
    cands = tuple(Candidate(c.name, c.summary, _bench(c.name, parts, name), c.unavailable) for c in order)
    sel.register(Operation(name, f"{base_op} for a {w.w_IO.shape[0]} -> {w.w_IO.shape[1]} layer, "
                                 f"{P} part(s), up to {row_bucket(T)} rows", cands, exact=True, margin=TUNE_MARGIN,
                           min_seconds=TUNE_MIN_SECONDS))
    try:
        return kernels.choose(name, device)
    except KernelUnavailable:  # every candidate failed on this shape's operands: the base choice
        return default
