"""Reference quantizers for the format tests, written from the definitions (never from fpqvar code).

Grids come from ``shared/spec/fpqvar-method.md`` section 4 (typed here) or from ml_dtypes (an independent
library) for the formats it has. Rounding is an exhaustive search in float64 over the whole grid.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

# Non-negative grids typed from the method spec, section 4.
SPEC_POS_GRIDS = {
    "e2m1": [0, 0.5, 1, 1.5, 2, 3, 4, 6],
    "e1m2": [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75],
    "e3m0": [0, 0.25, 0.5, 1, 2, 4, 8, 16],
}

ML_DTYPES = {
    "e2m1": ml_dtypes.float4_e2m1fn,
    "e2m3": ml_dtypes.float6_e2m3fn,
    "e3m2": ml_dtypes.float6_e3m2fn,
    "e4m3": ml_dtypes.float8_e4m3fn,
    "e5m2": ml_dtypes.float8_e5m2,
}
ML_BITS = {"e2m1": 4, "e2m3": 6, "e3m2": 6, "e4m3": 8, "e5m2": 8}

# Where ml_dtypes stops saturating (it rounds to NaN / Inf from here on): e4m3fn's 464 is the midpoint of 448
# and 512 and rounds to even (448); anything above is NaN. e5m2's 61440 is the midpoint of 57344 and 65536 = Inf.
ML_FINITE_LIMIT = {"e4m3": 464.0, "e5m2": np.nextafter(np.float32(61440.0), np.float32(0))}


def ml_pos_grid(name: str) -> np.ndarray:
    """Sorted finite non-negative values of an ml_dtypes type, from all of its codes."""
    bits = ML_BITS[name]
    codes = np.arange(1 << (bits - 1), dtype=np.uint8)
    vals = codes.view(ML_DTYPES[name]).astype(np.float64)
    return np.unique(vals[np.isfinite(vals)])


def pos_grid(name: str) -> np.ndarray:
    if name in SPEC_POS_GRIDS:
        return np.array(SPEC_POS_GRIDS[name], dtype=np.float64)
    return ml_pos_grid(name)


def float_grid(name: str) -> np.ndarray:
    p = pos_grid(name)
    return np.concatenate([-p[:0:-1], p])


def int_grid(qmin: int, qmax: int) -> np.ndarray:
    return np.arange(qmin, qmax + 1, dtype=np.float64)


def ml_cast(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values as float32, codes as uint8) of an ml_dtypes round-to-nearest-even cast."""
    y = np.asarray(x, dtype=np.float32).astype(ML_DTYPES[name])
    return y.astype(np.float32), y.view(np.uint8)


def nearest_rne(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Exhaustive nearest grid value, saturating; a tie goes to the candidate that is an even multiple of the
    gap between the two candidates. For minifloats with mbits >= 1 that is the even mantissa (IEEE / ml_dtypes
    RNE); with mbits = 0 (E3M0) it is the larger power of two, as ml_dtypes rounds float8_e8m0fnu; on INT grids
    it is the even integer."""
    xs = np.clip(np.asarray(x, dtype=np.float64), grid[0], grid[-1])
    d = np.abs(xs[:, None] - grid[None, :])
    cand = d == d.min(axis=1, keepdims=True)
    first = np.argmax(cand, axis=1)
    second = np.minimum(first + 1, len(grid) - 1)
    tie = cand.sum(axis=1) == 2
    a, b = grid[first], grid[second]
    gap = np.where(tie, b - a, 1.0)
    pick_b = tie & (np.mod(b / gap, 2) == 0)
    return np.where(pick_b, b, a)


def nearest_rne_float(x: np.ndarray, name: str) -> np.ndarray:
    return nearest_rne(x, float_grid(name))


def nearest_rne_int(x: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    return nearest_rne(x, int_grid(qmin, qmax))


def ascending_scan_le(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Upstream kernel's rule: scan the ascending grid, keep the last point with distance <= the best so far."""
    xs = np.asarray(x, dtype=np.float64)
    best = np.full(xs.shape, np.inf)
    out = np.zeros(xs.shape)
    for g in grid:
        d = np.abs(xs - g)
        take = d <= best
        out[take] = g
        best[take] = d[take]
    return out


def sweep(emin: int, mbits: int, max_value: float, n: int, seed: int) -> np.ndarray:
    """float32 values of both signs, log-uniform from below the smallest subnormal to 4x past max."""
    rng = np.random.default_rng(seed)
    lo, hi = emin - mbits - 3, np.log2(max_value) + 2
    mag = np.exp2(rng.uniform(lo, hi, n)) * rng.uniform(1.0, 2.0, n)
    sign = rng.choice([-1.0, 1.0], n)
    return (sign * mag).astype(np.float32)


def midpoints(grid: np.ndarray) -> np.ndarray:
    """Every exact midpoint between neighbouring grid values (exact in float32 for these small grids)."""
    return ((grid[1:] + grid[:-1]) / 2).astype(np.float32)
