"""The bit-exact W4A4 QuantLinear (fast path) vs float32 and bfloat16 nn.Linear, side by side.

Layers of var-d16 (C = 1024) and var-d30 (C = 1920) as fpqvar-w4a4 quantizes them: qkv (C -> 3C) and fc1
(C -> 4C) with the online GHT (128 x 128 matmul), proj (C -> C), fc2 (4C -> C) with DFQ inputs; E2M1 per group of
128. Rows: the token count of every scale (1, 4, 9, ..., 256) times 2 for CFG, batch 1. Each contender runs once
per round, in turn, ``--rounds`` times; the best time is kept. The machine is shared: the default clock is the
process CPU time (``--clock wall`` for wall-clock). The W4A4 time is the whole
layer: rotation, activation quantization, int8 GEMMs, scales and accumulation (bit-exact to hw.datapath, see
tests/quant/test_fast.py). ``--copies N`` cycles through N copies of every layer so that weights come from DRAM,
as in a model whose weights exceed the caches.

    python benchmarks/bench_fast_linear.py [--models var-d16,var-d30] [--rounds 5] [--backend exact]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn

from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec
from fpqvar.transforms.hadamard import OnlineRotation, block_hadamard_matrix

WIDTHS = {"var-d16": 1024, "var-d20": 1280, "var-d24": 1536, "var-d30": 1920}
PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
FP4 = QuantSpec("e2m1", "group", 128)
DFQ4 = QuantSpec("e2m1", "group", 128, dfq="fp4")


def _layers(C: int, copies: int, backend: str, seed: int):
    """name -> list of (fp32 Linear, bf16 Linear, QuantLinear), ``copies`` independent copies each."""
    Q = block_hadamard_matrix()
    g = torch.Generator().manual_seed(seed)
    shapes = {"qkv": (C, 3 * C, True, False), "proj": (C, C, False, False), "fc1": (C, 4 * C, True, False),
              "fc2": (4 * C, C, False, True)}
    out = {}
    for name, (i, o, rot, dfq) in shapes.items():
        out[name] = []
        for _ in range(copies):
            lin = nn.Linear(i, o)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(o, i, generator=g) * i**-0.5)
                lin.bias.copy_(torch.randn(o, generator=g) * 0.02)
            q = QuantLinear.from_linear(lin, FP4, DFQ4 if dfq else FP4,
                                        rotation=OnlineRotation(Q, i) if rot else None)
            q.backend = backend
            out[name].append((lin, nn.Linear(i, o, dtype=torch.bfloat16).requires_grad_(False), q))
            with torch.no_grad():
                out[name][-1][1].weight.copy_(lin.weight)
                out[name][-1][1].bias.copy_(lin.bias)
    return out


def _best_times(fns: dict, rounds: int, clock) -> dict:
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = clock()
            f()
            best[k] = min(best[k], clock() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="var-d16,var-d30")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backend", default="exact")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave the default)")
    ap.add_argument("--patch-nums", default=",".join(map(str, PATCH_NUMS)))
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="cpu: process CPU time (robust on a shared machine; with N threads it sums them), "
                         "wall: perf_counter")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = [2 * int(p) ** 2 for p in args.patch_nums.split(",")]
    print(f"threads {torch.get_num_threads()}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"torch {torch.__version__}, backend {args.backend}, copies {args.copies}, best of {args.rounds}, "
          f"clock {args.clock}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]}")
    grand = {"fp32": 0.0, "bf16": 0.0, "w4a4": 0.0}
    worst = 0.0
    for model in args.models.split(","):
        C = WIDTHS[model]
        layers = _layers(C, args.copies, args.backend, seed=0)
        tot = {"fp32": 0.0, "bf16": 0.0, "w4a4": 0.0}
        print(f"\n{model} (C={C})  times in ms; ratio = W4A4 / fp32")
        print(f"{'layer':5s} {'rows':>5s} {'fp32':>9s} {'bf16':>9s} {'w4a4':>9s} {'w4a4/fp32':>10s} {'bf16/fp32':>10s}")
        with torch.inference_mode():
            for name, copies in layers.items():
                for T in tokens:
                    g = torch.Generator().manual_seed(T)
                    x = torch.randn(T, copies[0][0].in_features, generator=g)
                    xb = x.bfloat16()
                    k = [0]

                    def pick():
                        k[0] = (k[0] + 1) % len(copies)
                        return copies[k[0]]

                    fns = {"fp32": lambda: pick()[0](x), "bf16": lambda: pick()[1](xb), "w4a4": lambda: pick()[2](x)}
                    for f in fns.values():  # warm-up (plan build, weight decode, allocator)
                        for _ in range(len(copies)):
                            f()
                    t = _best_times(fns, args.rounds, clock)
                    for key in tot:
                        tot[key] += t[key]
                    r = t["w4a4"] / t["fp32"]
                    worst = max(worst, r)
                    print(f"{name:5s} {T:5d} {1e3 * t['fp32']:9.3f} {1e3 * t['bf16']:9.3f} {1e3 * t['w4a4']:9.3f} "
                          f"{r:9.2f}x {t['bf16'] / t['fp32']:9.2f}x", flush=True)
        print(f"{model} all layers, all scales: fp32 {1e3 * tot['fp32']:.1f} ms, bf16 {1e3 * tot['bf16']:.1f} ms, "
              f"w4a4 {1e3 * tot['w4a4']:.1f} ms -> w4a4/fp32 {tot['w4a4'] / tot['fp32']:.2f}x, "
              f"bf16/fp32 {tot['bf16'] / tot['fp32']:.2f}x")
        for key in grand:
            grand[key] += tot[key]
    print(f"\nTOTAL w4a4/fp32 = {grand['w4a4'] / grand['fp32']:.2f}x (target <= 1.0x), "
          f"bf16/fp32 = {grand['bf16'] / grand['fp32']:.2f}x, worst single row w4a4/fp32 = {worst:.2f}x")
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
