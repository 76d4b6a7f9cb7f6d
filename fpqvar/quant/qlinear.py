"""QuantLinear: the drop-in replacement for a block's ``nn.Linear`` (fpqvar-method.md sections 3-6, 13).

Weights are quantized once, at conversion: the module keeps the codes (``weight_codes``, uint8 ``(O, I)``, one code
per element, unpacked), the float32 scales (``weight_scale``, public layout of ``formats.scales``) and, for
asymmetric INT formats, ``weight_zero_point``; ``weight`` is the dequantized float copy the reference path
multiplies with (a non-persistent buffer: it is derived from the codes, so the state_dict holds only codes and
scales). Activations are fake-quantized in the forward, dynamically (absmax per token / group) or with static
calibrated scales (``act_scale``). Block formats (MX / NVFP4) keep codes, scale BYTES as the format stores them
(uint8 ``weight_scale``) and NVFP4's float32 ``weight_tensor_scale`` (``block_linear.py``). The forward, top to
bottom:

    x -> [x * lam, only for shared AdaLN] -> [rotation: x @ blockdiag(Q), online GHT / full Hadamard]
      -> [act quantization or DFQ] -> x @ W^T + b  [+ (x_t @ down^T) @ up^T: SVDQuant's low-rank branch]

The low-rank branch (``lowrank_up`` ``(O, r)``, ``lowrank_down`` ``(r, I)``, 16-bit) sees the transformed but
unquantized input ``x_t`` (nunchaku's ``SVDQW4A4Linear``); the quantized weight is then the residual
``W - up @ down``. Static activation parameters (``act_scale``, and ``act_zero_point`` for asymmetric formats)
may come in sets per VAR scale (``fpqvar.quant.static_act``; the module then needs the model's ``patch_nums``).

q/v biases of ``mat_qkv`` are not here: the model adds them after the GEMM. ``backend != "reference"`` hands the
forward to ``fpqvar.quant.fast`` (issue 9), which reads the codes / scales / specs / rotation stored here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fpqvar.formats import QuantizedTensor, dequantize, dfq_fake_quantize, fake_quantize, quantize
from fpqvar.quant.block_linear import block_weight_from_codes, quantize_block_activation, quantize_block_weight
from fpqvar.quant.spec import QuantSpec

__all__ = ["QuantLinear", "quantize_activation", "quantize_weight", "weight_from_codes"]


def _group(spec: QuantSpec) -> int | None:
    return spec.group_size if spec.granularity == "group" else None


def quantize_activation(x: torch.Tensor, spec: QuantSpec, scale: torch.Tensor | None = None,
                        zero_point: torch.Tensor | None = None) -> torch.Tensor:
    """Fake-quantize a linear's input ``x_..C`` along its last dim (dtype kept)."""
    if spec.block is not None:
        return quantize_block_activation(x, spec)
    if spec.dfq is not None:
        return dfq_fake_quantize(x, group_size=_group(spec), variant=spec.dfq, rounding=spec.rounding)
    if spec.fixed_scale is not None:
        return fake_quantize(x, spec.fmt, granularity="tensor", rounding=spec.rounding, scale=spec.fixed_scale,
                             zero_point=0.0 if spec.asymmetric else None)
    gran = None if spec.granularity == "group" else spec.granularity
    return fake_quantize(x, spec.fmt, group_size=_group(spec), granularity=gran, rounding=spec.rounding,
                         scale=scale if spec.static else None, zero_point=zero_point if spec.static else None)


def _weight_layout_kw(spec: QuantSpec) -> dict:
    return {"group_size": _group(spec), "granularity": None if spec.granularity == "group" else spec.granularity}


