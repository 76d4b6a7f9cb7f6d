"""QuantLinear: weights on the grid (EXACT, references written here from the definitions), activation and DFQ
quantization in the forward, bias handling, rotation."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float32)
E1M2 = np.arange(8, dtype=np.float32) * 0.25
E2M3 = np.array([m / 8 for m in range(8)] + [(1 + m / 8) for m in range(8)] + [2 * (1 + m / 8) for m in range(8)]
                + [4 * (1 + m / 8) for m in range(8)], dtype=np.float32)  # 0 .. 7.5, written from the definition


def _nearest(t: torch.Tensor, pos_grid: np.ndarray) -> torch.Tensor:
    """Symmetric nearest grid value by brute-force distance; asserts the random data has no exact ties."""
    g = torch.from_numpy(np.concatenate([-pos_grid[:0:-1], pos_grid]))
    d = (t.unsqueeze(-1) - g).abs()
    two = d.topk(2, dim=-1, largest=False).values
    inside = t.abs() < float(pos_grid[-1])
    assert not bool(((two[..., 0] == two[..., 1]) & inside).any()), "tie in random data: change the seed"
    return g[d.argmin(dim=-1)]


def _linear(O, I, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(I, O, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(O, I, generator=g) * 0.05)
        if bias:
            lin.bias.copy_(torch.randn(O, generator=g) * 0.1)
    return lin


def test_fp4_group_weight_exact():
    lin = _linear(64, 256)
    q = QuantLinear.from_linear(lin, QuantSpec("e2m1", "group", 128), None)
    w = lin.weight.detach().reshape(64, 2, 128)
    s = w.abs().amax(dim=-1, keepdim=True) / 6.0
    ref = (_nearest(w / s, E2M1) * s).reshape(64, 256)
    assert torch.equal(q.weight, ref)
    assert q.weight_codes.dtype == torch.uint8 and q.weight_codes.shape == (64, 256)
    assert q.weight_scale.shape == (64, 2)


def test_fp6_channel_weight_exact():
    lin = _linear(32, 256, seed=1)
    q = QuantLinear.from_linear(lin, QuantSpec("e2m3", "channel", None), None)
    w = lin.weight.detach()
    s = w.abs().amax(dim=1, keepdim=True) / 7.5
    assert torch.equal(q.weight, _nearest(w / s, E2M3) * s)


def test_int4_and_uint4_weight_exact():
    lin = _linear(32, 128, seed=2)
    w = lin.weight.detach()
    q = QuantLinear.from_linear(lin, QuantSpec("int4", "channel", None), None)
    s = w.abs().amax(dim=1, keepdim=True) / 7
    assert torch.equal(q.weight, torch.round(w / s).clamp(-7, 7) * s)
    qa = QuantLinear.from_linear(lin, QuantSpec("uint4", "channel", None), None)
    mn, mx = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
    s = (mx - mn) / 15
    zp = -torch.round(mn / s)
    ref = (torch.clamp(torch.round(w / s) + zp, 0, 15) - zp) * s
    assert q.weight_zero_point is None
    assert torch.equal(qa.weight, ref)
    assert torch.equal(qa.weight_zero_point, zp)


def test_forward_dynamic_act_group_exact():
    lin = _linear(48, 256, seed=3)
    spec = QuantSpec("e2m1", "group", 128)
    q = QuantLinear.from_linear(lin, spec, spec)
    x = torch.randn(3, 5, 256, generator=torch.Generator().manual_seed(4))
    xg = x.reshape(3, 5, 2, 128)
    s = xg.abs().amax(dim=-1, keepdim=True) / 6.0
    xq = (_nearest(xg / s, E2M1) * s).reshape(3, 5, 256)
    assert torch.equal(q(x), nn.functional.linear(xq, q.weight, lin.bias))


def test_forward_dfq_fp4_exact():
    lin = _linear(16, 256, seed=5)
    q = QuantLinear.from_linear(lin, None, QuantSpec("e2m1", "group", 128, dfq="fp4"))
    x = nn.functional.gelu(torch.randn(4, 256, generator=torch.Generator().manual_seed(6)) * 2, approximate="tanh")
    xg = x.reshape(4, 2, 128)
    neg = xg <= 0
    s_neg = xg.clamp(max=0).abs().amax(dim=-1, keepdim=True) / 1.75
    s_pos = xg.clamp(min=0).amax(dim=-1, keepdim=True) / 6.0
    q_neg = _nearest(xg / s_neg, E1M2).clamp(max=0) * s_neg
    q_pos = _nearest(xg / s_pos, E2M1).clamp(min=0) * s_pos
    xq = torch.where(neg, q_neg, q_pos).reshape(4, 256)
    assert torch.equal(q.quantize_input(x), xq)
    assert torch.equal(q.weight, lin.weight)  # weight spec None: float weight kept


def test_float_specs_and_bias_equal_linear():
    lin = _linear(40, 128, seed=7)
    x = torch.randn(2, 7, 128)
    q = QuantLinear.from_linear(lin, None, None)
    assert torch.equal(q(x), lin(x))
    nob = _linear(40, 128, seed=7, bias=False)
    qn = QuantLinear.from_linear(nob, None, None)
    assert qn.bias is None and torch.equal(qn(x), nob(x))


def test_rotation_preserves_float_function():
    """x Q (W Q)^T = x W^T (Q orthogonal): the rotated QuantLinear with float specs matches the linear.
    Tolerance: float32 rounding of two 256-term products, well below 1e-5 relative."""
    from fpqvar.transforms.hadamard import OnlineRotation, block_hadamard_matrix, rotate_weight_in

    lin = _linear(64, 256, seed=8)
    Q = block_hadamard_matrix(128, 42)
    rot = _linear(64, 256, seed=8)
    with torch.no_grad():
        rot.weight.copy_(rotate_weight_in(lin.weight, Q))
    q = QuantLinear.from_linear(rot, None, None, rotation=OnlineRotation(Q, width=256))
    x = torch.randn(10, 256)
    torch.testing.assert_close(q(x), lin(x), rtol=1e-5, atol=1e-5)


def test_static_act_scale():
    lin = _linear(16, 256, seed=9)
    spec = QuantSpec("e2m1", "tensor", None, static=True)
    with pytest.raises(ValueError, match="act_scale"):
        QuantLinear.from_linear(lin, None, spec)
    q = QuantLinear.from_linear(lin, None, spec, act_scale=torch.tensor([0.5]))
    x = torch.tensor([[0.26, -0.74, 5.0] + [0.0] * 253])
    # scale 0.5: 0.26/0.5 = 0.52 -> 0.5; -1.48 -> -1.5; 10 -> saturates at 6
    assert q.quantize_input(x)[0, :3].tolist() == [0.25, -0.75, 3.0]


def test_backend_dispatch(monkeypatch):
    import sys
    import types

    lin = _linear(8, 128)
    q = QuantLinear.from_linear(lin, QuantSpec("e2m1"), QuantSpec("e2m1"))
    fake = types.ModuleType("fpqvar.quant.fast")
    fake.forward = lambda mod, x: torch.full((x.shape[0], mod.out_features), 7.0)
    monkeypatch.setitem(sys.modules, "fpqvar.quant.fast", fake)
    import fpqvar.quant as fq

    monkeypatch.setattr(fq, "fast", fake, raising=False)
    q.backend = "cuda"
    assert torch.equal(q(torch.zeros(2, 128)), torch.full((2, 8), 7.0))
