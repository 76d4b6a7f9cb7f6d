"""QuantSpec: how one tensor (a weight or a linear's input activation) is quantized. Pure data, validated.

A spec names a format of ``fpqvar.formats`` (``e2m1``, ``e2m3``, ``int4``, ``uint4`` ...), a granularity
(``tensor`` | ``channel`` (weights: one scale per output row) | ``token`` (activations: one scale per row) |
``group`` (``group_size`` contiguous elements along the input dim)), a rounding rule (``rne`` = ties to even,
``ties_up`` = ties to the larger grid value as upstream's kernel, fpqvar-method.md section 4), an optional DFQ
variant (fc2 input, section 6: ``fp4`` = E1M2 negatives / E2M1 positives, ``fp6`` = INT -32..0 / E2M3; ``fmt``
is then the positive-side format) and ``static`` (calibrated activation scales instead of dynamic absmax).

Asymmetric INT formats (``uint*``) use min-max scales with a zero point (LiteVAR style, section 11).

Block-scaled formats (``fpqvar.formats.BLOCK_FORMATS``: ``mxfp4``, ``mxfp6_e2m3``, ``mxfp6_e3m2``, ``mxfp8_e4m3``,
``nvfp4``; docs/formats.md) take granularity ``group`` with ``group_size`` = the format's block size (32 / 16),
rounding ``rne``, an optional ``scale_rule`` (MX only: ``floor`` (default, OCP v1.0), ``ceil``, ``even``,
``rceil``) and ``dfq="fp4"`` for ``mxfp4`` / ``nvfp4`` (E1M2 negatives / E2M1 positives, each side's scale in
the format's scale type: ``fpqvar.formats.block_dfq``). Static scales and ``fixed_scale`` are not implemented
for them (MX block scales are dynamic by definition; NVFP4's activation tensor scale is dynamic per tensor).
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.config import StrictConfig
from fpqvar.formats import BLOCK_FORMATS, DFQ_VARIANTS, GRANULARITIES, MX_SCALE_RULES, ROUNDINGS, get_format

SPEC_VERSION = 1

__all__ = ["SPEC_VERSION", "QuantSpec", "check_version"]


def check_version(owner: str, d: dict, current: int) -> None:
    v = d.get("version", current)
    if type(v) is not int or v > current or v < 1:
        raise ValueError(f"{owner}: unsupported version {v!r} (this fpqvar reads versions 1..{current})")


@dataclass(frozen=True)
class QuantSpec(StrictConfig):
    VERSION = SPEC_VERSION

    fmt: str
    granularity: str = "group"
    group_size: int | None = 128
    rounding: str = "rne"
    dfq: str | None = None
    static: bool = False
    fixed_scale: float | None = None  # a constant activation scale (zero point 0), e.g. LiteVAR's 1/256 map
    scale_rule: str | None = None  # MX block formats only (None there means "floor"); see the module docstring
    # static only: one calibrated parameter set per VAR scale ("scale") or two, the first scale's token and
    # the rest ("sink"): PTQ4ARVG's static token-wise quantization (fpqvar.quant.static_act)
    static_sets: str | None = None
    # how a weight's or a static activation's range is chosen. None = min / max (absmax when symmetric);
    # "percentile" = PTQ4ARVG's search: (1 - p, p) quantiles for p in 0.999 / 0.9999 / 0.99999, the lowest MSE
    # wins (asymmetric formats; fpqvar.quant.static_act.percentile_range)
    range_search: str | None = None
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, str) and (hasattr(self.fmt, "ebits") or hasattr(self.fmt, "block_size")):
            object.__setattr__(self, "fmt", self.fmt.name)  # a Format / BlockFormat object: store its name
        super().__post_init__()  # strict field types (issue 16 item 3)
        if self.fmt in BLOCK_FORMATS:
            self._check_block()
            return
        if self.scale_rule is not None:
            raise ValueError(f"QuantSpec.scale_rule applies to the MX block formats only, got scale_rule="
                             f"{self.scale_rule!r} with fmt {self.fmt!r}")
        try:
            get_format(self.fmt)
        except ValueError as e:
            raise ValueError(f"QuantSpec.fmt: {e} (or a block format: {', '.join(BLOCK_FORMATS)})") from None
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"QuantSpec.granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.granularity == "group":
            g = self.group_size
            if not isinstance(g, int) or isinstance(g, bool) or g < 1:
                raise ValueError(f"QuantSpec.group_size must be a positive int for granularity 'group', got {g!r}")
        elif self.group_size is not None:
            raise ValueError(f"QuantSpec.group_size={self.group_size} needs granularity 'group', "
                             f"got {self.granularity!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"QuantSpec.rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if self.dfq is not None:
            if self.dfq not in DFQ_VARIANTS:
                raise ValueError(f"QuantSpec.dfq must be None or one of {tuple(DFQ_VARIANTS)}, got {self.dfq!r}")
            pos = DFQ_VARIANTS[self.dfq].pos.name
            if self.fmt != pos:
                raise ValueError(f"QuantSpec.fmt must be {pos!r} (the positive side) for dfq={self.dfq!r}, "
                                 f"got {self.fmt!r}")
            if self.granularity not in ("group", "token"):
                raise ValueError(f"QuantSpec.granularity must be 'group' or 'token' with dfq, got "
                                 f"{self.granularity!r}")
            if self.static:
                raise ValueError("QuantSpec.static=True is not supported with dfq (DFQ scales are dynamic)")
        if self.fixed_scale is not None:
            import math

            if not (math.isfinite(self.fixed_scale) and self.fixed_scale > 0):
                raise ValueError(f"QuantSpec.fixed_scale must be a finite number > 0, got {self.fixed_scale!r}")
            if self.granularity != "tensor" or self.static or self.dfq is not None:
                raise ValueError("QuantSpec.fixed_scale needs granularity 'tensor', static=False and no dfq, got "
                                 f"granularity {self.granularity!r}, static {self.static}, dfq {self.dfq!r}")

        if self.static_sets is not None:
            if self.static_sets not in ("scale", "sink"):
                raise ValueError(f"QuantSpec.static_sets must be None, 'scale' or 'sink', got {self.static_sets!r}")
            if not self.static or self.granularity not in ("tensor", "group"):
                raise ValueError("QuantSpec.static_sets needs static=True and granularity 'tensor' or 'group', got "
                                 f"static {self.static}, granularity {self.granularity!r}")

        if self.range_search is not None:
            if self.range_search != "percentile":
                raise ValueError(f"QuantSpec.range_search must be None (min / max) or 'percentile', got "
                                 f"{self.range_search!r}")
            if not self.asymmetric or self.granularity not in ("tensor", "channel", "group"):
                raise ValueError("QuantSpec.range_search='percentile' needs an asymmetric (uint*) format and "
                                 f"granularity tensor / channel / group, got fmt {self.fmt!r}, granularity "
                                 f"{self.granularity!r}")

    def _check_block(self) -> None:
        b = BLOCK_FORMATS[self.fmt]
        if self.granularity != "group" or self.group_size != b.block_size:
            raise ValueError(f"QuantSpec(fmt={self.fmt!r}) needs granularity 'group' with group_size="
                             f"{b.block_size} (the format's block size), got granularity {self.granularity!r}, "
                             f"group_size {self.group_size!r}")
        if self.rounding != "rne":
            raise ValueError(f"QuantSpec.rounding must be 'rne' for block format {self.fmt!r} (the formats round "
                             f"ties to even), got {self.rounding!r}")
        if self.static or self.fixed_scale is not None:
            raise ValueError(f"QuantSpec(fmt={self.fmt!r}): static / fixed_scale are not implemented for block "
                             f"formats (their block scales are dynamic), got static={self.static}, "
                             f"fixed_scale={self.fixed_scale!r}")
        if self.dfq is not None and (self.dfq != "fp4" or b.element.name != "e2m1"):
            raise ValueError(f"QuantSpec.dfq with a block format must be 'fp4' on an E2M1 format (mxfp4, nvfp4), "
                             f"got dfq={self.dfq!r} with fmt {self.fmt!r}")
        if b.scale_kind == "e8m0":
            rule = "floor" if self.scale_rule is None else self.scale_rule
            if rule not in MX_SCALE_RULES:
                raise ValueError(f"QuantSpec.scale_rule must be one of {MX_SCALE_RULES} for {self.fmt!r}, got "
                                 f"{self.scale_rule!r}")
            object.__setattr__(self, "scale_rule", rule)
        elif self.scale_rule is not None:
            raise ValueError(f"QuantSpec.scale_rule applies to the MX formats only; {self.fmt!r} has E4M3 block "
                             f"scales, got scale_rule={self.scale_rule!r}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        for k in ("scale_rule", "static_sets", "range_search"):  # omitted where unused (old recipes unchanged)
            if d[k] is None:
                del d[k]
        return d

    @property
    def block(self):
        """The :class:`fpqvar.formats.BlockFormat` of a block-format spec, else None."""
        return BLOCK_FORMATS.get(self.fmt)

    @property
    def format(self):
        """The element format (for block formats: the element of the block, e.g. E2M1 for ``mxfp4``)."""
        b = self.block
        return b.element if b is not None else get_format(self.fmt)

    @property
    def bits(self) -> int:
        return int(self.format.bits)

    @property
    def asymmetric(self) -> bool:
        f = self.format
        return f.kind == "int" and not f.symmetric

    def with_fmt(self, fmt: str) -> "QuantSpec":
        return QuantSpec(**{**self.to_dict(), "fmt": fmt})

    def short(self) -> str:
        """Compact label for tables: ``e2m1/g128``, ``int4/ch``, ``dfq-fp4/g128``."""
        g = {"tensor": "t", "channel": "ch", "token": "tok"}.get(self.granularity, f"g{self.group_size}")
        name = f"dfq-{self.dfq}" if self.dfq else self.fmt
        if self.block is not None:  # dfq-mxfp4/g32, mxfp4/g32, mxfp4/g32/rceil
            name = f"dfq-{self.fmt}" if self.dfq else self.fmt
            g += "" if self.scale_rule in (None, "floor") else f"/{self.scale_rule}"
        fixed = "" if self.fixed_scale is None else f"/s={self.fixed_scale:g}"
        sets = "" if self.static_sets is None else f"-{self.static_sets}"
        fixed += "" if self.range_search is None else "/pct"
        return f"{name}/{g}" + ("/static" + sets if self.static else "") + fixed
