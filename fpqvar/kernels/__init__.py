"""Kernel selection by measurement (issue 12): for every operation with several implementations, the one that is
fastest *on this machine*, chosen at first use and cached per process (``fpqvar.kernels.select``).

Operations and candidates: ``fpqvar.kernels.ops``. Use::

    from fpqvar import kernels
    kernels.choose("int_gemm:16", device)          # "float32", "int8" or "u8s8" (|n| <= 16)
    kernels.resolve_dtype("galt_grad", "auto", d)  # torch.bfloat16 where it measured faster, else float32
    with kernels.override(int_gemm="int8"): ...    # an explicit choice wins (also FPQVAR_KERNELS="op=name")
    kernels.selection_report()                     # every decision so far, for reports and --json

This package needs only torch (it sits beside ``formats`` at the bottom of the layers).
"""

from __future__ import annotations

import torch

from fpqvar.kernels.ops import build_operations
from fpqvar.kernels.select import Choice, KernelUnavailable, Selector, machine_key, refined_base
from fpqvar.kernels.threads import apply_default_threads

__all__ = ["SELECTOR", "Choice", "KernelUnavailable", "choose", "choice", "override", "demote", "reset",
           "resolve_dtype", "selection_report", "summary_line", "apply_default_threads", "machine_key", "DTYPES"]

SELECTOR = Selector(build_operations)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def choose(op: str, device=None, explicit: str | None = None) -> str:
    """The implementation to use for ``op`` on ``device`` (``explicit``: a name that wins over measurement)."""
    return SELECTOR.choose(op, device, explicit)


def choice(op: str, device=None, explicit: str | None = None) -> Choice:
    """As :func:`choose`, with the measured times and the reasons other candidates were dropped."""
    return SELECTOR.choice(op, device, explicit)


def override(**choices: str):
    """Context manager: ``with override(int_gemm="float32"): ...`` (``"auto"`` restores measurement)."""
    return SELECTOR.override(**choices)


def demote(op: str, device, name: str, reason: str) -> str:
    """``name`` failed at run time: drop it for ``device`` and return the next choice."""
    return SELECTOR.demote(op, device, name, reason)


def reset() -> None:
    """Forget every decision of this process."""
    SELECTOR.reset()


def resolve_dtype(op: str, dtype: str | torch.dtype, device=None) -> torch.dtype:
    """A dtype option: ``"auto"`` -> the measured choice of ``op`` (``galt_grad``, ``autocast``), a name or a
    torch dtype -> itself (checked against ``op``'s candidates)."""
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"{op}: dtype {dtype} is not one of {', '.join(DTYPES)}")
        dtype = names[dtype]
    if dtype != "auto" and dtype not in SELECTOR.operation(op).names:
        raise ValueError(f"{op}: dtype must be 'auto' or one of {', '.join(SELECTOR.operation(op).names)}, "
                         f"got {dtype!r}")
    return DTYPES[choose(op, device, None if dtype == "auto" else dtype)]


def selection_report() -> dict:
    """Every kernel decision of this process (operation, device, threads, chosen name, measured ms, dropped
    candidates and why) and the machine (CPU model, ISA capability, ISA-cap variables, torch): JSON-ready, for
    embedding in reports and ``--json`` outputs."""
    return SELECTOR.report()


def summary_line() -> str:
    """``"int_gemm:16=int8 (cpu, measured, 1.3 ms vs float32 4.5 ms); ..."``: the decisions so far, for a log.
    Per-shape decisions (``op@shape``, :mod:`fpqvar.quant.kernels_tune`) are counted per operation and name."""
    parts = []
    per_shape: dict[str, dict[str, int]] = {}
    for c in SELECTOR.report()["choices"]:
        base = refined_base(c["op"])
        if base is not None:
            counts = per_shape.setdefault(base, {})
            counts[c["name"]] = counts.get(c["name"], 0) + 1
            continue
        others = ", ".join(f"{k} {v:.2f} ms" for k, v in c["times_ms"].items() if k != c["name"])
        mine = c["times_ms"].get(c["name"])
        t = "" if mine is None else f", {mine:.2f} ms" + (f" vs {others}" if others else "")
        parts.append(f"{c['op']}={c['name']} ({c['device']}, {c['source']}{t})")
    for op, counts in per_shape.items():
        parts.append(f"{op} per layer shape: " + ", ".join(f"{n} x{k}" for n, k in sorted(counts.items())))
    return "; ".join(parts) if parts else "none chosen yet"
