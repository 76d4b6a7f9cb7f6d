"""QuantSpec: how one tensor (a weight or a linear's input activation) is quantized. Pure data, validated.

A spec names a format of ``fpqvar.formats`` (``e2m1``, ``e2m3``, ``int4``, ``uint4`` ...), a granularity
(``tensor`` | ``channel`` (weights: one scale per output row) | ``token`` (activations: one scale per row) |
``group`` (``group_size`` contiguous elements along the input dim)), a rounding rule (``rne`` = ties to even,
``ties_up`` = ties to the larger grid value as upstream's kernel, fpqvar-method.md section 4), an optional DFQ
variant (fc2 input, section 6: ``fp4`` = E1M2 negatives / E2M1 positives, ``fp6`` = INT -32..0 / E2M3; ``fmt``
is then the positive-side format) and ``static`` (calibrated activation scales instead of dynamic absmax).

Asymmetric INT formats (``uint*``) use min-max scales with a zero point (LiteVAR style, section 11).
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.config import StrictConfig
from fpqvar.formats import DFQ_VARIANTS, GRANULARITIES, ROUNDINGS, get_format

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
    # static only: one calibrated parameter set per VAR scale ("scale") or two, the first scale's token and
    # the rest ("sink"): PTQ4ARVG's static token-wise quantization (fpqvar.quant.static_act)
    static_sets: str | None = None
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, str) and hasattr(self.fmt, "ebits"):  # a Format object: store its name
            object.__setattr__(self, "fmt", self.fmt.name)
        super().__post_init__()  # strict field types (issue 16 item 3)
        try:
            get_format(self.fmt)
        except ValueError as e:
            raise ValueError(f"QuantSpec.fmt: {e}") from None
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

    @property
    def format(self):
        return get_format(self.fmt)

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
        fixed = "" if self.fixed_scale is None else f"/s={self.fixed_scale:g}"
        sets = "" if self.static_sets is None else f"-{self.static_sets}"
        return f"{name}/{g}" + ("/static" + sets if self.static else "") + fixed
