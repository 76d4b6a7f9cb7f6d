"""Yosys synthesis: stat parsing, mapped-netlist checks, LUT-count relations (hardware.md section 6).

Counts vary between Yosys versions and ABC runs, so the tests check structural bounds and relations, except
for flip-flops, whose number follows from the pipeline structure.
"""

from __future__ import annotations

import json

import pytest

from fpqvar.hw import synth as sy

needs_yosys = pytest.mark.skipif(sy.find_yosys() is None, reason=sy.YOSYS_INSTALL_HINT)


def _stat(cells: dict) -> str:
    """A stat -json document shaped like Yosys 0.23's (test input, not an expected value)."""
    return json.dumps({"creator": "Yosys", "modules": {"\\m": {"num_cells_by_type": cells}},
                       "design": {"num_cells": sum(cells.values()), "num_cells_by_type": cells}})


def test_parse_and_classify_stat():
    cells = sy.parse_stat_json(_stat({"LUT6": 7, "LUT4": 1, "INV": 2, "FDRE": 10, "CARRY4": 3, "MUXF7": 4,
                                      "MUXF8": 1, "BUFG": 1}))
    c = sy._classify(cells)
    assert c["luts"] == 10 and c["luts_by_size"] == {"INV": 2, "LUT4": 1, "LUT6": 7}
    assert (c["ffs"], c["carry"], c["muxf"], c["dsp"]) == (10, 3, 5, 0) and c["other_cells"] == {"BUFG": 1}


def test_parse_stat_rejects_garbage():
    with pytest.raises(sy.SynthError, match="not JSON"):
        sy.parse_stat_json("Printing statistics.")
    with pytest.raises(sy.SynthError, match="neither"):
        sy.parse_stat_json("{}")


def test_synth_config_validation_and_round_trip():
    cfg = sy.SynthConfig()
    assert sy.SynthConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.flow == "synth_xilinx -family xcup -nodsp -noiopad -flatten"
    with pytest.raises(ValueError, match="family"):
        sy.SynthConfig(family="versal")
    with pytest.raises(ValueError, match="unknown keys"):
        sy.SynthConfig.from_dict({"famly": "xcup"})


@needs_yosys
def test_unmapped_netlist_is_an_error(tmp_path):
    # a module with no logic at all maps to no LUT / FF: must not pass as a "0-LUT unit"
    with pytest.raises(sy.SynthError, match="no mapped"):
        sy.synthesize_verilog("module empty(input a, output y); assign y = a; endmodule\n", "empty",
                              workdir=tmp_path)


@needs_yosys
def test_fp4_sign_magnitude_multiplier_is_one_lut_per_output_bit(tmp_path):
    """8 magnitude bits, each a function of 6 inputs (one LUT6 at most), + the sign XOR; the two's-complement
    variant (negation inside the multiplier) costs more (hardware.md section 6 lesson)."""
    sm = sy.synthesize_unit("fp4_mul", workdir=tmp_path / "sm")
    assert (tmp_path / "sm" / "fp4_mul.stat.json").stat().st_size > 0
    assert 8 <= sm.luts <= 8 + 1 and sm.muxf == 0 and sm.carry == 0 and sm.ffs == 0
    assert "0.23" in sm.yosys_version or "Yosys" in sm.yosys_version
    tc = sy.synthesize_unit("fp4_mul_twos", workdir=tmp_path / "tc")
    assert sm.luts + sm.muxf < tc.luts + tc.muxf


@needs_yosys
def test_dfq_and_int4_multipliers(tmp_path):
    """DFQ: 9 magnitude bits of 7 inputs each (<= 2 LUT6 + 1 MUXF7 per bit) + sign. INT4 (arithmetic
    two's-complement product, the baseline) costs more LUTs than the FP4 ROM's 9."""
    dfq = sy.synthesize_unit("dfq_mul", workdir=tmp_path / "dfq")
    assert dfq.luts <= 2 * 9 + 1 and dfq.muxf <= 9 and dfq.ffs == 0
    i4 = sy.synthesize_unit("int4_mul", workdir=tmp_path / "i4")
    assert i4.luts > 9 and i4.ffs == 0


@pytest.mark.slow
@needs_yosys
def test_pe_and_fht_synthesis_register_counts(tmp_path):
    """FF counts follow from the pipelines: PE = 128 x (sign + 8-bit mag) product registers + the tree's
    registers (64 x 10 + 32 x 11 + ... + 1 x 16 bits) + 8 valid bits; FHT = 128 x (9 + ... + 15) + 7."""
    pe = sy.synthesize_unit("pe_fp4", workdir=tmp_path / "pe")
    tree = sum((128 >> lvl) * (9 + lvl) for lvl in range(1, 8))
    assert pe.ffs == 128 * 9 + tree + 8
    assert pe.luts > 128 * 8  # at least the multipliers' LUTs
    fht = sy.synthesize_unit("fht128", workdir=tmp_path / "fht")
    assert fht.ffs == 128 * sum(8 + k + 1 for k in range(7)) + 7
    assert fht.carry > 0 and fht.luts >= 128 * 7 * 8  # one LUT per adder bit at least


@needs_yosys
def test_symmetric_int4_multiplier_is_a_rom_like_fp4(tmp_path):
    """6 magnitude bits of 6 inputs each (<= one LUT6 per bit) + the sign XOR, no carry chain; cheaper than
    the two's-complement arithmetic INT4 multiplier (the like-for-like baseline of issue 15)."""
    sym = sy.synthesize_unit("int4_sym_mul", workdir=tmp_path / "sym")
    assert sym.luts <= 6 + 1 and sym.carry == 0 and sym.ffs == 0
    i4 = sy.synthesize_unit("int4_mul", workdir=tmp_path / "i4")
    assert sym.luts + sym.muxf < i4.luts + i4.muxf
