"""The real operations (fpqvar.kernels.ops) and their users, on this machine, steered with the test hook
(``FPQVAR_KERNEL_HOOK``) and explicit choices; no assertion depends on which candidate is faster here."""

import pytest
import torch

from fpqvar import kernels
from fpqvar.kernels import int_gemm as IG
from fpqvar.kernels import ops
from fpqvar.quant import kernels_gemm  # noqa: F401 - registers the integer-GEMM operations


def test_every_operation_chooses_one_of_its_candidates():
    for name in kernels.SELECTOR.base_operations():
        op = kernels.SELECTOR.operation(name)
        c = kernels.choice(name, "cpu")
        assert c.name in op.names and c.source == "measured"
        assert c.name in c.times_ms  # the winner was measured at full size
        assert set(c.times_ms) | set(c.dropped) == set(op.names)  # every candidate accounted for


@pytest.mark.parametrize("op", ["int_gemm:16", "int_gemm:64", "int_gemm:127", "galt_grad", "autocast", "ght"])
def test_slow_or_missing_hook_moves_the_choice(op, monkeypatch):
    base, *others = kernels.SELECTOR.operation(op).names
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", ",".join(f"{op}.{o}=slow" for o in others))
    assert kernels.choose(op) == base
    kernels.reset()
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", f"{op}.{base}=missing")
    c = kernels.choice(op)
    assert c.name != base and "missing" in c.dropped[base]


def test_int_gemm_probe_drops_a_wrong_kernel(monkeypatch):
    """An int8 GEMM that saturates (as oneDNN's AVX2 s8s8 kernel does at |values| 127) is not used."""
    real = torch._int_mm

    def saturating(a, b, out=None):
        r = real(a, b).clamp_(-(2**20), 2**20)
        return r if out is None else out.copy_(r)

    monkeypatch.setattr(torch, "_int_mm", saturating)
    # (the other integer candidates missing: what is left to choose from is float32 alone)
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "int_gemm:127.u8s8=missing,int_gemm:127.native=missing")
    c = kernels.choice("int_gemm:127")
    assert c.name == "float32" and "differs from the baseline" in c.dropped["int8"]


def test_int_gemm_probe_drops_a_saturating_u8s8(monkeypatch):
    """u8s8 as oneDNN's AVX2 kernel computes it at |values| 127 (int16 pair sums saturate): not used there."""
    if IG.unavailable("u8s8", torch.device("cpu")):
        pytest.skip(IG.unavailable("u8s8", torch.device("cpu")))
    real = IG.u8s8_mm
    monkeypatch.setattr(IG, "u8s8_mm", lambda a, b: real(a, b).clamp_(-(2**20), 2**20))
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "int_gemm:127.int8=missing,int_gemm:127.native=missing")
    c = kernels.choice("int_gemm:127")
    assert c.name == "float32" and "differs from the baseline" in c.dropped["u8s8"]


def test_fast_path_selects_the_gemm_of_its_operand_class(monkeypatch):
    """FP4 codes (|n| <= 12) use int_gemm:16, FP6 (<= 60) int_gemm:64; a family override sets all classes."""
    import torch.nn as nn

    from fpqvar.quant.qlinear import QuantLinear
    from fpqvar.quant.spec import QuantSpec

    lin = nn.Linear(256, 8)
    x = torch.randn(3, 256, generator=torch.Generator().manual_seed(0))
    fp4, fp6 = QuantSpec("e2m1", "group", 128), QuantSpec("e2m3", "token", None)
    for spec, op in ((fp4, "int_gemm:16"), (fp6, "int_gemm:64")):
        wspec = spec if spec.granularity == "group" else QuantSpec("e2m3", "channel", None)
        q = QuantLinear.from_linear(lin, wspec, spec)
        q.backend = "exact"
        kernels.reset()
        q(x)
        ops = [c["op"] for c in kernels.selection_report()["choices"] if c["op"].startswith("int_gemm")]
        base_ops = {o for o in ops if "@" not in o}
        # (int_gemm:16 may also come from the measurement of int_sums, which runs FP4 codes)
        assert op in base_ops and base_ops <= {op, "int_gemm:16"}
        assert all(o.startswith(op + "@") for o in ops if "@" in o)  # its per-shape refinement, if any
        monkeypatch.setenv("FPQVAR_KERNELS", "int_gemm=float32")
        kernels.reset()
        q(x)
        recs = {c["op"]: c for c in kernels.selection_report()["choices"] if c["op"].startswith("int_gemm")}
        assert {o for o in recs if "@" not in o} <= {op, "int_gemm:16"}
        assert (recs[op]["name"], recs[op]["source"]) == ("float32", "explicit")
        assert all(c["name"] == "float32" for c in kernels.selection_report()["choices"] if "@" in c["op"])
        monkeypatch.delenv("FPQVAR_KERNELS")


