"""The kernel selector's operations of the exact path's GEMM module (:mod:`fpqvar.quant.kernels_gemm`), measured on
its own accumulation loop: ``int_gemm:<bound>`` (which exact integer GEMM) and ``int_sums`` (the per-segment scales
and sums by PyTorch ops or by the C loop of :mod:`fpqvar.kernels.native`). Imported by ``kernels_gemm`` itself."""

from __future__ import annotations

import torch

from fpqvar import kernels
from fpqvar.kernels import int_gemm as IG
from fpqvar.kernels import native
from fpqvar.kernels.select import Candidate, Operation
from fpqvar.quant.kernels_gemm import SUMS_OP, PreparedWeight, gemm_impl, linear_int


def _bench_layer(impl: str, bound: int):
    """Benchmark of :func:`linear_int` with the GEMM ``impl`` on random codes of magnitude ``<= bound``.

    Probe: two small layers at the bound's extremes, one with groups of 128 and one with a single 2048-wide
    segment (the float32 path's K chunking beyond 2**24); the outputs must match the baseline's bit for bit.
    Full: a 512 -> 2048 layer with groups of 128 at 2, 32 and 256 rows (few-row and many-row strategies)."""

    def bench(device: torch.device, size: str):
        g = torch.Generator().manual_seed(0)
        layers, rows = (((2048, 32, 128), (2048, 32, 2048)), (3,)) if size == "probe" else (((512, 2048, 128),),
                                                                                             (2, 32, 256))
        calls = []
        for I, O, seg in layers:
            w = torch.randint(-bound, bound + 1, (I, O), generator=g, dtype=torch.int8)
            w[:, 0] = bound
            sw = torch.rand((O, I // seg), generator=g) + 0.5
            pw = PreparedWeight(w.to(device), sw.to(device), seg)
            for T in rows:
                n = torch.randint(-bound, bound + 1, (T, I), generator=g, dtype=torch.int8)
                n[0], n[-1] = bound, -bound
                s = torch.rand((T, I // seg), generator=g) + 0.5
                calls.append((pw, [(n.to(device), s.to(device), 2.0**-2)]))

        def run():  # the PyTorch sums: the GEMMs ranked on their own (and no cycle with int_sums' measurement)
            return [linear_int(parts, pw, None, impl=impl, sums="torch") for pw, parts in calls]

        return run

    return bench


def _unavailable(impl: str):
    return lambda device: IG.unavailable(impl, device)


# Each GEMM candidate is timed for at least this long (about 5 rounds of its ~10 ms benchmark): with 3 rounds the
# choice between u8s8 and float32 under the AVX2 caps flipped from run to run on the shared dev machine (stop 23).
BASE_MIN_SECONDS = 0.05


def _bench_sums(name: str):
    """:func:`linear_int` with the scales and sums by ``name`` and the integer GEMM chosen for FP4 codes: a 512 ->
    2048 layer at 256 rows (the segment loop) and a DFQ one at 32 rows (the few-row batched strategy)."""

    def bench(device: torch.device, size: str):
        impl = gemm_impl(device, max_abs=16)  # (whose own measurement runs with sums="torch": no cycle)
        g = torch.Generator().manual_seed(0)
        T = 3 if size == "probe" else 256
        calls = []
        for P, rows in ((1, T), (2, min(T, 32))):
            w = torch.randint(-12, 13, (512, 2048), generator=g, dtype=torch.int8)
            pw = PreparedWeight(w.to(device), (torch.rand((2048, 4), generator=g) + 0.5).to(device), 128)
            parts = [((torch.randint(-12, 13, (rows, 512), generator=g, dtype=torch.int8) * sign).to(device),
                      (torch.rand((rows, 4), generator=g) + 0.5).to(device), 2.0**-2) for sign in (-1, 1)[2 - P:]]
            calls.append((pw, parts))

        def run():
            return [linear_int(parts, pw, None, impl=impl, sums=name) for pw, parts in calls]

        return run

    return bench


def _register() -> None:
    for b in IG.BOUND_CLASSES:
        kernels.SELECTOR.register(Operation(IG.op_name(b), f"exact integer GEMM of the fast path, |operands| <= {b}", (
            Candidate("float32", "float32 GEMM on integer-valued operands (exact below 2**24, K chunked)",
                      _bench_layer("float32", b)),
            Candidate("int8", "torch._int_mm int8 x int8 -> int32", _bench_layer("int8", b), _unavailable("int8")),
            Candidate("u8s8", "oneDNN quantized linear, uint8 (codes + 128) x int8 -> int32", _bench_layer("u8s8", b),
                      _unavailable("u8s8")),
            Candidate("native", "compiled C int8 dot products and their sums, one call per layer (AVX2 where present)",
                      _bench_layer("native", b), _unavailable("native")),
        ), exact=True, margin=1.05, min_seconds=BASE_MIN_SECONDS))
    kernels.SELECTOR.register(Operation(SUMS_OP, "the exact path's per-segment scales and sums, datapath order", (
        Candidate("torch", "PyTorch ops (three per segment and part)", _bench_sums("torch")),
        Candidate("native", "compiled C, one pass per segment (fpqvar.kernels.native)", _bench_sums("native"),
                  native.unavailable),
    ), exact=True, margin=1.05))


_register()
