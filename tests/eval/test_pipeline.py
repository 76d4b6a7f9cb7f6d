import json

import numpy as np
import pytest

from fpqvar.eval import pipeline as P
from fpqvar.eval.sample_set import PACKED, load_packed
from fpqvar.quant.recipes import get_recipe
from tests.eval.conftest import make_tiny32, write_domain_assets


@pytest.fixture
def tiny_runner(monkeypatch):
    # every load gives the same random tiny model with 32x32 images (the default model's domain)
    monkeypatch.setattr(P._Runner, "load_float", lambda self: make_tiny32(0))
    monkeypatch.setattr(P._Runner, "var_config", lambda self: make_tiny32(0).config)
    monkeypatch.setattr(P._Runner, "fingerprint", lambda self: "tiny32-seed0")


def _plan(tmp_path, recipes, **kw):
    cls_path, ref_path = write_domain_assets(tmp_path)
    kw = {"classes": (0, 1, 2), "per_class": 2, "batch": 2, **kw}
    return P.EvalPlan(model="default", recipes=recipes, top_k=20, top_p=0.9, calib_samples=4,
                      classifier=str(cls_path), reference=str(ref_path), **kw)


def test_plan_validation_and_roundtrip():
    with pytest.raises(ValueError, match="per_class"):
        P.EvalPlan(per_class=0)
    with pytest.raises(ValueError, match="backend"):
        P.EvalPlan(backend="gpu")
    p = P.EvalPlan(recipes=("fp16", "int4-rtn"), classes=(0, 1))
    assert P.EvalPlan.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_recipes_end_to_end_table_resume(tmp_path, tiny_runner):
    plan = _plan(tmp_path, ("fp16", "int4-rtn", "fpqvar-w6a6"), figures=False)
    out = tmp_path / "out"
    table = P.run_plan(plan, out, progress=False)
    rows = {r["method"]: r for r in table["rows"]}
    assert list(rows) == ["fp16", "int4-rtn", "fpqvar-w6a6"]
    for r in rows.values():
        assert r["num_samples"] == 6 and r["fid"] is not None and 0 <= r["precision"] <= 1
        assert 1.0 <= r["is"] <= 10.0 + 1e-9  # IS is bounded by the number of classes
    assert (rows["fp16"]["bits_w"], rows["int4-rtn"]["bits_w"], rows["fpqvar-w6a6"]["bits_a"]) == ("16", "4-16", "6")
    # int4-rtn: fc2 float (upstream)
    # weight bytes from the definition: tiny C=128, hidden 512, depth 2; int4 per-channel = packed nibbles +
    # one float32 scale per output row; float = 2 bytes / weight
    shapes = [(384, 128), (128, 128), (512, 128), (128, 512)]
    assert rows["fp16"]["weight_bytes"] == 2 * sum(o * i * 2 for o, i in shapes)
    # int4-rtn (upstream's INT path): qkv, proj, fc1 packed; fc2 float at 2 bytes / weight
    assert rows["int4-rtn"]["weight_bytes"] == 2 * (sum(o * i // 2 + 4 * o for o, i in shapes[:3])
                                                    + 2 * shapes[3][0] * shapes[3][1])
    # same seeds in every method: the float and quantized sets differ, labels agree
    a0, l0 = load_packed(out / "fp16" / PACKED)
    a1, l1 = load_packed(out / "int4-rtn" / PACKED)
    np.testing.assert_array_equal(l0, np.repeat([0, 1, 2], 2))
    np.testing.assert_array_equal(l0, l1)
    md = (out / "table.md").read_text()
    assert "| int4-rtn | 4-16/4-16 |" in md and "not comparable to ImageNet" in md
    # rerun: nothing is redone (quantized file and units kept), same rows
    mtime = (out / "int4-rtn" / "quantized.safetensors").stat().st_mtime_ns
    unit_mtime = next((out / "fp16" / "units").glob("*.npz")).stat().st_mtime_ns
    again = P.run_plan(plan, out, progress=False)
    assert again["rows"] == table["rows"]
    assert (out / "int4-rtn" / "quantized.safetensors").stat().st_mtime_ns == mtime
    assert next((out / "fp16" / "units").glob("*.npz")).stat().st_mtime_ns == unit_mtime


def test_changed_float_weights_are_refused_on_resume(tmp_path, tiny_runner, monkeypatch):
    plan = _plan(tmp_path, ("fp16", "int4-rtn"), figures=False, classes=(0, 1), per_class=2, batch=1)
    out = tmp_path / "out"
    P.run_plan(plan, out, progress=False)
    monkeypatch.setattr(P._Runner, "fingerprint", lambda self: "other-weights")
    # finished folder (metrics.json present) or not: the samples were made from other weights
    with pytest.raises(ValueError, match=r"fp16.*made from something else \(float weights: 'tiny32-seed0' -> "
                                         r"'other-weights'\)"):
        P.run_plan(plan, out, progress=False)
    (out / "fp16" / "metrics.json").unlink()  # e.g. a run interrupted before the metrics
    with pytest.raises(ValueError, match="fp16.*float weights"):
        P.run_plan(plan, out, progress=False)
    with pytest.raises(ValueError, match=r"quantized.safetensors: made from something else \(float weights"):
        P.run_plan(P.EvalPlan.from_dict({**plan.to_dict(), "recipes": ["int4-rtn"], "paired": False}), out,
                   progress=False)


@pytest.mark.slow  # ~30 s on a loaded 2-core machine: matplotlib rendering + activation capture
def test_figures_and_html_report(tmp_path, tiny_runner):
    plan = _plan(tmp_path, ("fp16", "fpqvar-w6a6"))
    out = tmp_path / "out"
    table = P.run_plan(plan, out, progress=False)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(table["figures"]) - 1
    assert 'src="http' not in html and "fpqvar-w6a6" in html
    acts = json.loads((out / "figures" / "activations.json").read_text())
    assert acts["after_method"] == "fpqvar-w6a6" and 0 <= acts["before"]["fc2_input_share_in_band"] <= 1


def test_quantized_file_is_evaluated_as_is(tmp_path, tiny_runner):
    from fpqvar.quant.export import save_quantized
    from fpqvar.quant.quantize import quantize_

    var = make_tiny32(0)
    quantize_(var, get_recipe("fp4-rtn"), None, progress=False)
    q = save_quantized(var, "fp4-rtn", tmp_path / "my-fp4.safetensors")
    plan = _plan(tmp_path, (), quantized=(str(q),), figures=False)
    table = P.run_plan(plan, tmp_path / "out", progress=False)
    f, row = table["rows"]  # the float model is added: the damage metrics need its samples
    assert f["method"] == "fp16" and f["is_float_reference"] and f.get("fid_to_float") is None
    assert row["method"] == "my-fp4" and row["recipe"] == "fp4-rtn" and row["bits_w"] == "4"
    # the damage metrics from their definitions, on the packed sets (pairs = same position)
    a, _ = load_packed(tmp_path / "out" / "fp16" / PACKED)
    b, _ = load_packed(tmp_path / "out" / "my-fp4" / PACKED)
    mse = ((a.astype(float) - b.astype(float)) ** 2).reshape(len(a), -1).mean(axis=1)
    psnr = np.where(mse == 0, 100.0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-300)))
    np.testing.assert_allclose(row["psnr_to_float_db"], np.minimum(psnr, 100).mean(), rtol=1e-12)
    assert row["identical_images"] == np.mean(mse == 0)
    assert 0 <= row["token_agreement"] <= 1 and (row["token_agreement"] == 1) == (row["identical_images"] == 1)
    lo, hi = row["psnr_to_float_db_ci"]
    assert lo <= row["psnr_to_float_db"] <= hi
