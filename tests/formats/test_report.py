"""Value tables, the error table and the ``fpqvar formats`` command."""

from __future__ import annotations

import json
import math

import numpy as np
from typer.testing import CliRunner

from fpqvar.formats.report import format_error_table, sqnr_db, value_table
from tests.formats import _reference as ref


def test_e2m1_value_table_is_the_spec_grid():
    rows = value_table("e2m1")
    assert [r["code"] for r in rows] == list(range(16))
    assert [r["value"] for r in rows[:8]] == ref.SPEC_POS_GRIDS["e2m1"]
    assert [r["value"] for r in rows[8:]] == [-v for v in ref.SPEC_POS_GRIDS["e2m1"]]
    assert rows[13]["bits"] == "1101"


def test_int_tables_list_grid_codes_only():
    rows = value_table("int4")
    assert [r["value"] for r in rows] == list(np.arange(-7, 8, dtype=float))
    assert {r["value"]: r["code"] for r in rows}[-1.0] == 15  # two's complement
    assert [r["value"] for r in value_table("neg32")] == list(np.arange(-32, 1, dtype=float))


def test_special_codes_are_strings():
    vals = [r["value"] for r in value_table("e5m2")]
    assert vals.count("inf") == 1 and vals.count("-inf") == 1 and vals.count("nan") == 6


def test_error_table_is_seeded_and_sane():
    a = format_error_table(seed=0, shape=(8, 256))
    assert a == format_error_table(seed=0, shape=(8, 256))
    by = {(r["format"], r["input"]): r for r in a}
    # more bits, less error (same family, same input); DFQ beats plain E2M1 / E2M3 on the GELU output
    assert by[("int8", "randn")]["mse"] < by[("int4", "randn")]["mse"] < by[("int2", "randn")]["mse"]
    assert by[("dfq-fp4", "gelu")]["mse"] < by[("e2m1", "gelu")]["mse"]
    assert by[("dfq-fp6", "gelu")]["mse"] < by[("e2m3", "gelu")]["mse"]


def test_sqnr_definition():
    import torch

    x = torch.tensor([3.0, 4.0])
    assert sqnr_db(x, x) == math.inf
    assert sqnr_db(x, torch.tensor([3.0, 3.0])) == 10 * math.log10(25.0)


def test_cli_formats_text_and_json():
    from fpqvar.cli import app

    r = CliRunner().invoke(app, ["formats", "-f", "e1m2"])
    assert r.exit_code == 0, r.output
    assert "e1m2" in r.output and "1.75" in r.output
    r = CliRunner().invoke(app, ["formats", "--json"])
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert len(d["formats"]) == 22 and d["formats"][0]["name"] == "e2m1"
    blk = {b["name"]: b for b in d["block_formats"]}  # MX / NVFP4 beside them (docs/formats.md table)
    assert blk["mxfp4"]["bits_per_value"] == 4 + 8 / 32 and blk["nvfp4"]["block_size"] == 16
    assert blk["nvfp4"]["tensor_scale"] == "float32" and blk["mxfp8_e4m3"]["block_scale"] == "e8m0"
    r = CliRunner().invoke(app, ["formats", "-f", "mxfp4"])
    assert r.exit_code == 0 and "mxfp4" in r.output and "4.25" in r.output
    r = CliRunner().invoke(app, ["formats", "-f", "nope"])
    assert r.exit_code != 0 and "unknown format" in r.output