def test_resolve_dtype_explicit_auto_and_errors(monkeypatch):
    assert kernels.resolve_dtype("galt_grad", "bfloat16") == torch.bfloat16
    assert kernels.resolve_dtype("galt_grad", torch.float32) == torch.float32
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "galt_grad.bfloat16=slow,autocast.bfloat16=slow")
    assert kernels.resolve_dtype("galt_grad", "auto") == torch.float32
    assert kernels.resolve_dtype("autocast", "auto") == torch.float32
    with pytest.raises(ValueError, match="auto"):
        kernels.resolve_dtype("galt_grad", "float64")
    with pytest.raises(ValueError, match="CUDA only"):
        kernels.resolve_dtype("autocast", "float16", "cpu")


def test_galt_auto_uses_the_measured_dtype(monkeypatch):
    from fpqvar.transforms import galt
    from fpqvar.transforms.hadamard import block_hadamard_matrix

    seen = []
    orig = galt._SiteLoss.apply
    monkeypatch.setattr(galt._SiteLoss, "apply", lambda *a: seen.append(a[-1]) or orig(*a))
    g = torch.Generator().manual_seed(0)
    xs, w = [torch.randn(16, 128, generator=g)], torch.randn(8, 128, generator=g)
    Q = block_hadamard_matrix().float()
    assert galt.GALTConfig().grad_dtype == "auto"
    for hook, want in (("galt_grad.bfloat16=slow", torch.float32), ("galt_grad.float32=missing", torch.bfloat16)):
        kernels.reset()
        monkeypatch.setenv("FPQVAR_KERNEL_HOOK", hook)
        seen.clear()
        galt.learn_galt_lambda(xs, w, Q_block=Q, config=galt.GALTConfig(epochs=1, keep="final"))
        assert seen == [want]
    monkeypatch.delenv("FPQVAR_KERNEL_HOOK")
    seen.clear()
    galt.learn_galt_lambda(xs, w, Q_block=Q, config=galt.GALTConfig(epochs=1, keep="final", grad_dtype="float32"))
    assert seen == [torch.float32]


def test_sampling_dtype_auto(monkeypatch):
    from fpqvar.model.sampling import resolve_dtype

    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "autocast.bfloat16=slow")
    assert resolve_dtype("auto", "cpu") == torch.float32
    kernels.reset()
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "autocast.float32=missing")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16


def test_loop_config_autocast_field():
    from fpqvar.train.loop import LoopConfig

    assert LoopConfig(steps=1).autocast == "auto"
    with pytest.raises(ValueError, match="autocast"):
        LoopConfig(steps=1, autocast="fp8")


def test_threads_default(monkeypatch):
    old = torch.get_num_threads()
    try:
        assert kernels.apply_default_threads(1) == {"threads": 1, "source": "explicit (--threads)"}
        monkeypatch.setenv("FPQVAR_THREADS", "1")
        assert kernels.apply_default_threads(0)["source"] == "FPQVAR_THREADS"
        monkeypatch.setenv("FPQVAR_THREADS", "zero")
        with pytest.raises(ValueError, match="FPQVAR_THREADS"):
            kernels.apply_default_threads(0)
        monkeypatch.delenv("FPQVAR_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        names = kernels.SELECTOR.operation("threads").names
        assert names[0] == "1" and names[-1] == str(ops.affinity_count())
        if len(names) > 1:  # "1" reported slow: the measured default moves to more threads
            monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "threads.1=slow")
        got = kernels.apply_default_threads(0)
        assert got["source"].startswith("measured") and str(got["threads"]) in names
        assert torch.get_num_threads() == got["threads"]
        if len(names) > 1:
            assert got["threads"] > 1
    finally:
        torch.set_num_threads(old)


def test_selection_report_and_summary_are_json():
    import json

    kernels.choose("int_gemm:16")
    r = kernels.selection_report()
    # (its benchmark runs the fast path, which decides the scales-and-sums operation int_sums too)
    assert [c["op"] for c in r["choices"] if c["op"] != "int_sums"] == ["int_gemm:16"] and "cpu_capability" in r
    json.dumps(r)
    assert "int_gemm:16=" in kernels.summary_line()
