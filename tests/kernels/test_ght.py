"""The GHT rotation candidates: ``fwht`` against a float64 reference within float32's rounding bound (TOLERANCE:
a different summation order of the same transform), ``matmul`` the same, and the structure detection."""

import math

import pytest
import torch

from fpqvar.kernels import ght as GH
from fpqvar.transforms.hadamard import OnlineRotation, block_hadamard_matrix, random_hadamard


@pytest.mark.parametrize("impl", GH.GHT_IMPLS)
@pytest.mark.parametrize("b,C", [(128, 256), (128, 1024), (2, 4), (16, 48)])
def test_rotation_matches_float64_within_the_rounding_bound(impl, b, C):
    Q64 = random_hadamard(b, 42)
    Q = Q64.float()
    x = torch.randn(37, C, generator=torch.Generator().manual_seed(b + C))
    ref = (x.double().reshape(37, C // b, b) @ Q64).reshape(37, C)
    if impl == "matmul":
        y = GH.rotate_matmul(x, Q)
    else:
        signs, scale = GH.fwht_factors(Q)
        y = GH.rotate_fwht(x, signs, scale)
    # |error| <= gamma_n * sum|x_i q_ij| + the float32 roundings of Q and of the scale; n = b terms (matmul) or
    # log2(b) butterfly levels (fwht, each exact-in-ulps): use the standard gamma_b = b u / (1 - b u), u = 2**-24
    u = 2.0**-24
    mag = (x.double().abs().reshape(37, C // b, b) @ Q64.abs()).reshape(37, C)
    bound = (b * u / (1 - b * u) + 2 * u) * mag
    assert ((y.double() - ref).abs() <= bound).all()


def test_fwht_factors_detect_the_randomized_sylvester_form():
    Q = block_hadamard_matrix().float()
    signs, scale = GH.fwht_factors(Q)
    assert signs.shape == (128,) and scale == 1 / math.sqrt(128)
    assert GH.fwht_factors(torch.eye(8)) is None  # not Hadamard
    assert GH.fwht_factors(random_hadamard(12, 0).float()) is None  # Paley order: not Sylvester
    assert GH.fwht_factors(torch.ones(3, 3)) is None


def test_online_rotation_uses_the_selected_implementation(monkeypatch):
    from fpqvar import kernels

    Q = block_hadamard_matrix()
    rot = OnlineRotation(Q, 256)
    x = torch.randn(5, 256, generator=torch.Generator().manual_seed(0))
    with kernels.override(ght="matmul"):
        ym = rot(x)
    with kernels.override(ght="fwht"):
        yf = rot(x)
        s, sc = GH.fwht_factors(rot.Q_bb)
        assert torch.equal(yf, GH.rotate_fwht(x, s, sc))
        with torch.no_grad():  # a new Q (as a load does): factors recomputed; a non-Sylvester block -> matmul
            rot.Q_bb.copy_(torch.eye(128))
        assert torch.equal(rot(x), x)
    assert torch.equal(ym, GH.rotate_matmul(x, Q.float()))
