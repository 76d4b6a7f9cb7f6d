"""Issue 16.1 and the output half of 16.11: an output never destroys an input, another output of the same command,
or the installed package's assets; a wrong-type or unusable output path is refused before any work."""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import EVAL_SMALL, assert_clean_error, cli


def _quantize(ckpt, vae, out, *extra):
    return cli("quantize", "--model", "default", "--ckpt", ckpt, "--vae", vae, "--recipe", "int4-rtn", "--out", out,
               "--no-progress", "--num-calib", "2", "--calib-batch", "2", *extra)


def test_quantize_out_equal_to_ckpt_is_refused(weights):
    var, vae = weights
    before = var.read_bytes()
    code, out = _quantize(var, vae, var)
    assert_clean_error(code, out, "--out", "--ckpt")
    assert var.read_bytes() == before


def test_quantize_out_equal_to_vae_through_another_spelling_is_refused(weights, tmp_path, monkeypatch):
    var, vae = weights
    monkeypatch.chdir(tmp_path)
    before = vae.read_bytes()
    code, out = _quantize(var, vae, "./sub/../vqvae.safetensors")  # resolves to the --vae file
    assert_clean_error(code, out, "--vae")
    assert vae.read_bytes() == before


def test_sample_out_equal_to_ckpt_is_refused(weights):
    var, vae = weights
    before = var.read_bytes()
    code, out = cli("sample", "--ckpt", var, "--vae", vae, "--classes", "0", "--out", var)
    assert_clean_error(code, out, "--out", "--ckpt")
    assert var.read_bytes() == before


def test_report_equal_to_out_is_refused(weights, tmp_path):
    var, vae = weights
    q = tmp_path / "q.safetensors"
    code, out = _quantize(var, vae, q, "--report", q)
    assert_clean_error(code, out, "--report", "--out")
    assert not q.exists()


def test_report_suffix_decides_the_format(weights, tmp_path):
    """Rule: --report X.json or X.md writes both X.json (JSON) and X.md (Markdown); the suffix never makes one
    overwrite the other (before: --report foo.md got the JSON, then the Markdown over it)."""
    var, vae = weights
    code, out = _quantize(var, vae, tmp_path / "q.safetensors", "--report", tmp_path / "rep.md")
    assert code == 0, out
    data = json.loads((tmp_path / "rep.json").read_text())
    assert data["recipe"]["name"] == "int4-rtn"
    md = (tmp_path / "rep.md").read_text()
    assert md.lstrip().startswith(("#", "|")) and not md.lstrip().startswith("{")
    code, out = _quantize(var, vae, tmp_path / "q2.safetensors", "--report", tmp_path / "rep.txt")
    assert_clean_error(code, out, "--report", ".json", ".md")


def test_eval_out_equal_to_quantized_input_is_refused(weights, tmp_path):
    var, vae = weights
    q = tmp_path / "q.safetensors"
    code, out = _quantize(var, vae, q)
    assert code == 0, out
    before = q.read_bytes()
    code, out = cli(*EVAL_SMALL, "--quantized", q, "--out", q)
    assert_clean_error(code, out, "--out")
    assert q.read_bytes() == before


def test_outputs_into_the_package_assets_are_refused(probe_in_assets):
    png = probe_in_assets("probe.png")
    assert_clean_error(*cli("sample", "--classes", "0", "--out", png), "assets")
    assert not png.exists()
    d = probe_in_assets("probe_eval")
    assert_clean_error(*cli(*EVAL_SMALL, "--out", d), "assets")
    assert not d.exists()
    q = probe_in_assets("probe.safetensors")
    assert_clean_error(*cli("quantize", "--recipe", "int4-rtn", "--out", q, "--no-progress"), "assets")
    assert not q.exists()
    rtl = probe_in_assets("probe_rtl")
    assert_clean_error(*cli("hw", "rtl", "--unit", "fp4_mul", "--out", rtl), "assets")
    assert not rtl.exists()
    tr = probe_in_assets("probe_train")
    assert_clean_error(*cli("train", "classifier", "--steps", "1", "--out", tr), "assets")
    assert not tr.exists()


def test_wrong_type_outputs_are_refused_before_work(weights, tmp_path):
    var, vae = weights
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    assert_clean_error(*cli("sample", "--ckpt", var, "--vae", vae, "--classes", "0", "--out", a_dir), str(a_dir))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert_clean_error(*cli(*EVAL_SMALL, "--out", a_file), str(a_file))
    assert a_file.read_text() == "x"
    # the parent of the output is a file: nothing can be written there
    assert_clean_error(*_quantize(var, vae, a_file / "q.safetensors"), str(a_file))


def test_unwritable_output_folder_is_refused_before_work(weights, tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root from writing")
    var, vae = weights
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert_clean_error(*_quantize(var, vae, ro / "q.safetensors"), str(ro))
    finally:
        ro.chmod(0o700)
