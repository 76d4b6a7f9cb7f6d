"""The compiled C kernels of the few-row path (fpqvar.kernels.native): EXACT tier, rtol=0 atol=0, against the
PyTorch reference they replace (fpqvar.quant.kernels' quantizers, kernels_gemm.accumulate_products), compared as
float32 words; and how the library is found, built, cached and refused."""

import numpy as np
import pytest
import torch

from fpqvar.formats import DFQ_VARIANTS
from fpqvar.kernels import native
from fpqvar.quant import kernels as K
from fpqvar.quant import kernels_gemm as KG
from tests.quant.test_fast import _tie_heavy

needs_native = pytest.mark.skipif(native.unavailable() is not None,
                                  reason=f"native kernels unavailable: {native.unavailable()}")
GRIDS = ["e2m1", "e1m2", "e3m0", "e2m3", "int2", "int4", "int8", "neg32"]


def _words(t: torch.Tensor) -> np.ndarray:
    t = t.contiguous()
    return t.view(torch.int32).numpy() if t.dtype == torch.float32 else t.numpy()


def _inputs(T, G, S, seed, max_value):
    """Random groups of three magnitudes, tie-heavy groups (fl32(x / s) on a midpoint where x / s is not), an
    all-zero group, a group of one nonzero value and a group of -0.0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, G, S, generator=g) * torch.tensor([1e-3, 1.0, 300.0])[torch.arange(T * G) % 3].view(T, G, 1)
    if S == 128:
        ties = torch.from_numpy(_tie_heavy(T, G, seed, max_value=max_value)).view(T, G, S)
        x[::2] = ties[::2]
    x[0, 0] = 0.0
    if T * G > 1:
        x.view(T * G, S)[1] = 0.0
        x.view(T * G, S)[1, S // 2] = -2.5
    if T * G > 2:
        x.view(T * G, S)[2] = -0.0
    return x


@needs_native
@pytest.mark.parametrize("fmt", GRIDS)
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
@pytest.mark.parametrize("T,G,S", [(1, 1, 128), (2, 2, 128), (7, 3, 128), (33, 2, 128), (5, 4, 32), (3, 2, 1)])
def test_quantize_equals_the_reference(fmt, rounding, T, G, S):
    grid = K.int_grid(fmt)
    x = _inputs(T, G, S, T * 31 + G, grid.max_value)
    n, s, rng = K.quantize_act_ranged(x.reshape(T, G * S), grid, group_size=S, rounding=rounding)
    for dtype in (torch.int8, torch.float32):
        c, s_n, lo, hi = native.quantize(x, grid, rounding == "ties_up", dtype)
        assert c.dtype == dtype and c.shape == (T, G * S)
        assert np.array_equal(c.to(torch.int8).numpy(), n.numpy()) and torch.equal(c.to(torch.float32), n.float())
        assert np.array_equal(_words(s_n), _words(s)) and (lo, hi) == rng


@needs_native
@pytest.mark.parametrize("variant", sorted(DFQ_VARIANTS))
@pytest.mark.parametrize("rounding", ["rne", "ties_up"])
@pytest.mark.parametrize("T,G,S", [(1, 1, 128), (3, 2, 128), (16, 4, 128), (4, 3, 16)])
def test_quantize_dfq_equals_the_reference(variant, rounding, T, G, S):
    v = DFQ_VARIANTS[variant]
    neg, pos = K.int_grid(v.neg.name), K.int_grid(v.pos.name)
    x = _inputs(T, G, S, 7 * T + G, pos.max_value)
    x.view(T * G, S)[-1] = x.view(T * G, S)[-1].abs()  # a group with no negative half
    if T * G > 3:
        x.view(T * G, S)[3] = -x.view(T * G, S)[3].abs()  # and one with no positive half
    if S == 128:  # ties of the negative grid too
        x[1::2] = -torch.from_numpy(_tie_heavy(T, G, 3, (0.125, 0.375, 0.625, 1.125, 1.375, 1.625), 1.75)).view(
            T, G, S)[1::2]
    nn_, np_, sn, sp, rng = K.quantize_act_dfq_ranged(x.reshape(T, G * S), neg, pos, group_size=S, rounding=rounding)
    c, s, lo, hi = native.quantize_dfq(x, neg, pos, rounding == "ties_up")
    assert np.array_equal(c.numpy(), torch.cat([nn_, np_]).numpy())
    assert np.array_equal(_words(s), _words(torch.stack([sn, sp]))) and (lo, hi) == rng
    c32, *_ = native.quantize_dfq(x, neg, pos, rounding == "ties_up", torch.float32)
    assert torch.equal(c32, c.float())


@needs_native
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e-39, 6 * 1.5 * 2.0**-126])
@pytest.mark.parametrize("dfq", [False, True])
def test_out_of_exact_range_is_refused_like_the_reference(bad, dfq):
    x = torch.randn(2, 2, 128, generator=torch.Generator().manual_seed(0))
    if bad < 1e-30:  # a whole group tiny: its scale's divisor s * 2**-k is not a normal float32 (the second value:
        # s = 1.5 * 2**-126 is normal, s / 2 for E2M1's k = 1 is not)
        x[1, 1] = 0.0
        x[1, 1, 3] = bad
    else:
        x[1, 1, 3] = bad
    if dfq:
        neg, pos = K.int_grid(DFQ_VARIANTS["fp4"].neg.name), K.int_grid(DFQ_VARIANTS["fp4"].pos.name)
        with pytest.raises(K.OutOfExactRange):
            K.quantize_act_dfq_ranged(x.reshape(2, 256), neg, pos, group_size=128)
        assert native.quantize_dfq(x, neg, pos, False) is None
    else:
        grid = K.int_grid("e2m1")
        with pytest.raises(K.OutOfExactRange):
            K.quantize_act_ranged(x.reshape(2, 256), grid, group_size=128)
        assert native.quantize(x, grid, False) is None


@needs_native
@pytest.mark.parametrize("P,G,T,O", [(1, 1, 1, 1), (1, 2, 3, 48), (2, 8, 5, 40), (2, 3, 1, 7), (1, 60, 2, 16)])
@pytest.mark.parametrize("d_dtype", [torch.int32, torch.float32])
@pytest.mark.parametrize("bias", [False, True])
def test_accumulate_equals_the_reference(P, G, T, O, d_dtype, bias):
    g = torch.Generator().manual_seed(P * 100 + G * 10 + T)
    s = torch.rand(P, T, G, generator=g) * 2.0 ** torch.randint(-20, 20, (P, T, G), generator=g)
    sw = torch.rand(G, P, O, generator=g) * 2.0 ** torch.randint(-20, 5, (G, P, O), generator=g)
    d32 = torch.randint(-(2**27), 2**27, (G, P * T, O), generator=g, dtype=torch.int32)  # beyond 2**24: rounded once
    d32[0, 0, 0] = 2**31 - 1
    b = torch.randn(O, generator=g) if bias else None
    d = d32 if d_dtype == torch.int32 else d32.to(torch.float32)
    ref = KG.accumulate_products(s.permute(2, 0, 1).unsqueeze(-1), sw.unsqueeze(2), d32.to(torch.float32).view(
        G, P, T, O))
    if b is not None:
        ref = ref.add_(b)
    y = native.accumulate(s, sw, d, b)
    assert np.array_equal(_words(y), _words(ref))


@needs_native
def test_accumulate_and_quantize_refuse_bad_operands():
    s, sw = torch.ones(1, 2, 3), torch.ones(3, 1, 4)
    with pytest.raises(ValueError, match="shapes"):
        native.accumulate(s, sw, torch.zeros(3, 3, 4, dtype=torch.int32), None)
    with pytest.raises(ValueError, match="d must be contiguous"):
        native.accumulate(s, sw, torch.zeros(3, 2, 4, dtype=torch.int64), None)
    with pytest.raises(ValueError, match="bias"):
        native.accumulate(s, sw, torch.zeros(3, 2, 4, dtype=torch.int32), torch.zeros(5))
    with pytest.raises(ValueError, match=r"contiguous float32 \(T, G, S\)"):
        native.quantize(torch.zeros(2, 256), K.int_grid("e2m1"), False)
    with pytest.raises(ValueError, match="int8 or float32"):
        native.quantize(torch.zeros(2, 2, 128), K.int_grid("e2m1"), False, torch.int32)


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """A native module that has not looked for its library yet, caching under ``tmp_path``."""
    monkeypatch.setenv("FPQVAR_CACHE_DIR", str(tmp_path))
    saved = dict(native._state)
    native._state.clear()
    yield tmp_path
    native._state.clear()
    native._state.update(saved)


def test_turned_off_or_without_a_compiler_it_says_why(fresh_native, monkeypatch):
    monkeypatch.setenv("FPQVAR_NATIVE", "0")
    assert "FPQVAR_NATIVE=0" in native.unavailable()
    native._state.clear()
    monkeypatch.delenv("FPQVAR_NATIVE")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    assert "no C compiler" in native.unavailable()
    assert native.unavailable("cuda") == "CPU only"


def test_a_failing_build_says_why_and_leaves_nothing(fresh_native, monkeypatch, tmp_path):
    fake = tmp_path / "badcc"
    fake.write_text("#!/bin/sh\necho 'fake compiler: syntax error' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    why = native.unavailable()
    assert why is not None and "build or load failed" in why and "syntax error" in why
    assert not list((tmp_path / "native").glob("*.so*"))  # no half-written library left behind


@needs_native
def test_the_library_is_built_once_and_cached(fresh_native):
    assert native.unavailable() is None
    built = list((fresh_native / "native").glob("*.so"))
    assert len(built) == 1 and not list((fresh_native / "native").glob("*.tmp"))
    mtime = built[0].stat().st_mtime_ns
    native._state.clear()  # a new process: found in the cache, not rebuilt
    assert native.unavailable() is None
    assert built[0].stat().st_mtime_ns == mtime and len(list((fresh_native / "native").glob("*.so"))) == 1


def test_the_selector_keeps_the_pytorch_ops_where_native_is_missing(monkeypatch):
    from fpqvar import kernels
    from fpqvar.quant import fast_lean  # noqa: F401 - registers the operation "lean"

    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "lean.native=missing")
    kernels.reset()
    c = kernels.choice("lean")
    assert c.name == "torch" and "missing" in c.dropped["native"]
    monkeypatch.delenv("FPQVAR_KERNEL_HOOK")
    kernels.reset()
    c = kernels.choice("lean")
    if native.unavailable() is None:  # both ran and agreed bit for bit on the probe
        assert set(c.times_ms) == {"torch", "native"} and not c.dropped
    else:
        assert c.name == "torch" and c.dropped["native"] == native.unavailable()
    kernels.reset()


@needs_native
@pytest.mark.parametrize("P,G,T,O", [(1, 4, 6, 40), (2, 5, 3, 24)])
@pytest.mark.parametrize("d_dtype", [torch.int32, torch.float32])
def test_accumulate_block_adds_row_chunks_and_segment_blocks_in_order(P, G, T, O, d_dtype):
    """Rows 1 .. T-1 in two chunks, segments in blocks of 2 (the segment loop's and the batched strategy's calls):
    the same words as accumulate_products over everything."""
    g = torch.Generator().manual_seed(P * 7 + G)
    s = torch.rand(P, T, G, generator=g) * 2.0 ** torch.randint(-10, 10, (P, T, G), generator=g)
    sw = torch.rand(G, P, O, generator=g) * 2.0 ** torch.randint(-10, 5, (G, P, O), generator=g)
    d32 = torch.randint(-(2**26), 2**26, (G, P, T, O), generator=g, dtype=torch.int32)
    ref = KG.accumulate_products(s.permute(2, 0, 1).unsqueeze(-1), sw.unsqueeze(2), d32.to(torch.float32))
    y = torch.full((T, O), float("nan"))
    for t0, t1 in ((1, 3), (3, T)):
        for g0 in range(0, G, 2):
            g1 = min(G, g0 + 2)
            d = d32[g0:g1, :, t0:t1].reshape(g1 - g0, P * (t1 - t0), O).contiguous()
            native.accumulate_block(s, sw, d if d_dtype == torch.int32 else d.float(), t0, g0, g0 > 0, y[t0:t1])
    assert torch.isnan(y[0]).all()  # row 0 untouched
    assert np.array_equal(_words(y[1:]), _words(ref[1:]))
    with pytest.raises(ValueError, match="do not match"):
        native.accumulate_block(s, sw, d32[:1, :, :2].reshape(1, 2 * P, O).contiguous(), T - 1, 0, False, y[:2])


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FPQVAR_CACHE_DIR", str(blocker))  # <file>/native cannot be created
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    d = native._cache_dir()
    assert d.is_dir() and d.parent == tmp_path / "tmp" and d.name.startswith("fpqvar-native-")
