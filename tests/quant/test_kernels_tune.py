"""Per-shape choice of the exact integer GEMM (fpqvar.quant.kernels_tune). The selector's decisions are steered
with its test hook (a candidate reported slow); no test asserts on wall time."""

import pytest
import torch
import torch.nn as nn

from fpqvar import kernels
from fpqvar.quant import kernels_tune as KT
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec

FP4 = QuantSpec("e2m1", "group", 128)


@pytest.fixture
def fresh_selector():
    kernels.SELECTOR.reset()
    yield
    kernels.SELECTOR.reset()


def _layer(I=256, O=48, dfq=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(I, O)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(O, I, generator=g) * I**-0.5)
    a = QuantSpec("e2m1", "group", 128, dfq="fp4") if dfq else FP4
    q = QuantLinear.from_linear(lin, FP4, a)
    q.backend = "exact"
    return q


def test_row_buckets():
    assert [KT.row_bucket(t) for t in (1, 2, 3, 8, 9, 200, 256, 257, 10**6)] == [1, 2, 4, 8, 16, 256, 256, 256, 256]


@pytest.mark.parametrize("slow", ["int8", "float32"])
def test_each_shape_gets_the_measured_faster_gemm(slow, monkeypatch, fresh_selector):
    base = kernels.choice("int_gemm:16")
    if len([n for n in base.times_ms if n not in base.dropped]) < 2:
        pytest.skip(f"only one integer GEMM can run here: {base.dropped}")
    q = _layer()
    x = torch.randn(40, 256, generator=torch.Generator().manual_seed(1))
    ref = q(x)  # measures this shape's decision
    kernels.SELECTOR.reset()
    name = None
    seen = []
    real = KT._op_name  # every decision (kernels_tune.choose and .decided) is looked up by this name
    monkeypatch.setattr(KT, "_op_name", lambda *a: seen.append(real(*a)) or real(*a))
    for op in list(kernels.SELECTOR.operations):  # (other tests or the run order may have left other shapes)
        if op.startswith("int_gemm:16@256x48s128p1r64"):
            name = op
    assert name is not None
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", f"{name}.{slow}=slow")
    y = q(x)
    assert seen and set(seen) == {name}
    chosen = kernels.choice(name)
    assert chosen.name != slow and chosen.source == "measured"
    assert torch.equal(y, ref)  # every candidate gives the same bits


def test_a_shape_leaves_the_base_choice_only_by_the_margin(fresh_selector):
    base = kernels.choice("int_gemm:16")
    if len([n for n in base.times_ms if n not in base.dropped]) < 2:
        pytest.skip(f"only one integer GEMM can run here: {base.dropped}")
    q = _layer(seed=4)
    q(torch.randn(6, 256, generator=torch.Generator().manual_seed(5)))
    names = [o for o in kernels.SELECTOR.operations if o.startswith("int_gemm:16@256x48s128p1r8")]
    assert len(names) == 1
    op = kernels.SELECTOR.operation(names[0])
    assert op.candidates[0].name == base.name  # the baseline the margin protects
    assert sorted(c.name for c in op.candidates) == sorted(n for n in base.times_ms if n not in base.dropped)
    assert op.margin == KT.TUNE_MARGIN > 1.0 and op.min_seconds == KT.TUNE_MIN_SECONDS > 0.0


def test_explicit_choice_wins_and_registers_nothing(fresh_selector):
    q = _layer(dfq=True, I=512, O=40)
    x = torch.randn(9, 512, generator=torch.Generator().manual_seed(2))
    before = set(kernels.SELECTOR.operations)
    with kernels.override(int_gemm="float32"):
        y32 = q(x)
    with kernels.override(int_gemm="int8"):
        y8 = q(x)
    assert set(kernels.SELECTOR.operations) == before
    assert torch.equal(y32, y8)


def test_decisions_are_reported_compactly(fresh_selector):
    base = kernels.choice("int_gemm:16")
    if len([n for n in base.times_ms if n not in base.dropped]) < 2:
        pytest.skip("only one integer GEMM can run here")
    q = _layer()
    for T in (3, 40):
        q(torch.randn(T, 256, generator=torch.Generator().manual_seed(T)))
    ops = [c["op"] for c in kernels.selection_report()["choices"]]
    assert sum("@" in o for o in ops) == 2
    line = kernels.summary_line()
    assert "int_gemm:16 per layer shape: " in line and "@" not in line
    counts = line.split("per layer shape: ")[1].split(";")[0]
    assert sum(int(c.rsplit("x", 1)[1]) for c in counts.split(", ")) == 2


def test_a_gone_layer_is_not_kept_alive(fresh_selector):
    import gc
    import weakref

    base = kernels.choice("int_gemm:16")
    if len([n for n in base.times_ms if n not in base.dropped]) < 2:
        pytest.skip("only one integer GEMM can run here")
    from fpqvar.quant import fast

    q = _layer(seed=3)
    q(torch.randn(5, 256))
    ref = weakref.ref(fast.plan_for(q).weight)
    del q
    gc.collect()
    assert ref() is None
