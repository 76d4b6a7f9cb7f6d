"""Exact kernels of the fast quantized linear, plain PyTorch: the datapath's arithmetic, bit for bit (part 1:
operands and the activation quantizer; part 2, the GEMM and accumulation: :mod:`fpqvar.quant.kernels_gemm`).

The golden model is ``fpqvar.hw.datapath`` (read its docstring). **Integer operands:** a grid value ``v`` of a
format becomes the integer ``n = v * 2**k`` (``k`` = :attr:`IntGrid.k`), exact and ``|n| <= 127``: e2m1 ``k = 1``
(|n| <= 12), e1m2 2 (7), e3m0 2 (64), e2m3 3 (60), int2..int8 and neg32 0. Weights are converted once, at load
(:func:`weight_operand`); activations per call (:func:`quantize_act`, :func:`quantize_act_dfq`).

Activation quantization reproduces the datapath's quantizer (``hw.quantizer_int``): absmax scale
``s = fl32(absmax / max)`` (1 for an all-zero group), codes from the **exact** quotient ``|x| / s`` (its
fixed-point stage is exact). The float32 quotient ``t = fl32(x / s)`` rounds to the same grid point except where
``t`` is exactly a midpoint while ``x / s`` is not (about 2**-24 of the elements); those few are found (``|t -
round(t)| == step / 2``) and decided exactly in float64 (``m * s`` is exact there). This differs from
``fpqvar.formats.fake_quantize`` (which rounds ``fl32(x / s)``) only on those elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from fpqvar.formats.spec import FloatFormat, Format, IntFormat, get_format

__all__ = [
    "IntGrid",
    "OutOfExactRange",
    "int_grid",
    "weight_operand",
    "dynamic_scales",
    "quantize_act",
    "quantize_act_dfq",
    "quantize_act_ranged",
    "quantize_act_dfq_ranged",
    "dfq_scales",
    "QUANT_BLOCK_ELEMS",
]

_EXP = 0x7F800000
_HALF = 0x400000  # float32 mantissa MSB: 2**e -> 1.5 * 2**e
_MIN_NORMAL = 2.0**-126
# Row blocks of the activation quantizer (about 2**17 elements: its ~10 temporaries stay in L2 / L3).
QUANT_BLOCK_ELEMS = 1 << 17
# Below this many elements the quantizer takes its fewest-ops variants (per-op overhead dominates).
SMALL_ELEMS = 1 << 16


@dataclass(frozen=True)
class IntGrid:
    """A format's grid scaled by ``2**k`` onto integers in ``[lo, hi]``, and its rounding steps.

    In scaled units the grid step of a value with float exponent ``e`` is ``2**(max(e, emin) - mbits)``: minifloats
    use their own ``mbits`` and ``emin = 1 - bias + k``; an integer grid is step 1 everywhere (``emin = mbits = 7``,
    valid for ``|value| < 256``).
    """

    name: str
    k: int
    lo: int
    hi: int
    emin: int
    mbits: int

    @property
    def max_value(self) -> float:
        """Largest magnitude of the unscaled grid: the absmax-scale denominator."""
        return max(-self.lo, self.hi) / 2.0**self.k


@lru_cache(maxsize=None)
def int_grid(fmt: str | Format) -> IntGrid | None:
    """The :class:`IntGrid` of ``fmt``, or ``None`` when no ``k <= 7`` makes its grid int8 (e3m2, e4m3, uint*)."""
    f = get_format(fmt)
    if isinstance(f, IntFormat):
        if not f.symmetric and f.lo is None:
            return None  # asymmetric (zero point): not a product of two plain integers
        if f.qmin < -127 or f.qmax > 127:
            return None
        return IntGrid(f.name, 0, f.qmin, f.qmax, 7, 7)
    assert isinstance(f, FloatFormat)
    if f.special != "none":
        return None
    grid = f.positive_grid
    for k in range(8):
        n = grid * 2.0**k
        if (n == n.round()).all():
            if n.max() > 127:
                return None
            return IntGrid(f.name, k, -int(n.max()), int(n.max()), 1 - f.bias + k, f.mbits)
    return None


def weight_operand(codes_OI: torch.Tensor, fmt: str | Format) -> torch.Tensor:
    """Weight codes ``(O, I)`` -> the GEMM's right operand: int8 ``(I, O)`` contiguous, values ``v * 2**k``."""
    f = get_format(fmt)
    g = int_grid(f)
    if g is None:
        raise ValueError(f"weight_operand: format {f.name!r} has no int8 grid")
    if codes_OI.dtype != torch.uint8 or codes_OI.ndim != 2:
        raise ValueError(f"weight_operand: codes must be uint8 (O, I), got {codes_OI.dtype} {tuple(codes_OI.shape)}")
    if isinstance(f, IntFormat):
        c = torch.arange(1 << f.bits, dtype=torch.float64)
        vals = torch.where(c >= (1 << (f.bits - 1)), c - (1 << f.bits), c) if f.qmin < 0 else c
    else:
        vals = torch.as_tensor(f.code_values, dtype=torch.float64)
    n = vals * 2.0**g.k
    if not torch.isfinite(n).all() or (n.abs() > 127).any():
        raise AssertionError(f"{f.name}: code table does not fit int8 at k={g.k}")
    lut = n.to(torch.int8).to(codes_OI.device)
    if codes_OI.numel() and int(codes_OI.max()) >= lut.numel():
        raise ValueError(f"weight_operand: codes of {f.name} must be < {lut.numel()}, got {int(codes_OI.max())}")
    return lut[codes_OI.t().to(torch.int64)].contiguous()


