"""Issue 16.11: every bad input gets a clear error (exit code 2, no traceback) before any work starts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fpqvar.quant.recipes import get_recipe
from tests.reliability.conftest import EVAL_SMALL, assert_clean_error, cli


def _no_units(out):
    return not any(out.glob("*/units/*.npz"))


def test_bad_recipe_late_in_the_list_fails_before_sampling(tmp_path):
    out = tmp_path / "o"
    assert_clean_error(*cli(*EVAL_SMALL, "--recipes", "fp16,int4-rtn,no-such-recipe", "--out", out),
                       "no-such-recipe")
    assert _no_units(out)


def test_recipe_whose_activation_group_does_not_divide_the_width(tmp_path):
    d = get_recipe("int4-rtn").to_dict()
    d["name"] = "g96"
    d["rules"][0]["act"].update(granularity="group", group_size=96)  # 96 does not divide the width 256
    bad = tmp_path / "g96.json"
    bad.write_text(json.dumps(d))
    out = tmp_path / "o"
    assert_clean_error(*cli(*EVAL_SMALL, "--recipes", f"fp16,{bad}", "--out", out), "96")
    assert _no_units(out) and not (out / "g96" / "quantized.safetensors").exists()


def test_malformed_quantized_file_fails_before_sampling(tmp_path):
    from safetensors.torch import save_file

    from fpqvar.quant.export import FORMAT_NAME

    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(2)}, str(bad),
              metadata={"fpqvar.format": FORMAT_NAME, "fpqvar.format_version": "1", "recipe": "{not json"})
    out = tmp_path / "o"
    assert_clean_error(*cli(*EVAL_SMALL, "--recipes", "fp16", "--quantized", bad, "--out", out), str(bad))
    assert _no_units(out)


def test_non_npz_reference(tmp_path):
    ref = tmp_path / "ref.npz"
    ref.write_text("hello")
    code, out = cli(*EVAL_SMALL, "--reference", ref, "--out", tmp_path / "o")
    assert_clean_error(code, out, str(ref))
    assert "allow_pickle" not in out
    obj = tmp_path / "obj.npz"
    np.savez(obj, mu=np.array([{"a": 1}], dtype=object))  # an object array: needs pickle, must be refused
    code, out = cli(*EVAL_SMALL, "--reference", obj, "--out", tmp_path / "o")
    assert_clean_error(code, out, str(obj))
    assert "allow_pickle" not in out


@pytest.mark.parametrize("cmd", [["sample", "--classes", "0", "--out", "{tmp}/g.png"],
                                 [*EVAL_SMALL, "--out", "{tmp}/o"]])
@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1"])
def test_out_of_range_seed(tmp_path, cmd, seed):
    args = [a.replace("{tmp}", str(tmp_path)) for a in cmd]
    assert_clean_error(*cli(*args, "--seed", seed), "--seed")


def test_nrow_zero(tmp_path):
    assert_clean_error(*cli("sample", "--classes", "0", "--nrow", "0", "--out", tmp_path / "g.png"), "--nrow")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("cmd", [["sample", "--classes", "0", "--out", "{tmp}/g.png"],
                                 ["quantize", "--recipe", "int4-rtn", "--out", "{tmp}/q.safetensors"],
                                 [*EVAL_SMALL, "--out", "{tmp}/o"]])
def test_bogus_device(tmp_path, cmd):
    args = [a.replace("{tmp}", str(tmp_path)) for a in cmd]
    assert_clean_error(*cli(*args, "--device", "bogus"), "--device", "bogus")


def test_rejected_pickle_does_not_advise_unsafe_loading(tmp_path, capfd):
    class Evil:
        def __reduce__(self):
            return (print, ("PWNED",))

    evil = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, evil)
    code, out = cli("sample", "--ckpt", evil, "--classes", "0", "--out", tmp_path / "g.png")
    assert_clean_error(code, out, str(evil))
    for advice in ("weights_only=False", "can still be loaded", "trust the source"):
        assert advice not in out
    assert "PWNED" not in out + capfd.readouterr().out


def test_classes_means_the_same_in_sample_and_eval(tmp_path):
    """Decision: --classes is a list of class ids (with ranges) in both commands; '3' is class 3."""
    code, out = cli("sample", "--classes", "3", "--out", tmp_path / "g.png", "--json")
    assert code == 0, out
    assert json.loads(out)["classes"] == [3]
    from fpqvar.eval.sample_set import load_packed

    code, out = cli("eval", "--classes", "3", "--per-class", "4", "--batch", "4", "--top-k", "20", "--no-figures",
                    "--no-progress", "--out", tmp_path / "o")
    assert code == 0, out
    _, labels = load_packed(tmp_path / "o" / "fp16" / "samples.npz")
    assert labels.tolist() == [3, 3, 3, 3]
