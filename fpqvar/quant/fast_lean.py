"""The exact backend's few-row path: the arithmetic of ``kernels.quantize_act*`` followed by
``kernels_gemm._linear_bmm`` (one block), in about a third of the ops and Python calls.

Why: at a few rows (batch-1 sampling calls its linears on 2 to 128 rows), a quantized linear costs its fixed
overhead, not its arithmetic. The general path builds per-call operand lists, expands scales and re-checks shapes and
strategies: for the default model's 256 -> 256 layer at 2 rows, 277 us per call against 73 us here, and 22 us for
the float ``nn.Linear`` (dev CPU, AVX512, 1 thread, min of 9 x 2000 calls, stop 19).

The quantizer and the accumulation are the selector's operation ``lean``: the PyTorch ops (``torch``, about 15 ops
and 3 host syncs for the quantizer, ``G * P + 1`` for the sums) or one C loop each (``native``,
:mod:`fpqvar.kernels.native`, where a C compiler is). Measured in stop 23 on the whole layer call (dev CPU, AVX512,
1 thread, int8 GEMM): 256 -> 256 at 2 rows 194 against 97 us, DFQ 1024 -> 256 at 8 rows 362 against 222 us (float
``nn.Linear`` 14 and 101 us).

Same bits as the general path, which stays the reference: the same quantizer steps on the same floats (absmax
scale, zero groups to 1, the exact-range check, ``fl32(x / (s 2**-k))``, ``kernels._round_scaled``, exact ties by
``kernels._fix_ties``), the same exact dot products (an integer-valued float32 batched GEMM or ``torch._int_mm`` per
segment, ``kernels_gemm.int_block_products``) and the same accumulation (``kernels_gemm.accumulate_products``); with
the GEMM ``"native"``, one C call makes the products and their accumulation (``native.int_linear``), as in the
general path.
``tests/quant/test_fast_lean.py`` checks that, and that the datapath agrees.

It applies (:func:`prepare`, :func:`linear`) on CPU, to dynamic activation scales per group where the activation
group is the segment (fpqvar-w4a4's layers; DFQ included), at most ``MAX_ROWS`` rows of parts and ``MAX_PRODUCTS``
products (one block; ``MAX_ROWS_NATIVE`` and ``MAX_PRODUCTS_NATIVE`` per thread with the C kernels, and no product
limit with the native GEMM, which keeps no products in memory), a foldable
unit (checked per call from the scale range, ``kernels_gemm.foldable_range``) and a GEMM already decided for the
call's shape (``kernels_tune.decided``). Otherwise :func:`linear` returns ``None`` and
the general path runs.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch

from fpqvar import kernels
from fpqvar.kernels import native
from fpqvar.kernels.select import Candidate, Operation
from fpqvar.quant import kernels as K
from fpqvar.quant import kernels_gemm as KG
from fpqvar.quant import kernels_tune as KT

__all__ = ["Lean", "prepare", "linear", "disabled", "ENABLED"]

ENABLED = True  # a switch for tests and benchmarks (False: always the general path); see :func:`disabled`
# Limits, measured on the default model's layers (dev CPU, 1 thread, int8 and float32 GEMMs): this path beat the
# general one up to 256 rows of parts and 3 * 2**17 products (1.5 MiB; fc2 at 72 rows: 0.84 against 0.98 ms, int8),
# not beyond (fc2 at 128 rows, 2**19 products: 1.61 against 1.56 ms).
MAX_ROWS = 256  # parts x rows
MAX_PRODUCTS = 3 << 17  # (segments, parts, rows, O) products, all in one block
# With the C kernels (operation "lean" = native) the path has no temporaries but the products, and beat the general
# path up to about 2**22 products per thread (stop 23, dev CPU, as is and under the AVX2 caps, 1 and 2 threads:
# var-d16 fc2 at 64 rows even, 128 rows slower; the default model's layers faster up to 512 rows); the C loops are
# single-threaded, so the limit is divided by torch's thread count.
MAX_ROWS_NATIVE = 1024
MAX_PRODUCTS_NATIVE = 1 << 22


@contextlib.contextmanager
def disabled():
    """Within the block, every call takes the general path (what this one saves, side by side)."""
    global ENABLED
    before, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = before


@dataclass
class Lean:
    """What a few-row call needs beyond the plan, built once per weight version."""

    weight: KG.PreparedWeight
    grids: tuple  # (act,) or DFQ (neg, pos)
    units: tuple[float, ...]  # per part: 2**-(k_x + k_w)
    rounding: str
    sw_GP1O: torch.Tensor  # s_w * unit per part (exact: powers of two), (G, P, 1, O)
    sw_GPO: torch.Tensor  # the same as (G, P, O), for the C sums
    bias: torch.Tensor | None
    max_abs: int


def prepare(p, rounding: str) -> Lean | None:
    """The few-row form of a fast-path plan (``fast._Plan``), or ``None`` where it does not apply."""
    w = p.weight
    if (w is None or w.w_IO.device.type != "cpu" or p.static_scale is not None or p.per_tensor
            or p.act_group != w.seg):
        return None
    unit_w = 2.0**-p.kw
    grids = (p.act,) if p.neg is None else (p.neg, p.act)
    units = tuple(unit_w * 2.0**-g.k for g in grids)
    return Lean(w, grids, units, rounding, w.scaled_stack(units), w.scaled_GPO(units), p.bias, p.max_abs)


def _foldable(lo: float, hi: float, lean: Lean) -> bool:
    return all(KG.foldable_range(lo, hi, u, lean.weight) for u in lean.units)


def linear(lean: Lean, x_TI: torch.Tensor, default_impl: str) -> torch.Tensor | None:
    """float32 ``y_TO`` of the datapath for float32 contiguous ``x_TI``, or ``None`` where this path does not apply.

    Raises ``kernels.OutOfExactRange`` like the quantizer (non-finite input, tiny absmax)."""
    w = lean.weight
    T, I = x_TI.shape
    P, G, seg, O = len(lean.grids), w.G, w.seg, w.w_IO.shape[1]
    if not ENABLED or T == 0:
        return None
    use_native = kernels.choose(OP, x_TI.device) == "native"
    if P * T > (MAX_ROWS_NATIVE if use_native else MAX_ROWS):
        return None
    impl = KT.decided(w, P, T, lean.max_abs, x_TI.device, default_impl)
    if impl is None or (impl == "float32" and seg > w.k_chunk()):
        return None
    # (the native GEMM keeps no products in memory: native.int_linear)
    if impl != "native" and G * P * T * O > (MAX_PRODUCTS_NATIVE // torch.get_num_threads() if use_native
                                              else MAX_PRODUCTS):
        return None
    xg = x_TI.view(T, G, seg)
    return (_linear_native if use_native else _linear_torch)(lean, xg, impl)


def _linear_torch(lean: Lean, xg: torch.Tensor, impl: str) -> torch.Tensor | None:
    """:func:`linear` after its checks, with the PyTorch ops."""
    w = lean.weight
    T, G, seg = xg.shape
    P, O = len(lean.grids), w.w_IO.shape[1]
    if P == 1:
        a, s_GPT1 = _quantize(lean, xg)
    else:
        a, s_GPT1 = _quantize_dfq(lean, xg)
    if a is None:
        return None
    if impl == "native":  # (the products scaled and summed as they are made)
        s_PTG = s_GPT1[..., 0].permute(1, 2, 0).contiguous()
        return w.native_linear(a.to(torch.int8), s_PTG, lean.units, lean.bias)
    if impl == "float32":
        d = torch.bmm(a.to(torch.float32).view(P * T, G, seg).transpose(0, 1), w.operand_GSO(impl))
    else:
        d = KG.int_block_products(impl, a.to(torch.int8), w, 0, G)
    acc = KG.accumulate_products(s_GPT1, lean.sw_GP1O, d.view(G, P, T, O))
    if lean.bias is not None:
        acc.add_(lean.bias)
    return acc


def _linear_native(lean: Lean, xg: torch.Tensor, impl: str) -> torch.Tensor | None:
    """:func:`linear` with the quantizer and the accumulation in C (:mod:`fpqvar.kernels.native`), same bits."""
    w = lean.weight
    T, G, seg = xg.shape
    P = len(lean.grids)
    dtype = torch.float32 if impl == "float32" else torch.int8
    ties_up = lean.rounding == "ties_up"
    if P == 1:
        q = native.quantize(xg, lean.grids[0], ties_up, dtype)
    else:
        q = native.quantize_dfq(xg, *lean.grids, ties_up, dtype)
    if q is None:
        raise K.OutOfExactRange("activation scales out of the exact range: non-finite input or a tiny absmax")
    a, s, lo, hi = q
    if not _foldable(lo, hi, lean):
        return None
    if impl == "native":  # (the products scaled and summed as they are made)
        return w.native_linear(a, s.view(P, T, G), lean.units, lean.bias)
    if impl == "float32":
        d = torch.bmm(a.view(P * T, G, seg).transpose(0, 1), w.operand_GSO(impl))
    else:
        d = KG.int_block_products(impl, a, w, 0, G, int32_ok=True)
    return native.accumulate(s.view(P, T, G), lean.sw_GPO, d, lean.bias)


def _quantize(lean: Lean, xg: torch.Tensor):
    """``kernels.quantize_act_ranged`` (dynamic, per group): the codes ``(T, I)`` (float32 integers, int8 after a
    tie repair) and the scales as ``(G, 1, T, 1)``; ``(None, None)`` where the unit does not fold."""
    grid = lean.grids[0]
    T, G, _ = xg.shape
    s = K._absmax(xg).div_(K._sc(grid.max_value, xg, torch.float32))
    lo, hi = K._guard_and_range(s)
    K._check_divisor_range(lo, hi, grid.k)
    if not _foldable(lo, hi, lean):
        return None, None
    sk = s * K._sc(2.0**-grid.k, s, torch.float32)
    r = K.codes(torch.div(xg, sk), xg, sk, grid, lean.rounding)
    return r.view(T, -1), s.as_strided((G, 1, T, 1), (1, 1, G, 1))  # (T, G, 1) contiguous, as (G, 1, T, 1)


def _quantize_dfq(lean: Lean, xg: torch.Tensor):
    """``kernels.quantize_act_dfq_ranged``: the negative-half codes stacked over the positive-half codes
    ``(2T, I)``, and the scales as ``(G, 2, T, 1)``; ``(None, None)`` where the unit does not fold."""
    neg, pos = lean.grids
    T, G, _ = xg.shape
    s_neg, s_pos, sk_neg, sk_pos, (lo, hi) = K.dfq_divisors(xg, neg, pos)
    if not _foldable(lo, hi, lean):
        return None, None
    r = K.codes(K.dfq_quotient(xg, sk_neg, sk_pos), xg, lambda: torch.where(xg <= 0, sk_neg, sk_pos), pos,
                lean.rounding, dfq=True)
    r = r.view(T, -1)
    s = torch.cat([s_neg, s_pos]).as_strided((G, 2, T, 1), (1, T * G, G, 1))  # (2, T, G) contiguous, as (G, 2, T, 1)
    return torch.cat([r.clamp(max=0), r.clamp(min=0)]), s


# --- the kernel selector's operation "lean": the PyTorch ops or the compiled C kernels of this path ---------------

OP = "lean"


def _bench(name: str):
    """:func:`linear` past its checks on an FP4 256 -> 768 layer and a DFQ 1024 -> 256 one at 8 rows (the default
    model's qkv and fc2 in batch-1 sampling), float32 GEMM (available everywhere; the same for both candidates)."""
    run_one = _linear_native if name == "native" else _linear_torch

    def bench(device: torch.device, size: str):
        from fpqvar.formats import DFQ_VARIANTS

        g = torch.Generator().manual_seed(0)
        calls = []
        v = DFQ_VARIANTS["fp4"]
        for I, O, grids in ((256, 768, (K.int_grid("e2m1"),)), (1024, 256, (K.int_grid(v.neg.name),
                                                                              K.int_grid(v.pos.name)))):
            w = torch.randint(-12, 13, (I, O), generator=g, dtype=torch.int8)
            pw = KG.PreparedWeight(w, torch.rand((O, I // 128), generator=g) + 0.5, 128)
            plan = types.SimpleNamespace(weight=pw, static_scale=None, per_tensor=False, act_group=128, kw=1,
                                         act=grids[-1], neg=grids[0] if len(grids) == 2 else None, bias=None,
                                         max_abs=16)
            x = torch.randn((2 if size == "probe" else 8, I // 128, 128), generator=g)
            calls.append((prepare(plan, "rne"), x))

        def run():
            return [run_one(lean, x, "float32") for lean, x in calls]

        return run

    return bench


kernels.SELECTOR.register(Operation(OP, "the exact few-row linear's quantizer and accumulation", (
    Candidate("torch", "PyTorch ops (about 25 per call)", _bench("torch")),
    Candidate("native", "compiled C, one loop each (fpqvar.kernels.native)", _bench("native"), native.unavailable),
), exact=True, margin=1.05))