def quantize_weight(w_OI: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(codes uint8 (O, I), scale float32, zero_point or None)`` of a weight, grouped along in_features.

    Block formats: ``(codes, scale bytes uint8 (O, I / block), NVFP4 tensor scale or None)``.
    """
    if spec.block is not None:
        return quantize_block_weight(w_OI, spec)
    kw = _weight_layout_kw(spec)
    if spec.range_search is not None:
        s, zp = _searched_weight_range(w_OI.detach().to(torch.float32), spec, kw)
        kw = {**kw, "scale": s, "zero_point": zp}
    q = quantize(w_OI.detach(), spec.fmt, rounding=spec.rounding, **kw)
    return q.codes, q.scale, q.zero_point


def _searched_weight_range(w_OI: torch.Tensor, spec: QuantSpec, kw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point (the public layout: (O, G) / (O, 1) / (1, 1)) from PTQ4ARVG's percentile search,
    one search per scale group (per output channel for its ``channel_wise`` weights)."""
    from fpqvar.quant.static_act import percentile_range

    O, I = w_OI.shape
    shape = {"tensor": (1, 1), "channel": (O, 1)}.get(kw["granularity"]) or (O, I // kw["group_size"])
    xg = w_OI.reshape(shape[0] * shape[1], -1)  # one row per scale, in the scales' row-major order

    def fq(s_G, zp_G):
        y = fake_quantize(w_OI, spec.fmt, rounding=spec.rounding, scale=s_G.reshape(shape),
                          zero_point=zp_G.reshape(shape), **kw)
        return y.reshape(xg.shape)

    s, zp = percentile_range(xg, spec.fmt, fq)
    return s.reshape(shape), zp.reshape(shape)


def weight_from_codes(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, spec: QuantSpec,
                      dtype: torch.dtype) -> torch.Tensor:
    """Dequantized weight: ``decode(codes) * scale`` (or ``(codes - zp) * scale``), cast to ``dtype``.

    The in-memory conversion and the file loader both go through here, so they agree bit for bit. Block formats:
    ``scale`` = the scale bytes, ``zero_point`` = NVFP4's tensor scale (``quantize_weight``'s third item).
    """
    if spec.block is not None:
        return block_weight_from_codes(codes, scale, zero_point, spec, dtype)
    kw = _weight_layout_kw(spec)
    gran = "group" if kw["granularity"] is None else kw["granularity"]
    qt = QuantizedTensor(codes=codes, scale=scale, fmt=spec.format, group_size=kw["group_size"],
                         dim=1 if gran == "group" else -1, shape=tuple(codes.shape), zero_point=zero_point,
                         granularity=gran, dtype=torch.float32)
    return dequantize(qt).to(dtype)


class QuantLinear(nn.Module):
    """A linear layer with quantized weights and/or input activations (either may be None = float)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool, weight_spec: QuantSpec | None,
                 act_spec: QuantSpec | None, rotation: nn.Module | None = None, input_scale: nn.Module | None = None,
                 dtype: torch.dtype = torch.float32, device=None, lowrank_rank: int = 0,
                 lowrank_dtype: torch.dtype = torch.float16, patch_nums: tuple[int, ...] | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_spec, self.act_spec = weight_spec, act_spec
        self.backend = "reference"
        # online x * lam, only where lam cannot be fused into ada_lin (shared AdaLN, var-d36); else None
        self.input_scale = input_scale
        self.rotation = rotation
        # float weight: persistent only when the weight is not quantized (else it is derived from the codes)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=dtype, device=device),
                             persistent=weight_spec is None)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None
        if weight_spec is not None:
            self.register_buffer("weight_codes", torch.zeros(out_features, in_features, dtype=torch.uint8,
                                                             device=device))
            block = weight_spec.block
            self.register_buffer("weight_scale", torch.ones(self._weight_scale_shape(), device=device,
                                                            dtype=torch.float32 if block is None else torch.uint8))
            if block is not None and block.tensor_scale:  # NVFP4's float32 per-tensor scale
                self.register_buffer("weight_tensor_scale", torch.ones((), device=device))
            if weight_spec.asymmetric:
                self.register_buffer("weight_zero_point", torch.zeros(self._weight_scale_shape(), device=device))
            else:
                self.weight_zero_point = None
        # lambda (GALT / SmoothQuant) already applied upstream (fused into ada_lin): kept for inspection and the
        # file, never used by the forward. Set by quantize_ / the loader with set_input_lambda.
        self.input_lambda: torch.Tensor | None = None
        self.patch_nums = None if patch_nums is None else tuple(int(p) for p in patch_nums)
        self.act_zero_point = None
        if act_spec is not None and act_spec.static:
            from fpqvar.quant.static_act import num_sets

            n = 1 if act_spec.granularity == "tensor" else in_features // act_spec.group_size
            shape = (n,)
            if act_spec.static_sets is not None:
                if self.patch_nums is None:
                    raise ValueError(f"QuantLinear: act spec {act_spec.short()} keeps one set per scale; pass the "
                                     "model's patch_nums")
                shape = (num_sets(act_spec, len(self.patch_nums)), n)
            self.register_buffer("act_scale", torch.ones(shape, device=device))
            if act_spec.asymmetric:
                del self.act_zero_point
                self.register_buffer("act_zero_point", torch.zeros(shape, device=device))
        else:
            self.act_scale = None
        if lowrank_rank:
            self.register_buffer("lowrank_up", torch.zeros(out_features, lowrank_rank, dtype=lowrank_dtype,
                                                           device=device))
            self.register_buffer("lowrank_down", torch.zeros(lowrank_rank, in_features, dtype=lowrank_dtype,
                                                             device=device))
        else:
            self.lowrank_up = self.lowrank_down = None

    def _weight_scale_shape(self) -> tuple[int, int]:
        s = self.weight_spec
        if s.granularity == "tensor":
            return (1, 1)
        if s.granularity == "channel":
            return (self.out_features, 1)
        return (self.out_features, self.in_features // s.group_size)

    # ------------------------------------------------------------------ construction
    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, weight_spec: QuantSpec | None, act_spec: QuantSpec | None,
                    rotation: nn.Module | None = None, act_scale: torch.Tensor | None = None,
                    input_scale: nn.Module | None = None, *, act_zero_point: torch.Tensor | None = None,
                    weight_OI: torch.Tensor | None = None, weight_q=None,
                    lowrank: tuple[torch.Tensor, torch.Tensor] | None = None,
                    patch_nums: tuple[int, ...] | None = None) -> "QuantLinear":
        """Quantize ``linear``'s (already transformed) weight now; the original module is not modified.

        ``weight_OI``: the float weight to quantize instead of ``linear.weight`` (SVDQuant's residual);
        ``weight_q``: ``(codes, scale, zero_point)`` already rounded (GPTQ), installed as they are;
        ``lowrank``: ``(up_Or, down_rI)`` in their storage dtype.
        """
        w = linear.weight
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, weight_spec=weight_spec,
                act_spec=act_spec, rotation=rotation, input_scale=input_scale, dtype=w.dtype, device=w.device,
                lowrank_rank=0 if lowrank is None else int(lowrank[0].shape[1]),
                lowrank_dtype=torch.float16 if lowrank is None else lowrank[0].dtype, patch_nums=patch_nums)
        if lowrank is not None:
            q.lowrank_up.copy_(lowrank[0])
            q.lowrank_down.copy_(lowrank[1])
        if weight_OI is not None:
            w = weight_OI.to(w.device)
        if linear.bias is not None:
            q.bias.copy_(linear.bias)
        if weight_spec is None:
            q.weight.copy_(w)
        else:
            codes, scale, zp = quantize_weight(w.float(), weight_spec) if weight_q is None else weight_q
            q.weight_codes.copy_(codes)
            q.weight_scale.copy_(scale)
            if zp is not None:
                (q.weight_zero_point if weight_spec.block is None else q.weight_tensor_scale).copy_(zp)
            q.refresh_weight()
        if q.act_scale is not None:
            if act_scale is None:
                raise ValueError("QuantLinear.from_linear: a static act spec needs act_scale (from calibration)")
            q.act_scale.copy_(act_scale.reshape(q.act_scale.shape))
            if q.act_zero_point is not None:
                if act_zero_point is None:
                    raise ValueError("QuantLinear.from_linear: a static asymmetric act spec needs act_zero_point")
                q.act_zero_point.copy_(act_zero_point.reshape(q.act_zero_point.shape))
        return q

    def set_input_lambda(self, lam_C: torch.Tensor | None) -> None:
        if lam_C is None:
            self.input_lambda = None
            return
        if tuple(lam_C.shape) != (self.in_features,):
            raise ValueError(f"QuantLinear.set_input_lambda: need shape ({self.in_features},), got "
                             f"{tuple(lam_C.shape)}")
        if "input_lambda" not in self._buffers:
            del self.input_lambda
            self.register_buffer("input_lambda", lam_C.detach().to(torch.float32).clone())
        else:
            self.input_lambda.copy_(lam_C)

    @torch.no_grad()
    def refresh_weight(self) -> None:
        """Recompute the dequantized ``weight`` from codes and scales (after loading a state_dict)."""
        if self.weight_spec is not None:
            aux = getattr(self, "weight_tensor_scale", None) if self.weight_spec.block else self.weight_zero_point
            self.weight.copy_(weight_from_codes(self.weight_codes, self.weight_scale, aux, self.weight_spec,
                                                self.weight.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.refresh_weight()

    # ------------------------------------------------------------------ forward
    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        """[x * lam], rotation: the transformed input before quantization (the low-rank branch's input)."""
        if self.input_scale is not None:
            x = self.input_scale(x)
        if self.rotation is not None:
            x = self.rotation(x)
        return x

    def quantize_input(self, x: torch.Tensor, scale_index: int | None = None, *,
                       transformed: bool = False) -> torch.Tensor:
        """[x * lam], rotation, then activation quantization: what the GEMM sees as its left operand.
        ``scale_index``: the VAR scale of every row of ``x`` (static sets per scale; else found from L)."""
        if not transformed:
            x = self.transform_input(x)
        if self.act_spec is not None:
            if self.act_spec.static:
                from fpqvar.quant.static_act import quantize_static

                x = quantize_static(x, self.act_spec, self.act_scale, self.act_zero_point, self.patch_nums,
                                    scale_index)
            else:
                x = quantize_activation(x, self.act_spec, self.act_scale)
        return x

    def forward(self, x: torch.Tensor, scale_index: int | None = None) -> torch.Tensor:
        if self.backend != "reference" and self.lowrank_up is None and scale_index is None:
            from fpqvar.quant import fast

            return fast.forward(self, x)
        xt = self.transform_input(x)
        y = F.linear(self.quantize_input(xt, scale_index, transformed=True), self.weight, self.bias)
        if self.lowrank_up is not None:
            y = y + F.linear(F.linear(xt, self.lowrank_down.to(xt.dtype)), self.lowrank_up.to(xt.dtype))
        return y

    def extra_repr(self) -> str:
        w = "float" if self.weight_spec is None else self.weight_spec.short()
        a = "float" if self.act_spec is None else self.act_spec.short()
        lr = "" if self.lowrank_up is None else f", lowrank={self.lowrank_up.shape[1]}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"W={w}, A={a}{lr}, backend={self.backend}")
