"""Issue 16.2 and 16.6: a rerun into the same --out never reuses results made from something else (recipe content,
quantized file bytes), and a damaged packed set in a finished folder is rebuilt, not trusted."""

from __future__ import annotations

import json

import numpy as np

from fpqvar.eval.sample_set import PACKED, load_packed
from fpqvar.quant.recipes import get_recipe
from tests.reliability.conftest import EVAL_SMALL, assert_clean_error, cli


def _row(text: str, method: str) -> dict:
    return next(r for r in json.loads(text)["rows"] if r["method"] == method)


def _recipe_file(path, base: str):
    d = get_recipe(base).to_dict()
    d["name"] = path.stem
    path.write_text(json.dumps(d))
    return path


def test_edited_recipe_json_is_not_resumed(tmp_path):
    recipe = _recipe_file(tmp_path / "mine.json", "int4-rtn-strict")
    out = tmp_path / "o"
    code, text = cli(*EVAL_SMALL, "--recipes", recipe, "--out", out, "--json")
    assert code == 0, text
    assert _row(text, "mine")["bits_w"] == "4"
    _recipe_file(recipe, "int6-rtn-strict")  # int4 -> int6 under the same file name
    # decision: a cached result made from other inputs is refused, naming what changed (never silently reused,
    # never silently deleted: the folder may hold hours of samples)
    code, text = cli(*EVAL_SMALL, "--recipes", recipe, "--out", out, "--json")
    assert_clean_error(code, text, "recipe content", str(out / "mine"))
    (out / "mine" / "metrics.json").unlink()  # the second half of the scenario: no metrics.json either
    code, text = cli(*EVAL_SMALL, "--recipes", recipe, "--out", out, "--json")
    assert_clean_error(code, text, "recipe content")
    _recipe_file(recipe, "int4-rtn-strict")  # the original content again: resumed, the int4 row
    code, text = cli(*EVAL_SMALL, "--recipes", recipe, "--out", out, "--json")
    assert code == 0, text
    assert _row(text, "mine")["bits_w"] == "4"


def test_replaced_quantized_file_is_not_resumed(weights, tmp_path):
    var, vae = weights
    q = tmp_path / "q.safetensors"

    def quantize(recipe):
        code, text = cli("quantize", "--ckpt", var, "--vae", vae, "--recipe", recipe, "--out", q, "--no-progress")
        assert code == 0, text

    quantize("int4-rtn")
    out = tmp_path / "o"
    code, text = cli(*EVAL_SMALL, "--quantized", q, "--out", out, "--json")
    assert code == 0, text
    quantize("int6-rtn")  # another file under the same path
    code, text = cli(*EVAL_SMALL, "--quantized", q, "--out", out, "--json")
    assert_clean_error(code, text, "quantized file bytes", str(out / "q"))


def test_corrupted_packed_set_is_rebuilt_on_rerun(tmp_path):
    out = tmp_path / "o"
    code, text = cli(*EVAL_SMALL, "--recipes", "fp16", "--out", out, "--json")
    assert code == 0, text
    packed = out / "fp16" / PACKED
    images, labels = load_packed(packed)
    row = json.loads(text)["rows"][0]
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside arr_0
    packed.write_bytes(bytes(data))
    code, text = cli(*EVAL_SMALL, "--recipes", "fp16", "--out", out, "--json")
    assert code == 0, text
    again, labels2 = load_packed(packed)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(labels2, labels)
    assert json.loads(text)["rows"][0]["fid"] == row["fid"]
    packed.write_bytes(b"not an npz")  # truncated to garbage
    code, text = cli(*EVAL_SMALL, "--recipes", "fp16", "--out", out)
    assert code == 0, text
    np.testing.assert_array_equal(load_packed(packed)[0], images)
