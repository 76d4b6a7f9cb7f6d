"""The quantizer's rounding step (fpqvar.quant.kernels._round_scaled): EXACT tier.

Reference: brute force in float64 over the scaled grid (nearest grid point; a tie is a value exactly halfway
between its two neighbours). Both outputs that report ties are checked: the bool mask (the compile and Triton
backends) and the gap (the eager quantizer: <= 0 everywhere, 0 exactly at the ties)."""

import numpy as np
import pytest
import torch

from fpqvar.quant import kernels as K


def _scaled_grid(name: str) -> np.ndarray:
    g = K.int_grid(name)
    pts = np.arange(g.lo, g.hi + 1, dtype=np.float64)
    step = np.exp2(np.maximum(np.floor(np.log2(np.maximum(np.abs(pts), 1e-300))), g.emin) - g.mbits)
    return np.unique(pts[np.abs(np.remainder(pts, step)) == 0])  # the values the grid can hold


@pytest.mark.parametrize("fmt", ["e2m1", "e1m2", "e3m0", "e2m3", "int4"])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_ties_reported_exactly(fmt, rounding):
    grid = K.int_grid(fmt)
    vals = _scaled_grid(fmt)
    mids = (vals[1:] + vals[:-1]) / 2
    t = np.concatenate([vals, mids, np.nextafter(mids.astype(np.float32), np.float32(np.inf)),
                        np.nextafter(mids.astype(np.float32), np.float32(-np.inf))]).astype(np.float32)
    t = t[(t >= grid.lo) & (t <= grid.hi)]
    d = np.abs(t.astype(np.float64)[:, None] - vals[None, :])
    two = np.sort(d, axis=1)[:, :2]
    tie_ref = (two[:, 0] == two[:, 1]) & (two[:, 0] > 0)
    tt = torch.from_numpy(t)
    r, tie, half = K._round_scaled(tt.clone(), grid, rounding)
    _, gap, _ = K._round_scaled(tt.clone(), grid, rounding, as_gap=True)
    assert tie.dtype == torch.bool
    assert float(gap.max()) <= 0.0
    assert np.array_equal((gap == 0).numpy(), tie.numpy())  # the two forms agree
    assert tie_ref.any() and not tie_ref.all()
    if rounding == "rne":
        assert np.array_equal(tie.numpy(), tie_ref)
    else:  # ties_up reads frac = u - floor(u), which rounds to 0.5 one float32 ulp above a negative midpoint: a
        # spurious tie, decided exactly by _fix_ties; every true tie must still be reported
        assert np.all(tie.numpy()[tie_ref])
        assert np.all(np.abs(t[tie.numpy() & ~tie_ref]) < 1)
    # away from the reported ties r is the nearest grid value (at a tie either neighbour; _fix_ties decides those)
    nearest = vals[np.argmin(d, axis=1)]
    flagged = tie.numpy()
    assert np.array_equal(r.numpy()[~flagged].astype(np.float64), nearest[~flagged])
