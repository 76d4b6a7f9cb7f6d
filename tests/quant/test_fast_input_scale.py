"""The fast path applies the online lambda of shared-AdaLN models (var-d36) before the rotation, like the
reference path: same input, same module otherwise -> bit-identical outputs (EXACT)."""

import torch
import torch.nn as nn

from fpqvar.quant.qlinear import QuantLinear
from fpqvar.quant.spec import QuantSpec
from fpqvar.transforms.fuse import OnlineScale


def test_fast_path_applies_input_scale():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(256, 64)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(64, 256, generator=g) * 0.05)
    spec = QuantSpec(fmt="e2m1", granularity="group", group_size=128)
    lam = torch.rand(256, generator=g) + 0.5
    q_scaled = QuantLinear.from_linear(lin, spec, spec, input_scale=OnlineScale(lam))
    q_plain = QuantLinear.from_linear(lin, spec, spec)
    x = torch.randn(9, 256, generator=g)
    for q in (q_scaled, q_plain):
        q.backend = "exact"
    with torch.no_grad():
        assert torch.equal(q_scaled(x), q_plain(x * lam))
