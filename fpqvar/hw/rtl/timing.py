"""Cycle timing of the pipelined units, measured by simulation (for ``fpqvar.hw.perf``).

``rtl_timing(unit)`` streams vectors into the generated RTL and measures the latency (cycles from the cycle a
vector is applied with ``valid_in`` to the cycle its result is valid) and the initiation interval (cycles
between consecutive results when inputs arrive every cycle). It also checks the results against the datapath
model, so the numbers come from a unit that computes the right thing. Cached per process (~1-3 s per unit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

__all__ = ["UnitTiming", "rtl_timing", "TIMED_UNITS"]

TIMED_UNITS = ("pe_fp4", "pe_int4", "pe_int4_sym", "pe_dfq", "fht128")


@dataclass(frozen=True)
class UnitTiming:
    """Measured timing of one unit. ``ops_per_result``: MACs per dot product (PE) or points (FHT)."""

    unit: str
    latency_cycles: int
    initiation_interval_cycles: int
    ops_per_result: int
    version: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def _vectors(unit: str, n: int, rng: np.random.Generator):
    from fpqvar.hw import datapath as dp
    from fpqvar.hw.hadamard_int import fht_int
    from fpqvar.hw.rtl.sim import pack

    vecs, expect = [], []
    for _ in range(n):
        if unit == "fht128":
            x = rng.integers(-128, 128, size=128)
            vecs.append({"x": pack(x, 8)})
            expect.append({"y": pack(fht_int(x, 8), 15)})
            continue
        a, w = rng.integers(0, 16, size=128), rng.integers(0, 16, size=128)
        vecs.append({"a": pack(a, 4), "w": pack(w, 4)})
        kind = unit.removeprefix("pe_")
        if kind == "dfq":
            neg, pos = dp.group_dot_dfq(a, w)
            expect.append({"dot_neg": int(neg), "dot_pos": int(pos)})
        else:
            expect.append({"dot": int(dp.group_dot(kind, a, w))})
    return vecs, expect


@lru_cache(maxsize=None)
def rtl_timing(unit: str = "pe_fp4") -> UnitTiming:
    """Latency and initiation interval of ``unit`` (one of ``TIMED_UNITS``), measured by simulation."""
    from fpqvar.hw.rtl.sim import run_stream
    from fpqvar.hw.rtl.units import build_unit

    if unit not in TIMED_UNITS:
        raise ValueError(f"rtl_timing: unit must be one of {TIMED_UNITS}, got {unit!r}")
    vecs, expect = _vectors(unit, 4, np.random.default_rng(0))
    dut = build_unit(unit)
    outs = list(expect[0])
    got, t_in, t_out = run_stream(dut, vecs, outs)
    if unit == "fht128":  # the packed output word reads as one signed integer: compare unsigned bits
        got = [{"y": g["y"] & ((1 << len(dut.y)) - 1)} for g in got]
    if got != expect:
        raise AssertionError(f"rtl_timing: {unit} results differ from the datapath model")
    latency = t_out[0] - t_in[0]
    if [o - i for i, o in zip(t_in, t_out)] != [latency] * len(t_in):
        raise AssertionError(f"rtl_timing: {unit} latency is not constant: {t_in} -> {t_out}")
    ii = set(np.diff(t_out).tolist())
    if len(ii) != 1:
        raise AssertionError(f"rtl_timing: {unit} outputs are not evenly spaced: {t_out}")
    ops = 128
    return UnitTiming(unit, latency, ii.pop(), ops)
