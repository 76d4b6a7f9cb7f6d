"""Two partial operands in one float32 GEMM, exact where a bound proves it (the fast path's ``"float32"`` GEMM).

DFQ (fc2's input) gives every segment two integer dot products, ``D_q = q . w`` (negative half) and ``D_p = p . w``
(positive half); the datapath needs both, so the plain way is two GEMMs, twice the float model's work. One float32
GEMM on the packed operand ``a = p + M q`` gives ``Y = D_p + M D_q`` instead, from which both are recovered exactly:

- **Exact GEMM.** Every partial sum a float32 GEMM forms (any order, any blocking, with or without FMA) is the sum
  over some subset ``S`` of the reduction, and by Cauchy-Schwarz ``|sum_S a_i w_i| <= B_p + M B_q`` with
  ``B_p = ceil(||p||_2 * W)``, ``B_q = ceil(||q||_2 * W)``, ``W`` the largest column norm of the weight segment. While
  ``B_p + M B_q < 2**24`` every partial sum is an integer float32 holds exactly, so ``Y`` is exact.
- **Exact decoding.** ``M = 2 B_p + 9`` (per token and segment) puts ``Y / M = D_q + D_p / M`` at least ``4.5 / M``
  from a rounding boundary of ``round``, and ``fl32(Y * fl32(1 / M))`` is within ``2 / M + 2**-23`` of ``Y / M``
  (``|Y / M| < 2**24 / M + 1``), so ``round`` gives ``D_q``; then ``D_p = Y - M D_q`` with every term an integer
  below ``2**24`` (exact, FMA or not).

The bound holds for typical activations with a wide margin (VAR's fc2 inputs in the default model: 99.99% of
(token, segment) pairs, the median using half of ``2**24``); a token whose bound fails gets both of its dot products
from their own GEMM (``kernels_gemm._redo_rows``), and a row chunk where many fail takes the two-GEMM path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PackPlan", "plan", "exact_f32_matmul", "weight_norm2_G", "decode_", "LIMIT", "FIX_MAX_FRACTION"]

LIMIT = float(1 << 24)  # every integer below it is a float32 (and each partial sum must stay below it)
# A (row chunk, segment) with more failing tokens than this fraction takes the two-GEMM path: fixing k rows costs
# two (k x seg) x (seg x O) GEMMs, against one (rows x seg) x (seg x O) GEMM for the whole second part.
FIX_MAX_FRACTION = 0.25


def exact_f32_matmul(device: torch.device) -> bool:
    """Whether float32 GEMMs on ``device`` keep full float32 operands: packed operands reach 2**24, so TF32 (10
    mantissa bits) or a bf16 "fp32 precision" (``torch.set_float32_matmul_precision("medium")`` on CPU) would
    round them; the unpacked integer operands (<= 127) survive both, which is why only the packing checks this."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    mk = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    if getattr(mk, "fp32_precision", "none") not in ("none", "ieee"):
        return False
    if device.type == "cuda":
        cm = torch.backends.cuda.matmul
        return not cm.allow_tf32 and getattr(cm, "fp32_precision", "none") in ("none", "ieee")
    return True


@dataclass(frozen=True)
class PackPlan:
    """Per (token, segment): the packing multiplier ``M``, ``fl32(1 / M)``, and whether the exactness bound holds;
    and the packed operand ``a = p + M q`` (float32 ``(T, I)``)."""

    M_TG: torch.Tensor  # float32 integers
    invM_TG: torch.Tensor  # float32
    fits_TG: torch.Tensor  # bool
    a_TI: torch.Tensor  # float32 integers (exact where the bound holds)


def weight_norm2_G(w_IO: torch.Tensor, G: int) -> torch.Tensor:
    """``(G,)`` float64: the largest squared column norm of each weight segment (exact integers)."""
    I, O = w_IO.shape
    v = w_IO.to(torch.float64).view(G, I // G, O)
    return (v * v).sum(1).amax(1) if O else torch.zeros(G, dtype=torch.float64)


def _seg_norm2(v_TGS: torch.Tensor) -> torch.Tensor:
    """``(T, G)`` float64 squared norms of integer-valued float32 segments, exact: in float32 while a segment's sum
    stays below 2**24 (``S * 127**2``, segments up to 1040), else in float64."""
    if v_TGS.shape[-1] * 127 * 127 < LIMIT:
        return torch.mul(v_TGS, v_TGS).sum(-1).to(torch.float64)
    v = v_TGS.to(torch.float64)
    return (v * v).sum(-1)


def _ceil_sqrt(x: torch.Tensor) -> torch.Tensor:
    # ``sqrt`` is correctly rounded and ``x`` an exact integer: sqrt(x) lands on an integer only when x is a square
    # (then exactly), and otherwise lies at least 1 / (2 sqrt(x) + 1) away from one, far more than an ulp.
    return torch.ceil(torch.sqrt(x))


def plan(q_TI: torch.Tensor, p_TI: torch.Tensor, w_norm2_G: torch.Tensor) -> PackPlan:
    """The packing of the two int8 parts ``q`` (packed with ``M``) and ``p`` against a weight with the segment
    column norms ``w_norm2_G`` (:func:`weight_norm2_G`)."""
    G = w_norm2_G.shape[0]
    T, I = q_TI.shape
    q = q_TI.to(torch.float32).view(T, G, I // G)
    p = p_TI.to(torch.float32).view(T, G, I // G)
    Bq = _ceil_sqrt(_seg_norm2(q) * w_norm2_G)
    Bp = _ceil_sqrt(_seg_norm2(p) * w_norm2_G)
    M = 2 * Bp + 9
    fits = (Bp + M * Bq < LIMIT) & (M < LIMIT)
    M32 = torch.where(fits, M, 9.0).to(torch.float32)  # any M works for a failing token: its rows are redone
    a = q.mul_(M32.unsqueeze(-1)).add_(p).view(T, I)  # |M q| <= M B_q < 2**24 where the bound holds: exact
    return PackPlan(M32, torch.reciprocal(M32), fits, a)


def decode_(y: torch.Tensor, M: torch.Tensor, invM: torch.Tensor, dq: torch.Tensor, dp: torch.Tensor) -> None:
    """``Y = D_p + M D_q`` -> ``D_q`` into ``dq`` and ``D_p`` into ``dp`` (exact where the bound holds); ``M`` and
    ``invM`` (a plan's ``M_TG`` / ``invM_TG`` entries) broadcast against ``y``."""
    torch.mul(y, invM, out=dq)
    dq.round_()
    torch.addcmul(y, dq, M, value=-1.0, out=dp)  # integers below 2**24: exact, FMA or not

