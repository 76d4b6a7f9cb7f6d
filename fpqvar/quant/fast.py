"""Fast, bit-exact forward of a :class:`~fpqvar.quant.qlinear.QuantLinear` (issue 9): the dispatch entry.

``QuantLinear.forward`` calls :func:`forward` when its ``backend`` is not ``"reference"``. Backends:

- ``"exact"`` (the default fast path): plain PyTorch, CPU or CUDA (:mod:`fpqvar.quant.kernels`);
- ``"compile"``: the same arithmetic with the elementwise stages fused by ``torch.compile`` (first call per
  process: one to two minutes of compilation). Measured slower than ``"exact"`` on the dev CPU (0.97x vs 0.75x of
  float32 over var-d16's layers, ``benchmarks/bench_fast_linear.py``): one compiled call per segment costs more in
  guards than the fused loop saves;
- ``"triton"``: CUDA only, hand-written Triton kernels for the elementwise stages
  (:mod:`fpqvar.quant.kernels_triton`); refused with the reason where CUDA or Triton is missing.

The integer GEMMs inside are ``"int8"`` (``torch._int_mm``), ``"float32"`` (integer-valued float32 operands),
``"u8s8"`` (oneDNN's quantized linear, CPU) or ``"native"`` (our C loop, CPU), the same bits every way; which one
runs is measured once per process
per operand class (``fpqvar.kernels``, operations ``int_gemm:16`` for FP4 codes, ``:64`` for FP6, ``:127`` for int8;
``kernels.override(int_gemm=...)`` or ``FPQVAR_KERNELS=int_gemm=...`` chooses explicitly). If the chosen GEMM
raises at run time it is dropped for the device and the call is retried with the next one.

All three compute the datapath's arithmetic (``fpqvar.hw.datapath``, see ``kernels``): the output is float32,
bit for bit the datapath model of the layer, then cast to the input's dtype. The rotation (GHT) is the module's
own ``rotation`` (a 128 x 128 matmul), so the quantizer sees the same floats as on the reference path.

What the fast path covers (else it runs the reference path of the module, same result as ``backend=
"reference"``): quantized weights *and* activations; weight formats whose grid is int8 after a power-of-two
scaling (e2m1, e1m2, e3m0, e2m3, int2..int8; symmetric), per group / channel / tensor; activations of such a
format per group / token / tensor, dynamic or static, or DFQ (fp4, fp6). Inputs with Inf or NaN also take the
reference path (its scale rule skips non-finite values; the datapath has no such values).

Activation codes come from the exact quotient ``|x| / s`` (the datapath's quantizer); the reference path's
``formats.fake_quantize`` rounds ``fl32(x / s)`` instead: the two differ only where that float32 quotient is
exactly a grid midpoint while the real quotient is not (about one element in 2**24; ``kernels`` docstring).
The decoded int8 weights are cached on the module (``_fast_plan``), keyed by the version counters of the codes,
scales and bias, so loading a state_dict or editing the codes in place rebuilds the cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fpqvar import kernels
from fpqvar.formats import DFQ_VARIANTS
from fpqvar.kernels import int_gemm as IG
from fpqvar.quant import fast_lean as FL
from fpqvar.quant import kernels as K
from fpqvar.quant import kernels_gemm as KG
from fpqvar.quant import kernels_tune as KT

__all__ = ["BACKENDS", "forward", "plan_for", "unsupported_reason", "backend_unavailable_reason"]

BACKENDS = ("exact", "compile", "triton")


@dataclass
class _Plan:
    """Everything the fast forward needs that does not depend on ``x`` (built once per weight version)."""

    key: tuple
    reason: str | None  # why the fast path does not apply (then the reference path runs)
    weight: KG.PreparedWeight | None = None  # int8 (I, O) operand, per-segment scales
    seg: int = 0
    kw: int = 0  # weight grid exponent: values * 2**kw are integers
    act: K.IntGrid | None = None  # activation grid (DFQ: the positive side)
    neg: K.IntGrid | None = None  # DFQ negative side
    act_group: int | None = None  # None: per token / tensor
    per_tensor: bool = False
    static_scale: torch.Tensor | None = None  # (1, G_act)
    bias: torch.Tensor | None = None  # float32
    max_abs: int = 127  # largest |integer operand| of either GEMM side (selects the GEMM's operand class)
    lean: FL.Lean | None = None  # the few-row form (fast_lean), where it applies


def _ver(t: torch.Tensor | None):
    return None if t is None else (t.data_ptr(), t._version, t.device, t.dtype)


def _key(q) -> tuple:
    return (_ver(getattr(q, "weight_codes", None)), _ver(getattr(q, "weight_scale", None)), _ver(q.bias),
            _ver(getattr(q, "act_scale", None)), q.weight_spec, q.act_spec, q.in_features, q.out_features)


def _group_size(spec, width: int) -> int:
    return spec.group_size if spec.granularity == "group" else width


def unsupported_reason(q) -> str | None:
    """Why ``q`` cannot run on the fast path (``None``: it can)."""
    ws, as_ = q.weight_spec, q.act_spec
    if ws is None or as_ is None:
        return "float weights or activations (nothing to gain: the reference path is a float linear)"
    if ws.block is not None or as_.block is not None:
        return "block-scaled formats (MX / NVFP4) have no fast path here"
    if K.int_grid(ws.fmt) is None or ws.asymmetric:
        return f"weight format {ws.fmt!r} has no symmetric int8 grid"
    if ws.granularity == "token":
        return "weight granularity 'token'"
    if as_.static_sets is not None:
        return "static activation sets per scale (static_act)"
    if as_.dfq is None:
        if K.int_grid(as_.fmt) is None or as_.asymmetric:
            return f"activation format {as_.fmt!r} has no symmetric int8 grid"
        if as_.granularity == "channel":
            return "activation granularity 'channel'"
    return None


def _build_plan(q, key: tuple) -> _Plan:
    reason = unsupported_reason(q)
    if reason is not None:
        return _Plan(key, reason)
    ws, as_ = q.weight_spec, q.act_spec
    I, O = q.in_features, q.out_features
    ga, gw = _group_size(as_, I), _group_size(ws, I)
    seg = math.gcd(ga, gw)
    w_IO = K.weight_operand(q.weight_codes, ws.fmt)
    sw = q.weight_scale.to(torch.float32).expand(O, I // gw) if ws.granularity != "group" else q.weight_scale
    weight = KG.PreparedWeight(w_IO, KG.expand_scales(sw.to(torch.float32), I, seg), seg)
    p = _Plan(key, None, weight=weight, seg=seg, kw=K.int_grid(ws.fmt).k,
              act_group=ga if as_.granularity in ("group", "token") else None,
              per_tensor=as_.granularity == "tensor",
              bias=None if q.bias is None else q.bias.detach().to(torch.float32))
    if as_.granularity == "token":
        p.act_group = None
    if as_.dfq is not None:
        v = DFQ_VARIANTS[as_.dfq]
        p.neg, p.act = K.int_grid(v.neg.name), K.int_grid(v.pos.name)
    else:
        p.act = K.int_grid(as_.fmt)
        if as_.static:
            n_act = I // ga if as_.granularity == "group" else 1
            p.static_scale = q.act_scale.detach().to(torch.float32).reshape(1, n_act)
    grids = [g for g in (p.act, p.neg) if g is not None]
    p.max_abs = max([weight.w_absmax] + [max(-g.lo, g.hi) for g in grids])
    p.lean = FL.prepare(p, as_.rounding)
    return p


def plan_for(q) -> _Plan:
    """The cached plan of ``q`` (rebuilt when its codes, scales or bias change)."""
    key = _key(q)
    p = q.__dict__.get("_fast_plan")
    if p is None or p.key != key:
        p = _build_plan(q, key)
        q.__dict__["_fast_plan"] = p
    return p


def backend_unavailable_reason(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device`` here (``None``: it can)."""
    if backend not in BACKENDS:
        return f"unknown fast backend {backend!r}; known: {', '.join(BACKENDS)} (or 'reference')"
    if backend == "triton":
        from fpqvar.quant import kernels_triton

        return kernels_triton.unavailable_reason(device)
    return None


