"""Exact integer GEMMs ``D = A B`` for small-integer operands (|a|, |b| <= 127): three implementations, one result.

- ``"int8"``: ``torch._int_mm`` (int8 x int8 -> int32; oneDNN VNNI / AMX-INT8 on CPU, IMMA on CUDA). Exact in any
  order (``|D| <= 127 * 127 * K < 2**31``). Fast where the CPU has VNNI or AMX; on an AVX2-only CPU about 270x
  slower than a float32 GEMM (environment.md section 0).
- ``"float32"``: an ordinary float32 GEMM on integer-valued operands. Every product ``a b`` is an integer of at most
  14 bits and every partial sum an integer; float32 represents all integers up to ``2**24`` exactly, so the
  result is exact, in any summation order and with or without fused multiply-adds, as long as every partial sum
  stays within ``2**24``: guaranteed when ``K * max|a| * max|b| <= 2**24`` (FP4 groups of 128: 128 * 12 * 12).
  A longer reduction (FP6 per-token x per-channel: ``K * 127 * 60``) is cut into chunks of at most
  :func:`exact_chunk` columns whose exact results are summed in int32, so the returned float32 is the exact
  integer rounded once (RNE), as the int8 path's int32 -> float32 conversion. Operands up to 127 are also exact
  in TF32 / bf16 (8 significant bits), so a reduced-precision float32 matmul mode does not break this either; the
  kernel selector still verifies every candidate bit for bit on a probe before using it.
- ``"u8s8"``: oneDNN's quantized linear (``torch.ops.onednn.qlinear_pointwise``, CPU only): activations as uint8
  codes plus the zero point 128 (``n ^ 0x80``, exact), weights int8 prepacked once, int32 accumulation with the
  zero-point compensation, returned as float32 with scales 1 (``fl32(1 * 1 * D)``: the int32 result rounded once,
  RNE). Why: on AVX2-only CPUs (no VNNI) this kernel uses ``vpmaddubsw`` and was measured faster than the float32
  GEMM there (under ``ONEDNN_MAX_CPU_ISA=AVX2`` on the dev CPU: 18 ms against 36 ms for the float layer on qkv of
  var-d16 at 512 rows), where ``torch._int_mm`` is not. ``vpmaddubsw`` sums pairs of u8 x s8 products in saturating
  int16, so it is exact only while ``2 * (128 + max|a|) * max|b| < 2**15``: FP4 and FP6 codes (bound classes 16
  and 64), not |n| = 127, which the selector's probe at each bound class catches.

- ``"native"``: our C loop (:func:`fpqvar.kernels.native.int_dot`, CPU, where a C compiler is), int32 sums of int8
  codes against the weight packed per segment in blocks of 8 outputs x 4 codes (``native_dot.c``). AVX2 where the
  CPU has it: ``vpmaddubsw`` on the codes plus a per-row offset that makes them non-negative (corrected by the
  weight's column sums) where ``2 * (max a - min a) * max|b| < 2**15`` (FP4 and FP6 codes), ``vpmaddwd`` on codes
  widened to int16 otherwise: exact for every |n| <= 128. Why: at a few rows a GEMM library pays its per-call cost
  once per segment (G calls of 30 to 70 us) and the float layer streams 4 bytes per weight, where this loop makes
  one call per layer and streams 1. In the fast path (``fpqvar.quant.kernels_gemm``) it also scales and sums each
  tile of its products as it makes them (:func:`fpqvar.kernels.native.int_linear`), so no ``(G, rows, O)`` block of
  products goes through memory. Single-threaded: at 2 threads the measurement may keep a threaded library GEMM.

All four return the float32 ``D`` (exact integers while ``|D| <= 2**24``, else rounded once), the form the fast path's
scale-and-accumulate stage consumes (``fpqvar.quant.kernels_gemm``).
"""

from __future__ import annotations

import torch

from fpqvar.kernels import native

__all__ = ["INT_GEMM_IMPLS", "BOUND_CLASSES", "F32_EXACT", "bound_class", "op_name", "exact_chunk", "operand_dtype",
           "to_operand", "prepare_weight", "unavailable", "int_mm", "gemm_to_f32", "u8s8_mm", "U8S8Weight",
           "U8_ZERO_POINT"]

