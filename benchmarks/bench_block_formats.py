"""How do FPQVAR's own FP4 / FP6 / FP8 (a float32 scale per 128) compare with OCP MX and NVFP4 in storage bits and
quantization error?

Every format fake-quantizes the same tensors along the last (reduction) dim; the table shows bits per value
(scale overhead included, ``fpqvar.formats.bits_per_value``) and SQNR = 10 log10(sum x^2 / sum (x - x_hat)^2) in dB
on four inputs:

- ``gauss``: N(0, 1), (2048, 1024);
- ``student-t3``: Student t with 3 degrees of freedom (heavy tails, finite variance), (2048, 1024);
- ``outlier-ch``: N(0, 1) activations with 8 of 1024 channels scaled by 50 (the outlier-channel pattern of
  transformer activations), (2048, 1024);
- ``var-weights``: every 2-D weight of the shipped default model (``fpqvar/assets/default/var.safetensors``)
  whose last dim divides 128, noise and signal summed over all of them.

Times (median of interleaved rounds, ``gauss``) are printed as ratios to FPQVAR's FP4, as the box is noisy.

    python benchmarks/bench_block_formats.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from fpqvar.formats import bits_per_value, dfq_fake_quantize, fake_quantize, quantize_dequantize

WEIGHTS = Path(__file__).resolve().parents[1] / "fpqvar" / "assets" / "default" / "var.safetensors"

# (label, bits per value, fake-quantize function)
CANDIDATES = [
    ("fpqvar FP4 (E2M1 /128, f32 scale)", bits_per_value("e2m1", group_size=128),
     lambda x: fake_quantize(x, "e2m1", group_size=128)),
    ("fpqvar DFQ FP4 (E1M2-/E2M1+ /128)", 4 + 2 * 32 / 128, lambda x: dfq_fake_quantize(x, group_size=128)),
    ("INT4 (/128, f32 scale)", bits_per_value("int4", group_size=128),
     lambda x: fake_quantize(x, "int4", group_size=128)),
    ("MXFP4 (E2M1 /32, E8M0, floor)", bits_per_value("mxfp4"), lambda x: quantize_dequantize(x, "mxfp4")),
    ("MXFP4 (E2M1 /32, E8M0, rceil)", bits_per_value("mxfp4"),
     lambda x: quantize_dequantize(x, "mxfp4", scale_rule="rceil")),
    ("NVFP4 (E2M1 /16, E4M3 + f32)", bits_per_value("nvfp4"), lambda x: quantize_dequantize(x, "nvfp4")),
    ("fpqvar FP6 (E2M3 /128, f32 scale)", bits_per_value("e2m3", group_size=128),
     lambda x: fake_quantize(x, "e2m3", group_size=128)),
    ("MXFP6 E2M3 (/32, E8M0, floor)", bits_per_value("mxfp6_e2m3"), lambda x: quantize_dequantize(x, "mxfp6_e2m3")),
    ("MXFP6 E3M2 (/32, E8M0, floor)", bits_per_value("mxfp6_e3m2"), lambda x: quantize_dequantize(x, "mxfp6_e3m2")),
    ("fpqvar FP8 (E4M3 /128, f32 scale)", bits_per_value("e4m3", group_size=128),
     lambda x: fake_quantize(x, "e4m3", group_size=128)),
    ("MXFP8 E4M3 (/32, E8M0, floor)", bits_per_value("mxfp8_e4m3"), lambda x: quantize_dequantize(x, "mxfp8_e4m3")),
]


def inputs(seed: int) -> dict[str, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    gauss = torch.randn(2048, 1024, generator=g)
    student = torch.from_numpy(rng.standard_t(3, size=(2048, 1024)).astype(np.float32))
    outlier = torch.randn(2048, 1024, generator=g)
    outlier[:, torch.randperm(1024, generator=g)[:8]] *= 50.0
    weights = [w.float() for w in load_file(str(WEIGHTS)).values()
               if w.dim() == 2 and w.dtype.is_floating_point and w.shape[-1] % 128 == 0]
    return {"gauss": [gauss], "student-t3": [student], "outlier-ch": [outlier], "var-weights": weights}


def sqnr_db(xs: list[torch.Tensor], fn) -> float:
    sig = sum(float(x.double().square().sum()) for x in xs)
    noise = sum(float((fn(x).double() - x.double()).square().sum()) for x in xs)
    return 10 * math.log10(sig / noise) if noise > 0 else math.inf


def time_side_by_side(x: torch.Tensor, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {label: [] for label, _, _ in CANDIDATES}
    for _ in range(rounds):
        for label, _, fn in CANDIDATES:
            t0 = time.perf_counter()
            fn(x)
            times[label].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the table as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = inputs(args.seed)
    rows = []
    for label, bits, fn in CANDIDATES:
        rows.append({"format": label, "bits_per_value": bits, **{k: sqnr_db(v, fn) for k, v in data.items()}})
    times = time_side_by_side(data["gauss"][0], args.rounds)
    base = times[CANDIDATES[0][0]]
    for r in rows:
        r["time_ratio_vs_fpqvar_fp4"] = times[r["format"]] / base
    if args.json:
        print(json.dumps({"cpu_capability": torch.backends.cpu.get_cpu_capability(), "rows": rows}, indent=1))
        return
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, 1 thread, "
          f"seed {args.seed}")
    n_w = sum(w.numel() for w in data["var-weights"])
    print(f"var-weights: {len(data['var-weights'])} tensors, {n_w} values\n")
    keys = list(data)
    print(f"| {'format':35s} | bits/value | " + " | ".join(f"{k} SQNR dB" for k in keys) + " | time / FP4 |")
    print("|" + "-" * 37 + "|-----------:|" + "|".join("-" * (len(k) + 10) + ":" for k in keys) + "|-----------:|")
    for r in rows:
        print(f"| {r['format']:35s} | {r['bits_per_value']:10.3f} | "
              + " | ".join(f"{r[k]:{len(k) + 9}.2f}" for k in keys) + f" | {r['time_ratio_vs_fpqvar_fp4']:10.2f} |")


if __name__ == "__main__":
    main()
