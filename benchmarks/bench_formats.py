"""How fast is fpqvar.formats' fake quantization against the obvious alternatives?

Two workloads (issue 2):

1. e2m1, per group of 128, on a (4096, 1920) float32 tensor (VAR-d30 hidden size 1920);
2. DFQ FP4 (E1M2 negatives / E2M1 positives, per group of 128) on a (4096, 7680) tanh-GELU output (the FC2
   input: 4 * 1920 hidden channels).

Each is timed side by side, interleaved round-robin in one process, against
(a) an ml_dtypes cast round trip with the same absmax scaling (numpy: x / s -> float4_e2m1fn -> float32 * s;
    ml_dtypes has no E1M2, so DFQ's negative half is rounded with np.rint on its uniform 0.25 grid), and
(b) an exhaustive nearest-grid-point search (upstream FPQVAR's approach: distance to every grid point,
    argmin, gather), written here in torch.
It prints the median times and the ratios ours / baseline (below 1 = ours faster; targets: <= 0.5 vs (a),
<= 0.2 vs (b)), plus a correctness check of ours against (a) (bit-exact) and (b) (ties aside).

Run: ``python benchmarks/bench_formats.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import ml_dtypes
import numpy as np
import torch

from fpqvar.formats import dfq_fake_quantize, fake_quantize

E2M1_GRID = [-6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
E1M2_NEG_GRID = [-1.75, -1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0]
E2M1_POS_GRID = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


# ---- (a) ml_dtypes cast round trips ------------------------------------------------------------------------
def mld_e2m1_group(x: np.ndarray, g: int = 128) -> np.ndarray:
    xw = x.reshape(-1, g)
    s = np.abs(xw).max(axis=-1, keepdims=True) / np.float32(6.0)
    s[s == 0] = 1.0
    q = (xw / s).astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    return (q * s).reshape(x.shape)


def mld_dfq(x: np.ndarray, g: int = 128) -> np.ndarray:
    xw = x.reshape(-1, g)
    neg = xw <= 0
    s_neg = np.maximum(-xw.min(axis=-1, keepdims=True), 0) / np.float32(1.75)
    s_pos = np.maximum(xw.max(axis=-1, keepdims=True), 0) / np.float32(6.0)
    s_neg[s_neg == 0] = 1.0
    s_pos[s_pos == 0] = 1.0
    s = np.where(neg, s_neg, s_pos)
    t = xw / s
    q_pos = t.astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    q_neg = np.clip(np.rint(t * np.float32(4.0)), -7, 0) / np.float32(4.0)  # E1M2 <= 0: uniform step 1/4
    return (np.where(neg, q_neg, q_pos) * s).reshape(x.shape)


# ---- (b) exhaustive nearest-grid-point search (upstream approach) ------------------------------------------
def nearest(t: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return grid[(t.unsqueeze(-1) - grid).abs().argmin(dim=-1)]


def search_e2m1_group(x: torch.Tensor, g: int = 128) -> torch.Tensor:
    xw = x.reshape(-1, g)
    s = xw.abs().amax(dim=-1, keepdim=True) / 6.0
    s = torch.where(s == 0, 1.0, s)
    return (nearest(xw / s, torch.tensor(E2M1_GRID)) * s).reshape(x.shape)


def search_dfq(x: torch.Tensor, g: int = 128) -> torch.Tensor:
    xw = x.reshape(-1, g)
    x_neg = torch.where(xw <= 0, xw, 0.0)
    x_pos = torch.where(xw > 0, xw, 0.0)
    s_neg = x_neg.abs().amax(dim=-1, keepdim=True) / 1.75
    s_pos = x_pos.amax(dim=-1, keepdim=True) / 6.0
    s_neg = torch.where(s_neg == 0, 1.0, s_neg)
    s_pos = torch.where(s_pos == 0, 1.0, s_pos)
    q_neg = nearest(x_neg / s_neg, torch.tensor(E1M2_NEG_GRID))
    q_pos = nearest(x_pos / s_pos, torch.tensor(E2M1_POS_GRID))
    return (q_neg * s_neg + q_pos * s_pos).reshape(x.shape)


def time_side_by_side(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call; calls interleaved round-robin so background load hits all alike."""
    for f in fns.values():
        f()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def report(title: str, times: dict[str, float]) -> None:
    ours = times["ours"]
    print(f"\n{title}")
    for k, v in times.items():
        print(f"  {k:28s} {v * 1e3:9.1f} ms")
    for k, target in (("(a) ml_dtypes cast", 0.5), ("(b) exhaustive search", 0.2)):
        r = ours / times[k]
        ok = "meets" if r <= target else "MISSES"
        print(f"  ours / {k:21s} = {r:.3f}  ({1 / r:.1f}x faster; target <= {target}: {ok})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ml_dtypes {ml_dtypes.__version__}")

    x = torch.randn(4096, 1920, generator=gen)
    xn = x.numpy()
    ours = fake_quantize(x, "e2m1", group_size=128)
    a = torch.from_numpy(mld_e2m1_group(xn))
    b = search_e2m1_group(x)
    print(f"e2m1 check: ours == (a) bit-exact: {torch.equal(ours, a)}; "
          f"differs from (b) (argmin ties go to the smaller value) at {int((ours != b).sum())} of {x.numel()}")
    times = time_side_by_side({
        "ours": lambda: fake_quantize(x, "e2m1", group_size=128),
        "(a) ml_dtypes cast": lambda: mld_e2m1_group(xn),
        "(b) exhaustive search": lambda: search_e2m1_group(x),
    }, args.repeats)
    report("e2m1 per-group-128 fake quantization, (4096, 1920) float32", times)

    h = torch.nn.functional.gelu(torch.randn(4096, 7680, generator=gen) * 2.0, approximate="tanh")
    hn = h.numpy()
    ours = dfq_fake_quantize(h, group_size=128)
    a = torch.from_numpy(mld_dfq(hn))
    b = search_dfq(h)
    print(f"\nDFQ check: ours == (a) bit-exact: {torch.equal(ours, a)}; "
          f"differs from (b) at {int((ours != b).sum())} of {h.numel()}")
    times = time_side_by_side({
        "ours": lambda: dfq_fake_quantize(h, group_size=128),
        "(a) ml_dtypes cast": lambda: mld_dfq(hn),
        "(b) exhaustive search": lambda: search_dfq(h),
    }, max(3, args.repeats // 2))
    report("DFQ FP4 (E1M2- / E2M1+) per-group-128, (4096, 7680) tanh-GELU output", times)


if __name__ == "__main__":
    main()
