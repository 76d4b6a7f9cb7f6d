"""`fpqvar hw rtl` and `fpqvar hw area` (typer CliRunner)."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("amaranth")

from fpqvar.cli import app  # noqa: E402
from fpqvar.hw import synth as sy  # noqa: E402

runner = CliRunner()
needs_yosys = pytest.mark.skipif(sy.find_yosys() is None, reason=sy.YOSYS_INSTALL_HINT)


def test_hw_rtl_writes_deterministic_verilog(tmp_path):
    r1 = runner.invoke(app, ["hw", "rtl", "--unit", "dfq_mul", "--out", str(tmp_path / "a"), "--json"])
    r2 = runner.invoke(app, ["hw", "rtl", "--unit", "dfq_mul", "--out", str(tmp_path / "b"), "--json"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    out = json.loads(r1.stdout)
    text = (tmp_path / "a" / "dfq_mul.v").read_bytes()
    assert text == (tmp_path / "b" / "dfq_mul.v").read_bytes()
    assert out["verilog_sha256"] == hashlib.sha256(text).hexdigest() and b"module dfq_mul(" in text


def test_hw_rtl_timing(tmp_path):
    r = runner.invoke(app, ["hw", "rtl", "--unit", "fht128", "--out", str(tmp_path), "--timing", "--json"])
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)["timing"]
    assert (t["latency_cycles"], t["initiation_interval_cycles"]) == (7, 1)


def test_hw_rtl_rejects_unknown_unit(tmp_path):
    r = runner.invoke(app, ["hw", "rtl", "--unit", "fp5_mul", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown unit 'fp5_mul'" in r.output and "fp4_mul" in r.output


def test_without_yosys_the_commands_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(sy, "find_yosys", lambda: None)
    r = runner.invoke(app, ["hw", "rtl", "--unit", "fp4_mul", "--out", str(tmp_path), "--synth"])
    assert r.exit_code == 2 and "apt-get install -y yosys" in r.output
    r = runner.invoke(app, ["hw", "area", "--out", str(tmp_path), "--units", "fp4_mul"])
    assert r.exit_code == 2 and "apt-get install -y yosys" in r.output


@needs_yosys
def test_hw_rtl_synth(tmp_path):
    r = runner.invoke(app, ["hw", "rtl", "--unit", "fp4_mul", "--out", str(tmp_path), "--synth", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["synth"]
    assert s["luts"] > 0 and s["family"] == "xcup" and (tmp_path / "fp4_mul.synth" / "fp4_mul.stat.json").exists()


def test_hw_area_writes_json_and_markdown(tmp_path, monkeypatch):
    """The table plumbing, with synthesis replaced by fixed cell counts (real runs: test_synth.py and
    benchmarks/bench_synth_area.py), so this needs no Yosys."""
    fake = {"fp4_mul": {"LUT6": 7, "LUT4": 1, "LUT2": 1}, "int4_mul": {"LUT6": 20, "MUXF7": 4, "CARRY4": 2}}

    def synth_unit(unit, config=sy.SynthConfig(), **_):
        c = sy._classify(fake[unit])
        return sy.SynthResult(unit=unit, cells_by_type=fake[unit], yosys_version="Yosys test",
                              family=config.family, flow=config.flow, seconds=0.0, **c)

    monkeypatch.setattr(sy, "find_yosys", lambda: ["yosys"])
    monkeypatch.setattr(sy, "yosys_version", lambda cmd=None: "Yosys test")
    monkeypatch.setattr(sy, "synthesize_unit", synth_unit)
    monkeypatch.setenv("FPQVAR_SYNTH_CACHE", str(tmp_path / "cache"))
    r = runner.invoke(app, ["hw", "area", "--out", str(tmp_path), "--units", "int4-mul,fp4_mul"])
    assert r.exit_code == 0, r.output
    table = json.loads((tmp_path / "area.json").read_text())
    assert table["family"] == "xcup" and table["yosys_version"] == "Yosys test"
    assert [(row["unit"], row["luts"], row["muxf"]) for row in table["rows"]] == [("int4_mul", 20, 4),
                                                                                   ("fp4_mul", 9, 0)]
    assert table["ratios"] == {"fp4_mul/int4_mul_luts": round(9 / 20, 3)}
    md = (tmp_path / "area.md").read_text()
    assert "| fp4_mul | 9 |" in md and "Yosys test" in md and "synth_xilinx -family xcup" in md


def test_hw_rtl_accepts_hyphenated_unit_names(tmp_path):
    r = runner.invoke(app, ["hw", "rtl", "--unit", "fp4-mul", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["unit"] == "fp4_mul" and (tmp_path / "fp4_mul.v").is_file()


def test_measured_area_is_cached_per_verilog_flow_and_yosys_version(tmp_path, monkeypatch):
    """Second call reads the cache (no synthesis); another Yosys version is a miss. Fake synthesis: the
    counts are test inputs, not expectations."""
    calls = []

    def synth_unit(unit, config=sy.SynthConfig(), **_):
        calls.append(unit)
        cells = {"LUT6": 8, "FDRE": 3}
        return sy.SynthResult(unit=unit, cells_by_type=cells, yosys_version=version[0], family=config.family,
                              flow=config.flow, seconds=0.0, **sy._classify(cells))

    version = ["Yosys A"]
    monkeypatch.setattr(sy, "yosys_version", lambda cmd=None: version[0])
    monkeypatch.setattr(sy, "synthesize_unit", synth_unit)
    r1 = sy.measured_area("fp4-mul", cache_dir=tmp_path)
    r2 = sy.measured_area("fp4_mul", cache_dir=tmp_path)
    assert calls == ["fp4_mul"] and r1 == r2 and (r2.luts, r2.ffs, r2.yosys_version) == (8, 3, "Yosys A")
    version[0] = "Yosys B"
    assert sy.measured_area("fp4_mul", cache_dir=tmp_path).yosys_version == "Yosys B" and len(calls) == 2
    sy.measured_area("fp4_mul", cache_dir=tmp_path, refresh=True)
    assert len(calls) == 3 and len(list(tmp_path.glob("fp4_mul.*.json"))) == 2
