"""Schedules, monotonicity, energy and the GPU roofline."""

import pytest

from fpqvar.hw.perf.accelerator import GPU, fpqvar_vck190, integer_vck190
from fpqvar.hw.perf.cost import OpCost, cost_op
from fpqvar.hw.perf.energy import PowerModel, energy_breakdown_joules
from fpqvar.hw.perf.estimate import EstimateOptions, estimate
from fpqvar.hw.perf.gpu import estimate_gpu, kernel_seconds
from fpqvar.hw.perf.memory import single_channel
from fpqvar.hw.perf.recipes import get_hw_recipe
from fpqvar.hw.perf.schedule import build_segments, overlap_cycles
from fpqvar.model.workload import Op, WorkloadOptions, transformer_ops
from fpqvar.model.zoo import VARConfig, get_model_spec

W4A4 = get_hw_recipe("fpqvar-w4a4")
TINY = VARConfig(depth=2, embed_dim=256, num_heads=4, vocab_size=64, z_channels=8, num_classes=10, patch_nums=(1, 2, 4))


def _c(name, unit, cycles, busy, dram=0.0, block=0, latency=0.0, channel="ddr4"):
    return OpCost(Op(name, "gemm", "linear", 0, block), unit, cycles, busy, dram=((channel, dram),) if dram else (),
                  latency_cycles=latency)


def test_overlap_cycles_by_hand():
    a, b = _c("fc2", "dfq", 100, 80, dram=200), _c("ada_lin", "dsp", 50, 50, dram=600)
    assert overlap_cycles([a, b], bytes_per_cycle=4) == 200  # DDR shared: (200 + 600) / 4
    assert overlap_cycles([a, b], bytes_per_cycle=100) == 100  # the longest member
    same = _c("x", "dfq", 60, 60)
    assert overlap_cycles([a, same], bytes_per_cycle=100) == 140  # one unit: 80 + 60 busy cycles
    assert overlap_cycles([a], 4, fill_cycles=3) == 103


def _names(segments):
    return [tuple(m.op.name for m in s.members) for s in segments]


def test_segments_per_schedule():
    acc = fpqvar_vck190()
    ops = transformer_ops(TINY, WorkloadOptions(ght_block=128, quantize_acts=True))
    costs = [cost_op(o, acc, W4A4) for o in ops]
    seq = build_segments(costs, "sequential", acc.channel_bytes_per_cycle)
    assert all(len(s.members) == 1 for s in seq) and len(seq) == len(costs)
    l1 = _names(build_segments(costs, "level1", acc.channel_bytes_per_cycle))
    assert ("ght_qkv", "quant_qkv", "qkv") in l1 and ("quant_fc2", "fc2") in l1 and ("quant_proj", "proj") in l1
    l2 = build_segments(costs, "level2", acc.channel_bytes_per_cycle)
    merged = [s for s in l2 if {"fc2", "ada_lin"} <= {m.op.name for m in s.members}]
    # one per (scale, block 0 -> block 1): 3 scales, depth 2
    assert len(merged) == 3
    assert all([m.op.block for m in s.members if m.op.name == "ada_lin"] == [1] for s in merged)
    assert sum(1 for s in l2 for m in s.members if m.op.name == "ada_lin") == 6  # none lost
    with pytest.raises(ValueError, match="unknown schedule"):
        build_segments(costs, "level3", 1.0)


@pytest.mark.parametrize("model", ["default", "var-d16"])
def test_pipelines_never_slower(model):
    spec = get_model_spec(model)
    lat = {s: estimate(model, spec.var, spec.vae, fpqvar_vck190(), W4A4, EstimateOptions(schedule=s)).latency_s
           for s in ("sequential", "level1", "level2")}
    assert lat["level2"] <= lat["level1"] <= lat["sequential"]


def _lat(acc, spec, schedule="level2", recipe=W4A4):
    return estimate("m", spec.var, spec.vae, acc, recipe, EstimateOptions(schedule=schedule)).latency_s


