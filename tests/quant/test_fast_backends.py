"""Optional fast backends (torch.compile, CUDA, Triton): bit for bit equal to the plain-PyTorch CPU path, which
tests/quant/test_fast.py checks against the datapath model. EXACT tier."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from fpqvar.quant import fast
from fpqvar.quant import kernels_gemm as KG
from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec

FP4_G = QuantSpec("e2m1", "group", 128)
SPECS = [  # (weight, activation): W4A4, DFQ fp4, FP6 per token / channel, DFQ fp6
    (FP4_G, FP4_G),
    (FP4_G, QuantSpec("e2m1", "group", 128, dfq="fp4")),
    (QuantSpec("e2m3", "channel", None), QuantSpec("e2m3", "token", None)),
    (QuantSpec("e2m3", "channel", None), QuantSpec("e2m3", "token", None, dfq="fp6")),
]


def _ties(T, I, seed):
    """Elements one float32 ulp beside ``midpoint * s`` (the exact-quotient repair path) plus Gaussian data."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((T, I)).astype(np.float32)
    g = x.reshape(T, -1, 128)
    s = (np.abs(g).max(-1, keepdims=True) / np.float32(6)).astype(np.float32)
    near = (np.float32(0.75) * s).astype(np.float32) * np.sign(g[..., 1:9])
    g[..., 1:9] = np.nextafter(near, np.float32(np.inf))
    return torch.from_numpy(x)


def _module(ws, as_, rounding, seed=0):
    r = np.random.default_rng(seed)
    lin = nn.Linear(512, 72)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(r.standard_normal((72, 512)).astype(np.float32) * 0.05))
        lin.bias.copy_(torch.from_numpy(r.standard_normal(72).astype(np.float32)))
    as_ = QuantSpec.from_dict({**as_.to_dict(), "rounding": rounding})
    return QuantLinear.from_linear(lin, ws, as_)


def _compare(backend, device, Ts=(1, 8, 50, 338)):
    """``backend`` on ``device`` against the eager CPU path, for every spec, rounding and token count."""
    for ws, as_ in SPECS:
        for rounding in ("rne", "ties_up"):
            q = _module(ws, as_, rounding)
            q.backend = "exact"
            qd = copy.deepcopy(q).to(device)
            qd.backend = backend
            for T in Ts:
                x = _ties(T, 512, T)
                assert torch.equal(qd(x.to(device)).cpu(), q(x)), (backend, as_.short(), rounding, T)


@pytest.mark.slow
def test_compile_backend_bit_exact_cpu():
    """torch.compile'd quantizer and accumulator: same bits as the eager path (first call compiles: ~1-2 min)."""
    _compare("compile", "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_exact_backend_on_cuda_equals_cpu():
    _compare("exact", "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_triton_backend_equals_cpu():
    from fpqvar.quant import kernels_triton

    why = kernels_triton.unavailable_reason("cuda")
    if why is not None:
        pytest.skip(why)
    _compare("triton", "cuda")


def test_triton_refusal_names_the_reason():
    from fpqvar.quant import kernels_triton

    why = kernels_triton.unavailable_reason("cpu")
    assert why is not None and ("CUDA" in why or "cuda" in why)
    assert fast.backend_unavailable_reason("triton", torch.device("cpu")) == why


def test_int_mm_pads_small_row_counts_on_cuda_only():
    a = torch.randint(-12, 13, (3, 128), dtype=torch.int8)
    b = torch.randint(-12, 13, (128, 16), dtype=torch.int8)
    assert torch.equal(KG._int_mm(a, b), (a.long() @ b.long()).int())
