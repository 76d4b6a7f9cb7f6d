"""The exact backend's few-row path (fpqvar.quant.fast_lean): EXACT tier, rtol=0 atol=0.

References: the datapath model (fpqvar.hw.datapath) and the general fast path (fast_lean switched off), compared
bit for bit (float32 words, so the sign of zero counts too). Every test runs once per integer GEMM."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fpqvar.hw import datapath as dp
from fpqvar.hw.quantizer_int import quantize_groups
from fpqvar.quant import fast, fast_lean
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec
from fpqvar.transforms.hadamard import OnlineRotation, block_hadamard_matrix, rotate_weight_in
from tests.quant.test_fast import _qlinear, _tie_heavy, gemm_impl, torch_or_native  # noqa: F401 - gemm_impl: autouse

FP4_G = QuantSpec("e2m1", "group", 128)


@pytest.fixture(autouse=True, params=["torch", "native"])
def lean_impl(request):
    """Every test of this file with the PyTorch ops and with the compiled C kernels (fpqvar.kernels.native)."""
    with torch_or_native("lean", request.param) as name:
        yield name


def test_the_requested_lean_kernels_run(lean_impl, monkeypatch, lean_calls):
    from fpqvar.kernels import native

    used = []
    real = native.quantize  # (the C quantizer: every GEMM; the C sums run inside the native GEMM's int_linear)
    monkeypatch.setattr(native, "quantize", lambda *a: used.append(1) or real(*a))
    q, _, _ = _layer(256, 32, dfq=False)
    q(torch.randn(3, 256, generator=torch.Generator().manual_seed(0)))
    assert lean_calls == [True] and bool(used) == (lean_impl == "native")


@pytest.fixture
def lean_calls(monkeypatch):
    """Counts the calls the few-row path served (``True``) and declined (``False``)."""
    seen = []
    real = fast_lean.linear
    monkeypatch.setattr(fast_lean, "linear", lambda *a: (lambda y: seen.append(y is not None) or y)(real(*a)))
    return seen


def _bits(y: torch.Tensor) -> np.ndarray:
    return y.detach().contiguous().view(torch.int32).numpy()


def _general(q, x):
    with fast_lean.disabled():
        return q(x)


def _layer(I, O, dfq, bias=True, ght=False, seed=0, rounding="rne"):
    r = np.random.default_rng(seed)
    w = (r.standard_normal((O, I)) * 0.05).astype(np.float32)
    rot = None
    if ght:
        Q = block_hadamard_matrix()
        w = rotate_weight_in(torch.from_numpy(w), Q).numpy()
        rot = OnlineRotation(Q, I)
    b = r.standard_normal(O).astype(np.float32) if bias else None
    a = QuantSpec("e2m1", "group", 128, dfq="fp4" if dfq else None, rounding=rounding)
    q = _qlinear(w, b, QuantSpec("e2m1", "group", 128, rounding=rounding), a, rotation=rot)
    q.backend = "exact"
    assert np.array_equal(q.weight_codes.numpy(), quantize_groups(w, "e2m1", rounding=rounding)[0])
    return q, w, b


@pytest.mark.parametrize("dfq", [False, True])
@pytest.mark.parametrize("T", [1, 2, 7, 32, 100])
def test_few_rows_equal_datapath_and_general_path(dfq, T, lean_calls):
    q, w, b = _layer(512, 96, dfq, ght=not dfq, seed=T)
    x = torch.from_numpy(np.random.default_rng(100 + T).standard_normal((1, T, 512)).astype(np.float32))
    y = q(x)
    assert lean_calls[-1] is True  # the few-row path served it (P * T <= 200 rows, one block of products)
    f = dp.linear_dfq_through_datapath if dfq else dp.linear_through_datapath
    xr = q.rotation(x) if q.rotation is not None else x
    ref = f(xr.numpy().reshape(-1, 512), w, b).reshape(1, T, 96)
    assert y.shape == (1, T, 96) and np.array_equal(y.numpy(), ref)
    assert np.array_equal(_bits(y), _bits(_general(q, x)))
    assert lean_calls[-1] is False  # switched off, it declines (the comparison is against the general path)


@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
@pytest.mark.parametrize("dfq", [False, True])
def test_ties_are_decided_on_the_exact_quotient(dfq, rounding, lean_calls):
    """Tie-heavy groups (fl32(x / s) exactly a midpoint where x / s is not), an all-zero row and a zero group."""
    q, w, b = _layer(256, 40, dfq, bias=False, rounding=rounding)
    x = _tie_heavy(12, 2, 7)
    if dfq:  # the negative half on DFQ's own grid (E1M2 x 4: step 1 up to 7, where E2M1's step is 2 from 4 on)
        x[6:] = -_tie_heavy(6, 2, 8, (0.125, 0.375, 0.625, 1.125, 1.375, 1.625), 1.75)
    x[3] = 0.0
    x[4, :128] = 0.0
    xt = torch.from_numpy(x)
    y = q(xt)
    assert lean_calls[-1] is True
    f = dp.linear_dfq_through_datapath if dfq else dp.linear_through_datapath
    assert np.array_equal(y.numpy(), f(x, w, None, rounding=rounding))
    assert np.array_equal(_bits(y), _bits(_general(q, xt)))


def test_declines_what_it_does_not_cover(lean_calls, monkeypatch):
    q, w, b = _layer(256, 48, False)
    r = np.random.default_rng(3)
    # too many rows for one block: the general path
    x = torch.from_numpy(r.standard_normal((300, 256)).astype(np.float32))
    assert np.array_equal(_bits(q(x)), _bits(_general(q, x))) and lean_calls[-1] is False
    # a unit that does not fold (activation scales near the bottom of the normal range): the literal order
    tiny = torch.from_numpy((r.standard_normal((3, 256)) * 2.0**-119).astype(np.float32))
    y = q(tiny)
    assert lean_calls[-1] is False
    assert np.array_equal(y.numpy(), dp.linear_through_datapath(tiny.numpy(), w, b))
    # non-finite input: the quantizer refuses it, the reference path answers (as without this path)
    bad = x[:4].clone()
    bad[1, 5] = float("nan")
    assert np.array_equal(_bits(q(bad)), _bits(_general(q, bad)))
    # a shape not decided yet goes the general way once (its per-shape measurement needs the call's operands)
    monkeypatch.setattr(fast_lean, "KT", SimpleNamespace(decided=lambda *a: None))
    q(x[:5])
    assert lean_calls[-1] is False


def test_only_dynamic_per_group_activations_get_a_lean_form():
    lin_w = np.random.default_rng(0).standard_normal((32, 256)).astype(np.float32)
    group = _qlinear(lin_w, None, FP4_G, FP4_G)
    token = _qlinear(lin_w, None, FP4_G, QuantSpec("e2m1", "token", None))
    lin = torch.nn.Linear(256, 32, bias=False)
    static = QuantLinear.from_linear(lin, FP4_G, QuantSpec("e2m1", "group", 128, static=True),
                                     act_scale=torch.ones(2))
    assert fast.plan_for(group).lean is not None
    assert fast.plan_for(token).lean is None
    assert fast.plan_for(static).lean is None


def test_native_serves_more_rows_than_the_torch_ops(lean_impl, lean_calls):
    """600 rows of parts: beyond MAX_ROWS (the PyTorch ops decline), within MAX_ROWS_NATIVE (the C kernels serve)."""
    q, w, b = _layer(256, 48, dfq=True, seed=11)
    x = torch.from_numpy(np.random.default_rng(12).standard_normal((300, 256)).astype(np.float32))
    y = q(x)
    assert lean_calls[-1] is (lean_impl == "native")
    assert np.array_equal(y.numpy(), dp.linear_dfq_through_datapath(x.numpy(), w, b))
    assert np.array_equal(_bits(y), _bits(_general(q, x)))


def test_the_native_product_limit_is_per_thread(lean_impl, lean_calls, monkeypatch, gemm_impl):  # noqa: F811
    if lean_impl != "native":
        pytest.skip("the native limits only")
    # (the native GEMM keeps no products in memory: no product limit)
    expect_declined = gemm_impl != "native"
    q, _, _ = _layer(256, 48, dfq=False, seed=13)
    x = torch.randn(10, 256, generator=torch.Generator().manual_seed(14))  # 2 * 10 * 48 = 960 products
    monkeypatch.setattr(fast_lean, "MAX_PRODUCTS_NATIVE", 1920)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        q(x)
        assert lean_calls[-1] is True  # 960 <= 1920 // 2
        torch.set_num_threads(3)
        q(x)
        assert lean_calls[-1] is not expect_declined  # 960 > 1920 // 3
    finally:
        torch.set_num_threads(before)
