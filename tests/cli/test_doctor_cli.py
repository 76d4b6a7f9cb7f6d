"""`fpqvar doctor` and the kernel choices in the CLI's --json outputs."""

import json

from typer.testing import CliRunner

from fpqvar import kernels
from fpqvar.cli import app
from fpqvar.quant import kernels_gemm  # noqa: F401 - registers the integer-GEMM operations

runner = CliRunner()


def test_doctor_json_lists_machine_tools_and_every_operation(monkeypatch):
    kernels.reset()
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "galt_grad.bfloat16=missing")
    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    m = d["machine"]
    assert m["cpu_capability"] and m["torch_build"]["version"] and m["threads"] >= 1
    assert d["threads_choice"]["source"] == "FPQVAR_THREADS"  # tests/conftest.py pins it
    assert {"c_compiler", "yosys", "iverilog", "cocotb", "cuda", "triton", "inception_weights",
            "official_checkpoints"} <= set(d["tools"])
    rows = {r["op"]: r for r in d["kernels"] if r["device"] == "cpu"}
    assert set(rows) == set(kernels.SELECTOR.base_operations())
    assert rows["galt_grad"]["name"] == "float32" and "missing" in rows["galt_grad"]["dropped"]["bfloat16"]
    assert all(r["name"] in r["times_ms"] for r in rows.values())
    kernels.reset()


def test_doctor_text_names_each_operation():
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 0, res.output
    for op in kernels.SELECTOR.base_operations():
        assert f"  {op} " in res.output
    assert "torch capability" in res.output


def test_quantize_and_sample_json_carry_the_kernel_choices(tmp_path, monkeypatch):
    import torch

    from fpqvar.model import build_var, build_vqvae
    from fpqvar.model.checkpoints import save_state_dict
    from fpqvar.model.zoo import DEFAULT_VAE, DEFAULT_VAR

    torch.manual_seed(0)  # test-local: the random model's initialisation
    vae = build_vqvae(DEFAULT_VAE)
    var = build_var(vae, DEFAULT_VAR)
    var.init_weights(generator=torch.Generator().manual_seed(0))
    save_state_dict(vae, tmp_path / "vae.safetensors")
    save_state_dict(var, tmp_path / "var.safetensors")
    kernels.reset()
    res = runner.invoke(app, ["quantize", "--model", "default", "--ckpt", str(tmp_path / "var.safetensors"),
                              "--vae", str(tmp_path / "vae.safetensors"), "--recipe", "fp4-rtn", "--out",
                              str(tmp_path / "q.safetensors"), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    assert "cpu_capability" in json.loads(res.output)["kernels"]
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "autocast.bfloat16=slow")
    res = runner.invoke(app, ["sample", "--model", "default", "--vae", str(tmp_path / "vae.safetensors"),
                              "--quantized", str(tmp_path / "q.safetensors"), "--backend", "exact", "--classes",
                              "1", "--dtype", "auto", "--out", str(tmp_path / "g.png"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["dtype"] == "float32" and info["dtype_requested"] == "auto"
    ops = {c["op"] for c in info["kernels"]["choices"]}
    assert {"autocast", "int_gemm:16"} <= ops  # the exact backend ran its integer GEMMs (FP4 codes)
    res = runner.invoke(app, ["sample", "--model", "default", "--vae", str(tmp_path / "vae.safetensors"),
                              "--quantized", str(tmp_path / "q.safetensors"), "--dtype", "float16", "--out",
                              str(tmp_path / "g.png")])
    assert res.exit_code != 0 and "CUDA only" in res.output
    kernels.reset()
