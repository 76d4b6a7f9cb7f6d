"""Tensor-level quantization: scale -> round -> (codes) -> dequantize, and fake quantization.

``fake_quantize(x, fmt, ...)`` returns ``round_to_grid(x / s) * s`` in ``x``'s shape and dtype (computed in
float32). ``quantize`` returns the same information as codes + scales (``QuantizedTensor``), and
``dequantize(quantize(x, ...)) == fake_quantize(x, ...)`` bit for bit: both run the same float32 steps.

Scales are dynamic (absmax of each group, ``scales.py``) unless ``scale=`` is passed (static / calibrated scales,
in the public scale layout of ``scales.py``, or any tensor / float broadcastable to it). Asymmetric INT formats
(``uint*``) use min-max scales with a zero point (LiteVAR style): ``x_hat = (q - zp) * s``.

``fmt`` is a name (``"e2m1"``, ``"int4"`` ...) or a format object; ``group_size=None`` and ``granularity=None``
mean one scale per tensor. NaN / Inf policy: see ``grid.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar.formats.grid import _check_rounding, _codes_from_grid, _round_, decode
from fpqvar.formats.scales import Layout, resolve_layout, work_absmax_scale, work_minmax_scale
from fpqvar.formats.spec import Format, IntFormat, get_format

__all__ = ["QuantizedTensor", "fake_quantize", "quantize", "dequantize"]


@dataclass(frozen=True)
class QuantizedTensor:
    """Codes (``torch.uint8``, ``x``'s shape, one code per element, unpacked) and float32 scales.

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
        return resolve_layout(self.shape, group_size=self.group_size, dim=self.dim, granularity=self.granularity)


def _is_asym(fmt: Format) -> bool:
    return isinstance(fmt, IntFormat) and not fmt.symmetric


def _static_scale(value, layout: Layout, name: str, device: torch.device) -> torch.Tensor:
    s = torch.as_tensor(value, dtype=torch.float32, device=device)
    try:
        torch.broadcast_shapes(s.shape, layout.scale_shape)
        if torch.broadcast_shapes(s.shape, layout.scale_shape) != layout.scale_shape:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(
            f"static {name} of shape {tuple(s.shape)} does not broadcast to the {layout.granularity} scale "
            f"shape {layout.scale_shape} of a tensor with shape {layout.shape}"
        ) from None
    if name == "scale" and bool(((s <= 0) | ~torch.isfinite(s)).any()):
        raise ValueError(f"static scale must be finite and > 0 (shape {tuple(s.shape)})")
    return layout.scale_to_work(s)


def _prepare(x, fmt, group_size, dim, rounding, granularity, scale, zero_point, power_of_two):
    """Shared by fake_quantize / quantize: work view, scale(s), and the rounded grid values ``q`` (float32)."""
    fmt = get_format(fmt)
    _check_rounding(rounding)
    if not x.dtype.is_floating_point:
        raise ValueError(f"quantize to {fmt.name}: x must be a float tensor, got {x.dtype}")
    layout = resolve_layout(x.shape, group_size=group_size, dim=dim, granularity=granularity)
    xw = layout.to_work(x.to(torch.float32))
    zp = None
    if _is_asym(fmt):
        if power_of_two:
            raise ValueError(f"power_of_two scales are for symmetric formats, not {fmt.name!r}")
        if scale is None:
            s, zp = work_minmax_scale(xw, fmt)
        else:
            if zero_point is None:
                raise ValueError(f"a static scale for {fmt.name!r} needs zero_point= too")
            s = _static_scale(scale, layout, "scale", x.device)
            zp = _static_scale(zero_point, layout, "zero_point", x.device)
        # round(x / s) first, then shift by the zero point and clamp (upstream / LiteVAR order)
        t = _round_asym_(xw / s, fmt, zp, rounding)
    else:
        if zero_point is not None:
            raise ValueError(f"zero_point is only used by asymmetric formats, not {fmt.name!r}")
        if scale is None:
            s = work_absmax_scale(xw, fmt, power_of_two)
        else:
            s = _static_scale(scale, layout, "scale", x.device)
        t = _round_(xw / s, fmt, rounding)
    return fmt, layout, s, zp, t


def _round_asym_(t: torch.Tensor, fmt: IntFormat, zp: torch.Tensor, rounding: str) -> torch.Tensor:
    """``clamp(round(t) + zp, qmin, qmax)`` in place (values are integers stored in float32)."""
    if rounding == "rne":
        t.round_()
    else:
        t.add_(0.5).floor_()  # exact below 2**23; beyond, the clamp to [qmin, qmax] decides anyway
    return t.add_(zp).clamp_(float(fmt.qmin), float(fmt.qmax)).add_(0.0)


def _dequant_work(q: torch.Tensor, s: torch.Tensor, zp: torch.Tensor | None) -> torch.Tensor:
    if zp is not None:
        q = q - zp
    return q * s


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
    """Quantize-dequantize ``x`` onto ``fmt`` with absmax (or min-max) scales; same shape and dtype as ``x``."""
    if x.numel() == 0:
        return x.clone()
    fmt, layout, s, zp, q = _prepare(x, fmt, group_size, dim, rounding, granularity, scale, zero_point,
                                     power_of_two)
    if zp is None:
        out = q.mul_(s)
    else:
        out = _dequant_work(q, s, zp)
    return layout.from_work(out).to(x.dtype)


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
    f = get_format(fmt)
    if bool(torch.isnan(x).any()):
        raise ValueError(f"quantize to {f.name}: input of shape {tuple(x.shape)} contains NaN")
    fmt, layout, s, zp, q = _prepare(x, f, group_size, dim, rounding, granularity, scale, zero_point,
                                     power_of_two)
    codes = q.to(torch.uint8) if zp is not None else _codes_from_grid(q, fmt)
    return QuantizedTensor(
        codes=layout.from_work(codes).contiguous(),
        scale=layout.scale_from_work(s),
        fmt=fmt,
        group_size=layout.group_size,
        dim=layout.dim if layout.granularity == "group" else dim,
        shape=tuple(x.shape),
        zero_point=None if zp is None else layout.scale_from_work(zp),
        granularity=layout.granularity,
        dtype=x.dtype,
    )


def dequantize(q: QuantizedTensor) -> torch.Tensor:
    """Values of a :class:`QuantizedTensor`, in its original dtype."""
    layout = q.layout
    codes_w = layout.to_work(q.codes)
    if _is_asym(q.fmt):
        vals = codes_w.to(torch.float32)
        zp = layout.scale_to_work(q.zero_point)
    else:
        vals = decode(codes_w, q.fmt)
        zp = None
    out = _dequant_work(vals, layout.scale_to_work(q.scale), zp)
    return layout.from_work(out).to(q.dtype)
