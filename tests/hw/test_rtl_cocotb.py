"""The exported Verilog of the multipliers, simulated by Icarus Verilog under cocotb, exhaustively.

Checks the netlist text itself (what synthesis reads), not only the Amaranth model. The expected outputs are
built here from the format grids (float64 products of decoded codes), checked against the datapath model,
and handed to the testbench (``cocotb_mult/mult_tb.py``) as JSON.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cocotb_tools", reason="cocotb (>= 2.0) not installed: pip install cocotb")
pytest.importorskip("amaranth")

from fpqvar.formats.spec import get_format  # noqa: E402
from fpqvar.hw import datapath as dp  # noqa: E402

TB_DIR = Path(__file__).parent / "cocotb_mult"
E2M1 = get_format("e2m1").code_values
E1M2 = get_format("e1m2").code_values


def _cases(unit: str) -> list[dict]:
    cases = []
    for a in range(16):
        for b in range(16):
            if unit == "int4_mul":
                va, vb = a - 16 * (a >> 3), b - 16 * (b >> 3)  # two's complement
                cases.append({"in": {"a": a, "b": b}, "out": {"p": va * vb}})
                assert va * vb == int(dp.int4_mul(a, b))
                continue
            if unit == "fp4_mul":
                ref, unit_value, model = E2M1[a] * E2M1[b], 0.25, dp.fp4_mul(a, b)
            else:  # DFQ activation: top bit selects the half, E1M2 negative / E2M1 positive
                act = -E1M2[a & 7] if a >> 3 else E2M1[a & 7]
                ref, unit_value, model = act * E2M1[b], 0.125, dp.dfq_mul(a, b)
            sign, mag = int(np.signbit(ref)), abs(ref) / unit_value
            assert mag == int(mag) and (sign, int(mag)) == tuple(int(v) for v in model), (unit, a, b)
            second = "b" if unit == "fp4_mul" else "w"
            cases.append({"in": {"a": a, second: b}, "out": {"sign": sign, "mag": int(mag)}})
    return cases


@pytest.mark.skipif(shutil.which("iverilog") is None,
                    reason="Icarus Verilog not found: install it with `apt-get install -y iverilog`")
@pytest.mark.parametrize("unit", ["fp4_mul", "dfq_mul", "int4_mul"])
def test_exported_multiplier_exhaustive_under_icarus(unit, tmp_path, monkeypatch):
    from cocotb_tools.runner import get_results, get_runner

    from fpqvar.hw.rtl.units import unit_verilog

    src = tmp_path / f"{unit}.v"
    src.write_text(unit_verilog(unit))
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(_cases(unit)))
    monkeypatch.syspath_prepend(str(TB_DIR))  # the runner passes sys.path to the simulator as PYTHONPATH
    runner = get_runner("icarus")
    build = tmp_path / "sim_build"
    runner.build(sources=[src], hdl_toplevel=unit, build_dir=build, timescale=("1ns", "1ps"))
    xml = runner.test(hdl_toplevel=unit, test_module="mult_tb", testcase=f"{unit}_exhaustive",
                      build_dir=build, test_dir=tmp_path, results_xml=str(tmp_path / "results.xml"),
                      timescale=("1ns", "1ps"), extra_env={"FPQVAR_TB_EXPECTED": str(expected)})
    n_tests, n_failed = get_results(xml)
    assert (n_tests, n_failed) == (1, 0)
