"""Hadamard matrices and the randomized (block) Hadamard rotations of GHT / QuaRot (fpqvar-method.md section 7).

Everything is *computed* (design.md: no pasted tables), in float64, and cast once by the caller:

- ``hadamard_matrix(n)``: a +-1 matrix with ``H H^T = n I``. Powers of two: Sylvester (the ordering of
  ``scipy.linalg.hadamard``). Other orders: ``kron(P_m, H_{2^k})`` with ``n = m 2^k`` and ``P_m`` a Paley matrix,
  choosing the smallest such ``m``:
    * Paley I, ``m = q + 1`` with ``q`` prime, ``q = 3 (mod 4)``: 12, 20, 24, 32, 44, 48, 60, 68, 72, 80, 84 ...
    * Paley II, ``m = 2 (q + 1)`` with ``q`` prime, ``q = 1 (mod 4)``: 12, 28, 36, 60, 76, 108, ...
  This covers VAR's widths: 1920 = 60 x 32 (d30), 2304 = 36 x 64 (d36), 1280 = 20 x 64 (d20), 1536 = 12 x 128
  (d24), 384 = 12 x 32, 1024 / 256 (Sylvester). Orders that need a prime-power Paley matrix or another construction
  (52, 92, ...) raise ``ValueError``.
- ``random_hadamard(n, seed)``: the orthonormal QuIP#-style rotation ``diag(D) H / sqrt(n)``, D a +-1 vector drawn
  from ``torch.Generator().manual_seed(seed)``.
- ``block_hadamard_matrix(block, seed)``: one GHT block. Upstream reseeds (42) for every block, so all blocks of
  ``blockdiag(Q, ..., Q)`` are identical and a single ``(block, block)`` matrix describes the whole transform.
- ``rotate_weight_in(w_OI, Q)``: ``W <- W blockdiag(Q)`` (optionally ``(W / lam) blockdiag(Q)``, GALT), float64,
  cast once; ``OnlineRotation``: ``x <- x blockdiag(Q)`` at run time, in the activation dtype. Since Q is orthogonal,
  ``(x Q)(W Q)^T = x W^T``.

The online transform is a plain matmul with the ``(b, b)`` matrix (on the dev CPU it beats a torch fast
Walsh-Hadamard transform by 2-8x at b = 128, environment.md section 3), or that transform where the kernel
selector measures it faster (``fpqvar.kernels.ght``; same rotation, a different float rounding).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from fpqvar import kernels
from fpqvar.kernels.ght import fwht_factors, rotate_fwht, rotate_matmul

__all__ = [
    "hadamard_matrix",
    "hadamard_supported",
    "random_hadamard",
    "random_signs",
    "block_hadamard_matrix",
    "rotate_weight_in",
    "OnlineRotation",
    "GHT_BLOCK",
    "GHT_SEED",
]

GHT_BLOCK = 128  # = the FP4 quantization group (fpqvar-method.md section 7)
GHT_SEED = 42  # upstream seeds torch with 42 before drawing the signs of every block


def _is_prime(q: int) -> bool:
    if q < 2:
        return False
    if q % 2 == 0:
        return q == 2
    return all(q % d for d in range(3, math.isqrt(q) + 1, 2))


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _sylvester(n: int) -> torch.Tensor:
    h = torch.ones((1, 1), dtype=torch.float64)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.kron(h2, h)  # [[H, H], [H, -H]]
    return h


def _jacobsthal(q: int) -> torch.Tensor:
    """``Q[i, j] = chi(j - i)``, chi the quadratic character of GF(q), q prime (``chi(0) = 0``)."""
    chi = torch.full((q,), -1.0, dtype=torch.float64)
    r = torch.arange(1, q, dtype=torch.int64)
    chi[(r * r) % q] = 1.0
    chi[0] = 0.0
    i = torch.arange(q, dtype=torch.int64)
    return chi[(i.view(1, q) - i.view(q, 1)) % q]


def _conference(q: int, antisymmetric: bool) -> torch.Tensor:
    """Paley conference matrix ``S`` of order q + 1: zero diagonal, ``S S^T = q I``."""
    s = torch.zeros((q + 1, q + 1), dtype=torch.float64)
    s[0, 1:] = 1.0
    s[1:, 0] = -1.0 if antisymmetric else 1.0
    s[1:, 1:] = _jacobsthal(q)
    return s


def _paley_kind(m: int) -> tuple[str, int] | None:
    """``("I", q)`` or ``("II", q)`` when a Paley construction of order m exists with q prime, else None."""
    if m < 4 or m % 4:
        return None
    if _is_prime(m - 1) and (m - 1) % 4 == 3:
        return "I", m - 1
    if _is_prime(m // 2 - 1) and (m // 2 - 1) % 4 == 1:
        return "II", m // 2 - 1
    return None


def _paley(kind: str, q: int) -> torch.Tensor:
    if kind == "I":  # q = 3 mod 4: S antisymmetric, (I + S)(I + S)^T = I + S S^T = (q + 1) I
        return torch.eye(q + 1, dtype=torch.float64) + _conference(q, antisymmetric=True)
    # q = 1 mod 4: S symmetric, S^2 = q I; 0 -> [[1, -1], [-1, -1]], +-1 -> +-[[1, 1], [1, -1]]
    s = _conference(q, antisymmetric=False)
    a = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    return torch.kron(s, a) + torch.kron(torch.eye(q + 1, dtype=torch.float64), b)


def _decompose(n: int) -> tuple[str, int, int] | None:
    """``(kind, m, 2^k)`` with ``n = m 2^k``: kind "sylvester" (m = 1) or a Paley kind with the smallest m."""
    if n < 1:
        return None
    k = (n & -n).bit_length() - 1  # 2-adic valuation
    odd = n >> k
    if odd == 1:
        return "sylvester", 1, n
    for j in range(2, k + 1):  # Paley orders are multiples of 4
        m = odd << j
        pk = _paley_kind(m)
        if pk is not None:
            return pk[0], m, n // m
    return None


def hadamard_supported(n: int) -> bool:
    """Whether :func:`hadamard_matrix` can build order ``n``."""
    return isinstance(n, int) and _decompose(n) is not None


def hadamard_matrix(n: int) -> torch.Tensor:
    """A Hadamard matrix of order ``n``: float64 ``(n, n)``, entries +-1, ``H H^T = n I`` (exactly)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValueError(f"hadamard_matrix: n must be an int, got {n!r}")
    dec = _decompose(n)
    if dec is None:
        raise ValueError(
            f"hadamard_matrix: no construction for order n={n}: supported orders are powers of two and "
            f"m * 2^k with m = q + 1 (q prime, q % 4 == 3; Paley I) or m = 2 (q + 1) (q prime, q % 4 == 1; Paley II)"
        )
    kind, m, p2 = dec
    if kind == "sylvester":
        return _sylvester(n)
    q = m - 1 if kind == "I" else m // 2 - 1
    return torch.kron(_paley(kind, q), _sylvester(p2))


