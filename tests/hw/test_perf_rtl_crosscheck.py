"""Cross-check with hardware part 1: cycle counts of small units from RTL simulation equal the model's.

A PE computing group dot products (latency, initiation interval, the last result of a stream of groups) and
the FHT-128 unit of the GHTU (latency, throughput, and the GHT operator's cycle count) are simulated with
Amaranth (``fpqvar.hw.rtl``) and compared with ``fpqvar.hw.perf``'s defaults and formulas, exactly.
"""

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="amaranth is not installed: the RTL cross-check needs its simulator")
timing = pytest.importorskip("fpqvar.hw.rtl.timing", reason="hardware part 1's RTL timing (fpqvar.hw.rtl.timing) "
                             "is not in this checkout")
sim = pytest.importorskip("fpqvar.hw.rtl.sim", reason="fpqvar.hw.rtl.sim is not in this checkout")
units = pytest.importorskip("fpqvar.hw.rtl.units", reason="fpqvar.hw.rtl.units is not in this checkout")

from fpqvar.hw.perf import tiles  # noqa: E402
from fpqvar.hw.perf.accelerator import fpqvar_vck190  # noqa: E402
from fpqvar.hw.perf.cost import ght_cost  # noqa: E402
from fpqvar.hw.perf.hardware import FMU, GHTUnit  # noqa: E402
from fpqvar.model.workload import Op  # noqa: E402


@pytest.mark.parametrize("unit", ["pe_fp4", "pe_dfq"])
def test_pe_latency_and_interval(unit):
    t = timing.rtl_timing(unit)
    fmu = FMU()
    assert t.latency_cycles == fmu.group_dot_latency_cycles  # 1 multiplier + log2(128) tree levels = 8
    assert t.initiation_interval_cycles == fmu.pe_initiation_interval_cycles
    assert t.ops_per_result == fmu.lanes_per_pe


def test_fht_latency_and_throughput():
    t = timing.rtl_timing("fht128")
    g = GHTUnit()
    assert t.latency_cycles == g.latency_cycles  # 7 butterfly stages
    assert t.initiation_interval_cycles == 1 / g.vectors_per_cycle
    assert t.ops_per_result == g.points


def _codes(n, rng):
    return [{"a": sim.pack(rng.integers(0, 16, 128), 4), "w": sim.pack(rng.integers(0, 16, 128), 4)}
            for _ in range(n)]


def test_pe_stream_of_groups():
    # 5 groups of one output's reduction, one every 3 cycles (2 idle cycles between)
    n, gap = 5, 2
    _, t_in, t_out = sim.run_stream(units.build_unit("pe_fp4"), _codes(n, np.random.default_rng(1)), ["dot"],
                                    gap_cycles=gap)
    fmu = FMU()
    interval = (gap + 1) * fmu.pe_initiation_interval_cycles
    assert t_out[-1] - t_in[0] == tiles.last_output_cycle(n, interval, fmu.group_dot_latency_cycles)
    # back to back, the model's PE-array cycle count for a k = 5 * 128 reduction on one PE + the fill
    fill = fmu.group_dot_latency_cycles
    assert tiles.pe_array_cycles(1, 128 * n, 1, 1, 128) + fill - 1 == tiles.last_output_cycle(n, 1, fill)


def test_ght_operator_cycles_equal_simulation():
    v = 6  # six 128-point vectors back to back: the GHT of 768 elements
    rng = np.random.default_rng(2)
    vecs = [{"x": sim.pack(rng.integers(-128, 128, 128), 8)} for _ in range(v)]
    _, t_in, t_out = sim.run_stream(units.build_unit("fht128"), vecs, ["y"])
    model = ght_cost(Op("ght_qkv", "ght", "ght", 0, 0, elems=128 * v, flops=128 * 7 * v), fpqvar_vck190())
    assert model.cycles == t_out[-1] - t_in[0] + 1  # occupancy = last result's cycle + 1