@pytest.mark.parametrize("schedule", ["sequential", "level2"])
def test_monotone_in_bandwidth_pes_and_clock(schedule):
    spec = get_model_spec("var-d16")
    base = fpqvar_vck190().with_overrides({"dsp": {"gemm_dsps": 1000}})  # DSP array fixed while PEs vary
    bws = [lat for lat in (_lat(base.with_overrides({"memory": {"offchip": single_channel(b)}}), spec, schedule)
                           for b in (3.2e9, 12.8e9, 25.6e9, 51.2e9, 204.8e9))]
    assert all(x >= y for x, y in zip(bws, bws[1:])) and bws[0] > bws[-1]
    pes = [_lat(base.with_overrides({"fmu": {"e2m1_pes": p, "dfq_pes": p // 2}}), spec, schedule)
           for p in (4, 8, 16, 32, 64, 128)]
    assert all(x >= y for x, y in zip(pes, pes[1:])) and pes[0] > pes[-1]
    clk = [_lat(base.with_overrides({"clock_hz": f}), spec, schedule) for f in (100e6, 200e6, 400e6, 800e6)]
    assert all(x >= y for x, y in zip(clk, clk[1:]))
    dsps = [_lat(integer_vck190().with_overrides({"dsp": {"gemm_dsps": d}}), spec, schedule, get_hw_recipe("int8"))
            for d in (100, 400, 1600)]
    assert all(x >= y for x, y in zip(dsps, dsps[1:]))


def test_estimate_bookkeeping():
    spec = get_model_spec("var-d16")
    r = estimate("var-d16", spec.var, spec.vae, fpqvar_vck190(), W4A4, EstimateOptions(batch_images=2))
    assert r.images_per_s == pytest.approx(2 / r.latency_s)
    assert sum(r.per_scale_s.values()) == pytest.approx(r.latency_s)
    assert sum(v["exposed_s"] for v in r.per_op.values()) == pytest.approx(r.latency_s)
    assert all(0 < u <= 1 for u in r.utilisation.values())
    assert all(0 < u <= 1 for u in r.mac_utilisation.values())
    assert r.energy_per_image_j == pytest.approx(sum(r.energy_breakdown_j.values()))
    assert r.energy_breakdown_j["static"] == pytest.approx(5.0 * r.latency_s / 2)  # static W x latency / images
    assert r.host_flops == pytest.approx(393.7e9, rel=1e-3) and any("host" in n for n in r.notes)
    on_chip = estimate("var-d16", spec.var, spec.vae, fpqvar_vck190(), W4A4, EstimateOptions(vae_on_host=False))
    assert on_chip.latency_s > r.latency_s / 2 and on_chip.host_flops == 0
    once = estimate("var-d16", spec.var, spec.vae, fpqvar_vck190(), W4A4, EstimateOptions(ada_lin="once"))
    assert once.latency_s < estimate("var-d16", spec.var, spec.vae, fpqvar_vck190(), W4A4).latency_s
    with pytest.raises(ValueError, match="GHTU"):
        estimate("var-d16", spec.var, spec.vae, integer_vck190(), W4A4)


def test_energy_by_hand():
    pm = PowerModel()
    e = energy_breakdown_joules({"mac:fmu": 1e12, "dram_bytes": 1e9}, 2.0, pm)
    assert e == pytest.approx({"static": 5.0 * 2.0, "mac:fmu": 1e12 * 0.3e-12, "dram_bytes": 1e9 * 160e-12})
    with pytest.raises(ValueError, match="unknown event"):
        energy_breakdown_joules({"mac:bogus": 1}, 1.0, pm)


def test_gpu_roofline_by_hand():
    gpu = GPU(peak_flops_per_s=1e14, bandwidth_bytes_per_s=1e12, board_watts=300, kernel_overhead_s=1e-5)
    assert kernel_seconds(1e12, 1e9, gpu) == (0.01, "compute")
    assert kernel_seconds(1e9, 1e10, gpu) == (0.01, "memory")
    spec = get_model_spec("var-d16")
    r = estimate_gpu(spec.var, spec.vae, gpu)
    assert r.latency_s == pytest.approx(r.compute_bound_s + r.memory_bound_s + r.overhead_s)
    assert r.overhead_s == pytest.approx(r.kernels * 1e-5)
    assert r.energy_per_image_j == pytest.approx(300 * r.latency_s)
    # batch 4 reads the weights once per kernel: more images per second
    assert estimate_gpu(spec.var, spec.vae, gpu, batch_images=4).images_per_s > r.images_per_s