INT_GEMM_IMPLS = ("int8", "float32", "u8s8", "native")
U8_ZERO_POINT = 128  # u8 = n + 128 = n ^ 0x80 for every int8 n
F32_EXACT = 1 << 24  # every integer of magnitude <= 2**24 is a float32
# Operand magnitude classes, each a kernel-selector operation ("int_gemm:16" ...) verified at its own bound: an int8
# kernel may be exact for small operands only (oneDNN's AVX2 s8s8 GEMM sums pairs of u8 x s8 products in saturating
# int16: exact for FP4 codes, |n| <= 12, wrong at 127). 16: e2m1 x 2 (12), e1m2 x 4 (7); 64: e2m3 x 8 (60), e3m0 x 4
# (64), DFQ's neg32; 127: int8.
BOUND_CLASSES = (16, 64, 127)


def bound_class(max_abs: int) -> int:
    """The smallest class of :data:`BOUND_CLASSES` that holds operands of magnitude ``max_abs``."""
    for b in BOUND_CLASSES:
        if max_abs <= b:
            return b
    raise ValueError(f"integer GEMM operands must have |values| <= 127, got a bound of {max_abs}")


def op_name(max_abs: int = 127) -> str:
    """The kernel-selector operation for operands of magnitude ``max_abs`` (``"int_gemm:16"`` ...)."""
    return f"int_gemm:{bound_class(max_abs)}"


def operand_dtype(impl: str) -> torch.dtype:
    """The dtype the operands of ``impl`` are stored in."""
    if impl in ("int8", "native"):
        return torch.int8
    if impl == "float32":
        return torch.float32
    if impl == "u8s8":
        return torch.uint8
    raise ValueError(f"integer GEMM implementation must be one of {INT_GEMM_IMPLS}, got {impl!r}")


