"""Question: how fast is the analytical model, and what do its schedules and designs give side by side?

Runs, in one process: the estimate for var-d16 / var-d30 (wall time per call), the three schedules on var-d30,
the FPQVAR design against the integer designs and the GPU roofline. Prints ratios; asserts nothing.

    python benchmarks/bench_perf_model.py
"""

from __future__ import annotations

import time

from fpqvar.hw.perf.accelerator import default_gpu, fpqvar_vck190, integer_vck190
from fpqvar.hw.perf.estimate import EstimateOptions, estimate
from fpqvar.hw.perf.gpu import estimate_gpu
from fpqvar.hw.perf.recipes import get_hw_recipe
from fpqvar.model.zoo import get_model_spec


def _timed(fn, repeat: int = 5):
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return out, best


def main() -> None:
    acc, iacc, gpu = fpqvar_vck190(), integer_vck190(), default_gpu()
    w4a4 = get_hw_recipe("fpqvar-w4a4")
    print("model cost (best CPU time of 5):")
    for name in ("var-d16", "var-d30"):
        s = get_model_spec(name)
        r, t = _timed(lambda: estimate(name, s.var, s.vae, acc, w4a4))
        print(f"  {name}: {t * 1e3:.0f} ms per estimate ({len(r.per_op)} op kinds)")

    s = get_model_spec("var-d30")
    lat = {sch: estimate("var-d30", s.var, s.vae, acc, w4a4, EstimateOptions(schedule=sch)).latency_s
           for sch in ("sequential", "level1", "level2")}
    print("var-d30 fpqvar-w4a4 schedules (latency, ratio to sequential):")
    for k, v in lat.items():
        print(f"  {k:10s} {v * 1e3:8.1f} ms  {lat['sequential'] / v:.2f}x")

    fp = estimate("var-d30", s.var, s.vae, acc, w4a4)
    print("var-d30 designs (level2): images/s, J/image, FPQVAR's advantage (throughput, energy efficiency)")
    print(f"  fpqvar-w4a4   {fp.images_per_s:6.3f}  {fp.energy_per_image_j:6.2f}")
    for rec in ("int4", "int8", "int4-fc2", "int8-fc2", "fp16"):
        r = estimate("var-d30", s.var, s.vae, iacc, get_hw_recipe(rec))
        print(f"  {rec:12s}  {r.images_per_s:6.3f}  {r.energy_per_image_j:6.2f}   "
              f"{fp.images_per_s / r.images_per_s:.2f}x  {r.energy_per_image_j / fp.energy_per_image_j:.2f}x")
    g = estimate_gpu(s.var, s.vae, gpu)
    print(f"  GPU roofline  {g.images_per_s:6.2f}  {g.energy_per_image_j:6.2f}   "
          f"{fp.images_per_s / g.images_per_s:.2f}x  {g.energy_per_image_j / fp.energy_per_image_j:.2f}x")


if __name__ == "__main__":
    main()
