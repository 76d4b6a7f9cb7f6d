"""Performance model arithmetic: LUT sizing, tile formulas and operator costs, worked out by hand."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpqvar.hw.perf import tiles
from fpqvar.hw.perf.accelerator import Accelerator, fpqvar_vck190, integer_vck190
from fpqvar.hw.perf.cost import gemm_cost, ght_cost, quant_cost, sfu_cost
from fpqvar.hw.perf.hardware import FMU, LutCosts, Memory, adder_tree_luts, assumptions
from fpqvar.hw.perf.memory import single_channel
from fpqvar.hw.perf.recipes import get_hw_recipe
from fpqvar.model.workload import Op, elementwise, gemm


def test_adder_tree_and_pe_luts_by_hand():
    # 4 lanes of 3 bits: 2 adders of 3 bits + 1 adder of 4 bits
    assert adder_tree_luts(4, 3, 1.0) == 2 * 3 + 4
    # 128 lanes of 9 bits: 64*9 + 32*10 + 16*11 + 8*12 + 4*13 + 2*14 + 1*15
    assert adder_tree_luts(128, 9, 1.0) == 576 + 320 + 176 + 96 + 52 + 28 + 15 == 1263
    c = LutCosts()
    assert c.e2m1_pe_luts(128) == 128 * 9 + 1263 + 256
    tree10 = 64 * 10 + 32 * 11 + 16 * 12 + 8 * 13 + 4 * 14 + 2 * 15 + 1 * 16
    assert c.dfq_pe_luts(128) == 128 * 17 + 2 * tree10 + 256
    with pytest.raises(ValueError, match="power of two"):
        adder_tree_luts(100, 9, 1.0)


def test_fmu_sizing_from_budget():
    fmu = FMU(lut_budget_luts=100_000, dfq_lut_fraction=0.5)
    assert fmu.num_e2m1_pes == 50_000 // 2671
    assert fmu.num_dfq_pes == 50_000 // 5212
    assert FMU(e2m1_pes=7, dfq_pes=0).num_e2m1_pes == 7


def test_default_split_minimises_sequential_linear_time():
    # qkv + proj + fc1 have twice fc2's MACs: time ~ 2 / P_e + 1 / P_d, with P = budget share / PE cost.
    fmu = FMU()
    ce, cd, b = fmu.e2m1_pe_luts, fmu.dfq_pe_luts, fmu.lut_budget_luts

    def t(frac):
        return 2 / ((1 - frac) * b / ce) + 1 / (frac * b / cd)

    f_opt = fmu._split()
    assert t(f_opt) <= t(f_opt - 0.05) and t(f_opt) <= t(f_opt + 0.05)


def test_area_json_overrides_given_counts():
    # the `fpqvar hw area --json` layout: rows of {unit, luts}
    table = {"rows": [{"unit": "fp4_mul", "luts": 12}, {"unit": "fht128", "luts": 5000},
                      {"unit": "pe_fp4", "luts": 3000}, {"unit": "int4_mul", "luts": 20}]}
    c = LutCosts.from_area_json(table, "area.json")
    assert c.e2m1_mult_luts == 12 and c.fht128_luts == 5000 and c.dfq_mult_luts == 17.0
    assert c.e2m1_pe_luts(128) == 3000 + 256  # measured PE + the accumulator overhead
    assert c.dfq_pe_luts(128) == LutCosts().dfq_pe_luts(128)  # not measured: formula
    assert c.source.startswith("measured: area.json")
    assert LutCosts.from_area_json({"units": {"dfq_mul": {"luts": 20}}}).dfq_mult_luts == 20
    with pytest.raises(ValueError, match="none of the units"):
        LutCosts.from_area_json({"foo": 1}, "area.json")
    with pytest.raises(ValueError, match="positive LUT count"):
        LutCosts.from_area_json({"fp4_mul": -3}, "area.json")
    with pytest.raises(ValueError, match="'unit' and 'luts'"):
        LutCosts.from_area_json({"rows": [{"name": "x"}]}, "area.json")


def test_validation_and_overrides_name_the_field():
    with pytest.raises(ValueError, match="exceeds the on-chip"):
        Memory(act_buffer_bytes=10**9)
    with pytest.raises(ValueError, match="device_luts"):
        Accelerator(fmu=FMU(lut_budget_luts=2_000_000))
    with pytest.raises(ValueError, match="memory.bogus"):
        fpqvar_vck190().with_overrides({"memory": {"bogus": 1}})
    acc = fpqvar_vck190().with_overrides({"clock_hz": 300e6, "fmu": {"e2m1_pes": 10}})
    assert acc.clock_hz == 300e6 and acc.e2m1_pes == 10
    # an integer design gets an FMU back from a dict
    assert integer_vck190().with_overrides({"fmu": {"e2m1_pes": 4, "dfq_pes": 2}}).e2m1_pes == 4
    acc2 = Accelerator.from_dict({"name": "x", "memory": {"offchip": {"ddr4": {"peak_bandwidth_bytes_per_s": 1e9}}}})
    assert acc2.name == "x" and acc2.memory.offchip.ddr4.peak_bandwidth_bytes_per_s == 1e9
    rows = assumptions(fpqvar_vck190())
    assert {"field", "value", "unit", "source"} <= set(rows[0])
    assert any(r["field"] == "memory.offchip.lpddr4.efficiency" for r in rows)
    assert all(r["source"] for r in rows)


def test_tile_formulas_by_hand():
    assert tiles.pe_array_cycles(m=3, k=300, n=5, pes=4, lanes=128) == math.ceil(3 * 5 * 3 / 4) == 12
    assert tiles.pe_array_cycles(m=3, k=300, n=5, pes=4, lanes=128, interval=2) == 24
    assert tiles.dsp_array_cycles(2, 3, 5, 4.0) == 8  # 30 MACs / 4 per cycle
    assert tiles.weight_tiles(k=256, n=100, bytes_per_weight=0.5, buffer_bytes=10240, double_buffered=True) == (3, 34)
    assert tiles.weight_tiles(256, 100, 0.5, 10240, False) == (2, 50)
    assert tiles.pipeline_cycles(10, 20, 5, 4) == 10 + 20 + 5 + 3 * 20
    assert tiles.pipeline_cycles(10, 20, 5, 4, double_buffered=False) == 4 * 35
    assert tiles.last_output_cycle(4, 1, 8) == 11 and tiles.stream_cycles(4, 1, 8) == 12
    assert tiles.last_output_cycle(4, 3, 8) == 8 + 3 * 3  # one item every 3 cycles
    assert tiles.stream_cycles(0, 1, 8) == 0
    assert tiles.transfer_cycles(100, 4) == 25


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 100), st.integers(1, 12))
def test_closed_form_pipeline_equals_simulation(load, compute, store, n):
    sim = tiles.pipeline_cycles_sim([(load, compute, store)] * n)
    assert tiles.pipeline_cycles(load, compute, store, n) == pytest.approx(sim, rel=1e-12, abs=1e-9)


def _tiny_acc(**mem) -> Accelerator:
    # 100 MHz, 400 MB/s -> 4 bytes per cycle; 2 E2M1 PEs and 1 DFQ PE of 128 lanes; 10 DSPs for the DSP array
    return fpqvar_vck190().with_overrides({
        "clock_hz": 100e6, "fmu": {"e2m1_pes": 2, "dfq_pes": 1},
        "dsp": {"gemm_dsps": 10},
        "memory": {"offchip": single_channel(400e6), **mem}})


def test_gemm_cost_by_hand():
    acc, rec = _tiny_acc(), get_hw_recipe("fpqvar-w4a4")
    op = gemm("proj", "linear", 0, 0, m=4, k=256, n=8)
    c = gemm_cost(op, acc, rec)
    w_bytes = 8 * 256 * (4 + 16 / 128) / 8  # E2M1 weights + one FP16 scale per 128-group = 1056
    load = w_bytes / 4  # one tile (fits the 2 MiB buffer): 264 cycles
    compute = math.ceil(4 * 8 * 2 / 2)  # 4 rows x 8 cols x 2 groups over 2 PEs = 32
    latency = 1 + 7 + 4  # multiplier, 7 tree levels, accumulate
    assert c.unit == "fmu" and c.tiles == 1
    assert c.cycles == load + compute + latency and c.dram_bytes == w_bytes
    assert c.busy_cycles == compute and c.events == (("mac:fmu", 4 * 256 * 8),)

    spill = gemm_cost(op, _tiny_acc(act_buffer_bytes=1), rec)  # activations stream from / to DDR
    a_in = 4 * 256 * (4 + 16 / 128) / 8  # 528 bytes of quantized input
    out = 4 * 8 * 2  # FP16 outputs
    assert spill.cycles == (w_bytes + a_in) / 4 + compute + out / 4 + latency
    assert spill.dram_bytes == w_bytes + a_in + out


def test_gemm_cost_dsp_fc2_fallback_and_errors():
    acc = _tiny_acc()
    ada = gemm("ada_lin", "ada_lin", 0, 0, m=2, k=128, n=768)
    c = gemm_cost(ada, acc, get_hw_recipe("fpqvar-w4a4"))
    # FP16 on 10 DSPs x 1 MAC; weights 128 x 768 x 2 bytes, one tile
    assert c.unit == "dsp" and c.events[0][0] == "mac:dsp:fp16"
    assert c.cycles == 128 * 768 * 2 / 4 + math.ceil(2 * 128 * 768 / 10) + 8
    fc2 = gemm("fc2", "linear", 0, 0, m=4, k=512, n=128)
    assert gemm_cost(fc2, acc, get_hw_recipe("fpqvar-w4a4")).unit == "dfq"
    no_dfq = acc.with_overrides({"fmu": {"dfq_pes": 0}})
    assert gemm_cost(fc2, no_dfq, get_hw_recipe("fpqvar-w4a4")).unit == "fmu"
    with pytest.raises(ValueError, match="has no PEs"):
        gemm_cost(fc2, integer_vck190(), get_hw_recipe("fpqvar-w4a4"))
    i8 = gemm_cost(gemm("qkv", "linear", 0, 0, m=2, k=128, n=384), integer_vck190(), get_hw_recipe("int8"))
    assert i8.events[0][0] == "mac:dsp:int8"


def test_stream_unit_costs_by_hand():
    acc = fpqvar_vck190()
    ln = sfu_cost(elementwise("ln1", "ln", 0, 0, 6400), acc)
    assert ln.cycles == 16 + math.ceil(6400 * 2 / 64)  # latency + 2 passes over 64 lanes
    q = quant_cost(elementwise("quant_qkv", "quant", 0, 0, 1280, category="quant"), acc,
                   get_hw_recipe("fpqvar-w4a4"))
    assert q.cycles == 10 + 1280 // 128
    g = ght_cost(Op("ght_qkv", "ght", "ght", 0, 0, elems=1280, flops=1280 * 7), acc)
    assert g.cycles == 7 + 10 and g.events == (("ght", 1280 * 7),)
    with pytest.raises(ValueError, match="no pass count"):
        sfu_cost(Op("bogus", "elementwise", "nonlinear", 0, 0, elems=1), acc)
