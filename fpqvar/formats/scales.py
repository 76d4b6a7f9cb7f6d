"""Scales: absmax (symmetric) and min-max (asymmetric) per tensor / channel / token / group.

Granularities (``fpqvar-method.md`` section 5):

- ``"tensor"``: one scale for the whole tensor;
- ``"channel"``: one per output row of a weight ``w_OI`` (reduce over every dim but 0);
- ``"token"``: one per row of an activation ``x_..C`` (reduce over the last dim);
- ``"group"``: one per ``group_size`` contiguous elements along ``dim`` (default 128 when
  ``granularity="group"`` is named without a size). The size must divide the dim: a short last group is
  refused (``ValueError``).

Scale shapes (the "public" layout every function here returns and accepts as a static ``scale=``): the
scale has ``x.ndim`` dims; reduced dims have size 1; for groups, ``dim`` has ``size // group_size`` entries.

Rules:

- absmax: ``s = max|x| / fmt.max_value`` (a plain real number, no clipping; section 4), computed in float32;
- ``power_of_two=True``: MX-style E8M0 scale ``2**ceil(log2(max|x| / fmt.max_value))`` with the exponent from
  ``frexp`` (never ``floor(log2)``), clamped to the E8M0 range ``2**-127 .. 2**127``;
- a group whose absmax is 0 (all zeros), or whose scale underflows to 0, gets scale 1: its values quantize
  to 0 without a 0/0 NaN (upstream maps that NaN to 0 inside its kernel, section 4);
- Inf / NaN values are left out of the dynamic scale (the scale comes from the finite values), so one Inf
  does not wipe its group; the Inf itself then saturates to +-max (see ``grid.py``).

Internally every function works on a 2-D "work" view ``(rows, n)`` whose rows are the scale groups; scales
there are ``(rows, 1)``. ``Layout.to_work`` / ``from_work`` convert tensors, ``scale_to_work`` /
``scale_from_work`` scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fpqvar.formats.spec import Format, IntFormat, get_format

__all__ = [
    "GRANULARITIES",
    "DEFAULT_GROUP_SIZE",
    "Layout",
    "resolve_layout",
    "absmax_scale",
    "minmax_scale_zero_point",
    "guard_scale",
    "cap_scale_",
    "pow2_scale",
    "row_minmax",
]

GRANULARITIES = ("tensor", "channel", "token", "group")
DEFAULT_GROUP_SIZE = 128  # FPQVAR's group size (fpqvar-method.md section 5)

# E8M0 exponent range (OCP MX v1.0): scales 2**-127 .. 2**127.
_E8M0_EMIN, _E8M0_EMAX = -127, 127


@dataclass(frozen=True)
class Layout:
    """How a tensor of ``shape`` is cut into scale groups; ``dim`` is normalized (non-negative)."""

    granularity: str
    shape: tuple[int, ...]
    group_size: int | None = None
    dim: int = -1

    @property
    def scale_shape(self) -> tuple[int, ...]:
        """Public scale shape (see module docstring)."""
        nd = len(self.shape)
        if self.granularity == "tensor":
            return (1,) * nd
        if self.granularity == "channel":
            return (self.shape[0],) + (1,) * (nd - 1)
        if self.granularity == "token":
            return tuple(self.shape[:-1]) + (1,)
        s = list(self.shape)
        s[self.dim] = s[self.dim] // self.group_size
        return tuple(s)

    def to_work(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` -> ``(rows, n)``; a view (no copy) unless groups run along a non-last dim."""
        if self.granularity == "tensor":
            return x.reshape(1, -1)
        if self.granularity == "channel":
            return x.reshape(self.shape[0], -1)
        if self.granularity == "token":
            return x.reshape(-1, self.shape[-1])
        return x.movedim(self.dim, -1).reshape(-1, self.group_size)

    def from_work(self, xw: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_work`."""
        if self.granularity != "group" or self.dim == len(self.shape) - 1:
            return xw.reshape(self.shape)
        moved = list(self.shape)
        moved.append(moved.pop(self.dim))
        return xw.reshape(moved).movedim(-1, self.dim)

    def scale_to_work(self, scale: torch.Tensor) -> torch.Tensor:
        """Public scale (broadcastable to ``scale_shape``) -> ``(rows, 1)`` float32."""
        s = scale.to(torch.float32).expand(self.scale_shape)
        if self.granularity == "group":
            s = s.movedim(self.dim, -1)
        return s.reshape(-1, 1)

    def scale_from_work(self, sw: torch.Tensor) -> torch.Tensor:
        """``(rows, 1)`` -> public scale shape."""
        if self.granularity != "group":
            return sw.reshape(self.scale_shape)
        moved = list(self.scale_shape)
        moved.append(moved.pop(self.dim))
        return sw.reshape(moved).movedim(-1, self.dim)


def resolve_layout(
    shape: tuple[int, ...] | torch.Size,
    *,
    group_size: int | None = None,
    dim: int = -1,
    granularity: str | None = None,
) -> Layout:
    """Validate the granularity arguments against ``shape``; errors name the shape, dim and group size."""
    shape = tuple(int(s) for s in shape)
    if granularity is None:
        granularity = "tensor" if group_size is None else "group"
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if group_size is not None and granularity != "group":
        raise ValueError(f"group_size={group_size} given with granularity={granularity!r}; use 'group'")
    if granularity in ("channel", "token") and len(shape) == 0:
        raise ValueError(f"granularity {granularity!r} needs a tensor with at least 1 dim, got shape {shape}")
    if granularity != "group":
        return Layout(granularity, shape)
    g = DEFAULT_GROUP_SIZE if group_size is None else group_size
    if not isinstance(g, int) or isinstance(g, bool) or g < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    nd = len(shape)
    if not -nd <= dim < nd:
        raise ValueError(f"dim {dim} out of range for tensor with shape {shape}")
    d = dim % nd
    if shape[d] % g != 0:
        raise ValueError(
            f"group_size {g} does not divide size {shape[d]} of dim {dim} of tensor with shape {shape}: "
            "a last group shorter than the group size is not supported"
        )
    return Layout("group", shape, g, d)


def _row_absmax(xw: torch.Tensor) -> torch.Tensor:
    """max |x| per row of the work view, over finite values only; ``(rows, 1)`` float32."""
    # amin and amax (vectorized, no temporary) beat abs().amax() and torch.aminmax (not vectorized over dim)
    a = torch.maximum(xw.amin(dim=-1, keepdim=True).neg_(), xw.amax(dim=-1, keepdim=True))
    if not math.isfinite(float(a.sum())):  # an Inf / NaN somewhere (or a huge sum: the slow path is exact too)
        a = torch.where(torch.isfinite(xw), xw.abs(), 0.0).amax(dim=-1, keepdim=True)
    return a


def row_minmax(xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) per row over finite values (0, 0 for a row without any); ``(rows, 1)`` each."""
    mn, mx = xw.amin(dim=-1, keepdim=True), xw.amax(dim=-1, keepdim=True)
    if not math.isfinite(float(mx.sum() - mn.sum())):  # any Inf / NaN (or a huge sum: slow path, still exact)
        fin = torch.isfinite(xw)
        mn = torch.where(fin, xw, float("inf")).amin(dim=-1, keepdim=True)
        mx = torch.where(fin, xw, float("-inf")).amax(dim=-1, keepdim=True)
        empty = ~torch.isfinite(mn)
        mn = torch.where(empty, 0.0, mn)
        mx = torch.where(empty, 0.0, mx)
    return mn, mx


def guard_scale(s: torch.Tensor) -> torch.Tensor:
    """Replace zero scales (all-zero group, or underflow) by 1, in place, so that x / s never is 0/0."""
    return s.masked_fill_(s == 0, 1.0)


def pow2_scale(r: torch.Tensor, grid_max: float | None = None) -> torch.Tensor:
    """``2**ceil(log2(r))`` for r > 0 from the float32 bit fields (frexp); E8M0 range; r == 0 -> 1.

    With ``grid_max`` the exponent is also capped so that ``grid_max * scale`` stays a finite float32 (inputs near
    the float32 maximum then saturate instead of dequantizing to Inf).
    """
    m, e = torch.frexp(r)  # r = m * 2**e, m in [0.5, 1)
    e = e - (m == 0.5).to(e.dtype)  # exact powers of two keep their exponent
    emax = _E8M0_EMAX
    if grid_max is not None:
        _, e_lim = math.frexp(torch.finfo(torch.float32).max / grid_max)  # = m' * 2**e_lim, m' in [0.5, 1)
        emax = min(emax, e_lim - 1)
    e = e.clamp(_E8M0_EMIN, emax)
    s = torch.ldexp(torch.ones_like(r), e)
    return torch.where(r == 0, torch.ones_like(r), s)


def cap_scale_(s: torch.Tensor, grid_max: float) -> torch.Tensor:
    """Step a scale one float32 ulp down where ``grid_max * s`` overflows, in place (issue 16 item 5).

    ``s = amax / grid_max`` rounds up by at most half an ulp, so for ``amax`` within ~2**-24 of the float32
    maximum the largest dequantized value ``grid_max * s`` would round to Inf. One ulp down makes the exact
    product ``<= amax``, hence finite; inputs then saturate by at most one ulp of ``s`` per grid unit.
    """
    over = torch.isinf(s * grid_max) & torch.isfinite(s)
    if bool(over.any()):
        s.copy_(torch.where(over, torch.nextafter(s, torch.zeros_like(s)), s))
    return s


def work_absmax_scale(xw: torch.Tensor, fmt: Format, power_of_two_scale: bool = False) -> torch.Tensor:
    """Absmax scale per row of a float32 work view: ``(rows, 1)``; ``fmt.max_value * s`` is always finite."""
    r = _row_absmax(xw).div_(fmt.max_value)
    return pow2_scale(r, fmt.max_value) if power_of_two_scale else cap_scale_(guard_scale(r), fmt.max_value)


def work_minmax_scale(xw: torch.Tensor, fmt: IntFormat) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric min-max scale and zero point per row (LiteVAR style), ``(rows, 1)`` float32 each.

    ``s = (max - min) / (qmax - qmin)``, ``zp = qmin - round(min / s)`` (RNE): ``min`` maps to ``qmin``;
    ``q = clamp(round(x / s) + zp, qmin, qmax)``, ``x_hat = (q - zp) * s``. A constant row (max == min) uses
    ``s = |min| / qmax`` (or 1 for an all-zero row) so that its value is still represented.
    Where ``max - min`` overflows float32 (``[2e38, -2e38]``) the scale is ``max / span - min / span`` (each
    half finite) instead of Inf, which gave all-NaN (issue 16 item 5); elsewhere the formula is unchanged.
    """
    mn, mx = row_minmax(xw)
    span = float(fmt.qmax - fmt.qmin)
    s = (mx - mn) / span
    if not bool(torch.isfinite(s).all()):
        s = torch.where(torch.isfinite(s), s, mx / span - mn / span)
    s = torch.where(s == 0, mn.abs() / float(fmt.qmax), s)
    s = guard_scale(s)
    zp = float(fmt.qmin) - torch.round(mn / s)
    return s, zp


def absmax_scale(
    x: torch.Tensor,
    fmt: str | Format,
    *,
    group_size: int | None = None,
    dim: int = -1,
    granularity: str | None = None,
    power_of_two: bool = False,
) -> torch.Tensor:
    """Dynamic absmax scale of ``x`` for ``fmt`` (float32, public scale layout; see the module docstring)."""
    fmt = get_format(fmt)
    layout = resolve_layout(x.shape, group_size=group_size, dim=dim, granularity=granularity)
    xw = layout.to_work(x.to(torch.float32))
    return layout.scale_from_work(work_absmax_scale(xw, fmt, power_of_two))


def minmax_scale_zero_point(
    x: torch.Tensor,
    fmt: str | Format,
    *,
    group_size: int | None = None,
    dim: int = -1,
    granularity: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic asymmetric (scale, zero_point) of ``x`` for an unsigned int format, public scale layout."""
    fmt = get_format(fmt)
    if not isinstance(fmt, IntFormat) or fmt.symmetric:
        raise ValueError(f"min-max scales need an asymmetric int format (uint*), got {fmt.name!r}")
    layout = resolve_layout(x.shape, group_size=group_size, dim=dim, granularity=granularity)
    s, zp = work_minmax_scale(layout.to_work(x.to(torch.float32)), fmt)
    return layout.scale_from_work(s), layout.scale_from_work(zp)
