import json

import numpy as np

from fpqvar.eval import html, plots, report
from fpqvar.eval.activations import HIST_EDGES, ActivationStats
from fpqvar.eval.paper import PAPER_TABLE, paper_row
from fpqvar.quant.recipes import get_recipe, recipe_names

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_recipe_bits_labels():
    assert report.recipe_bits(get_recipe("fp16")) == {"w": "16", "a": "16", "note": ""}
    assert report.recipe_bits(get_recipe("fpqvar-w4a4"))["w"] == "4"
    lite = report.recipe_bits(get_recipe("litevar-w4a4"))
    assert lite["w"] == "4-16" and "fc2 float" in lite["note"]
    up = report.recipe_bits(get_recipe("int4-rtn"))  # upstream's INT path leaves fc2 float too
    assert up["w"] == "4-16" and "fc2 float" in up["note"]
    assert "KV 6-bit" in report.recipe_bits(get_recipe("fpqvar-w4a4-kv6"))["note"]


def test_paper_rows_map_to_existing_recipes():
    known = set(recipe_names())
    assert len(PAPER_TABLE) == 16  # 13 rows of the main table + 3 ablation rows
    assert all(r.recipe is not None for r in PAPER_TABLE)
    for r in PAPER_TABLE:
        assert r.recipe is None or r.recipe in known, r
    assert paper_row("fpqvar-w4a4").method == "FP4 FPQVAR"


def _rows():
    m = {"is": 9.1, "fid": 12.5, "precision": 0.8, "recall": 0.7, "class_accuracy": 0.95, "num_samples": 100}
    return [report.make_row("fp16", get_recipe("fp16"), m, 2048), report.make_row(
        "fpqvar-w4a4", get_recipe("fpqvar-w4a4"), {**m, "fid": 20.0}, 600, {"floor_fid": 3.0})]


def test_tables_markdown_json_and_paper_columns(tmp_path):
    md, js = report.write_tables(tmp_path, _rows(), model="default", reference_label="domain", settings={"a": 1})
    text = md.read_text()
    assert "| fpqvar-w4a4 | 4/4 | 20.00 | 9.10 | 0.800 | 0.700 | 95.0 |" in text and "paper" not in text
    assert "| real vs real (floor) | - | 3.00 |" in text
    d30 = report.table_markdown(_rows(), model="var-d30", reference_label="x", settings={})
    assert "| 241.5 | 3.58 | 0.77 | 0.60 |" in d30  # the paper's FP4 FPQVAR row next to ours
    tj = report.table_json(_rows(), model="var-d30", reference_label="x", settings={})
    assert tj["paper"]["rows"]["fp16"]["FID"] == 1.98
    assert json.loads(js.read_text())["rows"][1]["weight_bytes"] == 600


def test_damage_columns_lead_with_intervals():
    """The damage against the float model's samples comes first, next to FID to real; every metric carries its
    interval; the float model is the damage reference; the floor row holds the real-vs-real numbers."""
    m = {"is": 9.1, "is_ci": [8.9, 9.3], "fid": 12.5, "fid_ci": [11.0, 14.25], "precision": 0.8, "recall": 0.7,
         "num_samples": 100}
    rows = [report.make_row("fp16", get_recipe("fp16"), m, 2048, {"is_float_reference": True}),
            report.make_row("fp4-rtn", get_recipe("fp4-rtn"), m, 600, {
                "fid_to_float": 4.48, "fid_to_float_ci": [4.0, 5.0], "psnr_to_float_db": 21.04,
                "psnr_to_float_db_ci": [20.5, 21.5], "token_agreement": 0.5, "token_agreement_ci": [0.45, 0.55],
                "floor_fid": 7.6, "floor_n": 1000, "floor_precision": 0.925, "floor_recall": 0.891})]
    text = report.table_markdown(rows, model="default", reference_label="domain", settings={})
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert header.index("FID to float") < header.index("PSNR to float") < header.index("FID to real")
    assert ("| fp4-rtn | 4/4 | 4.48 [4.00, 5.00] | 21.0 [20.5, 21.5] | 50.0 [45.0, 55.0] | 12.50 [11.00, 14.25] "
            "| 9.10 [8.90, 9.30] | 0.800 | 0.700 |") in text
    assert "| fp16 | 16/16 | (reference) | (reference) | (reference) | 12.50 [11.00, 14.25] |" in text
    assert "| real vs real (floor at 1000 real images) | - | - | - | - | 7.60 | - | 0.925 | 0.891 |" in text
    assert "bootstrap" in text
    cells = html._table(report.table_json(rows, model="default", reference_label="d", settings={}))[0]
    assert "4.48 [4.00, 5.00]" in cells


def test_plots_and_self_contained_html(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    st = ActivationStats((1, 2, 4), HIST_EDGES)
    st.fc2_hist[0] = rng.integers(0, 100, HIST_EDGES.size - 1)
    st.fc2_counts[0] = {"total": 1000, "in_band": 900, "positive": 90, "below": 0, "above": 0,
                         "nonpositive": 910}
    paths = [plots.sample_grid([("a", imgs), ("b", imgs[::-1])], tmp_path / "grid.png"),
             plots.fc2_histogram(st, tmp_path / "hist.png"),
             plots.absmax_heatmaps(rng.random((3, 16)) + 0.1, rng.random((3, 16)) + 0.1, (1, 2, 4),
                                   tmp_path / "heat.png")]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob(".*.tmp"))
    table = report.table_json(_rows(), model="default", reference_label="domain <metrics>", settings={"k": 3})
    out = html.write_report(tmp_path / "r.html", title="t", table=table,
                            figures=[(f"fig {i}", p) for i, p in enumerate(paths)], notes=["n"])
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 3 and "http" not in text
    assert "domain &lt;metrics&gt;" in text and "fpqvar-w4a4" in text
