"""The exported GEMM tile netlist under Icarus Verilog + cocotb, on a real layer of the shipped default model
(``tile_layer``: blocks.0.attn.proj, 16 tokens, FP4 codes and scales from ``fpqvar.formats.quantize``).

Outputs are checked bit for bit against ``fpqvar.hw.datapath`` (group sums + ``scale_accumulate``) and the
full-rate cycle count against ``tile_model.tile_cycles``; the perturbed runs (one expected value's LSB
flipped, the cycle model + 1) must fail. Slow (~1-2 min: Verilog export, Icarus build, three runs)."""

from __future__ import annotations

import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("cocotb_tools", reason="cocotb (>= 2.0) not installed: pip install cocotb")
pytest.importorskip("amaranth")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("iverilog") is None,
                                 reason="Icarus Verilog not found: install it with `apt-get install -y iverilog`")]

from fpqvar.hw.rtl.tile_io import activation_beats, expected_outputs, f32_bits, weight_beats  # noqa: E402
from fpqvar.hw.rtl.tile_model import TileConfig, check_layer, tile_cycles  # noqa: E402

TB_DIR = Path(__file__).parent / "cocotb_tile"
CFG = TileConfig(n_pe=4, lanes=128, max_tokens=16, max_groups=2, max_passes=64, fifo_depth=16)


@pytest.fixture(scope="module")
def tile_case(tmp_path_factory):
    from cocotb_tools.runner import get_runner

    from fpqvar.hw.rtl.tile import GemmTile

    sys.path.insert(0, str(Path(__file__).parent))
    from amaranth.back import verilog
    from tile_layer import default_layer

    x, a, sa, wc, sw, b, w, n_differ = default_layer()
    T, K = a.shape
    G, P = check_layer(CFG, T, K, wc.shape[0])
    want_TO = f32_bits(expected_outputs(CFG, a, sa, wc, sw, b))
    expected = want_TO.reshape(T, P, CFG.n_pe).transpose(1, 0, 2).reshape(T * P, CFG.n_pe)  # pass-major
    case = {"n_pe": CFG.n_pe, "tokens": T, "groups": G, "passes": P,
            "a_beats": activation_beats(CFG, a, sa),
            "w_beats": [x for pb in weight_beats(CFG, wc, sw, b) for x in pb],
            "expected": expected.tolist(), "expected_cycles": tile_cycles(CFG, T, K, wc.shape[0]),
            "software_vs_datapath_code_differences": n_differ}
    d = tmp_path_factory.mktemp("tile")
    src = d / "gemm_tile.v"
    src.write_text(verilog.convert(GemmTile(CFG), name="gemm_tile", emit_src=False))
    build = d / "sim_build"
    runner = get_runner("icarus")
    # -g2005: Amaranth's Verilog starts its combinational processes with a declaration initialiser, which
    # Icarus turns into a time-0 event only in Verilog-2005 mode (in SystemVerilog mode outputs stay X)
    runner.build(sources=[src], hdl_toplevel="gemm_tile", build_dir=build, timescale=("1ns", "1ps"),
                 build_args=["-g2005"])
    return runner, build, d, case


def _run(tile_case, testcase: str, case: dict, tag: str, monkeypatch):
    runner, build, d, _ = tile_case
    path = d / f"case_{tag}.json"
    path.write_text(json.dumps(case))
    monkeypatch.syspath_prepend(str(TB_DIR))  # the runner passes sys.path to the simulator as PYTHONPATH
    xml = d / f"results_{tag}.xml"
    try:
        runner.test(hdl_toplevel="gemm_tile", test_module="tile_tb", testcase=testcase, build_dir=build,
                    test_dir=d, results_xml=str(xml), timescale=("1ns", "1ps"),
                    extra_env={"FPQVAR_TB_EXPECTED": str(path)})
    except SystemExit:  # cocotb_tools' runner exits 1 when a test fails; the results XML says which and why
        pass
    failures = [f.get("message", "") for f in ET.parse(xml).iter("failure")]
    return failures


@pytest.mark.parametrize("testcase", ["tile_full_rate", "tile_with_stalls"])
def test_tile_netlist_on_a_default_model_layer(tile_case, testcase, monkeypatch):
    case = tile_case[3]
    assert case["expected_cycles"] == 1 + 32 + 64 * (4 * 3 + 32 + 13) + 1  # written out: T=16, G=2, P=64
    assert _run(tile_case, testcase, case, testcase, monkeypatch) == []


@pytest.mark.parametrize("perturb", ["value", "cycles"])
def test_tile_netlist_check_fails_when_perturbed(tile_case, perturb, monkeypatch, capsys):
    case = json.loads(json.dumps(tile_case[3]))
    if perturb == "value":
        case["expected"][37][2] ^= 1  # one output's float32 LSB
    else:
        case["expected_cycles"] += 1
    failures = _run(tile_case, "tile_full_rate", case, f"perturb_{perturb}", monkeypatch)
    assert len(failures) == 1, failures
    with capsys.disabled():
        print(f"\n[perturb={perturb}] cocotb failure: {failures[0][:300]}")
    assert ("differ from hw.datapath" if perturb == "value" else "tile_model.tile_cycles says") in failures[0]
