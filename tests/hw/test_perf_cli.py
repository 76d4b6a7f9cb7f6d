"""`fpqvar hw perf`: JSON output, config overrides and their errors, the sweep's files."""

import json

from typer.testing import CliRunner

from fpqvar.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["hw", "perf", *args])


def test_json_output_and_recipes():
    r = _run("--model", "default", "--no-claims", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    res = d["result"]
    assert res["recipe"] == "fpqvar-w4a4" and res["schedule"] == "level2"
    assert res["images_per_s"] > 0 and res["energy_per_image_j"] > 0
    assert {"qkv", "fc2", "ada_lin", "ght_qkv"} <= set(res["per_op"])
    assert d["gpu"]["latency_s"] > 0 and any(a["field"] == "clock_hz" for a in d["assumptions"])
    i8 = json.loads(_run("--model", "default", "--recipe", "int8", "--no-claims", "--json").output)["result"]
    assert i8["accelerator"] == "integer-vck190" and "ght_qkv" not in i8["per_op"]


def test_text_output_has_breakdowns():
    r = _run("--model", "default", "--no-claims", "--schedule", "sequential", "--assumptions")
    assert r.exit_code == 0, r.output
    for s in ("per scale:", "per operator", "energy per image", "GPU roofline", "memory.offchip.lpddr4.efficiency"):
        assert s in r.output


def test_config_overrides_and_errors(tmp_path):
    cfg = tmp_path / "hw.json"
    cfg.write_text(json.dumps({"version": 1, "accelerator": {"clock_hz": 2e8, "fmu": {"e2m1_pes": 8}}}))
    d = json.loads(_run("--model", "default", "--no-claims", "--json", "--config", str(cfg)).output)
    assert d["result"]["clock_hz"] == 2e8 and d["result"]["hardware"]["e2m1_pes"] == 8
    cfg.write_text(json.dumps({"accelerator": {"memory": {"bogus": 1}}}))
    r = _run("--model", "default", "--no-claims", "--config", str(cfg))
    assert r.exit_code == 2 and "memory.bogus" in r.output
    cfg.write_text(json.dumps({"acclerator": {}}))
    r = _run("--model", "default", "--no-claims", "--config", str(cfg))
    assert r.exit_code == 2 and "acclerator" in r.output
    r = _run("--model", "default", "--no-claims", "--config", str(tmp_path / "missing.json"))
    assert r.exit_code == 2 and "not found" in r.output
    assert _run("--model", "var-d99", "--no-claims").exit_code == 2
    assert _run("--recipe", "int3", "--no-claims").exit_code == 2
    assert _run("--schedule", "level3", "--no-claims").exit_code == 2


def test_luts_json_from_area_table(tmp_path):
    area = tmp_path / "area.json"
    area.write_text(json.dumps({"version": 1, "rows": [{"unit": "pe_fp4", "luts": 4000},
                                                       {"unit": "pe_dfq", "luts": 8000}]}))
    d = json.loads(_run("--model", "default", "--no-claims", "--json", "--luts-json", str(area)).output)
    hw = d["result"]["hardware"]
    assert hw["e2m1_pe_luts"] == 4000 + 256 and hw["lut_costs_source"].startswith("measured")
    area.write_text("[1, 2]")
    r = _run("--model", "default", "--no-claims", "--luts-json", str(area))
    assert r.exit_code == 2 and "JSON object" in r.output


def test_sweep_writes_png_and_json(tmp_path):
    assert _run("--model", "default", "--no-claims", "--sweep").exit_code == 2  # needs --out
    r = _run("--model", "default", "--no-claims", "--sweep", "--out", str(tmp_path / "sw"))
    assert r.exit_code == 0, r.output
    png = (tmp_path / "sw" / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pts = json.loads((tmp_path / "sw" / "sweep.json").read_text())["points"]
    assert {p["axis"] for p in pts} == {"array", "clock", "bandwidth"}
    bw = [p["images_per_s"] for p in pts if p["axis"] == "bandwidth"]
    assert bw == sorted(bw)  # more bandwidth is never slower
    assert not list((tmp_path / "sw").glob(".*.tmp"))  # atomic writes leave no temporaries


def test_bar_json_has_named_designs_and_claim_pairs(tmp_path):
    """Issue 15's bar: images/s for each named design and claims whose entries name the pair and assumptions;
    --out writes the figures and the HTML report."""
    r = _run("--model", "var-d30", "--recipe", "fpqvar-w4a4", "--json", "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    names = set(d["designs"])
    assert {"fpqvar", "fpqvar-stream", "fpqvar-unified", "dsp58-int8", "lut-int4-sm", "lut-int4-twos",
            "dsp-lut-int4", "aie-int8", "aie-int8-seq"} <= names
    assert all(v["images_per_s"] > 0 for v in d["designs"].values())
    claims = {c["key"]: c for c in d["claims"]}
    e = claims["int_throughput"]["entries"][0]
    assert e["design"] in names and e["reference"] and " | vs | " in e["assumptions"]
    for f in ("roofline.png", "heatmap.png", "tornado.png"):
        assert (tmp_path / "o" / f).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "o" / "report.html").read_text()
    assert "data:image/png;base64" in page and "integer accelerator" in page
    assert _run("--recipe", "smoothquant-w8a8", "--no-claims", "--no-designs").exit_code == 2
