"""The quantizer front end (absmax, divider-free scale, exact midpoint compare) against the datapath's
quantizer, code for code and scale bit for bit (rtol=0, atol=0), on sweeps built to hit every midpoint
exactly and one float32 ulp either side, at many scales, with subnormals, zeros and -0.0."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("amaranth")

from amaranth.sim import Simulator  # noqa: E402

from fpqvar.hw import quantizer_int as qi  # noqa: E402
from fpqvar.hw.rtl.quant_front import QuantFrontEnd, midpoint_terms  # noqa: E402

MAXV = {"e2m1": 6.0, "e1m2": 1.75}


def _run(dut: QuantFrontEnd, groups_NG: np.ndarray):
    """Stream the groups back to back (one beat per cycle); returns codes (N, 128) and scales per output."""
    L, B = dut.lanes, dut.beats
    words = groups_NG.astype(np.float32).view(np.uint32).reshape(-1, L).astype(np.int64)
    codes, scales, firsts, lasts, out_cycles = [], [], [], [], []
    scale_ports = ["scale_neg", "scale_pos"] if dut.fmt == "dfq" else ["scale"]

    async def bench(ctx):
        cycle = 0
        while len(codes) < len(words):
            if cycle < len(words):
                ctx.set(dut.x, sum(int(v) << (32 * i) for i, v in enumerate(words[cycle])))
            ctx.set(dut.valid_in, cycle < len(words))
            if ctx.get(dut.valid_out):
                c = int(ctx.get(dut.codes))
                codes.append([(c >> (4 * i)) & 15 for i in range(L)])
                firsts.append(int(ctx.get(dut.first_out)))
                lasts.append(int(ctx.get(dut.last_out)))
                if firsts[-1]:
                    scales.append([int(ctx.get(getattr(dut, p))) for p in scale_ports])
                    out_cycles.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < len(words) + 100, "front end stalled"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    n = len(groups_NG)
    assert firsts == [1, *[0] * (B - 1)] * n and lasts == [*[0] * (B - 1), 1] * n
    s = np.array(scales, np.int64).astype(np.uint32).view(np.float32)
    return np.array(codes).reshape(n, 128), s, out_cycles


def _tie_groups(rng, half: str, n: int, sign: float = 1.0) -> np.ndarray:
    """Groups whose elements sit on ``midpoint * s`` exactly, or one ulp below / above; scales with few
    significant bits (so ``midpoint * s`` is a float32) and random ones (where most are not)."""
    mids = [c * 2.0**j for c, j in midpoint_terms(half)]
    out = []
    for i in range(n):
        if i % 2:
            s = np.float32((1 + rng.integers(0, 8) / 8) * 2.0 ** rng.integers(-130, 100))  # 4 significant bits
        else:
            s = np.float32(rng.lognormal(0, 3))
        s = np.float32(s) if s > 0 else np.float32(1)
        amax = np.float32(s * np.float32(MAXV[half]))
        s = qi.absmax_scales(amax, MAXV[half])  # the scale the quantizer will use
        vals = []
        for m in mids:
            t = np.float32(np.float64(m) * np.float64(s))  # rounded if not exact
            vals += [t, np.nextafter(t, np.float32(0)), np.nextafter(t, np.float32(np.inf))]
        g = np.resize(np.array(vals, np.float32), 127)
        g = np.concatenate([[amax], g]).astype(np.float32)
        g = g[rng.permutation(128)] * np.float32(sign)
        out.append(g)
    return np.array(out, np.float32)


def _special_groups(rng) -> np.ndarray:
    g = np.zeros((6, 128), np.float32)
    g[1] = -0.0  # all -0.0: scale 1, codes 0b1000 (E2M1 / E1M2), 0 in DFQ
    g[2] = (rng.integers(-2**23, 2**23, 128) * 2.0**-149).astype(np.float32)  # subnormals: scale underflows?
    g[3] = rng.uniform(-1, 1, 128).astype(np.float32) * np.float32(3.4e38)  # near overflow (finite)
    g[4] = rng.standard_normal(128).astype(np.float32)
    g[4, ::3] = 0.0
    g[5, :] = 2.0**-149  # the smallest subnormal: s = 2**-149 / 6 underflows to 0 -> scale 1
    return g


@pytest.mark.parametrize("fmt", ["e2m1", "e1m2"])
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_front_end_codes_and_scales_equal_the_datapath(fmt, rounding):
    rng = np.random.default_rng({"e2m1": 1, "e1m2": 2}[fmt] + 10 * (rounding == "rne"))
    groups = np.concatenate([_tie_groups(rng, fmt, 6), _tie_groups(rng, fmt, 4, -1.0),
                             _special_groups(rng),
                             (rng.standard_normal((4, 128)) * rng.lognormal(0, 4, (4, 1))).astype(np.float32)])
    dut = QuantFrontEnd(fmt, rounding, lanes=16)
    codes, s, out_cycles = _run(dut, groups)
    ref_codes, ref_s = qi.quantize_groups(groups, fmt, rounding=rounding)
    np.testing.assert_array_equal(s[:, 0].view(np.uint32), ref_s[:, 0].view(np.uint32))
    np.testing.assert_array_equal(codes, ref_codes)
    # timing: group k's first beat enters on cycle 8k, its first codes come out latency_cycles later
    assert out_cycles == [dut.beats * k + dut.latency_cycles for k in range(len(groups))]


@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
def test_front_end_dfq_equals_the_datapath(rounding):
    rng = np.random.default_rng(3 + (rounding == "rne"))
    neg = _tie_groups(rng, "e1m2", 6, -1.0)
    pos = _tie_groups(rng, "e2m1", 6)
    mix = np.where(rng.random((6, 128)) < 0.5, neg, pos).astype(np.float32)  # both halves in one group
    gelu = rng.standard_normal((3, 128)).astype(np.float32)
    gelu = np.where(gelu < 0, np.float32(0.05) * gelu, gelu).astype(np.float32)
    groups = np.concatenate([mix, pos[:2], neg[:2], _special_groups(rng), gelu])
    dut = QuantFrontEnd("dfq", rounding, lanes=16)
    codes, s, _ = _run(dut, groups)
    ref_codes, ref_neg, ref_pos = qi.quantize_groups_dfq(groups, rounding=rounding)
    np.testing.assert_array_equal(s[:, 0].view(np.uint32), ref_neg[:, 0].view(np.uint32))
    np.testing.assert_array_equal(s[:, 1].view(np.uint32), ref_pos[:, 0].view(np.uint32))
    np.testing.assert_array_equal(codes, ref_codes)


@pytest.mark.parametrize("lanes", [2, 32])
def test_front_end_other_beat_widths_and_validation(lanes):
    """Narrow and wide beats give the same results; bad parameters name the field. (128 lanes, one group per
    beat, is not simulated here: Amaranth's Python simulator overflows the recursion limit compiling the
    4096-bit buffer.)"""
    rng = np.random.default_rng(9)
    groups = _tie_groups(rng, "e2m1", 3)
    codes, s, out_cycles = _run(QuantFrontEnd("e2m1", "rne", lanes=lanes), groups)
    ref_codes, ref_s = qi.quantize_groups(groups, "e2m1")
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(s[:, 0].view(np.uint32), ref_s[:, 0].view(np.uint32))
    assert out_cycles[0] == 128 // lanes + 3
    with pytest.raises(ValueError, match="lanes"):
        QuantFrontEnd("e2m1", lanes=48)
    with pytest.raises(ValueError, match="fmt"):
        QuantFrontEnd("e3m0")
