"""The ``"compile"`` backend: :mod:`fpqvar.quant.kernels` with its elementwise stages fused by ``torch.compile``.

Same arithmetic, same results (tested bit for bit in a slow test): the quantizer (divide, round, tie flags) becomes
one loop over the activations, and each segment's ``acc = fl32(acc + fl32(fl32(s_x s_w u) D))`` one loop over the
accumulator. Inductor keeps every float32 rounding: its C++ kernels are built with ``-ffp-contract=off`` (no fused
multiply-add) and it does not reassociate; on CUDA its Triton kernels fuse multiply-adds unless
``emulate_precision_casts`` is set, which :func:`_compiled` does. The rare tie elements are then decided in eager
mode (``kernels._fix_ties``); the GEMMs are the selected exact integer GEMM (``kernels_gemm.segment_dot``). First
call per process: about 15-40 s of compilation (dynamic shapes: one graph for every token count).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from fpqvar.kernels import int_gemm as IG
from fpqvar.quant import kernels as K
from fpqvar.quant import kernels_gemm as KG

__all__ = ["quantize_act", "quantize_act_dfq", "linear_int"]


def _compiled(fn):
    """``torch.compile(fn, dynamic=True)``, with FMA contraction off for Triton (CUDA) code as well."""
    c = torch.compile(fn, dynamic=True)

    def run(*args):
        if args[0].device.type == "cuda":
            from torch._inductor import config

            with config.patch(emulate_precision_casts=True):
                return c(*args)
        return c(*args)

    return run


def _quant_core(xg: torch.Tensor, sk: torch.Tensor, lo: int, hi: int, emin: int, mbits: int, rne: bool,
                clamp: bool):
    t = xg / sk
    if clamp:
        t = t.clamp(lo, hi)
    r, tie, _ = K._round_scaled(t, K.IntGrid("", 0, lo, hi, emin, mbits), "rne" if rne else "ties_up")
    return r.to(torch.int8), tie


def _dfq_core(xg: torch.Tensor, sk_neg: torch.Tensor, sk_pos: torch.Tensor, lo: int, hi: int, emin: int,
              mbits: int, rne: bool):
    t = xg / torch.where(xg <= 0, sk_neg, sk_pos)
    r, tie, _ = K._round_scaled(t, K.IntGrid("", 0, lo, hi, emin, mbits), "rne" if rne else "ties_up", dfq=True)
    n = r.to(torch.int8)
    return n.clamp(max=0), n.clamp(min=0), tie


def _acc_first(s_T1: torch.Tensor, sw_O: torch.Tensor, d_TO: torch.Tensor) -> torch.Tensor:
    return (s_T1 * sw_O) * d_TO


def _acc_step(acc_TO: torch.Tensor, s_T1: torch.Tensor, sw_O: torch.Tensor, d_TO: torch.Tensor) -> torch.Tensor:
    return acc_TO + (s_T1 * sw_O) * d_TO


@lru_cache(maxsize=None)
def _fns():
    return {name: _compiled(f) for name, f in
            (("quant", _quant_core), ("dfq", _dfq_core), ("first", _acc_first), ("step", _acc_step))}


def quantize_act(x_TI, grid: K.IntGrid, *, group_size, rounding="rne", scale=None, per_tensor=False):
    """As :func:`kernels.quantize_act` (same results)."""
    xg, s = K.group_scales(x_TI, grid, group_size, scale, per_tensor)
    T, G, _ = xg.shape
    sk = K._scaled_divisor(s, grid.k)
    K._check_rounding(rounding)
    n, tie = _fns()["quant"](xg, sk.contiguous() if scale is None else sk.expand(T, G, 1).contiguous(),
                             grid.lo, grid.hi, grid.emin, grid.mbits, rounding == "rne", scale is not None)
    K._fix_ties(n, tie, xg, sk, grid, rounding)
    return n.view(T, x_TI.shape[1]), s.reshape(T, G).contiguous()


def quantize_act_dfq(x_TI, neg: K.IntGrid, pos: K.IntGrid, *, group_size, rounding="rne"):
    """As :func:`kernels.quantize_act_dfq` (same results)."""
    xg = K._group_view(x_TI, group_size)
    T, G, _ = xg.shape
    s_neg, s_pos = K.dfq_scales(xg, neg, pos)
    sk_neg, sk_pos = K._scaled_divisor(s_neg, neg.k), K._scaled_divisor(s_pos, pos.k)
    K._check_rounding(rounding)
    n_neg, n_pos, tie = _fns()["dfq"](xg, sk_neg, sk_pos, neg.lo, pos.hi, pos.emin, pos.mbits, rounding == "rne")
    if bool(tie.any()):
        n = (n_neg + n_pos).view(xg.shape)  # one of the two is 0 at every element
        s_el = torch.where(xg <= 0, sk_neg, sk_pos)
        K._fix_ties(n, tie, xg, s_el, pos, rounding, dfq=True)
        n_neg, n_pos = n.clamp(max=0), n.clamp(min=0)
    return (n_neg.view(T, x_TI.shape[1]), n_pos.view(T, x_TI.shape[1]), s_neg.reshape(T, G).contiguous(),
            s_pos.reshape(T, G).contiguous())


def linear_int(parts, w: KG.PreparedWeight, bias, fold_unit=None, impl=None):
    """As :func:`kernels.linear_int` (same results); one fused accumulator update per segment and part."""
    T = parts[0][0].shape[0]
    seg = w.seg
    G = KG._check_linear(parts, w)
    impl = KG.gemm_impl(w.w_IO.device, impl)
    if T == 0 or not (KG._foldable(parts, w) if fold_unit is None else fold_unit):
        return KG.linear_int(parts, w, bias, fold_unit, impl)
    parts = [tuple(p[:3]) for p in parts]
    f = _fns()
    sws = [w.scaled(unit) for _, _, unit in parts]
    ops = [IG.to_operand(impl, n) for n, _, _ in parts]
    acc = None
    for g in range(G):
        cols = slice(g * seg, (g + 1) * seg)
        for a, (n, s, _), sw in zip(ops, parts, sws):
            d = KG.segment_dot(impl, a, w, slice(None), cols)  # float32, exact
            s_col = s[:, g : g + 1].contiguous()
            acc = f["first"](s_col, sw[g], d) if acc is None else f["step"](acc, s_col, sw[g], d)
    if bias is not None:
        acc = acc + bias.to(torch.float32)
    return acc
