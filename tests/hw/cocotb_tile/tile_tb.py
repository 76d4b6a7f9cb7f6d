"""cocotb testbench (runs inside Icarus Verilog) for the exported GEMM tile.

Not a pytest module: ``tests/hw/test_rtl_tile_cocotb.py`` writes the beats, the expected outputs (from
``fpqvar.hw.datapath``) and the expected cycle count (``tile_model.tile_cycles``) to the JSON file named by
``FPQVAR_TB_EXPECTED``. Only cocotb and the standard library are imported here.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge


def _case() -> dict:
    with open(os.environ["FPQVAR_TB_EXPECTED"]) as f:
        return json.load(f)


async def _run(dut, case: dict, p_valid: float, p_ready: float, seed: int):
    """Drive one layer; returns (output beats as lists of n_pe words, tlast flags, cycles start..last)."""
    rng = random.Random(seed)
    n_pe = case["n_pe"]
    a_beats, w_beats = case["a_beats"], case["w_beats"]
    n_out = case["tokens"] * case["passes"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("start", "s_axis_a_tvalid", "s_axis_w_tvalid", "m_axis_y_tready"):
        getattr(dut, name).value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    dut.cfg_tokens.value = case["tokens"]
    dut.cfg_groups.value = case["groups"]
    dut.cfg_passes.value = case["passes"]
    outs, lasts, ia, iw, cycle, last_cycle = [], [], 0, 0, 0, None
    while len(outs) < n_out:
        await FallingEdge(dut.clk)  # inputs for the coming rising edge; the ready / valid outputs are settled
        dut.start.value = int(cycle == 0)
        va = ia < len(a_beats) and rng.random() < p_valid
        vw = iw < len(w_beats) and rng.random() < p_valid
        ready = rng.random() < p_ready
        dut.s_axis_a_tvalid.value = int(va)
        dut.s_axis_a_tdata.value = a_beats[ia] if va else 0
        dut.s_axis_w_tvalid.value = int(vw)
        dut.s_axis_w_tdata.value = w_beats[iw] if vw else 0
        dut.m_axis_y_tready.value = int(ready)
        if va and int(dut.s_axis_a_tready.value):
            ia += 1
        if vw and int(dut.s_axis_w_tready.value):
            iw += 1
        if ready and int(dut.m_axis_y_tvalid.value):
            word = int(dut.m_axis_y_tdata.value)
            outs.append([(word >> (32 * j)) & 0xFFFFFFFF for j in range(n_pe)])
            lasts.append(int(dut.m_axis_y_tlast.value))
            last_cycle = cycle
        cycle += 1
        assert cycle < 50 * case["expected_cycles"], f"tile stalled: {len(outs)}/{n_out} outputs"
    return outs, lasts, last_cycle + 1


def _check_values(case: dict, outs, lasts):
    want = case["expected"]
    bad = [i for i, (g, w) in enumerate(zip(outs, want)) if g != w]
    assert len(outs) == len(want) and not bad, (
        f"{len(bad)} output beats differ from hw.datapath; first: beat {bad[0]} got {outs[bad[0]]} "
        f"want {want[bad[0]]}" if bad else "output count")
    assert lasts == ([0] * (case["tokens"] - 1) + [1]) * case["passes"], "tlast pattern"


@cocotb.test()
async def tile_full_rate(dut):
    """Streams never stall: values bit-exact and the cycle count equal to the closed form."""
    case = _case()
    outs, lasts, cycles = await _run(dut, case, 1.0, 1.0, 0)
    _check_values(case, outs, lasts)
    assert cycles == case["expected_cycles"], (
        f"tile took {cycles} cycles, tile_model.tile_cycles says {case['expected_cycles']}")
    dut._log.info("tile_full_rate: %d output beats bit-exact, %d cycles", len(outs), cycles)


@cocotb.test()
async def tile_with_stalls(dut):
    """Random input gaps and output back-pressure: values bit-exact (timing is not the closed form's)."""
    case = _case()
    outs, lasts, cycles = await _run(dut, case, 0.7, 0.2, 1)
    _check_values(case, outs, lasts)
    assert cycles > case["expected_cycles"]
    dut._log.info("tile_with_stalls: %d output beats bit-exact, %d cycles", len(outs), cycles)
