"""cocotb testbench (runs inside Icarus Verilog) for the exported multiplier netlists, exhaustive.

Not a pytest module (no ``test_`` prefix): ``tests/hw/test_rtl_cocotb.py`` writes the expected outputs (built
there from the format grids and checked against the datapath model) to the JSON file named by
``FPQVAR_TB_EXPECTED`` and runs the ``*_exhaustive`` test of the unit. Only cocotb and the standard library
are imported here, so the simulator starts fast.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.triggers import Timer


def _expected() -> list[dict]:
    with open(os.environ["FPQVAR_TB_EXPECTED"]) as f:
        return json.load(f)


async def _check_all(dut, signed_outputs: tuple[str, ...] = ()):
    cases = _expected()
    assert len(cases) == 256, len(cases)
    for case in cases:
        for port, value in case["in"].items():
            getattr(dut, port).value = value
        await Timer(1, unit="ns")
        for port, want in case["out"].items():
            v = getattr(dut, port).value
            got = v.to_signed() if port in signed_outputs else int(v)
            assert got == want, (case, port, str(v))


@cocotb.test()
async def fp4_mul_exhaustive(dut):
    await _check_all(dut)


@cocotb.test()
async def dfq_mul_exhaustive(dut):
    await _check_all(dut)


@cocotb.test()
async def int4_mul_exhaustive(dut):
    await _check_all(dut, signed_outputs=("p",))
