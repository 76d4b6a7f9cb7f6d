"""The default torch thread count of the command line: measured, not assumed (issue 12).

torch starts one OpenMP thread per physical core. On a 2-core machine that other work keeps busy, two threads
spin-wait on each other and run several times slower than one (benchmarks/bench_ptq.py saw 6x). So, unless the
user says otherwise (``--threads N``, ``FPQVAR_THREADS`` or ``OMP_NUM_THREADS``), the ``threads`` operation of
the kernel selector times a small GEMM with 1 and with N threads (N = the CPUs in ``os.sched_getaffinity``, at
most torch's default), interleaved, by wall clock, and more threads are used only where they measure at least
15% faster. Called once, at a command's entry (precision and thread switches happen only at entry points).
"""

from __future__ import annotations

import os

import torch

__all__ = ["apply_default_threads"]


def apply_default_threads(threads: int | None = 0) -> dict:
    """Set torch's thread count: ``threads > 0`` as given, else the measured default. Returns how it was set."""
    if threads is not None and threads > 0:
        torch.set_num_threads(int(threads))
        return {"threads": int(threads), "source": "explicit (--threads)"}
    env = os.environ.get("FPQVAR_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FPQVAR_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"FPQVAR_THREADS must be a positive integer, got {env!r}")
        torch.set_num_threads(n)
        return {"threads": n, "source": "FPQVAR_THREADS"}
    if os.environ.get("OMP_NUM_THREADS"):
        return {"threads": torch.get_num_threads(), "source": "OMP_NUM_THREADS"}
    from fpqvar.kernels import SELECTOR

    n = int(SELECTOR.choose("threads", "cpu"))
    torch.set_num_threads(n)
    return {"threads": n, "source": "measured (1 vs N threads)"}
