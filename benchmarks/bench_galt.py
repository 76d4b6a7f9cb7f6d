"""How long does GALT take per layer on this CPU, and how much cheaper is GHT than a full Hadamard?

1. Activation transform at VAR-d30 width: x (4096, 1920) @ blockdiag(Q_128) (GHT, 15 blocks of 128) against
   x @ Q_1920 (full randomized Hadamard, dense; 1920 = 60 x 32), both as plain matmuls (environment.md section 3),
   float32 and bfloat16, median of ``--repeats`` interleaved runs. FLOP ratio 15; the paper reports 3.9x measured.
2. GALT (``learn_galt_lambda``, default config: keep="best", backward GEMM dtype "auto", i.e. measured) for
   var-d16- and var-d30-sized mat_qkv (C -> 3C) and fc1 (C -> 4C) on random calibration tensors:
   all 10 scales of the 256px model, 100 samples x 2 CFG rows (680 x 200 = 136k tokens per layer;
   the default model: C = 256, 6 scales, 130 x 200
   tokens), with a few outlier channels per scale, subsampled
   by GALT's ``max_tokens_per_scale`` cap. Only ``--epochs`` epochs are run (50 are too slow here); the 50-epoch
   time is extrapolated as ``T0 + 50 (T_E - T0) / E``, T0 = setup + the lam = 1 evaluation (timed separately),
   T_E = the E-epoch run. That is linear in the epochs by construction (every epoch does the same work).

Run: ``python benchmarks/bench_galt.py [--epochs 2] [--cap 2048] [--models default,d16,d30] [--repeats 10]
[--threads N]``.
The machine is shared: the load average is printed next to the numbers, and the GALT lines also give the
process CPU time (all threads summed), which waiting for a core does not inflate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from fpqvar.model.zoo import PATCH_NUMS_256, PATCH_NUMS_DEFAULT
from fpqvar.transforms import (
    GALTConfig,
    OnlineRotation,
    block_hadamard_matrix,
    galt_full_loss,
    learn_galt_lambda,
    random_hadamard,
)

SAMPLES, CFG_ROWS = 100, 2  # upstream calibration: 100 labels, CFG doubles the batch
# name -> (C, patch_nums); "default" is the shipped small model (C = 256, 6 scales)
MODELS = {"default": (256, PATCH_NUMS_DEFAULT), "d16": (1024, PATCH_NUMS_256), "d30": (1920, PATCH_NUMS_256)}


def _median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_hadamard(repeats: int) -> None:
    C = 1920
    x = torch.randn(4096, C, generator=torch.Generator().manual_seed(0))
    ght = OnlineRotation(block_hadamard_matrix(128), width=C)
    full = OnlineRotation(random_hadamard(C, seed=42), width=C)
    print(f"== activation transform, x (4096, {C}); GHT FLOPs {ght.flops_per_token} / token, full "
          f"{full.flops_per_token} / token (ratio {full.flops_per_token / ght.flops_per_token:.0f})")
    for dt in (torch.float32, torch.bfloat16):
        xd = x.to(dt)
        ght(xd), full(xd)  # warm up
        t_g, t_f = [], []
        for _ in range(repeats):  # interleaved, so load changes hit both
            t_g.append(_median_time(lambda: ght(xd), 1))
            t_f.append(_median_time(lambda: full(xd), 1))
        g, f = statistics.median(t_g), statistics.median(t_f)
        print(f"{str(dt):15s} GHT {g * 1e3:8.2f} ms   full {f * 1e3:8.2f} ms   full / GHT = {f / g:5.1f}x "
              f"(paper: 3.9x)")


def calibration(C: int, patch_nums, seed: int) -> list[torch.Tensor]:
    """Random per-scale inputs (N_s = 200 pn^2, C) with 8 outlier channels per scale that move with the scale."""
    g = torch.Generator().manual_seed(seed)
    xs = []
    for pn in patch_nums:
        x = torch.randn(SAMPLES * CFG_ROWS * pn * pn, C, generator=g)
        idx = torch.randperm(C, generator=g)[:8]
        x[:, idx] *= torch.rand(8, generator=g) * 30 + 5
        xs.append(x)
    return xs


def bench_galt(models: list[str], epochs: int, cap: int) -> None:
    print(f"== GALT per layer: 10 scales, {SAMPLES} samples x {CFG_ROWS} CFG rows, max_tokens_per_scale = {cap}, "
          f"{epochs} epochs run, 50 extrapolated")
    cfg = GALTConfig(epochs=epochs, max_tokens_per_scale=cap)
    Q = block_hadamard_matrix(128)
    for name in models:
        C, patch_nums = MODELS[name]
        xs = calibration(C, patch_nums, seed=0)
        n_all = sum(x.shape[0] for x in xs)
        n_used = sum(min(x.shape[0], cap) for x in xs)
        for site, O in (("mat_qkv", 3 * C), ("fc1", 4 * C)):
            w = torch.randn(O, C, generator=torch.Generator().manual_seed(1)) / C**0.5
            t, c = time.perf_counter(), time.process_time()
            l1 = galt_full_loss(xs, w, torch.ones(C), Q_block=Q, config=cfg)
            t0, c0 = time.perf_counter() - t, time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            lam, hist = learn_galt_lambda(xs, w, Q_block=Q, config=cfg)
            te, ce = time.perf_counter() - t, time.process_time() - c
            ep, cp = (te - t0) / epochs, (ce - c0) / epochs
            print(f"{name:7s} {site:7s} C={C} O={O}: tokens {n_all} -> {n_used} after the cap; "
                  f"setup+eval {t0:6.1f} s, {ep:6.1f} s / epoch -> 50 epochs ~ {(t0 + 50 * ep) / 60:6.1f} min wall "
                  f"(process CPU time: {c0:6.1f} s + {cp:6.1f} s / epoch -> {(c0 + 50 * cp) / 60:6.1f} min); "
                  f"loss lam=1 {l1:.4g}, epochs {', '.join(f'{h:.4g}' for h in hist)} [load {os.getloadavg()[0]:.1f}]")
            del w, lam
        del xs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cap", type=int, default=GALTConfig().max_tokens_per_scale)
    ap.add_argument("--models", default="default,d16,d30", help=f"comma list of {sorted(MODELS)}")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-galt", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    a = ap.parse_args()
    if a.threads is not None:
        torch.set_num_threads(a.threads)  # script-level: on an oversubscribed machine 1 thread can win
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    bench_hadamard(a.repeats)
    if not a.skip_galt:
        bench_galt([m for m in a.models.split(",") if m], a.epochs, a.cap)


if __name__ == "__main__":
    main()