def random_signs(n: int, seed: int) -> torch.Tensor:
    """float64 ``(n,)`` of +-1 from ``torch.Generator().manual_seed(seed)`` (QuIP#-style sign flips)."""
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randint(0, 2, (n,), generator=g, dtype=torch.int64) * 2 - 1).to(torch.float64)


def random_hadamard(n: int, seed: int) -> torch.Tensor:
    """Orthonormal randomized Hadamard ``diag(D) H_n / sqrt(n)`` (float64 ``(n, n)``): ``x Q`` flips signs, then
    mixes with H."""
    return random_signs(n, seed).view(n, 1) * hadamard_matrix(n) / math.sqrt(n)


def block_hadamard_matrix(block: int = GHT_BLOCK, seed: int = GHT_SEED) -> torch.Tensor:
    """One GHT block (float64 ``(block, block)``); the transform is ``blockdiag(Q, ..., Q)`` over C / block."""
    return random_hadamard(block, seed)


def _check_rotation(Q: torch.Tensor, width: int, what: str) -> int:
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or Q.shape[0] < 1:
        raise ValueError(f"{what}: the rotation must be a square (b, b) matrix, got shape {tuple(Q.shape)}")
    b = int(Q.shape[0])
    if width % b:
        raise ValueError(f"{what}: rotation block {b} does not divide the input width {width}")
    return b


