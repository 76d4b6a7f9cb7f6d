"""Issue 15's model parts: memory channels, measured areas and their fallback, the FMU split, PE kinds, the named
design points (monotonicity, schedule order, closed form vs tile simulation) and the recipe mapping."""

import json
import math

import pytest

from fpqvar.hw.perf import areas, tiles
from fpqvar.hw.perf.accelerator import fpqvar_vck190
from fpqvar.hw.perf.cost import gemm_cost
from fpqvar.hw.perf.designs import named_designs
from fpqvar.hw.perf.estimate import EstimateOptions
from fpqvar.hw.perf.hardware import FMU
from fpqvar.hw.perf.lut_costs import LutCosts, measured_lut_costs
from fpqvar.hw.perf.memory import MemoryChannel, OffChip, TensorPlacement, transfer_cycles_by_channel
from fpqvar.hw.perf.recipes import get_hw_recipe
from fpqvar.model.workload import gemm
from fpqvar.model.zoo import get_model_spec


def test_channel_bandwidth_by_hand():
    ch = MemoryChannel(peak_bandwidth_bytes_per_s=62.5e9, efficiency=0.8, noc_ports=4, port_cap_bytes_per_s=16e9)
    assert ch.effective_bandwidth_bytes_per_s == pytest.approx(50e9)  # 62.5 x 0.8 < 4 x 16
    capped = MemoryChannel(peak_bandwidth_bytes_per_s=62.5e9, efficiency=1.0, noc_ports=2, port_cap_bytes_per_s=16e9)
    assert capped.effective_bandwidth_bytes_per_s == 32e9  # two NoC ports cap it
    assert transfer_cycles_by_channel({"ddr4": 100.0, "lpddr4": 300.0}, {"ddr4": 10.0, "lpddr4": 10.0}) == 30.0
    with pytest.raises(ValueError, match="placement.kv_cache"):
        OffChip(lpddr4=None, placement=TensorPlacement("ddr4", "ddr4", "lpddr4", "ddr4"))
    with pytest.raises(ValueError, match="efficiency"):
        MemoryChannel(efficiency=1.5)


def test_gemm_bytes_go_to_their_channels():
    acc = fpqvar_vck190()
    qkv = gemm_cost(gemm("qkv", "linear", 0, 0, m=2, k=1920, n=5760), acc, get_hw_recipe("fpqvar-w4a4"))
    ada = gemm_cost(gemm("ada_lin", "ada_lin", 0, 0, m=2, k=1920, n=11520), acc, get_hw_recipe("fpqvar-w4a4"))
    assert dict(qkv.dram)["ddr4"] == pytest.approx(1920 * 5760 * (4 + 16 / 128) / 8)  # linear weights on DDR4
    assert "lpddr4" in dict(qkv.dram)  # the new keys / values go to the KV cache on LPDDR4
    n_tiles, tn = tiles.weight_tiles(1920, 11520, 2, acc.memory.weight_buffer_bytes, True)  # tiles balanced, padded
    assert set(dict(ada.dram)) == {"lpddr4"} and ada.dram_bytes == n_tiles * tn * 1920 * 2


def test_dfq_pes_zero_gives_the_e2m1_array_the_whole_budget():
    c = LutCosts()
    fmu = FMU(lut_budget_luts=100_000, dfq_pes=0)
    assert fmu.num_dfq_pes == 0 and fmu.num_e2m1_pes == 100_000 // c.pe_luts("e2m1", 128)
    assert FMU(lut_budget_luts=100_000, e2m1_pes=0).num_dfq_pes == 100_000 // c.pe_luts("dfq", 128)
    uni = FMU(lut_budget_luts=100_000, arrays="unified")
    assert uni.num_dfq_pes == 0 and uni.num_e2m1_pes == 100_000 // c.pe_luts("unified", 128)
    assert c.pe_luts("unified", 128) > c.pe_luts("dfq", 128)  # the mode select costs LUTs
    with pytest.raises(ValueError, match="one array"):
        FMU(arrays="unified", dfq_pes=3)


