"""Block-scaled formats: OCP Microscaling (MXFP4 / MXFP6 / MXFP8) and NVIDIA's NVFP4, as data.

=================  =========  =====  ==============================  =========================  ==============
name               element    block  block scale                     tensor scale               bits / value
=================  =========  =====  ==============================  =========================  ==============
``mxfp4``          E2M1       32     E8M0 (power of two, 8 bits)     none                       4 + 8/32 = 4.25
``mxfp6_e2m3``     E2M3       32     E8M0                            none                       6.25
``mxfp6_e3m2``     E3M2       32     E8M0                            none                       6.25
``mxfp8_e4m3``     E4M3 (fn)  32     E8M0                            none                       8.25
``nvfp4``          E2M1       16     E4M3 (unsigned use, 8 bits)     one float32 per tensor     4 + 8/16 = 4.5
=================  =========  =====  ==============================  =========================  ==============

Sources: OCP Microscaling Formats (MX) v1.0 (sections 5.3 element types, 5.4.1 E8M0, 6.3 conversion: block
of 32 along the reduction dim, one shared E8M0 scale); NVFP4 as NVIDIA's Blackwell / Transformer Engine
recipe defines it (16 E2M1 values share an E4M3 scale; a float32 per-tensor scale ``amax / (448 * 6)`` puts
the block scales into E4M3's range), with torchao 0.18 (``torchao.prototype.mx_formats``) as the numeric
reference the tests compare against bit for bit.

E8M0 scale rules for MX (``MX_SCALE_RULES``; the rule is a quantization choice, the stored format is the same):

- ``"floor"`` (default, the OCP v1.0 rule): ``X = 2**(floor(log2(amax)) - emax_elem)``, ``emax_elem`` the
  exponent of the element's largest normal (E2M1: 2, E2M3: 2, E3M2: 4, E4M3: 8). The block maximum may land
  above the element max and saturates (E2M1: values in (6, 8) * X go to 6 * X);
- ``"ceil"``: ``2**(ceil(log2(amax)) - emax_elem)`` (torchao ``CEIL``);
- ``"even"``: ``amax`` first rounded to ``mbits`` mantissa bits (ties away), then ``floor`` (torchao ``EVEN``);
- ``"rceil"``: ``2**ceil(log2(amax / elem_max))``, the smallest power of two that avoids saturation (cuBLAS
  block scaling, torchao ``RCEIL``); computed exactly from the float32 bit fields.

``bits_per_value`` counts element bits plus the amortized scale bits; NVFP4's float32 tensor scale adds
``32 / numel`` (given ``numel``). FPQVAR's own formats (``"e2m1"`` with ``group_size=128``, a float32 scale
per group) are counted the same way for comparison: 4 + 32/128 = 4.25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fpqvar.formats.spec import FloatFormat, Format, IntFormat, get_format

__all__ = ["MX_SCALE_RULES", "BlockFormat", "BLOCK_FORMATS", "block_format_names", "get_block_format",
           "bits_per_value"]

MX_SCALE_RULES = ("floor", "ceil", "even", "rceil")
_SCALE_KINDS = ("e8m0", "e4m3")


@dataclass(frozen=True)
class BlockFormat:
    """``block_size`` consecutive elements along one axis share a scale of kind ``scale_kind``.

    ``tensor_scale``: a float32 scale per tensor multiplies every block scale (NVFP4).
    """

    name: str
    element: FloatFormat
    block_size: int
    scale_kind: str
    tensor_scale: bool = False

    kind = "block"

    def __post_init__(self) -> None:
        if self.scale_kind not in _SCALE_KINDS:
            raise ValueError(f"BlockFormat {self.name!r}: scale_kind must be one of {_SCALE_KINDS}, "
                             f"got {self.scale_kind!r}")
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"BlockFormat {self.name!r}: block_size must be a positive int, got {self.block_size!r}")
        if self.tensor_scale and self.scale_kind != "e4m3":
            raise ValueError(f"BlockFormat {self.name!r}: a tensor scale is defined for E4M3 block scales only")

    @property
    def element_bits(self) -> int:
        return self.element.bits

    @property
    def scale_bits(self) -> int:
        return 8  # E8M0 and E4M3 are both one byte

    @property
    def emax_elem(self) -> int:
        """Exponent of the element's largest normal value (OCP MX v1.0 section 6.3): E2M1 2, E4M3 8."""
        return math.frexp(self.element.max_value)[1] - 1  # frexp: max = m * 2**e with m in [0.5, 1)


BLOCK_FORMATS: dict[str, BlockFormat] = {
    f.name: f
    for f in (
        BlockFormat("mxfp4", get_format("e2m1"), 32, "e8m0"),
        BlockFormat("mxfp6_e2m3", get_format("e2m3"), 32, "e8m0"),
        BlockFormat("mxfp6_e3m2", get_format("e3m2"), 32, "e8m0"),
        BlockFormat("mxfp8_e4m3", get_format("e4m3"), 32, "e8m0"),
        BlockFormat("nvfp4", get_format("e2m1"), 16, "e4m3", tensor_scale=True),
    )
}


def block_format_names() -> list[str]:
    return list(BLOCK_FORMATS)


def get_block_format(fmt: str | BlockFormat) -> BlockFormat:
    """Look a block format up by name (``"mxfp4"``, ``"nvfp4"`` ...) or pass one through."""
    if isinstance(fmt, BlockFormat):
        return fmt
    try:
        return BLOCK_FORMATS[fmt]
    except (KeyError, TypeError):
        raise ValueError(f"unknown block format {fmt!r}; known: {', '.join(BLOCK_FORMATS)}") from None


def bits_per_value(
    fmt: str | BlockFormat | Format,
    *,
    group_size: int | None = None,
    numel: int | None = None,
    scale_bits: int = 32,
) -> float:
    """Storage bits per value, scale overhead included.

    - block formats (``"mxfp4"`` ...): ``element_bits + 8 / block_size`` (+ ``32 / numel`` for NVFP4's
      tensor scale when ``numel`` is given);
    - FPQVAR's element formats (``"e2m1"``, ``"int4"`` ...): ``bits + scale_bits / group_size`` with a float32
      scale per group (``group_size=None``: one scale per tensor, counted only with ``numel``); asymmetric
      ``uint*`` formats store a zero point of the same width as the scale.
    """
    if numel is not None and (not isinstance(numel, int) or numel < 1):
        raise ValueError(f"numel must be a positive int, got {numel!r}")
    if isinstance(fmt, BlockFormat) or fmt in BLOCK_FORMATS:
        if group_size is not None:
            raise ValueError(f"group_size is fixed for block format {fmt!r}; do not pass group_size={group_size}")
        b = get_block_format(fmt)
        bits = b.element_bits + b.scale_bits / b.block_size
        return bits + (32 / numel if b.tensor_scale and numel is not None else 0.0)
    f = get_format(fmt)
    per_group = scale_bits * (2 if isinstance(f, IntFormat) and not f.symmetric else 1)
    if group_size is not None:
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        return f.bits + per_group / group_size
    return f.bits + (per_group / numel if numel is not None else 0.0)
