"""The operations with several implementations, their candidates and micro-benchmarks (issue 12).

Sizes: the *probe* is tiny (a 350x-slow kernel costs a few ms there and is dropped); the *full* size resembles
the real call (the default model's and var-d16's layers), small enough that measuring every candidate of every
operation stays well under a second on a 2-core CPU. Inputs come from a fixed-seed local generator.

| operation | candidates (baseline first) | exact | used by |
| --- | --- | --- | --- |
| ``int_gemm:16/64/127`` | float32, int8, u8s8 (CPU) | yes (probe-verified) | the exact fast path (see below) |
| ``galt_grad`` | float32, bfloat16 | no (margin 1.25) | GALT's two backward GEMMs (``GALTConfig.grad_dtype``) |
| ``autocast`` | float32, bfloat16, float16 (CUDA) | no (margin 1.25) | training and sampling ``dtype="auto"`` |
| ``ght`` | matmul, fwht | no (margin 1.5) | the online GHT rotation (``OnlineRotation``) |
| ``threads`` | 1, affinity count (and half of it) | -- (margin 1.15) | the CLI's default torch thread count |
| ``lean`` | torch, native (a C compiler) | yes (probe-verified) | the exact few-row path's quantizer and sums |
| ``int_sums`` | torch, native (a C compiler) | yes (probe-verified) | the exact general path's per-segment sums |

``int_gemm`` and ``int_sums`` are registered by :mod:`fpqvar.quant.kernels_gemm_ops` (their benchmarks run the fast
path's real accumulation loop, whose chunking and strategies decide how fast each GEMM is in practice); the GEMM's
baseline is float32 because it runs everywhere (CPU, CUDA); int8 (``torch._int_mm``) and u8s8 (oneDNN's quantized
linear, the one that is fast on AVX2-only CPUs) must measure faster, and give the same bits on the probe at the
operand bound of its class (``kernels.int_gemm.BOUND_CLASSES``), to be used. ``lean`` is registered by
:mod:`fpqvar.quant.fast_lean`. The ``native`` candidates are the C code of :mod:`fpqvar.kernels.native`, built at
first use where a compiler is.
"""

from __future__ import annotations

import os
import time

import torch

from fpqvar.kernels import ght as GH
from fpqvar.kernels.select import Candidate, Operation, Timed

__all__ = ["build_operations", "affinity_count"]


def _gen(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _randn(shape, g, device) -> torch.Tensor:
    return torch.randn(shape, generator=g).to(device)


# --- dtype choices (GALT backward, autocast) -------------------------------------------------------------------


def _dtype_unavailable(dtype: torch.dtype):
    def why(device: torch.device) -> str | None:
        if dtype == torch.float16 and device.type != "cuda":
            return "float16 autocast is offered on CUDA only"
        if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return "this GPU has no bfloat16 support"
        return None

    return why


def _galt_grad_bench(dtype: torch.dtype):
    def bench(device: torch.device, size: str):
        g = _gen(device)
        N, O, C = (64, 128, 128) if size == "probe" else (256, 1024, 512)
        G, wq, xq = _randn((N, O), g, device), _randn((O, C), g, device), _randn((N, C), g, device)

        def run():  # _SiteLoss.backward: the casts and both GEMMs
            Gd = G.to(dtype)
            return (Gd @ wq.to(dtype)).float(), (Gd.T @ xq.to(dtype)).float()

        return run

    return bench


def _autocast_bench(dtype: torch.dtype):
    def bench(device: torch.device, size: str):
        g = _gen(device)
        M, Cin, Cout, ch, hw = (16, 64, 128, 8, 8) if size == "probe" else (256, 512, 1536, 64, 32)
        x, w = _randn((M, Cin), g, device), _randn((Cout, Cin), g, device)
        img, k = _randn((1, ch, hw, hw), g, device), _randn((ch, ch, 3, 3), g, device)

        def run():  # a transformer linear and a VQVAE-style 3x3 conv, fp32 master weights as in the models
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                y = torch.nn.functional.linear(x, w)
                z = torch.nn.functional.conv2d(img, k, padding=1)
            return y.float(), z.float()

        return run

    return bench


# --- ght --------------------------------------------------------------------------------------------------------


def _ght_bench(impl: str):
    def bench(device: torch.device, size: str):
        g = _gen(device)
        b = 128
        T, C = (8, 256) if size == "probe" else (512, 1024)
        signs = (torch.randint(0, 2, (b,), generator=g) * 2 - 1).to(torch.float64)
        Q = (signs.view(b, 1) * GH._sylvester(b) / b**0.5).to(torch.float32).to(device)
        x = _randn((T, C), g, device)
        if impl == "matmul":
            return lambda: GH.rotate_matmul(x, Q)
        s, scale = GH.fwht_factors(Q.cpu())
        s = s.to(device)
        return lambda: GH.rotate_fwht(x, s, scale)

    return bench


# --- threads ----------------------------------------------------------------------------------------------------


def affinity_count() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where that is missing)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _threads_bench(n: int):
    def bench(device: torch.device, size: str):
        g = _gen(device)
        # the probe is full size too: a tiny GEMM with a cold OpenMP pool measured 2 threads 65-157x slower than
        # one on an idle 2-core machine (the pool wakes up on the first large region), dropping them 3 times in 5
        a, b = _randn((256, 512), g, device), _randn((512, 1024), g, device)

        def run():  # switching the thread count is not charged: warm up at n threads, then time 3 GEMMs
            old = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                a @ b
                a @ b
                t0 = time.perf_counter()
                for _ in range(3):
                    a @ b
                return Timed(time.perf_counter() - t0)
            finally:
                torch.set_num_threads(old)

        return run

    return bench


def _threads_candidates() -> tuple[Candidate, ...]:
    top = affinity_count()
    counts = sorted({1, top} | ({top // 2} if top >= 4 else set()))
    return tuple(Candidate(str(n), f"{n} torch thread(s)", _threads_bench(n),
                           lambda d: None if d.type == "cpu" else "threads are chosen for the CPU only")
                 for n in counts)


def build_operations() -> dict[str, Operation]:
    """The registry (built lazily, at the first choice)."""
    f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
    ops = [
        Operation("galt_grad", "dtype of GALT's two backward GEMMs", (
            Candidate("float32", "float32 GEMMs", _galt_grad_bench(f32)),
            Candidate("bfloat16", "bfloat16 operands, float32 accumulation", _galt_grad_bench(bf16),
                      _dtype_unavailable(bf16)),
        ), margin=1.25),
        Operation("autocast", "compute dtype of training and sampling (torch.autocast)", (
            Candidate("float32", "no autocast", _autocast_bench(f32)),
            Candidate("bfloat16", "bfloat16 autocast", _autocast_bench(bf16), _dtype_unavailable(bf16)),
            Candidate("float16", "float16 autocast", _autocast_bench(f16), _dtype_unavailable(f16)),
        ), margin=1.25),
        Operation("ght", "online GHT rotation x @ blockdiag(Q)", (
            Candidate("matmul", "dense (b, b) GEMM", _ght_bench("matmul")),
            Candidate("fwht", "sign flips + fast Walsh-Hadamard butterflies", _ght_bench("fwht")),
        ), margin=1.5),
        Operation("threads", "torch CPU thread count", _threads_candidates(), margin=1.15, rounds=5,
                  per_threads=False),
    ]
    return {o.name: o for o in ops}
