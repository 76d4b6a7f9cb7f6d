"""Hadamard constructions (EXACT tier) and the rotations built on them."""

import math

import pytest
import scipy.linalg
import torch

from fpqvar.transforms.hadamard import (
    OnlineRotation,
    block_hadamard_matrix,
    hadamard_matrix,
    hadamard_supported,
    random_hadamard,
    rotate_weight_in,
)

# The widths VAR needs (d16 .. d36, and the test models), spelled as the factorizations the spec names.
NAMED = [128, 256, 384, 1024, 1280, 1536, 1920, 2304]


def _check_exact(n: int) -> None:
    H = hadamard_matrix(n)
    assert H.dtype == torch.float64 and H.shape == (n, n)
    assert bool(((H == 1) | (H == -1)).all()), n
    # float32 matmul is exact here: every partial sum is an integer of magnitude <= n <= 2304 < 2**24.
    H32 = H.to(torch.float32)
    assert torch.equal(H32 @ H32.T, n * torch.eye(n)), n


@pytest.mark.parametrize("n", NAMED)
def test_named_orders_exact(n):
    _check_exact(n)


def test_all_supported_orders_up_to_256_exact():
    sizes = [n for n in range(1, 257) if hadamard_supported(n)]
    assert len(sizes) > 50  # powers of two and the Paley I / II families: not a vacuous loop
    for n in sizes:
        _check_exact(n)


@pytest.mark.slow
def test_all_supported_orders_up_to_2304_exact():
    for n in range(257, 2305):  # about 3 min on 2 cores
        if hadamard_supported(n):
            _check_exact(n)


@pytest.mark.parametrize("n", [1, 2, 4, 64, 128, 1024])
def test_sylvester_matches_scipy(n):
    assert torch.equal(hadamard_matrix(n), torch.from_numpy(scipy.linalg.hadamard(n).astype("float64")))


@pytest.mark.parametrize("n", [0, -4, 3, 6, 10, 52, 92, 100])
def test_unsupported_orders_raise(n):
    assert not hadamard_supported(n)
    with pytest.raises(ValueError, match=f"n={n}"):
        hadamard_matrix(n)


def test_non_int_order_raises():
    with pytest.raises(ValueError, match="int"):
        hadamard_matrix(12.0)


def test_random_hadamard_orthonormal_and_seeded():
    n = 384  # = 12 x 32: a Paley-Sylvester product
    Q = random_hadamard(n, seed=3)
    # TOLERANCE: float64 products of +-1/sqrt(n) entries summed over n terms: error ~ n * 2**-53 << 1e-12
    torch.testing.assert_close(Q @ Q.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-12)
    # rows are sign flips of H / sqrt(n)
    ratio = Q * math.sqrt(n) / hadamard_matrix(n)
    d = torch.sign(ratio[:, 0])
    # TOLERANCE: one float64 rounding of x / sqrt(n) and of the product by sqrt(n)
    torch.testing.assert_close(ratio, d.view(n, 1).expand(n, n), rtol=0, atol=1e-14)
    assert torch.equal(random_hadamard(n, seed=3), Q)
    assert not torch.equal(random_hadamard(n, seed=4), Q)
    assert 0 < int((d == 1).sum()) < n  # both signs occur


def test_block_hadamard_is_one_randomized_block():
    assert torch.equal(block_hadamard_matrix(), random_hadamard(128, 42))
    assert block_hadamard_matrix(64, 1).shape == (64, 64)


def _blockdiag64(Q: torch.Tensor, width: int) -> torch.Tensor:
    b = Q.shape[0]
    return torch.block_diag(*[Q.to(torch.float64)] * (width // b))


@pytest.mark.parametrize("block", [128, 384])
def test_rotate_weight_in_matches_blockdiag(block):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(96, 384, generator=g)
    lam = torch.rand(384, generator=g) + 0.5
    Q = random_hadamard(block, 7)
    ref = (w.double() / lam.double()) @ _blockdiag64(Q, 384)
    out = rotate_weight_in(w, Q, block=block, lam_I=lam)
    assert out.dtype == torch.float32
    # TOLERANCE: one float32 rounding of the float64 result (plus float64 summation-order noise ~1e-15)
    torch.testing.assert_close(out.double(), ref, rtol=2**-23, atol=1e-12)
    assert torch.equal(rotate_weight_in(w, Q), rotate_weight_in(w, Q, block=block))


def test_rotate_weight_in_errors():
    w = torch.randn(8, 200)
    with pytest.raises(ValueError, match="does not divide"):
        rotate_weight_in(w, block_hadamard_matrix(128))
    with pytest.raises(ValueError, match="block=64"):
        rotate_weight_in(torch.randn(8, 256), block_hadamard_matrix(128), block=64)
    with pytest.raises(ValueError, match="lam_I"):
        rotate_weight_in(torch.randn(8, 256), block_hadamard_matrix(128), lam_I=torch.ones(3))


def test_online_rotation_preserves_linear_and_checks_width():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 256, generator=g)
    w = torch.randn(64, 256, generator=g)
    Q = block_hadamard_matrix(128)
    rot = OnlineRotation(Q, width=256)
    assert rot.flops_per_token == 2 * 256 * 128
    xr = rot(x)
    ref = x.double() @ _blockdiag64(Q, 256)
    # TOLERANCE: float32 matmul over 128 terms of magnitude ~|x|/sqrt(128): error ~ 1e-6 of |x|
    torch.testing.assert_close(xr.double(), ref, rtol=0, atol=1e-5)
    y = xr @ rotate_weight_in(w, Q).T
    torch.testing.assert_close(y, x @ w.T, rtol=0, atol=1e-4)  # float32 rounding of two 256-term matmuls
    assert rot(x.to(torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="does not divide the activation width 200"):
        rot(torch.randn(3, 200))
    with pytest.raises(ValueError, match="does not divide"):
        OnlineRotation(Q, width=200)