def test_measured_areas_by_default_and_tolerant_fallback(tmp_path):
    cache = {"version": 1, "units": {"pe_fp4": {"luts": 3000, "ffs": 2500, "yosys_version": "Yosys 9.9 (x)",
                                                "flow": "synth_xilinx", "verilog_sha256": "ab" * 32}}}
    path = tmp_path / "cache.json"
    path.write_text(json.dumps(cache))
    a = areas.lookup("pe_e2m1", path)
    assert a.measured and a.luts == 3000 and "Yosys 9.9" in a.source
    b = areas.lookup("pe_int4_sm", path)  # not built yet, or not cached: no number, a reason
    assert not b.measured and b.luts is None and b.source
    c = measured_lut_costs(path)
    assert c.pe_luts("e2m1", 128) == 3000 + c.pe_overhead_luts
    src = dict(c.role_sources)
    assert src["pe_e2m1"].startswith("measured") and src["pe_dfq"].startswith("formula (fallback")
    assert c.pe_luts("dfq", 128) == LutCosts().pe_luts("dfq", 128)
    with pytest.raises(ValueError, match="unknown role"):
        areas.lookup("pe_bogus", path)
    path.write_text(json.dumps({"version": 1, "units": {"pe_fp4": {"luts": 1}}}))
    with pytest.raises(ValueError, match="lacks"):
        areas.lookup("pe_e2m1", path)
    # the shipped cache has our own PEs (synthesized with the Yosys named in it)
    shipped = areas.load_cache(areas.SHIPPED_CACHE)["units"]
    assert {"pe_fp4", "pe_dfq"} <= set(shipped)
    assert shipped["pe_fp4"]["luts"] < shipped["pe_dfq"]["luts"]  # the DFQ PE has two trees, wider products


@pytest.fixture(scope="module")
def d16():
    spec = get_model_spec("var-d16")
    return spec, named_designs(spec.var)


def test_named_designs_run_and_order(d16):
    spec, ds = d16
    r = {n: d.run("var-d16", spec.var, spec.vae).latency_s for n, d in ds.items()}
    assert all(v > 0 for v in r.values())
    assert r["fpqvar"] <= r["fpqvar-level1"] <= r["fpqvar-seq"]
    assert r["fpqvar-stream"] <= r["fpqvar"]  # the stream design has sized units; still never slower here
    assert r["fpqvar-ada-table"] <= r["fpqvar-ada-once"] <= r["fpqvar"]
    assert r["fpqvar"] <= r["fpqvar-ddr4-only"]  # more channels never hurt
    for base in ("dsp58-int8", "lut-int4-sm", "lut-int4-twos", "dsp-lut-int4", "aie-int8"):
        assert r[base] <= r[f"{base}-seq"]
    # more images per call: never fewer images per second
    ips = [ds[n].options.batch_images / r[n] for n in ("fpqvar", "fpqvar-b2", "fpqvar-b4", "fpqvar-b8")]
    assert ips == sorted(ips)


@pytest.mark.parametrize("name", ["fpqvar-unified", "lut-int4-sm", "aie-int8", "dsp-lut-int4", "fpqvar-stream"])
def test_gemm_closed_form_equals_tile_simulation(d16, name):
    """A GEMM's cycles (tile pipeline, without the unit latency) equal the tile-by-tile simulation of the same
    load / compute / store stages, for the new engines and memory systems."""
    spec, ds = d16
    d = ds[name]
    acc, rec = d.accelerator, d.recipe
    op = gemm("fc1", "linear", 0, 0, m=64, k=spec.var.C, n=4 * spec.var.C)
    c = gemm_cost(op, acc, rec)
    bpc = acc.channel_bytes_per_cycle
    w_bytes = rec.placement("fc1").weight_bits / 8
    n_tiles, tn = tiles.weight_tiles(op.k, op.n, w_bytes, acc.memory.weight_buffer_bytes, True)
    load = tn * op.k * w_bytes / bpc[acc.memory.offchip.channel_of("linear_weights")]
    compute = c.busy_cycles / n_tiles
    sim = tiles.pipeline_cycles_sim([(load, compute, 0.0)] * n_tiles)
    assert c.cycles - c.latency_cycles == pytest.approx(max(sim, n_tiles * load), rel=1e-12)
    assert math.isclose(c.cycles - c.latency_cycles,
                        tiles.pipeline_cycles(load, compute, 0.0, n_tiles) if sim >= n_tiles * load else n_tiles * load,
                        rel_tol=1e-12)


def test_stream_units_sized_below_the_default(d16):
    _, ds = d16
    s, base = ds["fpqvar-stream"].accelerator, ds["fpqvar"].accelerator
    assert s.quantizer.lanes <= base.quantizer.lanes and s.ghtu.vectors_per_cycle <= 1.0
    assert s.luts_used <= base.luts_used


@pytest.mark.parametrize("name", ["fpqvar-w4a4", "fpqvar-w6a6", "fp4-rtn", "int4-rtn", "litevar-w4a4", "int8"])
def test_recipe_names_map(name, d16):
    spec, _ = d16
    rec = get_hw_recipe(name)
    acc = fpqvar_vck190() if (rec.needs_fmu or rec.needs_ghtu) else named_designs(spec.var)["dsp58-int8"].accelerator
    from fpqvar.hw.perf.estimate import estimate

    assert estimate("var-d16", spec.var, spec.vae, acc, rec, EstimateOptions()).images_per_s > 0


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="no hardware mapping.*fpqvar-w4a4"):
        get_hw_recipe("smoothquant-w8a8")
