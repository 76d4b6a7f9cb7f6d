"""Tensor-level quantization: scale -> round -> codes -> dequantize, and fake quantization.

``fake_quantize(x, fmt, ...)`` returns ``round_to_grid(x / s) * s`` in ``x``'s shape and dtype (computed in
float32). ``quantize`` returns the same information as codes + scales (``QuantizedTensor``), and
``dequantize(quantize(x, ...)) == fake_quantize(x, ...)`` bit for bit: both run the same float32 steps.

Scales are dynamic (absmax of each group, ``scales.py``) unless ``scale=`` is passed: static (calibrated)
scales in the public scale layout of ``scales.py``, or anything broadcastable to it. Asymmetric INT formats
(``uint*``) use min-max scales with a zero point (LiteVAR style): ``x_hat = (q - zp) * s``.

``fmt`` is a name (``"e2m1"``, ``"int4"`` ...) or a format object; ``group_size=None`` with
``granularity=None`` means one scale per tensor. NaN / Inf policy: see ``grid.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.formats.blocks import blocks, whole_rows
from fpqvar.formats.grid import _check_rounding, _codes_from_grid, _round_, decode, saturate_for_
from fpqvar.formats.scales import Layout, resolve_layout, work_absmax_scale, work_minmax_scale
from fpqvar.formats.spec import Format, IntFormat, get_format

__all__ = ["QuantizedTensor", "fake_quantize", "quantize", "dequantize"]


@dataclass(frozen=True)
class QuantizedTensor:
    """Codes (``torch.uint8``, ``x``'s shape, one per element, unpacked) and float32 scales.

    ``scale`` (and ``zero_point`` for asymmetric INT formats) use the public scale layout of ``scales.py``:
    ``x.ndim`` dims, reduced dims of size 1, ``dim`` cut into ``shape[dim] // group_size`` groups.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    fmt: Format
    group_size: int | None
    dim: int
    shape: tuple[int, ...]
    zero_point: torch.Tensor | None = None
    granularity: str = "tensor"
    dtype: torch.dtype = torch.float32

    @property
    def layout(self) -> Layout:
        return resolve_layout(self.shape, group_size=self.group_size, dim=self.dim,
                              granularity=self.granularity)


def _is_asym(fmt: Format) -> bool:
    return isinstance(fmt, IntFormat) and not fmt.symmetric


def _static(value, layout: Layout, name: str, device: torch.device, grid_max: float) -> torch.Tensor:
    s = torch.as_tensor(value, dtype=torch.float32, device=device)
    try:
        ok = torch.broadcast_shapes(s.shape, layout.scale_shape) == layout.scale_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"static {name} of shape {tuple(s.shape)} does not broadcast to the {layout.granularity} scale "
            f"shape {layout.scale_shape} of a tensor with shape {layout.shape}"
        )
    if name == "scale" and bool(((s <= 0) | ~torch.isfinite(s)).any()):
        raise ValueError(f"static scale must be finite and > 0 (shape {tuple(s.shape)})")
    if name == "scale" and not bool(torch.isfinite(s * grid_max).all()):
        raise ValueError(f"static scale up to {float(s.max()):.4g} times the grid maximum {grid_max} overflows "
                         "float32: every dequantized value must be finite")
    return layout.scale_to_work(s)


class _Plan:
    """Validated arguments plus the per-row scales (filled block by block when they are dynamic)."""

    def __init__(self, x, fmt, group_size, dim, rounding, granularity, scale, zero_point, power_of_two):
        self.fmt = get_format(fmt)
        _check_rounding(rounding)
        if not x.dtype.is_floating_point:
            raise ValueError(f"quantize to {self.fmt.name}: x must be a float tensor, got {x.dtype}")
        self.rounding, self.pow2 = rounding, power_of_two
        self.asym = _is_asym(self.fmt)
        if self.asym and power_of_two:
            raise ValueError(f"power_of_two scales are for symmetric formats, not {self.fmt.name!r}")
        if self.asym and scale is not None and zero_point is None:
            raise ValueError(f"a static scale for {self.fmt.name!r} needs zero_point= too")
        if not self.asym and zero_point is not None:
            raise ValueError(f"zero_point is only used by asymmetric formats, not {self.fmt.name!r}")
        self.layout = resolve_layout(x.shape, group_size=group_size, dim=dim, granularity=granularity)
        self.xw = self.layout.to_work(x)
        rows, n = self.xw.shape
        dev = x.device
        self.per_block = scale is None and whole_rows(n, dev)
        self.zp = None
        if scale is not None:
            self.s = _static(scale, self.layout, "scale", dev, self.fmt.max_value)
            if self.asym:
                self.zp = _static(zero_point, self.layout, "zero_point", dev, self.fmt.max_value)
        elif self.per_block:  # filled by rows()
            self.s = torch.empty((rows, 1), dtype=torch.float32, device=dev)
            if self.asym:
                self.zp = torch.empty_like(self.s)
        else:  # rows longer than a block: reduce first, then round block by block
            self.s, self.zp = self._dynamic(self.xw.to(torch.float32))

    def _dynamic(self, xc: torch.Tensor):
        if self.asym:
            return work_minmax_scale(xc, self.fmt)
        return work_absmax_scale(xc, self.fmt, self.pow2), None

    def rows(self, out: torch.Tensor | None = None):
        """Yield ``(rs, cs, q)``: grid values ``q`` (float32) of each block, scales filled as it goes.

        ``q`` is written into ``out[rs, cs]`` if ``out`` (float32, work shape) is given, else a fresh tensor.
        """
        xw = self.xw
        for rs, cs in blocks(*xw.shape, xw.device):
            xc = xw[rs, cs].to(torch.float32)
            if self.per_block:
                s, zp = self._dynamic(xc)
                self.s[rs] = s
                if zp is not None:
                    self.zp[rs] = zp
            s = self.s[rs]
            q = torch.div(xc, s) if out is None else torch.div(xc, s, out=out[rs, cs])
            if self.asym:
                _round_asym_(q, self.fmt, self.zp[rs], self.rounding)
            else:
                _round_(q, self.fmt, self.rounding, xc)
            yield rs, cs, q


