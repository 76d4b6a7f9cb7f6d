"""Number-format definitions: minifloats (ExMy) and integer grids.

A format is pure data (a frozen dataclass); its value table is derived from the bit fields, never typed in.
The normalized grids match ``shared/spec/fpqvar-method.md`` section 4:

    e2m1  {0, 0.5, 1, 1.5, 2, 3, 4, 6}            max 6     (FP4)
    e1m2  {0, 0.25, ..., 1.75}                     max 1.75  (FP4, DFQ negative side)
    e3m0  {0, 0.25, 0.5, 1, 2, 4, 8, 16}           max 16    (FP4, format search only)
    e2m3  0 .. 7.5                                 max 7.5   (FP6)
    e3m2  0 .. 28                                  max 28    (FP6)
    e4m3  OCP E4M3FN, max 448 (S.1111.111 is NaN)  (FP8)
    e5m2  IEEE-like, max 57344, Inf/NaN at e=31    (FP8)

Code layout for minifloats: ``[sign | exponent (ebits) | mantissa (mbits)]``, sign in the top bit, as in
ml_dtypes / OCP. Subnormals at exponent field 0: ``0.m * 2**(1 - bias)``; normals ``1.m * 2**(e - bias)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = [
    "FloatFormat",
    "IntFormat",
    "Format",
    "FORMATS",
    "get_format",
    "format_names",
]


@dataclass(frozen=True)
class FloatFormat:
    """A sign-magnitude minifloat ``e{ebits}m{mbits}``.

    ``special`` names which top codes are not finite:
      - ``"none"``: every code is finite (FP4 / FP6, OCP "fn" without NaN);
      - ``"fn"``: only the all-ones code (S.1111.111) is NaN (OCP E4M3FN);
      - ``"ieee"``: exponent all-ones is Inf (mantissa 0) or NaN (IEEE-like E5M2).
    Quantization to this format always saturates to +-max_value (the FPQVAR / ml_dtypes-fp4 behaviour).
    """

    name: str
    ebits: int
    mbits: int
    bias: int
    special: str = "none"

    def __post_init__(self) -> None:
        if not (1 <= self.ebits <= 5):
            raise ValueError(f"FloatFormat {self.name!r}: ebits must be in 1..5, got {self.ebits}")
        if not (0 <= self.mbits <= 7):
            raise ValueError(f"FloatFormat {self.name!r}: mbits must be in 0..7, got {self.mbits}")
        if self.special not in ("none", "fn", "ieee"):
            raise ValueError(f"FloatFormat {self.name!r}: special must be none|fn|ieee, got {self.special!r}")

    kind = "float"

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def num_codes(self) -> int:
        return 1 << self.bits

    def decode_magnitude_code(self, code: int) -> float:
        """Value of an unsigned magnitude code (sign bit clear); NaN / Inf for special codes."""
        e = code >> self.mbits
        m = code & ((1 << self.mbits) - 1)
        emax_field = (1 << self.ebits) - 1
        if self.special == "ieee" and e == emax_field:
            return float("inf") if m == 0 else float("nan")
        if self.special == "fn" and e == emax_field and m == (1 << self.mbits) - 1:
            return float("nan")
        if e == 0:
            return (m / (1 << self.mbits)) * 2.0 ** (1 - self.bias)
        return (1.0 + m / (1 << self.mbits)) * 2.0 ** (e - self.bias)

    @cached_property
    def code_values(self) -> np.ndarray:
        """float64 value of every code 0 .. 2**bits - 1 (sign bit is the top bit)."""
        half = 1 << (self.bits - 1)
        mags = np.array([self.decode_magnitude_code(c) for c in range(half)], dtype=np.float64)
        return np.concatenate([mags, -mags])

    @cached_property
    def positive_grid(self) -> np.ndarray:
        """Sorted finite non-negative values (including 0), float64."""
        half = 1 << (self.bits - 1)
        mags = self.code_values[:half]
        return np.unique(mags[np.isfinite(mags)])

    @cached_property
    def grid(self) -> np.ndarray:
        """Sorted finite representable values, symmetric, one zero."""
        p = self.positive_grid
        return np.concatenate([-p[:0:-1], p])

    @property
    def max_value(self) -> float:
        return float(self.positive_grid[-1])

    @property
    def min_subnormal(self) -> float:
        return float(self.positive_grid[1])


@dataclass(frozen=True)
class IntFormat:
    """A k-bit integer grid.

    - ``symmetric=True``: values ``-(2**(k-1) - 1) .. 2**(k-1) - 1`` (one code unused), absmax scale;
    - ``symmetric=False``: values ``0 .. 2**k - 1`` with a zero point (asymmetric min-max, LiteVAR style).
    ``lo`` / ``hi`` override the range for special grids such as FP6-DFQ's negative grid ``-32 .. 0``.
    """

    name: str
    bits: int
    symmetric: bool = True
    lo: int | None = None
    hi: int | None = None

    kind = "int"

    def __post_init__(self) -> None:
        if not (2 <= self.bits <= 8):
            raise ValueError(f"IntFormat {self.name!r}: bits must be in 2..8, got {self.bits}")

    @property
    def qmin(self) -> int:
        if self.lo is not None:
            return self.lo
        return -((1 << (self.bits - 1)) - 1) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        if self.hi is not None:
            return self.hi
        return (1 << (self.bits - 1)) - 1 if self.symmetric else (1 << self.bits) - 1

    @cached_property
    def grid(self) -> np.ndarray:
        return np.arange(self.qmin, self.qmax + 1, dtype=np.float64)

    @cached_property
    def positive_grid(self) -> np.ndarray:
        g = self.grid
        return g[g >= 0]

    @property
    def max_value(self) -> float:
        """Largest magnitude on the grid: the absmax-scale denominator."""
        return float(max(abs(self.qmin), abs(self.qmax)))


Format = FloatFormat | IntFormat

_FLOATS = [
    FloatFormat("e2m1", 2, 1, 1),
    FloatFormat("e1m2", 1, 2, 1),
    FloatFormat("e3m0", 3, 0, 3),
    FloatFormat("e2m3", 2, 3, 1),
    FloatFormat("e3m2", 3, 2, 3),
    FloatFormat("e4m3", 4, 3, 7, special="fn"),
    FloatFormat("e5m2", 5, 2, 15, special="ieee"),
]
_INTS = [IntFormat(f"int{k}", k, True) for k in range(2, 9)] + [
    IntFormat(f"uint{k}", k, False) for k in range(2, 9)
] + [
    # FP6 DFQ negative side: the uniform grid -32 .. 0 (fpqvar-method.md section 6). In a DFQ code the sign
    # bit selects this grid, the 5 magnitude bits hold 1..32 as 0..31; zero is coded on the positive side.
    IntFormat("neg32", 6, True, lo=-32, hi=0),
]

FORMATS: dict[str, Format] = {f.name: f for f in (*_FLOATS, *_INTS)}


def format_names() -> list[str]:
    return list(FORMATS)


def get_format(fmt: str | Format) -> Format:
    """Look a format up by name (``"e2m1"``, ``"int4"`` ...) or pass a format object through."""
    if isinstance(fmt, (FloatFormat, IntFormat)):
        return fmt
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown number format {fmt!r}; known: {', '.join(FORMATS)}") from None
