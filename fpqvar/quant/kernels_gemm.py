"""Exact kernels of the fast quantized linear, part 2 (part 1, operands and quantizer: :mod:`fpqvar.quant.kernels`):
the GEMM and the accumulation, the datapath's arithmetic (``fpqvar.hw.datapath``) bit for bit.

**Exact group dot products.** ``D[t, o, g] = sum_i n_x n_w`` over one segment ``g`` of the input dim, by one of
the exact integer GEMMs of :mod:`fpqvar.kernels.int_gemm`, chosen by measurement (``fpqvar.kernels``, operations
``int_gemm:<operand bound>``; an explicit ``impl`` or ``kernels.override(int_gemm=...)`` wins):

- ``"int8"``: ``torch._int_mm`` (int8 x int8 -> int32: oneDNN VNNI / AMX-INT8 on CPU, IMMA on CUDA), exact in
  any order. On the dev CPU (AMD EPYC, AVX512-VNNI, no AMX) about 2-3x faster than float32; on an AVX2-only CPU
  about 270x slower, and under ``ONEDNN_MAX_CPU_ISA=AVX2`` its results are wrong for operands of magnitude 127
  (int16 saturation; the selector's probe drops it there);
- ``"float32"``: a float32 GEMM on the same integer values, exact while every partial sum stays within 2**24
  (FP4 groups of 128: ``|D| <= 128 * 144``); longer reductions are chunked along K and summed in int32;
- ``"u8s8"``: oneDNN's quantized linear on ``n + 128`` (uint8) and the int8 weight prepacked per segment, int32
  accumulation (``vpmaddubsw`` on AVX2-only CPUs, where it beats float32 and ``_int_mm`` does not).

- ``"native"``: the C loop of :mod:`fpqvar.kernels.native` on the weight packed in blocks of 8 outputs, one call
  per layer where the others make one per segment. Where the unit folds (on CPU, always but at the float32
  range's edges) it also makes the scales and sums, tile by tile as its products come (``native.int_linear``):
  no ``(G, rows, O)`` block of products in memory, whatever ``sums`` (below) says.

All four give the same float32 ``D``. With the float32 GEMM, DFQ's two parts share one GEMM on the packed operand
``p + M q`` wherever a Cauchy-Schwarz bound proves it exact (:mod:`fpqvar.quant.kernels_pack`): the float model's
GEMM size instead of twice it. Why not bf16: the integer operands are exact in bf16 and a bf16 GEMM accumulates
in float32, but torch 2.13 on CPU returns the result rounded to bf16 (``aten::mm.dtype`` has no CPU kernel) and a
15-bit group sum does not fit bf16's 8 significant bits.

**Scales and cross-segment accumulation in float32, in the datapath's order**, vectorised over (t, o)::

    p_g = fl32( fl32(s_x[t, g] * s_w[o, g]) * fl32(D[t, o, g] * unit) )      unit = 2**-(k_x + k_w)
    acc = p_0;  acc = fl32(acc + p_g) for g = 1, 2, ... (ascending);  y = fl32(acc + b[o])

DFQ (two activation scales per segment): the negative-half partial of segment ``g`` is added before its
positive-half partial (``linear_dfq_through_datapath``). ``fl32(D * unit)`` is exact when ``|D| < 2**24`` (every FP4
group of 128: ``|D| <= 128 * 288`` in units of 1/8); a longer reduction (FP6 per-token x per-channel, one segment
over the whole input dim: ``|D| <= 3600 * I``) is rounded **once**, RNE, from the exact integer: the FP6 semantics
of the fast path (no chunking: the int32 accumulator already holds the exact sum).

``unit`` is folded into the weight scale (``fl32(s_x * (s_w * unit))``) when no product can leave the normal float32
range: scaling by a power of two then commutes with rounding, so every ``p_g`` is the same float. The rare other
case takes the literal order (:func:`_linear_loop`, ``fold_unit=False``).

Segments: the input dim is cut at every scale boundary of either operand (``seg`` = the gcd of the two group
sizes, the whole dim for per-token / per-channel / per-tensor scales); scales are expanded to ``(T, G)`` and
``(O, G)``; segments are accumulated in ascending order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fpqvar import kernels
from fpqvar.kernels import int_gemm as IG
from fpqvar.kernels import native
from fpqvar.quant import kernels_pack as KP

__all__ = ["PreparedWeight", "expand_scales", "linear_int", "gemm_impl", "ROW_CHUNK_ELEMS"]

# Row chunks of the (T, O) float32 accumulator in the segment loop: measured on the 2-core dev machine,
# 2**18 elements (1 MiB) beat 2**14 .. 2**16 (small int8 GEMMs) and 2**20 (L2 misses), e.g. fc2 of var-d16.
ROW_CHUNK_ELEMS = 1 << 18
# The float32 GEMM wants more rows per call (K is only one segment, 128): 2**20 accumulator elements measured
# faster than 2**18 for var-d16's layers (benchmarks/bench_fast_linear.py).
# (A block-diagonal expansion, one GEMM of G x the rows and flops for few rows, was dropped on 2026-12-07: the segment
# loop measured as fast or faster on every var-d16 / var-d30 / default-model shape, e.g. qkv of var-d16 at 8 rows
# 0.46 ms against 1.16 ms.)
ROW_CHUNK_ELEMS_F32 = 1 << 20
# Few rows: the blocked dot products and one scale-and-accumulate per block (``_linear_bmm``) instead of the segment
# loop while (parts x rows) stays below this; measured on the 2-core dev machine for var-d16's layers.
BMM_MAX_ROWS = 64
# ... in blocks of segments whose (segments, parts, rows, O) products stay in cache: 2**18 elements (1 MiB).
BMM_BLOCK_ELEMS = 1 << 18
# Two parts (DFQ) packed into one float32 GEMM where the exactness bound holds (kernels_pack); a switch for tests.
PACK = True


def expand_scales(s_RG: torch.Tensor, width: int, seg: int) -> torch.Tensor:
    """Per-group scales ``(R, G)`` (groups of ``width // G``) -> per-segment ``(R, width // seg)``."""
    per = width // s_RG.shape[1] // seg
    if per * seg * s_RG.shape[1] != width:
        raise ValueError(f"scale groups of {width // s_RG.shape[1]} are not a multiple of the segment {seg}")
    return s_RG if per == 1 else s_RG.repeat_interleave(per, dim=1)


@dataclass
class PreparedWeight:
    """A weight ready for :func:`linear_int` (built once per layer, at load): the int8 operand, its per-segment
    scales, their transposed and unit-scaled copies, and their range (for the unit-folding guard)."""

    w_IO: torch.Tensor  # int8 (I, O)
    sw_OG: torch.Tensor  # float32 (O, G), per segment
    seg: int
    swT_GO: torch.Tensor = None
    lo: float = 0.0
    hi: float = 0.0
    w_absmax: int = 127  # max |n_w|: bounds the exact float32 reduction length (kernels.int_gemm.exact_chunk)
    _scaled: dict = None
    _operands: dict = None
    _norm2_G: torch.Tensor = None
    _u8s8: list = None
    _native: native.DotWeight = None

    def __post_init__(self) -> None:
        I, O = self.w_IO.shape
        if self.w_IO.dtype != torch.int8 or self.seg < 1 or I % self.seg or self.sw_OG.shape != (O, I // self.seg):
            raise ValueError(f"PreparedWeight: weights {self.w_IO.dtype} {tuple(self.w_IO.shape)} / scales "
                             f"{tuple(self.sw_OG.shape)} / segment {self.seg} do not match")
        self.sw_OG = self.sw_OG.to(torch.float32).contiguous()
        self.swT_GO = self.sw_OG.t().contiguous()
        self.lo, self.hi = (float(v) for v in torch.aminmax(self.sw_OG)) if self.sw_OG.numel() else (1.0, 1.0)
        # (via int16: abs(-128) overflows int8)
        self.w_absmax = int(self.w_IO.to(torch.int16).abs().max()) if self.w_IO.numel() else 0
        self._scaled = {}
        self._operands = {torch.int8: self.w_IO}

    def operand(self, impl: str) -> torch.Tensor:
        """``w_IO`` in the operand dtype of the GEMM ``impl`` (converted once, cached; ``"u8s8"``: see
        :meth:`u8s8_segment`)."""
        if impl == "u8s8":
            raise ValueError("the u8s8 GEMM's weight is prepacked per segment: use PreparedWeight.u8s8_segment(g)")
        dt = IG.operand_dtype(impl)
        if dt not in self._operands:
            self._operands[dt] = self.w_IO.to(dt)
        return self._operands[dt]

    def u8s8_segment(self, g: int) -> IG.U8S8Weight:
        """Segment ``g`` of the weight prepacked for the ``"u8s8"`` GEMM (all segments packed at first use)."""
        if self._u8s8 is None:
            self._u8s8 = [IG.prepare_weight("u8s8", self.w_IO[i * self.seg : (i + 1) * self.seg])
                          for i in range(self.G)]
        return self._u8s8[g]

    def native_packed(self) -> native.DotWeight:
        """The weight packed for the ``"native"`` GEMM (:func:`fpqvar.kernels.native.pack_weight`, at first use)."""
        if self._native is None:
            self._native = native.pack_weight(self.w_IO, self.seg)
        return self._native

    def native_dot(self, a_RI: torch.Tensor, g0: int, g1: int) -> torch.Tensor:
        """``(g1 - g0, R, O)`` int32: the ``"native"`` GEMM of the codes ``a_RI`` (full rows) with segments
        ``g0 .. g1``."""
        return native.int_dot(a_RI, self.native_packed(), g0, g1)

    def native_linear(self, a_RI: torch.Tensor, s_PTG: torch.Tensor, units: tuple[float, ...],
                      bias: torch.Tensor | None) -> torch.Tensor:
        """``y_TO``: the whole exact linear by the ``"native"`` GEMM, its products scaled and summed as they are
        made (:func:`fpqvar.kernels.native.int_linear`); ``a_RI``: the parts' codes stacked, ``s_PTG`` their
        scales, ``units`` their ``2**-(k_x + k_w)`` (folded: the caller checked)."""
        return native.int_linear(a_RI, self.native_packed(), s_PTG, self.scaled_GPO(units), bias)

    def segment_of(self, impl: str, cols: slice) -> int:
        """The index of the segment that the input columns ``cols`` are (GEMMs ``impl`` that take one whole segment
        per call: ``"u8s8"``, ``"native"``)."""
        if cols.start % self.seg or cols.stop - cols.start != self.seg:
            raise ValueError(f"{impl} GEMM: columns {cols.start}:{cols.stop} are not one segment of {self.seg}")
        return cols.start // self.seg

    def columns(self, impl: str, cols: slice):
        """The weight operand of ``impl`` for the input columns ``cols`` (``"u8s8"``: exactly one segment)."""
        if impl != "u8s8":
            return self.operand(impl)[cols]
        return self.u8s8_segment(self.segment_of(impl, cols))

    def operand_GSO(self, impl: str) -> torch.Tensor:
        """:meth:`operand` as ``(G, seg, O)``: one ``(seg, O)`` block per segment (a view)."""
        return self.operand(impl).view(self.G, self.seg, self.w_IO.shape[1])

    def norm2_G(self) -> torch.Tensor:
        """``(G,)`` float64: each segment's largest squared column norm (for the packing bound, cached)."""
        if self._norm2_G is None:
            self._norm2_G = KP.weight_norm2_G(self.w_IO, self.G)
        return self._norm2_G

    def k_chunk(self) -> int:
        """Reduction length of an exact float32 GEMM against this weight (activation codes |n| <= 127)."""
        return IG.exact_chunk(127, self.w_absmax)

    @property
    def G(self) -> int:
        return self.w_IO.shape[0] // self.seg

    def scaled_stack(self, units: tuple[float, ...]) -> torch.Tensor:
        """``(G, P, 1, O)``: :meth:`scaled` for each part's unit, stacked (cached)."""
        if units not in self._scaled:
            self._scaled[units] = torch.stack([self.scaled(u) for u in units], dim=1).unsqueeze(2)
        return self._scaled[units]

    def scaled_GPO(self, units: tuple[float, ...]) -> torch.Tensor:
        """:meth:`scaled_stack` as ``(G, P, O)`` (a view of the same contiguous stack), the C sums' layout."""
        sw = self.scaled_stack(units)
        return sw.view(sw.shape[0], sw.shape[1], sw.shape[3])

    def scaled(self, unit: float) -> torch.Tensor:
        """``(G, O)`` float32 ``s_w * unit`` (exact: a power of two, see :func:`_foldable`), cached per unit."""
        if unit not in self._scaled:
            self._scaled[unit] = self.swT_GO * unit
        return self._scaled[unit]


def _foldable(parts, w: PreparedWeight) -> bool:
    """Whether every ``fl32(s_x * s_w * unit)`` stays normal and ``fl32(s_x * s_w)`` finite (see module doc).

    A part may carry the (min, max) of its scales as a 4th element (from the ``*_ranged`` quantizers)."""
    for part in parts:
        s, unit = part[1], part[2]
        if len(part) > 3:
            lo, hi = part[3]
        else:
            lo, hi = torch.stack(torch.aminmax(s)).tolist() if s.numel() else (1.0, 1.0)
        if not foldable_range(lo, hi, unit, w):
            return False
    return True


def foldable_range(lo: float, hi: float, unit: float, w: PreparedWeight) -> bool:
    """Activation scales in ``[lo, hi]`` against ``w``: every ``fl32(s_x * s_w * unit)`` normal and every
    ``fl32(s_x * s_w)`` finite, so folding ``unit`` into the weight scale is exact (module doc)."""
    return lo * w.lo * unit >= 2.0**-125 and hi * w.hi < 2.0**127


def _check_linear(parts, w: PreparedWeight) -> int:
    """Validate the shapes of :func:`linear_int`'s operands; returns the segment count G."""
    T = parts[0][0].shape[0]
    I, G = w.w_IO.shape[0], w.G
    for n, s, *_ in parts:
        if n.dtype != torch.int8 or n.shape != (T, I) or s.shape != (T, G):
            raise ValueError(f"operand {n.dtype} {tuple(n.shape)} / scales {tuple(s.shape)} do not match int8 "
                             f"({T}, {I}) / ({T}, {G})")
    return G


def gemm_impl(device: torch.device, impl: str | None = None, max_abs: int = 127) -> str:
    """The integer GEMM to use on ``device`` for operands of magnitude ``<= max_abs``: ``impl`` when given, else
    the kernel selector's choice for that operand class (``kernels.int_gemm.op_name``)."""
    if impl is not None:
        IG.operand_dtype(impl)  # validates the name
        return impl
    return kernels.choose(IG.op_name(max_abs), device)


def segment_dot(impl: str, a: torch.Tensor, w: PreparedWeight, rows: slice, cols: slice,
                out: torch.Tensor | None = None, scratch_i32: torch.Tensor | None = None) -> torch.Tensor:
    """float32 ``D = a[rows, cols] @ w[cols]`` (exact), ``a`` already in ``impl``'s operand dtype (``"u8s8"``:
    ``cols`` one whole segment, and the result is a new tensor unless ``out`` is given; ``"native"``: one segment)."""
    if impl == "native":  # (its packed weight holds every segment: int_dot takes the segment's index)
        g = w.segment_of(impl, cols)
        d = w.native_dot(a[rows], g, g + 1)[0]
        return d.to(torch.float32) if out is None else out.copy_(d)
    return IG.gemm_to_f32(impl, a[rows, cols], w.columns(impl, cols), out=out, scratch_i32=scratch_i32,
                          k_chunk=w.k_chunk())


def linear_int(parts, w: PreparedWeight, bias: torch.Tensor | None, fold_unit: bool | None = None,
               impl: str | None = None, sums: str | None = None) -> torch.Tensor:
    """``y_TO`` (float32) of the datapath: exact segment dot products, then scales and sums in its order.

    ``parts``: ordered partial operands ``(n_TI int8, s_TG float32 per segment, unit)``, one for a plain
    layer, two for DFQ (negative half first); ``unit = 2**-(k_x + k_w)``. ``fold_unit=None`` decides by
    :func:`_foldable`. ``impl``: the integer GEMM (``"int8"`` / ``"float32"`` / ``"u8s8"``; ``None``:
    :func:`gemm_impl`). ``sums``: how the scales and sums run where the unit folds on CPU (``"torch"`` ops or the
    ``"native"`` C loop of :mod:`fpqvar.kernels.native`; ``None``: the selector's operation ``int_sums``), except
    with the ``"native"`` GEMM, which then sums each tile of products as it makes it (no products in memory).
    """
    T = parts[0][0].shape[0]
    O = w.w_IO.shape[1]
    _check_linear(parts, w)
    if T == 0:
        return w.w_IO.new_zeros((0, O), dtype=torch.float32)
    if fold_unit is None:
        fold_unit = _foldable(parts, w)
    impl = gemm_impl(w.w_IO.device, impl)
    parts = [tuple(p[:3]) for p in parts]
    cpu = w.w_IO.device.type == "cpu"
    units = tuple(unit for _, _, unit in parts)
    if impl == "native" and fold_unit and cpu:  # the native GEMM makes its own sums (whatever ``sums`` says)
        return w.native_linear(_stacked_operand(parts, slice(None), "int8"), torch.stack([s for _, s, _ in parts]),
                               units, bias)
    nat = None
    if fold_unit and cpu and (sums or kernels.choose(SUMS_OP, w.w_IO.device)) == "native":
        nat = (torch.stack([s for _, s, _ in parts]), w.scaled_GPO(units))
    if fold_unit and len(parts) * T <= BMM_MAX_ROWS and (impl != "float32" or w.seg <= w.k_chunk()) and cpu:
        y = _linear_bmm(parts, w, impl, nat)
    else:
        y = _linear_loop(parts, w, fold_unit, impl, nat)
    if bias is not None:
        y.add_(bias)  # fl32(acc + b): bias last
    return y


_int_mm = IG.int_mm  # int8 x int8 -> int32 (CUDA: pads M <= 16)


def _linear_loop(parts, w: PreparedWeight, fold_unit: bool, impl: str, nat=None) -> torch.Tensor:
    """Segment by segment, over row chunks that keep the (rows, O) accumulator in cache.

    The parts (DFQ: negative and positive halves) of a row chunk are stacked along the rows, so each segment is
    one GEMM that reads the weight once; with the float32 GEMM, two parts are packed into one operand where a bound
    proves it exact (:mod:`fpqvar.quant.kernels_pack`), one GEMM of the float model's size. The partials are still
    added in the datapath's order (negative first). ``nat``: ``(s_PTG, sw_GPO)``, the scales and sums of each
    segment by the C loop (``native.accumulate_block``, one pass instead of three ops per part)."""
    T = parts[0][0].shape[0]
    P = len(parts)
    O, seg, dev = w.w_IO.shape[1], w.seg, w.w_IO.device
    sws = [w.scaled(unit) if fold_unit else w.swT_GO for _, _, unit in parts]
    y = torch.empty((T, O), dtype=torch.float32, device=dev)
    tc = max(1, min(T, (ROW_CHUNK_ELEMS if impl == "int8" else ROW_CHUNK_ELEMS_F32) // max(O * P, 1)))
    # u8s8: like float32, its GEMM (K = one segment) wants many rows per call
    buf = torch.empty((tc, O), dtype=torch.float32, device=dev)
    dfl = torch.empty((P * tc, O), dtype=torch.float32, device=dev)  # D as float32: reused (an in-place mul by
    # an int32 tensor would allocate the cast every time)
    d = torch.empty((P * tc, O), dtype=torch.int32, device=dev) if impl == "int8" else None
    packs = impl == "float32" and _packs(parts, dev)
    for t0 in range(0, T, tc):
        t1 = min(T, t0 + tc)
        r = t1 - t0
        rows = slice(t0, t1)
        acc, b, df = y[rows], buf[:r], dfl[: P * r]
        dd = None if d is None else d[: P * r]
        # the packing plan of this chunk (its packed operand is (r, I) float32, like the stacked one)
        pk = KP.plan(parts[0][0][rows], parts[1][0][rows], w.norm2_G()) if packs else None
        fails_RG = None if pk is None else ~pk.fits_TG
        n_fail = [0] * w.G if pk is None else fails_RG.sum(0).tolist()
        packed = [pk is not None and k <= KP.FIX_MAX_FRACTION * r for k in n_fail]
        a = None
        first = True
        for g in range(w.G):
            cols = slice(g * seg, (g + 1) * seg)
            if packed[g]:  # one GEMM for both parts, decoded exactly; the rows outside the bound redone
                torch.mm(pk.a_TI[:, cols], w.operand("float32")[cols], out=b)
                KP.decode_(b, pk.M_TG[:, g : g + 1], pk.invM_TG[:, g : g + 1], df[:r], df[r:])
                if n_fail[g]:
                    _redo_rows(parts, w, t0 + fails_RG[:, g].nonzero().squeeze(1), t0, cols, df[:r], df[r:])
                dseg = df
            else:
                if a is None:
                    a = _stacked_operand(parts, rows, impl)
                # exact: |D| < 2**24 (else the one RNE rounding of the FP6 semantics)
                # (u8s8 returns a fresh tensor: no copy into df)
                dseg = segment_dot(impl, a, w, slice(None), cols, out=None if impl == "u8s8" else df,
                                   scratch_i32=dd)
            if nat is not None:
                native.accumulate_block(*nat, dseg.view(1, P * r, O), t0, g, not first, acc)
                first = False
                continue
            for i, ((_, s, unit), sw) in enumerate(zip(parts, sws)):
                d_i = dseg[i * r : (i + 1) * r]
                if not fold_unit:
                    d_i.mul_(unit)  # fl32(D * unit), exact
                dst = acc if first else b
                torch.mul(s[t0:t1, g : g + 1], sw[g], out=dst)  # fl32(s_x * s_w [* unit])
                dst.mul_(d_i)  # fl32(S * fl32(D * unit))
                if not first:
                    acc.add_(b)  # fl32(acc + p), ascending
                first = False
    return y


def _packs(parts, device: torch.device) -> bool:
    """Two parts, packing on (``PACK``) and float32 GEMMs at full precision on ``device``."""
    return len(parts) == 2 and PACK and KP.exact_f32_matmul(device)


def _redo_rows(parts, w: PreparedWeight, idx: torch.Tensor, t0: int, cols: slice, dq_RO: torch.Tensor,
               dp_RO: torch.Tensor) -> None:
    """The tokens ``idx`` of a packed row chunk (starting at ``t0``) whose bound failed: both parts' dot products
    for segment ``cols`` from one stacked exact float32 GEMM, written over the decoded rows."""
    d = segment_dot("float32", _stacked_operand(parts, idx, "float32"), w, slice(None), cols)
    k = idx.numel()
    dq_RO[idx - t0] = d[:k]
    dp_RO[idx - t0] = d[k:]


def _stacked_operand(parts, rows, impl: str) -> torch.Tensor:
    """``(P * r, I)``: the parts' codes of ``rows`` (a slice or an index tensor) stacked along the rows, in
    ``impl``'s operand dtype."""
    ns = [IG.to_operand(impl, n[rows]) for n, _, _ in parts]  # int8: no copy
    return ns[0] if len(ns) == 1 else torch.cat(ns)


def _scale_accumulate(parts, w: PreparedWeight, d_GPTO: torch.Tensor, g0: int = 0,
                      acc: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_(g, p) fl32(fl32(s_x * s_w * unit) * D)`` in (g, p) order (g-major, DFQ's negative part first), for
    the segments ``g0 .. g0 + G`` of the layer, added to ``acc`` (the earlier segments' sum) when given."""
    G, P, T, O = d_GPTO.shape
    gs = slice(g0, g0 + G)
    if P == 1:
        s, sw = parts[0][1][:, gs].t().reshape(G, 1, T, 1), w.scaled(parts[0][2])[gs].view(G, 1, 1, O)
    else:
        s = torch.stack([s[:, gs].t() for _, s, _ in parts], dim=1).unsqueeze(-1)  # (G, P, T, 1)
        sw = w.scaled_stack(tuple(unit for _, _, unit in parts))[gs]  # (G, P, 1, O)
    return accumulate_products(s, sw, d_GPTO, acc)


def accumulate_products(s_GPT1: torch.Tensor, sw_GP1O: torch.Tensor, d_GPTO: torch.Tensor,
                        acc: torch.Tensor | None = None) -> torch.Tensor:
    """The datapath's accumulation of a block: ``fl32(fl32(s_x * s_w * unit) * D)`` for every (segment, part),
    added in (segment, part) order to ``acc`` (the earlier segments' sum; ``None``: starts with the first)."""
    G, P, T, O = d_GPTO.shape
    prod = torch.empty((G, P, T, O), dtype=torch.float32, device=d_GPTO.device)  # contiguous whatever the strides
    torch.mul(s_GPT1, sw_GP1O, out=prod).mul_(d_GPTO)
    terms = prod.view(G * P, T, O).unbind(0)
    if acc is None:
        acc, terms = terms[0], terms[1:]
    for p_TO in terms:
        acc.add_(p_TO)
    return acc


def int_block_products(impl: str, a_RI: torch.Tensor, w: PreparedWeight, g0: int, g1: int,
                       int32_ok: bool = False) -> torch.Tensor:
    """``(g1 - g0, R, O)`` float32: the exact dot products of the int8 codes ``a_RI`` with segments ``g0 .. g1`` by
    the integer GEMM ``impl`` (``"int8"`` / ``"u8s8"``: one GEMM per segment), exact below 2**24, else rounded once,
    as in the loop. ``int32_ok``: the int32 products where the GEMM makes them (int8), not converted (the C sums
    take either). (The ``"native"`` GEMM makes its own sums wherever a block of products is wanted:
    :meth:`PreparedWeight.native_linear`.)"""
    if impl == "int8":
        return int8_block_products(a_RI, w, g0, g1, as_int32=int32_ok)
    if impl != "u8s8":
        raise ValueError(f"int_block_products: an integer GEMM ('int8' / 'u8s8'), got {impl!r}")
    R, seg = a_RI.shape[0], w.seg
    a_GRS = torch.empty((g1 - g0, R, seg), dtype=torch.uint8, device=a_RI.device)
    IG.to_operand(impl, a_RI.view(R, w.G, seg)[:, g0:g1].transpose(0, 1), out=a_GRS)  # one contiguous block each
    return torch.stack([IG.u8s8_mm(a_GRS[i], w.u8s8_segment(g)) for i, g in enumerate(range(g0, g1))])


def int8_block_products(a_RI: torch.Tensor, w: PreparedWeight, g0: int, g1: int, as_int32: bool = False
                        ) -> torch.Tensor:
    """``(g1 - g0, R, O)`` float32: the exact int8 dot products of the rows ``a_RI`` with segments ``g0 .. g1``, one
    ``_int_mm`` per segment into int32, converted once (exact below 2**24, else rounded once, as in the loop);
    ``as_int32``: the int32 products, not converted."""
    seg, w8 = w.seg, w.operand("int8")
    d32 = torch.empty((g1 - g0, a_RI.shape[0], w8.shape[1]), dtype=torch.int32, device=a_RI.device)
    for i, g in enumerate(range(g0, g1)):
        _int_mm(a_RI[:, g * seg : (g + 1) * seg], w8[g * seg : (g + 1) * seg], out=d32[i])
    return d32 if as_int32 else d32.to(torch.float32)


def _linear_bmm(parts, w: PreparedWeight, impl: str = "float32", nat=None) -> torch.Tensor:
    """Few rows: the (segment, part) dot products of a block of segments at once, then one scale-and-accumulate
    over the block (a handful of ops instead of four per segment and part, which dominate at few rows), while a
    block's products stay in cache (``BMM_BLOCK_ELEMS``).

    float32: one batched GEMM per block, exact as a segment's reduction (``seg <= k_chunk``) keeps every partial
    sum an integer below 2**24; two parts are packed into one operand where the bound of
    :mod:`fpqvar.quant.kernels_pack` holds for every row (half the rows). int8: one ``_int_mm`` per segment into the
    block's int32 products, converted once (exact below 2**24, else rounded once, as in the segment loop)."""
    T = parts[0][0].shape[0]
    O, seg, G, P = w.w_IO.shape[1], w.seg, w.G, len(parts)
    pk = KP.plan(parts[0][0], parts[1][0], w.norm2_G()) if impl == "float32" and _packs(parts, w.w_IO.device) \
        else None
    if pk is not None and not bool(pk.fits_TG.all()):
        pk = None
    if impl != "float32":
        a_RI = _stacked_operand(parts, slice(None), "int8")  # (P * T, I) int8 codes
    elif pk is not None:
        a_GRS = pk.a_TI.view(T, G, seg).transpose(0, 1)
        M_GT1, invM_GT1 = pk.M_TG.t().unsqueeze(-1), pk.invM_TG.t().unsqueeze(-1)
    else:
        a_GRS = _stacked_operand(parts, slice(None), impl).view(P * T, G, seg).transpose(0, 1)
    w_GSO = w.operand_GSO(impl) if impl == "float32" else None
    gb = max(1, min(G, BMM_BLOCK_ELEMS // max(P * T * O, 1)))
    acc = None
    for g0 in range(0, G, gb):
        gs = slice(g0, min(G, g0 + gb))
        if impl != "float32":
            d = int_block_products(impl, a_RI, w, g0, gs.stop, int32_ok=nat is not None).view(-1, P, T, O)
        elif pk is not None:
            y = torch.bmm(a_GRS[gs], w_GSO[gs])  # exact: the plan's bound
            d = torch.empty((y.shape[0], P, T, O), dtype=torch.float32, device=y.device)
            KP.decode_(y, M_GT1[gs], invM_GT1[gs], d[:, 0], d[:, 1])
        else:
            d = IG.batched_gemm_to_f32("float32", a_GRS[gs], w_GSO[gs], k_chunk=w.k_chunk()).view(-1, P, T, O)
        if nat is None:
            acc = _scale_accumulate(parts, w, d, g0, acc)
            continue
        if acc is None:
            acc = torch.empty((T, O), dtype=torch.float32, device=d.device)
        native.accumulate_block(*nat, d.reshape(-1, P * T, O), 0, g0, g0 > 0, acc)
    return acc


SUMS_OP = "int_sums"  # the selector operation of the scales and sums (registered in kernels_gemm_ops)

# the kernel selector's operations of this module: int_gemm:<bound> and int_sums (at the end: they use it)
from fpqvar.quant import kernels_gemm_ops  # noqa: E402, F401