def _round_asym_(t: torch.Tensor, fmt: IntFormat, zp: torch.Tensor, rounding: str) -> torch.Tensor:
    """``clamp(round(t) + zp, qmin, qmax)`` in place (integers stored in float32); Inf saturates."""
    if rounding == "rne":
        t.round_()
    else:
        t.add_(0.5).floor_()  # exact below 2**23; beyond, the clamp to [qmin, qmax] decides anyway
    return t.add_(zp).clamp_(float(fmt.qmin), float(fmt.qmax)).add_(0.0)


_F32_MAX = torch.finfo(torch.float32).max


def _dequant_(q: torch.Tensor, s: torch.Tensor, zp: torch.Tensor | None) -> torch.Tensor:
    if zp is not None:
        # the zero point shifts the grid by up to s / 2 past [min, max]: for a range reaching the float32
        # maximum the end code would dequantize to +-Inf, so saturate there (issue 16 item 5)
        return q.sub_(zp).mul_(s).clamp_(-_F32_MAX, _F32_MAX)
    return q.mul_(s)  # finite: fmt.max_value * s is finite for every scale (scales.cap_scale_, _static)


def fake_quantize(
    x: torch.Tensor,
    fmt: str | Format,
    *,
    group_size: int | None = None,
    dim: int = -1,
    rounding: str = "rne",
    granularity: str | None = None,
    scale: torch.Tensor | float | None = None,
    zero_point: torch.Tensor | float | None = None,
    power_of_two: bool = False,
) -> torch.Tensor:
    """Quantize-dequantize ``x`` onto ``fmt``; same shape and dtype as ``x``."""
    plan = _Plan(x, fmt, group_size, dim, rounding, granularity, scale, zero_point, power_of_two)
    if x.numel() == 0:
        return x.clone()
    out = torch.empty(plan.xw.shape, dtype=x.dtype, device=x.device)
    direct = x.dtype == torch.float32  # round in place in the output; else convert block by block
    for rs, cs, q in plan.rows(out if direct else None):
        q = _dequant_(q, plan.s[rs], None if plan.zp is None else plan.zp[rs])
        if not direct:
            out[rs, cs] = saturate_for_(q, x.dtype)
    return plan.layout.from_work(out).contiguous()


def quantize(
    x: torch.Tensor,
    fmt: str | Format,
    *,
    group_size: int | None = None,
    dim: int = -1,
    rounding: str = "rne",
    granularity: str | None = None,
    scale: torch.Tensor | float | None = None,
    zero_point: torch.Tensor | float | None = None,
    power_of_two: bool = False,
) -> QuantizedTensor:
    """Codes and scales of ``x`` on ``fmt``; NaN in ``x`` raises ``ValueError`` (see ``grid.py``)."""
    plan = _Plan(x, fmt, group_size, dim, rounding, granularity, scale, zero_point, power_of_two)
    if bool(torch.isnan(x).any()):
        raise ValueError(f"quantize to {plan.fmt.name}: input of shape {tuple(x.shape)} contains NaN")
    layout = plan.layout
    codes = torch.empty(plan.xw.shape, dtype=torch.uint8, device=x.device)
    for rs, cs, q in plan.rows():
        codes[rs, cs] = q.to(torch.uint8) if plan.asym else _codes_from_grid(q, plan.fmt)
    return QuantizedTensor(
        codes=layout.from_work(codes).contiguous(),
        scale=layout.scale_from_work(plan.s),
        fmt=plan.fmt,
        group_size=layout.group_size,
        dim=layout.dim,
        shape=tuple(x.shape),
        zero_point=None if plan.zp is None else layout.scale_from_work(plan.zp),
        granularity=layout.granularity,
        dtype=x.dtype,
    )


def dequantize(q: QuantizedTensor) -> torch.Tensor:
    """Values of a :class:`QuantizedTensor`, in its original dtype."""
    layout = q.layout
    codes_w = layout.to_work(q.codes)
    vals = codes_w.to(torch.float32) if _is_asym(q.fmt) else decode(codes_w, q.fmt)
    zp = None if q.zero_point is None else layout.scale_to_work(q.zero_point)
    out = saturate_for_(_dequant_(vals, layout.scale_to_work(q.scale), zp), q.dtype)
    return layout.from_work(out).to(q.dtype)