def _reference(q, x: torch.Tensor) -> torch.Tensor:
    """The module's reference computation (QuantLinear.forward with backend 'reference')."""
    return F.linear(q.quantize_input(x), q.weight, q.bias)


def _quantizers(backend: str):
    if backend == "exact":
        return K.quantize_act_ranged, K.quantize_act_dfq_ranged, KG.linear_int
    if backend == "compile":
        from fpqvar.quant import kernels_compile as C

        return C.quantize_act, C.quantize_act_dfq, C.linear_int
    from fpqvar.quant import kernels_triton as TR

    return TR.quantize_act, TR.quantize_act_dfq, TR.linear_int


def forward(q, x: torch.Tensor) -> torch.Tensor:
    """``y = datapath(Q(rotate(x)), Q(W)) + b`` for a QuantLinear ``q``, in ``x``'s dtype."""
    backend = q.backend
    why = backend_unavailable_reason(backend, x.device)
    if why is not None:
        raise ValueError(f"QuantLinear.backend={backend!r}: {why}")
    if x.shape[-1] != q.in_features:
        raise ValueError(f"QuantLinear: input of shape {tuple(x.shape)} does not match in_features={q.in_features}")
    p = plan_for(q)
    if p.reason is not None:
        return _reference(q, x)
    impl = KG.gemm_impl(x.device, max_abs=p.max_abs)
    try:
        try:
            return _forward(q, p, x, *_quantizers(backend), impl, tune=True)
        except RuntimeError as e:  # the chosen GEMM failed on this shape / device: drop it, once
            fallback = kernels.demote(IG.op_name(p.max_abs), x.device, impl, str(e))
            if fallback == impl:
                raise
            return _forward(q, p, x, *_quantizers(backend), fallback)
    except K.OutOfExactRange:  # Inf / NaN input (the reference scale rule skips them), or a tiny absmax
        return _reference(q, x)


