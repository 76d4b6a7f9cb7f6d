"""Issue 16.4 (float checkpoints): a tensor of the wrong kind (integers into float parameters) or a non-finite
weight is refused at load, naming the file and the key (before: garbage PNGs with rc 0, or a traceback from
torch.multinomial naming no file)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.reliability.conftest import EVAL_SMALL, assert_clean_error, cli


def _edit(path, key, fn):
    sd = load_file(str(path))
    assert key in sd, sorted(sd)[:10]
    sd[key] = fn(sd[key])
    save_file(sd, str(path))


@pytest.mark.parametrize("key", ["blocks.0.attn.proj.weight", "head.weight"])
def test_integer_tensor_in_var_checkpoint(weights, tmp_path, key):
    var, vae = weights
    _edit(var, key, lambda t: (t * 100).to(torch.int32))
    code, out = cli("sample", "--ckpt", var, "--vae", vae, "--classes", "0", "--out", tmp_path / "g.png")
    assert_clean_error(code, out, str(var), key, "int32")
    assert not (tmp_path / "g.png").exists()


def test_nan_weight_in_var_checkpoint(weights, tmp_path):
    var, vae = weights

    def nan(t):
        t = t.clone()
        t.view(-1)[7] = float("nan")
        return t

    _edit(var, "head.weight", nan)
    code, out = cli("sample", "--ckpt", var, "--vae", vae, "--classes", "0", "--out", tmp_path / "g.png")
    assert_clean_error(code, out, str(var), "head.weight", "NaN")
    code, out = cli(*EVAL_SMALL, "--ckpt", var, "--vae", vae, "--out", tmp_path / "o")
    assert_clean_error(code, out, str(var), "head.weight")


def test_inf_and_integer_tensors_in_vqvae_checkpoint(weights, tmp_path):
    var, vae = weights
    sd = load_file(str(vae))
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.ndim == 4)
    _edit(vae, key, lambda t: t.to(torch.int16))
    code, out = cli("sample", "--ckpt", var, "--vae", vae, "--classes", "0", "--out", tmp_path / "g.png")
    assert_clean_error(code, out, str(vae), key, "int16")
    save_file(sd, str(vae))
    _edit(vae, key, lambda t: torch.full_like(t, float("inf")))
    code, out = cli("sample", "--ckpt", var, "--vae", vae, "--classes", "0", "--out", tmp_path / "g.png")
    assert_clean_error(code, out, str(vae), key, "inf")


def test_nan_in_classifier(default_assets, tmp_path):
    sd = load_file(str(default_assets.classifier))
    sd["fc.weight"] = sd["fc.weight"].clone()
    sd["fc.weight"][0, 0] = float("nan")
    bad = tmp_path / "classifier.safetensors"
    save_file(sd, str(bad))
    code, out = cli(*EVAL_SMALL, "--classifier", bad, "--out", tmp_path / "o")
    assert_clean_error(code, out, str(bad), "fc.weight")
    assert not (tmp_path / "o" / "fp16" / "units").exists()  # refused before sampling