def to_operand(impl: str, n: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """int8 codes ``n`` as ``impl``'s activation operand: itself (int8), float32 values, or ``n + 128`` as uint8."""
    dt = operand_dtype(impl)
    if impl == "u8s8":
        return torch.bitwise_xor(n.view(torch.uint8), U8_ZERO_POINT, out=out)
    if out is not None:
        return out.copy_(n)
    return n if n.dtype == dt else n.to(dt)


class U8S8Weight:
    """An int8 ``(K, N)`` weight prepacked for oneDNN's quantized linear, with its unit scales and zero points."""

    def __init__(self, b_KN: torch.Tensor):
        if b_KN.dtype != torch.int8 or b_KN.dim() != 2 or b_KN.device.type != "cpu":
            raise ValueError(f"u8s8 weights must be a 2-d int8 CPU tensor, got {b_KN.dtype} {tuple(b_KN.shape)} "
                             f"on {b_KN.device}")
        self.K, self.N = b_KN.shape
        self.packed = torch.ops.onednn.qlinear_prepack(b_KN.t().contiguous(), None)
        self.ones = torch.ones(self.N)
        self.zeros = torch.zeros(self.N, dtype=torch.long)


def prepare_weight(impl: str, b_KN: torch.Tensor):
    """int8 weight codes ``(K, N)`` as ``impl``'s weight operand (a tensor, or a :class:`U8S8Weight`; ``"native"``:
    one segment of :func:`fpqvar.kernels.native.pack_weight`)."""
    if impl == "u8s8":
        return U8S8Weight(b_KN)
    if impl == "native":
        return native.pack_weight(b_KN, b_KN.shape[0])
    return b_KN.to(operand_dtype(impl))


def unavailable(impl: str, device: torch.device) -> str | None:
    """Why ``impl`` cannot run on ``device`` (``None``: it can)."""
    operand_dtype(impl)
    if impl == "int8" and not hasattr(torch, "_int_mm"):
        return "torch._int_mm is missing in this torch build"
    if impl == "native":
        return native.unavailable(device)
    if impl == "u8s8":
        if torch.device(device).type != "cpu":
            return "oneDNN's quantized linear runs on CPU only"
        if not (hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(torch.ops.onednn, "qlinear_prepack")):
            return "torch.ops.onednn.qlinear_pointwise is missing in this torch build"
    return None


def u8s8_mm(a_u8: torch.Tensor, b: U8S8Weight) -> torch.Tensor:
    """float32 ``(M, N)``: the exact int32 ``(a - 128) B``, rounded once (scales 1); ``a_u8`` contiguous uint8."""
    if a_u8.dtype != torch.uint8 or a_u8.shape[-1] != b.K:
        raise ValueError(f"u8s8 activations must be uint8 (M, {b.K}), got {a_u8.dtype} {tuple(a_u8.shape)}")
    return torch.ops.onednn.qlinear_pointwise(a_u8.contiguous(), 1.0, U8_ZERO_POINT, b.packed, b.ones, b.zeros,
                                              None, 1.0, 0, torch.float32, "none", [], "")


def exact_chunk(max_abs_a: int, max_abs_b: int) -> int:
    """Largest reduction length ``K`` with ``K * max|a| * max|b| <= 2**24`` (a float32 GEMM is exact there)."""
    per = max(1, int(max_abs_a)) * max(1, int(max_abs_b))
    return max(1, F32_EXACT // per)


def int_mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """int8 ``(M, K) x (K, N) -> int32``; CUDA's kernel needs ``M > 16``: pad the rows there."""
    M = a.shape[0]
    if a.device.type == "cuda" and M <= 16:
        a = torch.cat([a, a.new_zeros((17 - M, a.shape[1]))])
        r = torch._int_mm(a, b)[:M]
        return r if out is None else out.copy_(r)
    return torch._int_mm(a, b) if out is None else torch._int_mm(a, b, out=out)


def _mm_f32_exact(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None, k_chunk: int) -> torch.Tensor:
    K = a.shape[1]
    if K <= k_chunk:
        return torch.mm(a, b) if out is None else torch.mm(a, b, out=out)
    acc = None
    part = None
    for k0 in range(0, K, k_chunk):
        k1 = min(K, k0 + k_chunk)
        part = torch.mm(a[:, k0:k1], b[k0:k1]) if part is None else torch.mm(a[:, k0:k1], b[k0:k1], out=part)
        acc = part.to(torch.int32) if acc is None else acc.add_(part.to(torch.int32))  # exact integers
    return acc.to(torch.float32) if out is None else out.copy_(acc)  # one RNE rounding beyond 2**24


def gemm_to_f32(impl: str, a: torch.Tensor, b: torch.Tensor, *, out: torch.Tensor | None = None,
                scratch_i32: torch.Tensor | None = None, k_chunk: int | None = None) -> torch.Tensor:
    """``fl32(A B)`` of integer-valued operands already in ``operand_dtype(impl)``, exact (see module doc).

    ``b``: from :func:`prepare_weight` (``"u8s8"``: a :class:`U8S8Weight` of exactly this K; ``"native"``: one
    packed segment, :func:`fpqvar.kernels.native.pack_weight`).
    ``out``: float32 ``(M, N)`` destination; ``scratch_i32``: an int32 buffer of the same shape for ``"int8"``;
    ``k_chunk`` (``"float32"``): the exact reduction length, default :func:`exact_chunk` for 127 x 127."""
    if impl == "int8":
        d = int_mm(a, b, out=scratch_i32)
        return d.to(torch.float32) if out is None else out.copy_(d)
    if impl == "float32":
        return _mm_f32_exact(a, b, out, exact_chunk(127, 127) if k_chunk is None else k_chunk)
    if impl == "u8s8":
        d = u8s8_mm(a, b)
        return d if out is None else out.copy_(d)
    if impl == "native":
        d = native.int_dot(a, b)[0]
        return d.to(torch.float32) if out is None else out.copy_(d)
    raise ValueError(f"integer GEMM implementation must be one of {INT_GEMM_IMPLS}, got {impl!r}")


def batched_gemm_to_f32(impl: str, a_BMK: torch.Tensor, b_BKN: torch.Tensor, *, k_chunk: int) -> torch.Tensor:
    """``fl32(A_b B_b)`` for every batch ``b``, float32 operands only, exact while ``K <= k_chunk`` (every
    partial sum an integer below 2**24); the same bits as :func:`gemm_to_f32` on each batch."""
    if impl != "float32":
        raise ValueError(f"batched_gemm_to_f32: only the 'float32' GEMM is batched, got {impl!r}")
    if a_BMK.shape[-1] > k_chunk:
        raise ValueError(f"batched_gemm_to_f32: K={a_BMK.shape[-1]} exceeds the exact reduction length {k_chunk}")
    return torch.bmm(a_BMK, b_BKN)
