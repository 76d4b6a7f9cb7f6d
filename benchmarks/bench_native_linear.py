"""The native GEMM's fused linear (``fpqvar.kernels.native.int_linear``) vs float32 ``nn.Linear``, side by side.

Operands: random FP4 codes (|n| <= 12) against random FP4 weight codes, groups of 128, on the var-d16 / var-d30
layer shapes: qkv (C -> 3C) and fc1 (C -> 4C) with codes of both signs, fc2 (4C -> C) with DFQ's two
sign-definite halves (twice the rows). The activation quantizer and the GHT rotation are left out: this times the
integer GEMM and the datapath's scales and sums alone (``bench_fast_linear.py`` times whole layers). Columns:
float32 ``nn.Linear``; ``int_linear`` (the products scaled and summed tile by tile, no products in memory); and,
up to ``--unfused-max-rows``, the same products as a ``(G, rows, O)`` int32 block from ``native.int_dot``, then the C
sums (``native.accumulate``): what the fusion saves. The two give the same bits (tests/kernels/test_native_dot.py).
Best of ``--rounds`` rounds, process CPU time, each round running the contenders in turn; ``--isa-caps both``
(default) repeats it under the AVX2 caps of benchmarks/_isa.py (they slow MKL's float32, not our C, whose vector
code is AVX2 at most).

    python benchmarks/bench_native_linear.py [--models var-d16,var-d30] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys

import torch

from fpqvar.kernels import native

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _isa import best_times, header, main_in_modes  # noqa: E402

WIDTHS = {"var-d16": 1024, "var-d30": 1920}
ROWS = (2, 8, 18, 32, 50, 128, 338, 512)


def measure(args) -> None:
    torch.set_num_threads(args.threads)
    print(header())
    why = native.unavailable()
    if why:
        print(f"native kernels unavailable: {why}")
        return
    print(f"native dot products: {native.ISA_NAMES[native.isa()]}; best of {args.rounds}, process CPU time, ms")
    g = torch.Generator().manual_seed(0)
    worst, tot_f, tot_n = 0.0, 0.0, 0.0
    for model in args.models.split(","):
        C = WIDTHS[model]
        for name, I, O, P in (("qkv", C, 3 * C, 1), ("fc1", C, 4 * C, 1), ("fc2", 4 * C, C, 2)):
            G = I // 128
            pw = native.pack_weight(torch.randint(-12, 13, (I, O), generator=g, dtype=torch.int8), 128)
            lin = torch.nn.Linear(I, O)
            for T in ROWS:
                a = torch.randint(-12, 13, (P * T, I), generator=g, dtype=torch.int8)
                if P == 2:  # DFQ: the negative half's codes, then the positive half's
                    a[:T].clamp_(max=0)
                    a[T:].clamp_(min=0)
                s, sw = torch.rand((P, T, G), generator=g) + 0.5, torch.rand((G, P, O), generator=g) * 1e-2
                x = torch.randn((T, I), generator=g)
                with torch.inference_mode():
                    fns = {"fp32": lambda: lin(x), "fused": lambda: native.int_linear(a, pw, s, sw)}
                    if T <= args.unfused_max_rows:
                        fns["unfused"] = lambda: native.accumulate(s, sw, native.int_dot(a, pw), None)
                    for f in fns.values():
                        f()
                    t = best_times(fns, args.rounds)
                r = t["fused"] / t["fp32"]
                worst, tot_f, tot_n = max(worst, r), tot_f + t["fp32"], tot_n + t["fused"]
                unf = (f" unfused {1e3 * t['unfused']:8.3f} ({t['unfused'] / t['fp32']:.2f}x)" if "unfused" in t
                       else "")
                print(f"{model} {name} {I}->{O} parts {P} rows {T:4d}: fp32 {1e3 * t['fp32']:8.3f}  fused "
                      f"{1e3 * t['fused']:8.3f} ({r:.2f}x){unf}", flush=True)
    print(f"TOTAL fused / fp32 = {tot_n / tot_f:.2f}x; worst row {worst:.2f}x")
    print(header())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="var-d16,var-d30")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unfused-max-rows", type=int, default=128, help="the unfused column up to this many rows")
    main_in_modes(ap, measure)


if __name__ == "__main__":
    main()