# --- activation quantization -----------------------------------------------------------------------------


def _absmax(xg: torch.Tensor) -> torch.Tensor:
    """max |x| over the last dim (keepdim). Large tensors: amin + amax (``torch.aminmax`` over rows of 128 and
    ``abs().amax()`` measured slower there on the dev CPU); small ones: ``abs().amax()`` (fewer ops)."""
    if xg.numel() <= SMALL_ELEMS:
        return xg.abs().amax(dim=-1, keepdim=True)
    return torch.maximum(xg.amin(dim=-1, keepdim=True).neg_(), xg.amax(dim=-1, keepdim=True))


def dynamic_scales(xg: torch.Tensor, max_value: float) -> torch.Tensor:
    """``fl32(absmax / max_value)`` over the last dim (keepdim), 1 where that is 0 (``hw.quantizer_int``)."""
    s = _absmax(xg).div_(max_value)
    return s.masked_fill_(s == 0, 1.0)


def _guard_and_range(*scales: torch.Tensor) -> tuple[float, float]:
    """Set zero scales to 1 in place (all-zero groups, ``hw.quantizer_int``); return (min, max) over all scales.

    One host sync; Inf / NaN scales (non-finite inputs) show up in the range and are refused by
    :func:`_check_divisor_range`."""
    flat = scales[0] if len(scales) == 1 else torch.cat([s.reshape(-1) for s in scales])
    if not flat.numel():
        return 1.0, 1.0
    lo, hi = (float(v) for v in torch.aminmax(flat))  # (two item() calls cost less than a stack and a tolist)
    if lo == 0:
        for s in scales:
            s.masked_fill_(s == 0, 1.0)
        return _guard_and_range(*scales)
    return lo, hi


def _check_divisor_range(lo: float, hi: float, k: int) -> None:
    if not (lo * 2.0**-k >= _MIN_NORMAL and hi < float("inf")):
        raise OutOfExactRange(f"activation scales in [{lo!r}, {hi!r}]: non-finite input or absmax below "
                              f"2**-{126 - k}")


def _check_rounding(rounding: str) -> None:
    if rounding not in ("rne", "ties_up"):
        raise ValueError(f"rounding must be 'rne' or 'ties_up', got {rounding!r}")