def rotate_weight_in(w_OI: torch.Tensor, Q: torch.Tensor, block: int | None = None, *,
                     lam_I: torch.Tensor | None = None) -> torch.Tensor:
    """``(w_OI / lam_I) @ blockdiag(Q, ...)``, computed in float64 and cast once to ``w_OI.dtype``.

    ``Q`` is ``(b, b)`` with ``b`` dividing the input width I (``b = I``: a full rotation). ``block``, when given,
    must equal ``b`` (a guard against passing the wrong matrix). ``lam_I`` (GALT's per-input-channel lambda,
    fpqvar-method.md section 8) is divided out first, in the same float64 pass.
    """
    if w_OI.ndim != 2:
        raise ValueError(f"rotate_weight_in: w_OI must be 2-D (out, in), got shape {tuple(w_OI.shape)}")
    O, I = w_OI.shape
    b = _check_rotation(Q, I, "rotate_weight_in")
    if block is not None and block != b:
        raise ValueError(f"rotate_weight_in: block={block} but the rotation matrix is ({b}, {b})")
    w = w_OI.detach().to(torch.float64)
    if lam_I is not None:
        if lam_I.shape != (I,):
            raise ValueError(f"rotate_weight_in: lam_I must have shape ({I},), got {tuple(lam_I.shape)}")
        w = w / lam_I.detach().to(device=w.device, dtype=torch.float64)
    out = (w.reshape(O, I // b, b) @ Q.detach().to(device=w.device, dtype=torch.float64)).reshape(O, I)
    return out.to(w_OI.dtype)


class OnlineRotation(nn.Module):
    """``x -> x @ blockdiag(Q, ..., Q)`` over the last dim, in the activation dtype (run-time half of GHT).

    ``Q`` (``(b, b)``) is kept as a float32 buffer ``Q_bb``; b = 128 for GHT, b = C for a full rotation.
    ``width`` (optional) is checked at construction and gives ``flops_per_token`` = 2 C b (dense b x b matmul
    per block; a fast Hadamard transform would need C log2(b) additions instead).
    """

    def __init__(self, Q: torch.Tensor, width: int | None = None):
        super().__init__()
        b = _check_rotation(Q, width if width is not None else int(Q.shape[0]), "OnlineRotation")
        self.block = b
        self.width = width
        self.register_buffer("Q_bb", Q.detach().to(torch.float32).clone())
        self.flops_per_token = None if width is None else 2 * width * b

    def _fwht_factors(self):
        """``(signs, scale)`` when ``Q_bb`` is a randomized Sylvester Hadamard block (recomputed when ``Q_bb``
        changes, e.g. on load), else ``None``."""
        key = (self.Q_bb.data_ptr(), self.Q_bb._version, self.Q_bb.device)
        if self.__dict__.get("_fwht_key") != key:
            f = fwht_factors(self.Q_bb)
            self.__dict__["_fwht"] = None if f is None else (f[0].to(self.Q_bb.device), f[1])
            self.__dict__["_fwht_key"] = key
        return self.__dict__["_fwht"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C, b = x.shape[-1], self.block
        if C % b:
            raise ValueError(f"OnlineRotation: block {b} does not divide the activation width {C} "
                             f"(input shape {tuple(x.shape)})")
        # the implementation is measured once per process (fpqvar.kernels, operation "ght")
        if kernels.choose("ght", x.device) == "fwht":
            f = self._fwht_factors()
            if f is not None:
                return rotate_fwht(x, *f)
        return rotate_matmul(x, self.Q_bb)

    def extra_repr(self) -> str:
        return f"block={self.block}, width={self.width}"