def _forward(q, p: _Plan, x: torch.Tensor, quant, quant_dfq, linear, impl: str, tune: bool = False) -> torch.Tensor:
    if getattr(q, "input_scale", None) is not None:  # online lambda (shared AdaLN, var-d36): before the rotation
        x = q.input_scale(x)
    xr = q.rotation(x) if q.rotation is not None else x
    x_TI = xr.reshape(-1, q.in_features).to(torch.float32).contiguous()
    if p.static_scale is not None and bool(torch.isnan(x_TI).any()):
        return _reference(q, x)  # (dynamic scales carry Inf / NaN to the quantizer's check: OutOfExactRange)
    if tune and linear is KG.linear_int and p.lean is not None:  # the exact backend, few rows
        y = FL.linear(p.lean, x_TI, impl)
        if y is not None:
            return y.view(*x.shape[:-1], q.out_features).to(x.dtype)
    I = q.in_features
    unit_w = 2.0**-p.kw
    if p.neg is not None:
        n_neg, n_pos, s_neg, s_pos, *rng = quant_dfq(x_TI, p.neg, p.act, group_size=p.act_group,
                                                     rounding=q.act_spec.rounding)
        parts = [(n_neg, KG.expand_scales(s_neg, I, p.seg), unit_w * 2.0**-p.neg.k, *rng),
                 (n_pos, KG.expand_scales(s_pos, I, p.seg), unit_w * 2.0**-p.act.k, *rng)]
    else:
        n, s, *rng = quant(x_TI, p.act, group_size=p.act_group, rounding=q.act_spec.rounding,
                           scale=p.static_scale, per_tensor=p.per_tensor)
        parts = [(n, KG.expand_scales(s, I, p.seg), unit_w * 2.0**-p.act.k, *rng)]
    if tune and linear is KG.linear_int:  # the exact backend: the GEMM chosen for this layer's shape
        impl = KT.choose(parts, p.weight, p.max_abs, x.device, impl)
    y = linear(parts, p.weight, p.bias, impl=impl)
    return y.reshape(*x.shape[:-1], q.out_features).to(x.dtype)