@lru_cache(maxsize=256)
def _const(value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


def _sc(value, like: torch.Tensor, dtype: torch.dtype):
    """A scalar operand as a cached 0-dim tensor of ``dtype``: eager ops then skip wrapping and casting a Python
    scalar (a few microseconds each, which add up on small layers). Plain Python scalars under torch.compile."""
    if torch.compiler.is_compiling():
        return value
    return _const(value, dtype, like.device)


def _round_scaled(t: torch.Tensor, grid: IntGrid, rounding: str, dfq: bool = False, as_gap: bool = False):
    """Round float32 ``t`` (clamped, scaled units) onto ``grid``: ``(r, tie, half)``; ``t`` is kept.

    Step of each element: ``2**(max(e, emin) - mbits)``. ``dfq``: negative ``t`` (DFQ's negative half, an integer
    grid) get the grid's smallest step, 1, for free: the exponent is read together with the sign bit, so a
    negative ``t`` reads as a negative int32 and the clamp to ``emin`` takes it (needs ``emin == mbits``, checked
    in :func:`quantize_act_dfq`). ``tie``: ``t`` exactly halfway between two grid points; ``half``: half the step.
    ``as_gap``: ``tie`` as the float32 gap ``|t - r| - half`` instead (exact, <= 0, and 0 exactly at the ties), whose
    ``amax`` tells whether any tie exists faster than a bool mask's ``any`` on CPU.
    """
    i32 = torch.int32
    mask = 0xFF800000 - (1 << 32) if dfq else _EXP  # sign + exponent (as a negative int32) / exponent
    eb = torch.bitwise_and(t.view(i32), _sc(mask, t, i32))
    lo = _sc((grid.emin + 127) << 23, t, i32)
    eb = eb.clamp_(min=lo) if isinstance(lo, int) else torch.maximum(eb, lo, out=eb)  # 2**max(e, emin)
    if rounding == "rne":
        # M = 1.5 * step * 2**23: fl32(t + M) - M rounds t to a multiple of step, ties to even (formats.grid)
        big = torch.add(eb, _sc(((23 - grid.mbits) << 23) + _HALF, t, i32)).view(torch.float32)  # eb: no mantissa
        r = torch.add(t, big).sub_(big)
        half = eb.sub_(_sc((grid.mbits + 1) << 23, t, i32)).view(torch.float32)
        gap = torch.sub(t, r, out=big).abs_().sub_(half)  # exact: r is t rounded to a step, |t - r| <= half
        tie = gap if as_gap else torch.eq(gap, 0)
    elif rounding == "ties_up":
        step = eb.sub_(grid.mbits << 23).view(torch.float32)
        u = torch.div(t, step)  # exact (power of two)
        r = torch.floor(u)
        frac = u.sub_(r)
        tie = torch.sub(frac, 0.5).abs_().neg_() if as_gap else torch.eq(frac, 0.5)
        r.add_(frac.ge_(0.5)).mul_(step)  # floor(t / step + 1/2) * step: ties to the larger value
        half = step.mul_(0.5)
    else:
        raise ValueError(f"rounding must be 'rne' or 'ties_up', got {rounding!r}")
    return r, tie, half


def _fix_ties(n: torch.Tensor, tie: torch.Tensor, xg: torch.Tensor, s_el: torch.Tensor, grid: IntGrid,
              rounding: str, dfq: bool = False) -> None:
    """Decide the (rare) tie elements of the codes ``n`` on the exact quotient, in place.

    At a tie, ``t = fl32(x / s_el)`` equals a midpoint ``m`` of the scaled grid; the exact quotient lies above,
    below or on ``m`` as ``|x|`` compares with ``|m| * s_el``, computed exactly in float64 (``m`` has at most
    ``mbits + 2`` significant bits, ``s_el`` 24). Above / below: the neighbour ``|m| +- step / 2``; on it: the tie
    rule. ``t`` and the step are recomputed here from ``x`` and ``s_el`` (the same float32 operations), so any
    kernel that reports ``tie`` can use this. ``dfq``: as in :func:`_round_scaled`.
    """
    idx = tie.nonzero(as_tuple=True)
    if not idx[0].numel():
        return
    x = xg[idx]
    s = s_el.expand_as(xg)[idx]
    t = torch.div(x, s)
    r, _, half = _round_scaled(t, grid, rounding, dfq)
    m, x64 = t.abs().to(torch.float64), x.to(torch.float64)
    cmp = torch.sign(x64.abs() - m * s.to(torch.float64))  # exact product; Sterbenz-exact difference
    fixed = torch.where(cmp == 0, r.to(torch.float64), torch.copysign(m + cmp * half.to(torch.float64), x64))
    n[idx] = fixed.to(n.dtype)  # int8: truncated toward zero. One false tie needs that: ties_up at t = -(0.5 -
    # 2**-25) (step 1), where frac = fl32(t - floor(t)) rounds to 0.5; m +- half is then +-(2**-25) or 1 - 2**-25
    # (not integers), both truncated to 0, the nearest code. Every true tie gives an integer.


class OutOfExactRange(ValueError):
    """Inputs the fast path does not model: non-finite activations (their absmax scale is Inf / NaN), or a
    scale so small that the power-of-two folding would not be exact (absmax below about 2**-116)."""


def _scaled_divisor(s: torch.Tensor, k: int) -> torch.Tensor:
    """``s * 2**-k``, so that ``fl32(x / (s 2**-k)) = 2**k fl32(x / s)`` (exact while ``s * 2**-k`` is normal).

    Raises :class:`OutOfExactRange` unless every ``s * 2**-k`` is normal and finite: dynamic scales carry an Inf
    or NaN of their group, so this is also the fast path's check for non-finite inputs."""
    _check_divisor_range(*(torch.stack(torch.aminmax(s)).tolist() if s.numel() else (1.0, 1.0)), k)
    return s * 2.0**-k


def _group_view(x_TI: torch.Tensor, group_size: int | None) -> torch.Tensor:
    T, I = x_TI.shape
    g = I if group_size is None else group_size
    if g < 1 or I % g:
        raise ValueError(f"in_features={I} is not a multiple of the activation group size {g}")
    return x_TI.reshape(T, I // g, g)


def _row_blocks(T: int, I: int, device: torch.device):
    """Row slices of about ``QUANT_BLOCK_ELEMS`` elements (CPU; one block on CUDA)."""
    rows = T if device.type != "cpu" else max(1, QUANT_BLOCK_ELEMS // max(I, 1))
    return [slice(r0, min(T, r0 + rows)) for r0 in range(0, T, rows)]


def group_scales(x_TI: torch.Tensor, grid: IntGrid, group_size: int | None, scale: torch.Tensor | None = None,
                 per_tensor: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(xg (T, G, g), s (T, G, 1) float32)``: a static ``scale`` broadcast, else the dynamic absmax scale per
    group (or over the whole tensor with ``per_tensor``); shared by the compile and Triton backends."""
    xg = _group_view(x_TI, group_size)
    T, G, _ = xg.shape
    if scale is not None:
        return xg, scale.to(torch.float32).expand(T, G).unsqueeze(-1)
    if per_tensor:
        return xg, dynamic_scales(x_TI.reshape(1, -1), grid.max_value).expand(T, G).unsqueeze(-1)
    return xg, dynamic_scales(xg, grid.max_value)


def quantize_act(x_TI: torch.Tensor, grid: IntGrid, *, group_size: int | None, rounding: str = "rne",
                 scale: torch.Tensor | None = None, per_tensor: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize float32 ``x_TI`` -> ``(n_TI int8 = grid value * 2**k, s_TG float32)``: the datapath's quantizer.

    Scales: ``scale`` (static, broadcastable to ``(T, G)``), else dynamic absmax per group of ``group_size``
    along the input dim (``None``: per token), or over the whole tensor (``per_tensor``).
    """
    n, s, _ = quantize_act_ranged(x_TI, grid, group_size=group_size, rounding=rounding, scale=scale,
                                  per_tensor=per_tensor)
    return n, s


def quantize_act_ranged(x_TI: torch.Tensor, grid: IntGrid, *, group_size: int | None, rounding: str = "rne",
                        scale: torch.Tensor | None = None, per_tensor: bool = False):
    """:func:`quantize_act` plus the (min, max) of the scales (for :func:`linear_int`'s unit-folding guard)."""
    xg = _group_view(x_TI, group_size)  # (T, G, g)
    T, G, _ = xg.shape
    if scale is not None:
        s = scale.to(torch.float32).expand(T, G).unsqueeze(-1)
        rng = _guard_and_range(s.clone())
    else:
        s = _absmax(x_TI.reshape(1, -1) if per_tensor else xg).div_(_sc(grid.max_value, xg, torch.float32))
        rng = _guard_and_range(s)
        if per_tensor:
            s = s.expand(T, G).unsqueeze(-1)
    _check_divisor_range(*rng, grid.k)
    sk = s * _sc(2.0**-grid.k, s, torch.float32)
    blocks = _row_blocks(T, x_TI.shape[1], x_TI.device)
    n = None if len(blocks) == 1 else torch.empty(xg.shape, dtype=torch.int8, device=xg.device)
    for rb in blocks:
        t = torch.div(xg[rb], sk[rb])
        if scale is not None:  # saturate; absmax scales give |t| <= max * (1 + 2**-23), which rounds to max
            t.clamp_(grid.lo, grid.hi)
        r = codes(t, xg[rb], sk[rb], grid, rounding)
        if n is None:
            n = r.to(torch.int8)
        else:
            n[rb].copy_(r)
    return n.view(T, x_TI.shape[1]), s.reshape(T, G).contiguous(), rng


def codes(t: torch.Tensor, xb: torch.Tensor, s_el, grid: IntGrid, rounding: str, dfq: bool = False) -> torch.Tensor:
    """The codes of ``t = fl32(xb / s_el)``: :func:`_round_scaled`'s float32 integers, or int8 where a tie had to be
    decided on the exact quotient (:func:`_fix_ties`). ``s_el``: the divisor, or a function giving it (built only
    at a tie). ``dfq``: as in :func:`_round_scaled`."""
    r, gap, _ = _round_scaled(t, grid, rounding, dfq=dfq, as_gap=True)
    if float(gap.amax()) == 0.0:  # a tie
        r = r.to(torch.int8)
        _fix_ties(r, gap == 0, xb, s_el() if callable(s_el) else s_el, grid, rounding, dfq=dfq)
    return r


def dfq_scales(xg: torch.Tensor, neg: IntGrid, pos: IntGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s_neg, s_pos)`` over the last dim (keepdim): ``fl32(max|x<=0| / neg_max)``, ``fl32(max x>0 / pos_max)``,
    1 for an empty half."""
    s_neg, s_pos = _dfq_scales_raw(xg, neg, pos)
    return s_neg.masked_fill_(s_neg == 0, 1.0), s_pos.masked_fill_(s_pos == 0, 1.0)


def dfq_divisors(xg: torch.Tensor, neg: IntGrid, pos: IntGrid):
    """``(s_neg, s_pos, sk_neg, sk_pos, (lo, hi))``: DFQ's two scales per group (zeros set to 1), checked for the
    exact range (:class:`OutOfExactRange`), their divisors ``s * 2**-k`` and their range."""
    s_neg, s_pos = _dfq_scales_raw(xg, neg, pos)
    rng = _guard_and_range(s_neg, s_pos)
    _check_divisor_range(*rng, max(neg.k, pos.k))
    return s_neg, s_pos, s_neg * 2.0**-neg.k, s_pos * 2.0**-pos.k, rng


def dfq_quotient(xg: torch.Tensor, sk_neg: torch.Tensor, sk_pos: torch.Tensor) -> torch.Tensor:
    """``t = x / s_neg`` where ``x <= 0``, else ``x / s_pos``, in scaled units. Both quotients carry x's sign and
    adding the other's 0 is exact: cheaper than ``torch.where`` on the dev CPU. ``|t| <= max * (1 + 2**-23)``, which
    rounds inside the grid."""
    return torch.div(xg, sk_neg).clamp_(max=0.0).add_(torch.div(xg, sk_pos).clamp_(min=0.0))


def _dfq_scales_raw(xg, neg: IntGrid, pos: IntGrid):
    s_neg = xg.amin(dim=-1, keepdim=True).neg_().clamp_(min=0.0).div_(neg.max_value)
    s_pos = xg.amax(dim=-1, keepdim=True).clamp_(min=0.0).div_(pos.max_value)
    return s_neg, s_pos


def quantize_act_dfq(x_TI: torch.Tensor, neg: IntGrid, pos: IntGrid, *, group_size: int | None,
                     rounding: str = "rne"):
    """DFQ: ``(n_neg_TI int8 (<= 0), n_pos_TI int8 (>= 0), s_neg_TG, s_pos_TG)``, the datapath's DFQ quantizer.

    ``x <= 0`` (zero included) goes to the negative grid with ``s_neg = fl32(max|x_neg| / neg_max)``, ``x > 0`` to
    the positive grid with ``s_pos = fl32(max x_pos / pos_max)`` (1 for an empty half). The negative grid must be
    uniform in its scaled units with the positive grid's smallest step (e1m2 x 4 with e2m1 x 2, neg32 with
    e2m3 x 8: step 1).
    """
    return quantize_act_dfq_ranged(x_TI, neg, pos, group_size=group_size, rounding=rounding)[:4]


def quantize_act_dfq_ranged(x_TI: torch.Tensor, neg: IntGrid, pos: IntGrid, *, group_size: int | None,
                            rounding: str = "rne"):
    """:func:`quantize_act_dfq` plus the (min, max) over both scales."""
    if not (neg.emin == neg.mbits and pos.emin == pos.mbits):
        raise ValueError(f"DFQ grids {neg.name} / {pos.name}: the negative grid must have the positive grid's "
                         "smallest step")
    xg = _group_view(x_TI, group_size)
    T, G, _ = xg.shape
    s_neg, s_pos, sk_neg, sk_pos, rng = dfq_divisors(xg, neg, pos)
    n = torch.empty(xg.shape, dtype=torch.int8, device=xg.device)
    for rb in _row_blocks(T, x_TI.shape[1], x_TI.device):
        xb, skn, skp = xg[rb], sk_neg[rb], sk_pos[rb]
        n[rb] = codes(dfq_quotient(xb, skn, skp), xb, lambda: torch.where(xb <= 0, skn, skp), pos, rounding, dfq=True)
    n = n.view(T, x_TI.shape[1])
    return (n.clamp(max=0), n.clamp(min=0), s_neg.reshape(T, G).contiguous(), s_pos.reshape(T, G).contiguous(),
            rng)
