"""Sampling time of a randomly initialised var-d16 (batch 2 with CFG, 256px) on this CPU, float32 vs bfloat16,
and the share of the time spent in the VQVAE decoder. Prints both times and their ratio.

    python benchmarks/bench_sampling_d16.py [--model var-d16] [--batch 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from fpqvar.model import build_var, build_vqvae, get_model_spec
from fpqvar.model.sampling import decode_images, sample_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="var-d16")
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    spec = get_model_spec(args.model)
    torch.manual_seed(0)
    vae = build_vqvae(spec.vae).eval()
    var = build_var(vae, spec.var).eval()
    var.init_weights(generator=torch.Generator().manual_seed(0))
    print(f"{args.model}, batch {args.batch} (x2 with CFG), threads {torch.get_num_threads()}, "
          f"cpu {torch.backends.cpu.get_cpu_capability()}")
    rows = {}
    for dtype in (torch.float32, torch.bfloat16):
        t0 = time.perf_counter()
        res = sample_tokens(var, args.batch, list(range(args.batch)), seed=0, cfg=1.5, top_k=900, top_p=0.96,
                            dtype=dtype)
        t1 = time.perf_counter()
        decode_images(var, res.f_hat, dtype)
        t2 = time.perf_counter()
        rows[dtype] = (t2 - t0, t2 - t1)
        print(f"{str(dtype):15s} total {t2 - t0:7.2f} s   transformer {t1 - t0:7.2f} s   "
              f"VQVAE decoder {t2 - t1:6.2f} s ({100 * (t2 - t1) / (t2 - t0):.0f}% of total)")
    f32, b16 = rows[torch.float32][0], rows[torch.bfloat16][0]
    print(f"ratio float32 / bfloat16 (autocast over fp32 master weights, as upstream) = {f32 / b16:.2f}x")
    # Autocast re-casts the fp32 weights at every call (10 scales): at batch 2 the GEMMs are memory-bound.
    # Casting the transformer's weights to bf16 once removes that traffic.
    var.to(torch.bfloat16)
    t0 = time.perf_counter()
    sample_tokens(var, args.batch, list(range(args.batch)), seed=0, cfg=1.5, top_k=900, top_p=0.96,
                  dtype=torch.bfloat16)
    t1 = time.perf_counter()
    tr32 = f32 - rows[torch.float32][1]
    print(f"transformer with bf16 weights cast once: {t1 - t0:7.2f} s; ratio float32 / this = {tr32 / (t1 - t0):.2f}x")


if __name__ == "__main__":
    main()
