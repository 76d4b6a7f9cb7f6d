"""The bit-exact W4A4 QuantLinear (fast path) vs float32 nn.Linear, side by side, per integer-GEMM candidate.

Layers of var-d16 (C = 1024) and var-d30 (C = 1920) as fpqvar-w4a4 quantizes them: qkv (C -> 3C) and fc1
(C -> 4C) with the online GHT (128 x 128 matmul), proj (C -> C), fc2 (4C -> C) with DFQ inputs; E2M1 per group of
128. Rows: the token count of every scale (1, 4, 9, ..., 256) times 2 for CFG, batch 1. Columns: float32
``nn.Linear``; W4A4 with the GEMM the kernel selector chose (``auto``), and with each candidate forced (``int8``:
``torch._int_mm``; ``float32``: integer-valued float32 operands; ``u8s8``: oneDNN's quantized linear on the codes
plus 128 as uint8; ``native``: our C loop, ``fpqvar.kernels.native.int_dot``), and ``general``: the selected GEMM
with the few-row path (``fpqvar.quant.fast_lean``) switched
off, which shows what that path saves; ``torchops``: the selected GEMM with the PyTorch ops instead of the C kernels
(``fpqvar.kernels.native``, selector operations ``lean`` and ``int_sums``). All W4A4 columns give the same bits
(tests/quant/test_fast.py). The W4A4 time is the whole layer: rotation, activation quantization, GEMMs, scales and
accumulation. Each contender runs once per round, in turn, ``--rounds`` times; the best time is kept; the default
clock is the process CPU time (the machine is shared; ``--clock wall`` for wall-clock).

``--isa-caps both`` (default) runs everything twice, in child processes: as the machine is, and with oneDNN / MKL /
ATen capped at AVX2 (benchmarks/_isa.py), which imitates an AVX2-only CPU for bf16 (the int8 GEMM is not slowed
as much as on a real AVX2 CPU: see the printed selector times).

    python benchmarks/bench_fast_linear.py [--models var-d16,var-d30] [--rounds 5] [--isa-caps both|none|avx2]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn as nn

from fpqvar import kernels
from fpqvar.quant import fast_lean as FL
from fpqvar.quant import kernels_gemm  # noqa: F401  (registers the int_gemm operations with the selector)
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec
from fpqvar.transforms.hadamard import OnlineRotation, block_hadamard_matrix

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _isa import best_times, header, main_in_modes  # noqa: E402

WIDTHS = {"var-d16": 1024, "var-d20": 1280, "var-d24": 1536, "var-d30": 1920}
PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
FP4 = QuantSpec("e2m1", "group", 128)
DFQ4 = QuantSpec("e2m1", "group", 128, dfq="fp4")
GEMMS = ("auto", "int8", "float32", "u8s8", "native")
EXTRA = ("general", "torchops")


def _layers(C: int, seed: int):
    """name -> (fp32 Linear, W4A4 QuantLinear on the exact backend)."""
    Q = block_hadamard_matrix()
    g = torch.Generator().manual_seed(seed)
    shapes = {"qkv": (C, 3 * C, True, False), "proj": (C, C, False, False), "fc1": (C, 4 * C, True, False),
              "fc2": (4 * C, C, False, True)}
    out = {}
    for name, (i, o, rot, dfq) in shapes.items():
        lin = nn.Linear(i, o)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(o, i, generator=g) * i**-0.5)
            lin.bias.copy_(torch.randn(o, generator=g) * 0.02)
        q = QuantLinear.from_linear(lin, FP4, DFQ4 if dfq else FP4, rotation=OnlineRotation(Q, i) if rot else None)
        q.backend = "exact"
        out[name] = (lin, q)
    return out


def _w4a4(q, x, gemm):
    if gemm == "auto":
        return lambda: q(x)
    if gemm == "general":  # the selected GEMM, with the few-row path (fpqvar.quant.fast_lean) off

        def general():
            with FL.disabled():
                return q(x)

        return general
    if gemm == "torchops":  # the selected GEMM, the quantizer and the sums by PyTorch ops (no C kernels)

        def torchops():
            with kernels.override(lean="torch", int_sums="torch"):
                return q(x)

        return torchops

    def run():
        with kernels.override(int_gemm=gemm):
            return q(x)

    return run


def measure(args) -> None:
    kernels.apply_default_threads(args.threads)
    tokens = [2 * int(p) ** 2 for p in args.patch_nums.split(",")]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(header())
    c = kernels.choice("int_gemm:16")  # FP4 / DFQ-FP4 codes: |n| <= 12
    print(f"int_gemm:16 selector: chose {c.name}; full-size ms {({k: round(v, 3) for k, v in c.times_ms.items()})}; "
          f"dropped {c.dropped or 'none'}; best of {args.rounds}, clock {args.clock}")
    cols = ("fp32",) + tuple(f"w4a4-{g}" for g in GEMMS + EXTRA)
    grand = dict.fromkeys(cols, 0.0)
    worst = 0.0
    for model in args.models.split(","):
        C = WIDTHS[model]
        layers = _layers(C, seed=0)
        tot = dict.fromkeys(cols, 0.0)
        print(f"\n{model} (C={C}), times in ms, ratio = W4A4 (auto) / fp32")
        print(f"{'layer':5s} {'rows':>5s} " + " ".join(f"{k:>13s}" for k in cols) + f" {'auto/fp32':>10s}")
        with torch.inference_mode():
            for name, (lin, q) in layers.items():
                for T in tokens:
                    x = torch.randn(T, lin.in_features, generator=torch.Generator().manual_seed(T))
                    fns = {"fp32": lambda: lin(x), **{f"w4a4-{g}": _w4a4(q, x, g) for g in GEMMS + EXTRA}}
                    for f in fns.values():  # warm-up (plan build, weight decode, allocator)
                        f()
                    t = best_times(fns, args.rounds, clock)
                    for k in cols:
                        tot[k] += t[k]
                    r = t["w4a4-auto"] / t["fp32"]
                    worst = max(worst, r)
                    print(f"{name:5s} {T:5d} " + " ".join(f"{1e3 * t[k]:13.3f}" for k in cols) + f" {r:9.2f}x",
                          flush=True)
        print(f"{model} all layers, all scales: " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in tot.items())
              + " -> " + ", ".join(f"{k}/fp32 {tot[k] / tot['fp32']:.2f}x" for k in cols[1:]))
        for k in cols:
            grand[k] += tot[k]
    print(f"\nTOTAL w4a4-auto/fp32 = {grand['w4a4-auto'] / grand['fp32']:.2f}x (target <= 1.0x); "
          + ", ".join(f"{k}/fp32 = {grand[k] / grand['fp32']:.2f}x" for k in cols[2:])
          + f"; worst single row w4a4-auto/fp32 = {worst:.2f}x (target <= 1.3x)")
    print(f"kernels: {kernels.summary_line()}")
    print(header())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="var-d16,var-d30")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: the measured default)")
    ap.add_argument("--patch-nums", default=",".join(map(str, PATCH_NUMS)))
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="cpu: process CPU time (robust on a shared machine), wall: perf_counter")
    main_in_modes(ap, measure)


if __name__ == "__main__":
    main()
