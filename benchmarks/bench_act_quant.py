"""Activation quantization: the fast path's quantizer vs the naive grid search, side by side.

- ``fast``: ``fpqvar.quant.kernels.quantize_act`` / ``quantize_act_dfq`` (vectorised absmax per group, float32
  quotient rounded on the grid scaled to integers, exact tie repair; int8 values out);
- ``naive``: distance from every element to every grid point, argmin (upstream's PyTorch fallback; ties go to the
  first minimum, so it is not bit-identical on exact ties, which random data does not hit);
- ``formats``: ``fpqvar.formats.fake_quantize`` / ``dfq_fake_quantize`` (the reference path's quantizer).

Shapes: the inputs of var-d16 / var-d30 linears at the last scale with CFG (512 tokens); E2M1 per group of 128,
and DFQ (E1M2 negatives / E2M1 positives) at the fc2 width. Best of ``--rounds``, in turn; process CPU time by
default (shared machine), ``--clock wall`` for wall-clock.

    python benchmarks/bench_act_quant.py [--rounds 5] [--tokens 512]
"""

from __future__ import annotations

import argparse
import time

import torch

from fpqvar.formats import dfq_fake_quantize, fake_quantize, get_format
from fpqvar.quant import kernels as K


def naive(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """Per-group absmax scale, then the nearest grid value by distance to all grid points."""
    g = torch.tensor(get_format(fmt).grid, dtype=torch.float32)
    xg = x.reshape(x.shape[0], -1, 128)
    s = xg.abs().amax(-1, keepdim=True) / float(g.max())
    s = torch.where(s == 0, torch.ones_like(s), s)
    t = xg / s
    idx = (t.unsqueeze(-1) - g).abs().argmin(-1)
    return (g[idx] * s).reshape(x.shape)


def naive_dfq(x: torch.Tensor) -> torch.Tensor:
    gn = -torch.tensor(get_format("e1m2").positive_grid, dtype=torch.float32)
    gp = torch.tensor(get_format("e2m1").positive_grid, dtype=torch.float32)
    xg = x.reshape(x.shape[0], -1, 128)
    neg = xg <= 0
    sn = torch.where(neg, -xg, 0).amax(-1, keepdim=True) / 1.75
    sp = torch.where(neg, 0, xg).amax(-1, keepdim=True) / 6.0
    sn, sp = torch.where(sn == 0, 1.0, sn), torch.where(sp == 0, 1.0, sp)
    qn = gn[(xg.unsqueeze(-1) / sn.unsqueeze(-1) - gn).abs().argmin(-1)] * sn
    qp = gp[(xg.unsqueeze(-1) / sp.unsqueeze(-1) - gp).abs().argmin(-1)] * sp
    return torch.where(neg, qn, qp).reshape(x.shape)


def _best(fns: dict, rounds: int, clock) -> dict:
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = clock()
            f()
            best[k] = min(best[k], clock() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"tokens {args.tokens}, best of {args.rounds}, clock {args.clock}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    e2m1, e1m2 = K.int_grid("e2m1"), K.int_grid("e1m2")
    print(f"{'case':22s} {'fast ms':>9s} {'naive ms':>9s} {'formats ms':>11s} {'naive/fast':>11s} "
          f"{'formats/fast':>13s}")
    for name, C, dfq in (("d16 qkv/proj/fc1 in", 1024, False), ("d16 fc2 in (DFQ)", 4096, True),
                         ("d30 qkv/proj/fc1 in", 1920, False), ("d30 fc2 in (DFQ)", 7680, True)):
        x = torch.randn(args.tokens, C, generator=torch.Generator().manual_seed(C))
        if dfq:
            x = torch.nn.functional.gelu(x, approximate="tanh")  # fc2's input is a GELU output
            fns = {"fast": lambda: K.quantize_act_dfq(x, e1m2, e2m1, group_size=128),
                   "naive": lambda: naive_dfq(x), "formats": lambda: dfq_fake_quantize(x, group_size=128)}
        else:
            fns = {"fast": lambda: K.quantize_act(x, e2m1, group_size=128),
                   "naive": lambda: naive(x, "e2m1"), "formats": lambda: fake_quantize(x, "e2m1", group_size=128)}
        t = _best(fns, args.rounds, clock)
        print(f"{name:22s} {1e3 * t['fast']:9.2f} {1e3 * t['naive']:9.2f} {1e3 * t['formats']:11.2f} "
              f"{t['naive'] / t['fast']:10.1f}x {t['formats'] / t['fast']:12.2f}x", flush=True)


if __name__ == "__main__":
    main()
