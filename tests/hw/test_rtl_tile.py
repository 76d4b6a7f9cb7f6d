"""The GEMM tile in Amaranth simulation: outputs bit-exact against the datapath model with random stalls on
every stream, and the cycle count equal to the closed form (``tile_model.tile_cycles``) at full rate.
A perturbed expected value or cycle model must make the check fail (so the check can fail)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("amaranth")

from amaranth.sim import Simulator  # noqa: E402

from fpqvar.hw.rtl.tile import GemmTile  # noqa: E402
from fpqvar.hw.rtl.tile_io import activation_beats, expected_outputs, f32_bits, unpack_output, weight_beats  # noqa: E402
from fpqvar.hw.rtl.tile_model import TileConfig, check_layer, tile_cycles  # noqa: E402

SMALL = TileConfig(n_pe=2, lanes=8, max_tokens=16, max_groups=4, max_passes=8, fifo_depth=10)  # minimum FIFO


def _layer(rng, cfg, T, G, O):
    K = G * cfg.lanes
    a = rng.integers(0, 16, size=(T, K))
    w = rng.integers(0, 16, size=(O, K))
    sa = rng.lognormal(-2, 1, size=(T, G)).astype(np.float32)
    sw = rng.lognormal(-4, 1, size=(O, G)).astype(np.float32)
    b = rng.normal(size=O).astype(np.float32)
    return a, sa, w, sw, b


def run_tile(cfg, layer, *, rng=None, p_valid=1.0, p_ready=1.0, max_cycles=20_000):
    """Drive the tile; returns (output beats as (T*P, n_pe) bit patterns, tlast flags, cycles start..last)."""
    a, sa, w, sw, b = layer
    T, K = a.shape
    G, P = check_layer(cfg, T, K, w.shape[0])
    a_beats = activation_beats(cfg, a, sa)
    w_beats = [x for pb in weight_beats(cfg, w, sw, b) for x in pb]
    dut = GemmTile(cfg)
    outs, lasts, last_cycle = [], [], []

    async def bench(ctx):
        ctx.set(dut.cfg_tokens, T)
        ctx.set(dut.cfg_groups, G)
        ctx.set(dut.cfg_passes, P)
        ctx.set(dut.start, 1)
        ia = iw = cycle = 0
        while len(outs) < T * P:
            va = ia < len(a_beats) and (rng is None or rng.random() < p_valid)
            vw = iw < len(w_beats) and (rng is None or rng.random() < p_valid)
            ready = rng is None or rng.random() < p_ready
            ctx.set(dut.s_axis_a_tvalid, va)
            ctx.set(dut.s_axis_a_tdata, a_beats[ia] if va else 0)
            ctx.set(dut.s_axis_w_tvalid, vw)
            ctx.set(dut.s_axis_w_tdata, w_beats[iw] if vw else 0)
            ctx.set(dut.m_axis_y_tready, ready)
            if va and ctx.get(dut.s_axis_a_tready):
                ia += 1
            if vw and ctx.get(dut.s_axis_w_tready):
                iw += 1
            if ready and ctx.get(dut.m_axis_y_tvalid):
                outs.append(unpack_output(cfg, ctx.get(dut.m_axis_y_tdata)))
                lasts.append(ctx.get(dut.m_axis_y_tlast))
                last_cycle.append(cycle)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycle += 1
            assert cycle < max_cycles, f"tile stalled: {len(outs)}/{T * P} outputs"
        for _ in range(3):  # done follows the last output; busy drops
            await ctx.tick()
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(outs, np.int64), lasts, last_cycle[-1] + 1


def _as_TO(cfg, beats, T, P):
    """Output beats (pass-major, token-minor) -> ``(T, O)`` bit patterns."""
    return beats.reshape(P, T, cfg.n_pe).transpose(1, 0, 2).reshape(T, P * cfg.n_pe)


def check_tile(cfg, layer, beats, lasts, cycles, *, perturb: str = "none"):
    """The assertions of the tile tests. ``perturb``: "value" flips one expected bit, "cycles" adds one cycle
    to the closed form; either must fail."""
    a, sa, w, sw, b = layer
    T, K = a.shape
    G, P = check_layer(cfg, T, K, w.shape[0])
    want = f32_bits(expected_outputs(cfg, *layer))
    expected_cycles = tile_cycles(cfg, T, K, w.shape[0])
    if perturb == "value":
        want[T // 2, w.shape[0] // 3] ^= 1
    elif perturb == "cycles":
        expected_cycles += 1
    got = _as_TO(cfg, beats, T, P)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} outputs differ from the datapath, first (t, o) = {bad[0].tolist()}"
    assert lasts == ([0] * (T - 1) + [1]) * P
    if cycles is not None:
        assert cycles == expected_cycles, f"tile took {cycles} cycles, closed form says {expected_cycles}"


@pytest.mark.parametrize("T,G,O", [(5, 2, 4), (1, 1, 2), (8, 4, 2)])
def test_tile_full_rate_exact_and_cycle_count(T, G, O):
    rng = np.random.default_rng(T * 100 + G * 10 + O)
    layer = _layer(rng, SMALL, T, G, O)
    beats, lasts, cycles = run_tile(SMALL, layer)
    check_tile(SMALL, layer, beats, lasts, cycles)


@pytest.mark.parametrize("T,G,p_ready", [(6, 3, 0.3), (16, 1, 0.1)])
def test_tile_with_random_stalls_on_every_stream(T, G, p_ready):
    """Input gaps and output back-pressure change the timing, never the values (cycle count not checked).
    With 16 tokens of one group and a slow consumer, more results are due than the FIFO holds: the credit
    check must hold the issue back (a lost or overwritten result fails the value check)."""
    rng = np.random.default_rng(T)
    layer = _layer(rng, SMALL, T, G, 4)
    beats, lasts, cycles = run_tile(SMALL, layer, rng=np.random.default_rng(4), p_valid=0.6, p_ready=p_ready)
    check_tile(SMALL, layer, beats, lasts, None)
    assert cycles > tile_cycles(SMALL, T, G * SMALL.lanes, 4)


@pytest.mark.parametrize("perturb", ["value", "cycles"])
def test_tile_check_fails_when_perturbed(perturb):
    rng = np.random.default_rng(7)
    layer = _layer(rng, SMALL, 4, 2, 4)
    beats, lasts, cycles = run_tile(SMALL, layer)
    check_tile(SMALL, layer, beats, lasts, cycles)  # unperturbed: passes
    msg = "differ from the datapath" if perturb == "value" else "closed form says"
    with pytest.raises(AssertionError, match=msg):
        check_tile(SMALL, layer, beats, lasts, cycles, perturb=perturb)


def test_tile_config_validation():
    with pytest.raises(ValueError, match="fifo_depth"):
        TileConfig(fifo_depth=4)
    with pytest.raises(ValueError, match="n_pe"):
        TileConfig(n_pe=0)
    with pytest.raises(ValueError, match="in_features"):
        check_layer(TileConfig(), 4, 200, 8)
    assert TileConfig.from_dict(TileConfig().to_dict()) == TileConfig()
