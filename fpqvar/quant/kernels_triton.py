"""The ``"triton"`` backend (CUDA only): hand-written Triton kernels for the elementwise stages of
:mod:`fpqvar.quant.kernels`, same arithmetic and results; the GEMMs are the selected exact integer GEMM
(``kernels_gemm.segment_dot``: IMMA int8 or float32 with TF32-safe integer operands).

Exactness on the GPU needs three things Triton does not do by default, all set here:

- IEEE division: ``x / s`` compiles to an approximate ``div.full.f32``; the quantizer uses ``div_rn``;
- no fused multiply-add: every kernel is launched with ``enable_fp_fusion=False`` (else ``acc + S * D`` becomes
  one FMA with a single rounding instead of the datapath's two);
- no reassociation: Triton does not reorder float arithmetic (no fast-math flags).

Kernels: the quantizer (divide, clamp, round on the scaled grid, tie flags; the rare ties are then decided by
``kernels._fix_ties``, in torch) and the per-segment accumulator update ``acc = fl32(acc + fl32(fl32(s_x s_w) D))``.
Written without access to a GPU on the development machine: the tests (``tests/quant/test_fast_backends.py``)
compare them bit for bit with the plain-PyTorch path and skip where CUDA or Triton is missing.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from fpqvar.kernels import int_gemm as IG
from fpqvar.quant import kernels as K
from fpqvar.quant import kernels_gemm as KG

__all__ = ["unavailable_reason", "quantize_act", "quantize_act_dfq", "linear_int"]

_BLOCK = 1024


def unavailable_reason(device: torch.device | str | None = None) -> str | None:
    """Why the Triton backend cannot run on ``device`` (``None``: it can)."""
    dev = torch.device(device) if device is not None else None
    if not torch.cuda.is_available():
        return "the 'triton' backend needs a CUDA device (torch.cuda.is_available() is False)"
    if dev is not None and dev.type != "cuda":
        return f"the 'triton' backend runs on CUDA tensors, got device {dev}"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "the 'triton' backend needs the triton package (not importable)"
    return None


@lru_cache(maxsize=None)
def _kernels():
    import triton
    import triton.language as tl

    div_rn = getattr(tl.math, "div_rn", None) or tl.div_rn

    @triton.jit
    def _round(t, emin_bits, MBITS: tl.constexpr, RNE: tl.constexpr, DFQ: tl.constexpr):
        bits = t.to(tl.int32, bitcast=True)
        if DFQ:  # sign + exponent: negative t read as negative ints, clamped to emin (kernels._round_scaled)
            eb = bits & -8388608  # 0xFF800000
        else:
            eb = bits & 0x7F800000
        eb = tl.maximum(eb, emin_bits)
        if RNE:
            big = ((eb + ((23 - MBITS) << 23)) | 0x400000).to(tl.float32, bitcast=True)
            r = (t + big) - big
            half = (eb - ((MBITS + 1) << 23)).to(tl.float32, bitcast=True)
            tie = tl.abs(t - r) == half
        else:
            step = (eb - (MBITS << 23)).to(tl.float32, bitcast=True)
            u = div_rn(t, step)
            fl = tl.floor(u)
            frac = u - fl
            tie = frac == 0.5
            r = (fl + (frac >= 0.5).to(tl.float32)) * step
        return r, tie

    @triton.jit
    def quant_kernel(x_ptr, sneg_ptr, spos_ptr, n_ptr, tie_ptr, numel, group, lo, hi, emin_bits,
                     MBITS: tl.constexpr, RNE: tl.constexpr, DFQ: tl.constexpr, CLAMP: tl.constexpr,
                     BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        x = tl.load(x_ptr + offs, mask=mask, other=0.0)
        gi = offs // group
        sp = tl.load(spos_ptr + gi, mask=mask, other=1.0)
        if DFQ:
            sn = tl.load(sneg_ptr + gi, mask=mask, other=1.0)
            s = tl.where(x <= 0, sn, sp)
        else:
            s = sp
        t = div_rn(x, s)
        if CLAMP:
            t = tl.minimum(tl.maximum(t, lo), hi)
        r, tie = _round(t, emin_bits, MBITS, RNE, DFQ)
        tl.store(n_ptr + offs, r.to(tl.int8), mask=mask)
        tl.store(tie_ptr + offs, tie.to(tl.int8), mask=mask)

    @triton.jit
    def acc_kernel(acc_ptr, s_ptr, sw_ptr, d_ptr, O, numel, s_stride, FIRST: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        t = offs // O
        o = offs - t * O
        s = tl.load(s_ptr + t * s_stride, mask=mask, other=0.0)
        sw = tl.load(sw_ptr + o, mask=mask, other=0.0)
        d = tl.load(d_ptr + offs, mask=mask, other=0).to(tl.float32)
        p = (s * sw) * d
        if FIRST:
            acc = p
        else:
            acc = tl.load(acc_ptr + offs, mask=mask, other=0.0) + p
        tl.store(acc_ptr + offs, acc, mask=mask)

    return quant_kernel, acc_kernel


def _launch_quant(xg, sk_neg, sk_pos, grid: K.IntGrid, emin_grid: K.IntGrid, rounding: str, dfq: bool,
                  clamp: bool):
    quant_kernel, _ = _kernels()
    x = xg.contiguous().view(-1)
    n = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    tie = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    numel = x.numel()
    if numel:
        quant_kernel[(triton_cdiv(numel, _BLOCK),)](
            x, sk_neg.contiguous().view(-1), sk_pos.contiguous().view(-1), n, tie, numel, xg.shape[-1],
            float(grid.lo), float(grid.hi), (emin_grid.emin + 127) << 23, MBITS=emin_grid.mbits,
            RNE=rounding == "rne", DFQ=dfq, CLAMP=clamp, BLOCK=_BLOCK, enable_fp_fusion=False)
    return n.view(xg.shape), tie.view(xg.shape).bool()


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def quantize_act(x_TI, grid: K.IntGrid, *, group_size, rounding="rne", scale=None, per_tensor=False):
    """As :func:`kernels.quantize_act` (same results)."""
    K._check_rounding(rounding)
    xg, s = K.group_scales(x_TI, grid, group_size, scale, per_tensor)
    T, G, _ = xg.shape
    sk = K._scaled_divisor(s, grid.k).expand(T, G, 1)
    n, tie = _launch_quant(xg, sk, sk, grid, grid, rounding, False, scale is not None)
    K._fix_ties(n, tie, xg, sk, grid, rounding)
    return n.view(T, x_TI.shape[1]), s.reshape(T, G).contiguous()


def quantize_act_dfq(x_TI, neg: K.IntGrid, pos: K.IntGrid, *, group_size, rounding="rne"):
    """As :func:`kernels.quantize_act_dfq` (same results)."""
    K._check_rounding(rounding)
    xg = K._group_view(x_TI, group_size)
    T, G, _ = xg.shape
    s_neg, s_pos = K.dfq_scales(xg, neg, pos)
    sk_neg, sk_pos = K._scaled_divisor(s_neg, neg.k), K._scaled_divisor(s_pos, pos.k)
    clamp_grid = K.IntGrid("dfq", 0, neg.lo, pos.hi, pos.emin, pos.mbits)
    n, tie = _launch_quant(xg, sk_neg, sk_pos, clamp_grid, pos, rounding, True, False)
    if bool(tie.any()):
        K._fix_ties(n, tie, xg, torch.where(xg <= 0, sk_neg, sk_pos), pos, rounding, dfq=True)
    n = n.view(T, x_TI.shape[1])
    return n.clamp(max=0), n.clamp(min=0), s_neg.reshape(T, G).contiguous(), s_pos.reshape(T, G).contiguous()


def linear_int(parts, w: KG.PreparedWeight, bias, fold_unit=None, impl=None):
    """As :func:`kernels.linear_int` (same results); one Triton accumulator update per segment and part."""
    T = parts[0][0].shape[0]
    O, seg = w.w_IO.shape[1], w.seg
    G = KG._check_linear(parts, w)
    impl = KG.gemm_impl(w.w_IO.device, impl)
    if T == 0 or not (KG._foldable(parts, w) if fold_unit is None else fold_unit):
        return KG.linear_int(parts, w, bias, fold_unit, impl)
    parts = [tuple(p[:3]) for p in parts]
    _, acc_kernel = _kernels()
    sws = [w.scaled(unit) for _, _, unit in parts]
    ops = [IG.to_operand(impl, n) for n, _, _ in parts]
    acc = torch.empty((T, O), dtype=torch.float32, device=w.w_IO.device)
    numel, first = T * O, True
    for g in range(G):
        cols = slice(g * seg, (g + 1) * seg)
        for a, (n, s, _), sw in zip(ops, parts, sws):
            d = KG.segment_dot(impl, a, w, slice(None), cols)  # float32, exact
            sg = s[:, g]
            acc_kernel[(triton_cdiv(numel, _BLOCK),)](acc, sg, sw[g], d, O, numel, sg.stride(0), FIRST=first,
                                                      BLOCK=_BLOCK, enable_fp_fusion=False)
            first = False
    if bias is not None:
        acc.add_(bias.to(torch.float32))
    return acc
