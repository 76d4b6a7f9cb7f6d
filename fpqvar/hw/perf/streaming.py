"""Unit widths for the ``stream`` schedule: each producer / helper unit just fast enough for the GEMMs.

In a dataflow block every operator runs at once, so a helper unit (GHTU, quantizer, SFU) only has to keep its
total work per segment within the time the GEMM engines need for that segment; wider is wasted area. Rule:

    width_new = next power of two >= width_ref * max over segments (busy_unit / busy_gemm_units)

evaluated on the largest scale (the one that dominates the latency), with the reference widths of ``acc``.
The GHTU's width is its vectors per cycle (a folded FHT below 1, area ~ width: ``Accelerator.luts_used``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

from fpqvar.hw.perf.accelerator import Accelerator
from fpqvar.hw.perf.cost import cost_op
from fpqvar.hw.perf.recipes import HWRecipe
from fpqvar.hw.perf.schedule import _stream_groups
from fpqvar.model.workload import WorkloadOptions, transformer_ops
from fpqvar.model.zoo import VARConfig

GEMM_UNITS = ("fmu", "dfq", "dsp", "aie")


def _pow2_at_least(x: float) -> float:
    """Smallest power of two >= x (fractions allowed: 1/2, 1/4, ...)."""
    if x <= 0:
        return 0.0
    return 2.0 ** math.ceil(math.log2(x))


def stream_ratios(acc: Accelerator, var: VARConfig, recipe: HWRecipe, batch_images: int = 1) -> dict[str, float]:
    """Per helper unit: max over the largest scale's stream segments of its busy cycles / the busiest GEMM
    unit's busy cycles in that segment (> 1: the unit would be the bottleneck)."""
    opts = WorkloadOptions(batch_images=batch_images, ght_block=recipe.ght_block, quantize_acts=recipe.quantize_acts)
    last = len(var.patch_nums) - 1
    costs = [cost_op(op, acc, recipe) for op in transformer_ops(var, opts) if op.scale == last and op.block >= 0]
    ratios: dict[str, float] = defaultdict(float)
    for group in _stream_groups(costs):
        busy: dict[str, float] = defaultdict(float)
        for c in group:
            for u in (c.unit, *c.also_busy):
                busy[u] += c.busy_cycles
        gemm = max((busy[u] for u in GEMM_UNITS if u in busy), default=0.0)
        if not gemm:
            continue
        for u in ("ghtu", "quant", "sfu"):
            if busy.get(u):
                ratios[u] = max(ratios[u], busy[u] / gemm)
    return dict(ratios)


def size_for_stream(acc: Accelerator, var: VARConfig, recipe: HWRecipe, batch_images: int = 1) -> Accelerator:
    """``acc`` with quantizer lanes, SFU lanes and GHTU vectors per cycle sized by the rule above."""
    r = stream_ratios(acc, var, recipe, batch_images)
    changes: dict = {}
    if "quant" in r:
        lanes = max(1, int(_pow2_at_least(acc.quantizer.lanes * r["quant"])))
        changes["quantizer"] = replace(acc.quantizer, lanes=lanes)
    if "sfu" in r:
        changes["sfu"] = replace(acc.sfu, lanes=max(1, int(_pow2_at_least(acc.sfu.lanes * r["sfu"]))))
    if "ghtu" in r and acc.ghtu is not None:
        vpc = _pow2_at_least(acc.ghtu.units * acc.ghtu.vectors_per_cycle * r["ghtu"])
        changes["ghtu"] = replace(acc.ghtu, units=max(1, int(vpc)), vectors_per_cycle=min(1.0, vpc))
    return replace(acc, name=acc.name + "-stream-sized", **changes)
