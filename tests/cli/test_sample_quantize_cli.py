"""`fpqvar quantize` / `fpqvar sample` on a random model of the default config (weights passed with --ckpt /
--vae, so the shipped assets are not needed)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fpqvar.cli import app
from fpqvar.model import build_var, build_vqvae
from fpqvar.model.checkpoints import save_state_dict
from fpqvar.model.zoo import DEFAULT_VAE, DEFAULT_VAR

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)  # test-local: the random model's initialisation
    vae = build_vqvae(DEFAULT_VAE)
    var = build_var(vae, DEFAULT_VAR)
    var.init_weights(generator=torch.Generator().manual_seed(0), init_adaln_gamma=0.5, init_head=1.0)
    save_state_dict(vae, d / "vae.safetensors")
    save_state_dict(var, d / "var.safetensors")
    return d / "var.safetensors", d / "vae.safetensors"


def _run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def test_list_recipes():
    out = json.loads(_run("quantize", "--list-recipes", "--json"))
    names = [r["name"] for r in out["recipes"]]
    assert "fpqvar-w4a4" in names and "fp16" in names and "litevar-w6a6" in names
    # every recipe the harness issue names is listed, with its source
    for n in ("int4-rtn", "int6-rtn", "int4-rtn-strict", "litevar-w4a4", "fp4-mixed", "fp6-mixed", "fpqvar-dfq",
              "fpqvar-dfq-ght", "fpqvar-dfq-fullht", "fpqvar-w6a6", "quarot-w4a4", "smoothquant-w8a8",
              "smoothquant-w6a6"):
        assert n in names, n
    by = {r["name"]: r for r in out["recipes"]}
    assert "EkaterinaXie/LiteVAR" in by["litevar-w4a4"]["source"]


def test_quantize_then_sample_equals_in_memory(weights, tmp_path):
    ckpt, vae = weights
    q = tmp_path / "q.safetensors"
    out = json.loads(_run("quantize", "--model", "default", "--ckpt", ckpt, "--vae", vae, "--recipe",
                          "fpqvar-w6a6", "--out", q, "--no-progress", "--json"))
    assert out["num_quantized_layers"] == 24 and q.is_file()
    grid = tmp_path / "grid.png"
    info = json.loads(_run("sample", "--model", "default", "--vae", vae, "--quantized", q, "--classes", "0,3,7",
                           "--out", grid, "--out-dir", tmp_path / "imgs", "--nrow", "2", "--json"))
    assert len(info["written"]) == 4
    g = np.asarray(Image.open(grid))
    assert g.shape == (2 + 2 * 34, 2 + 2 * 34, 3)  # 3 images of 32x32, 2 per row, padding 2
    # the same model quantized in memory gives the same pixels
    from fpqvar.cli.sample_cmd import load_float_model
    from fpqvar.eval.grid import to_uint8_hwc
    from fpqvar.model.sampling import decode_images, sample_tokens
    from fpqvar.quant import quantize_

    var = load_float_model("default", ckpt, vae, "cpu")
    quantize_(var, "fpqvar-w6a6", progress=False)
    res = sample_tokens(var, 3, [0, 3, 7], seed=0, cfg=1.5, top_k=900, top_p=0.96)
    tiles = to_uint8_hwc(decode_images(var, res.f_hat))
    one = np.asarray(Image.open(tmp_path / "imgs" / "00001_class3.png"))
    assert np.array_equal(one, tiles[1])
    assert np.array_equal(g[2:34, 36:68], tiles[1])


def test_quantize_recipe_json_with_report(weights, tmp_path):
    from fpqvar.quant.recipes import get_recipe

    ckpt, vae = weights
    r = get_recipe("fpqvar-w4a4")
    from fpqvar.quant.steps import GALT
    from fpqvar.transforms.galt import GALTConfig

    r = dataclasses.replace(r, name="w4a4-quick", transforms=tuple(
        GALT(sites=t.sites, config=GALTConfig(epochs=1)) if t.KIND == "galt" else t for t in r.transforms))
    rp = tmp_path / "r.json"
    rp.write_text(r.to_json())
    rep = tmp_path / "rep.json"
    _run("quantize", "--model", "default", "--ckpt", ckpt, "--vae", vae, "--recipe", rp, "--out",
         tmp_path / "q.safetensors", "--num-calib", "2", "--max-tokens-per-scale", "32", "--report", rep,
         "--no-progress")
    d = json.loads(rep.read_text())
    assert d["recipe"]["name"] == "w4a4-quick"
    stages = {r["stage"] for r in d["sqnr"]}
    assert {"rtn", "dfq", "rotation", "galt", "final"} <= stages
    assert "| layer | scale |" in (tmp_path / "rep.md").read_text()


def test_errors_are_clear(weights, tmp_path):
    ckpt, vae = weights
    res = runner.invoke(app, ["quantize", "--recipe", "nope", "--out", str(tmp_path / "x.safetensors")])
    assert res.exit_code != 0 and "unknown recipe 'nope'" in res.output
    res = runner.invoke(app, ["sample", "--model", "default", "--ckpt", str(ckpt), "--vae", str(vae),
                              "--classes", "3,12", "--out", str(tmp_path / "g.png")])
    assert res.exit_code != 0 and "[12] out of range 0..9" in res.output
    res = runner.invoke(app, ["sample", "--model", "var-d16", "--vae", str(vae), "--quantized",
                              str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "g.png")])
    assert res.exit_code != 0 and "not found" in res.output


def test_make_grid_layout():
    from fpqvar.eval.grid import make_grid

    imgs = torch.zeros(5, 3, 4, 4)
    imgs[4] = 1.0
    g = make_grid(imgs, nrow=2, padding=1)
    assert g.shape == (1 + 3 * 5, 1 + 2 * 5, 3)
    assert (g[11:15, 1:5] == 255).all() and (g[1:5, 1:5] == 0).all() and (g[11:15, 6:10] == 255).all()


def test_quantize_calib_select_dgc_records_the_share(weights, tmp_path, monkeypatch):
    """--calib-select dgc runs PTQ4ARVG's selection (the share it computes reaches the calibration config and the
    report); a bad value is refused with the known ones."""
    import fpqvar.quant.dgc as dgc

    shares = []
    real = dgc.cond_share
    monkeypatch.setattr(dgc, "cond_share", lambda *a, **k: shares.append(real(*a, **k)) or shares[-1])
    ckpt, vae = weights
    out = json.loads(_run("quantize", "--model", "default", "--ckpt", ckpt, "--vae", vae, "--recipe", "fp4-rtn",
                          "--out", tmp_path / "q.safetensors", "--num-calib", 4, "--calib-batch", 2,
                          "--report", tmp_path / "r.json", "--calib-select", "dgc", "--no-progress", "--json"))
    assert len(shares) == 1 and out["calibration"]["cond_share"] == shares[0]
    res = runner.invoke(app, ["quantize", "--model", "default", "--recipe", "fp4-rtn", "--out",
                              str(tmp_path / "x.safetensors"), "--calib-select", "entropy"])
    assert res.exit_code == 2 and "dgc" in res.output
