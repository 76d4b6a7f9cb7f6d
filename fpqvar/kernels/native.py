"""Compiled C kernels of the exact path (``native_lean.c``, ``native_dot.c``), built at first use with the
machine's C compiler.

Why our own C: at a few rows a quantized linear costs its fixed overhead, about 25 small PyTorch ops of 2 to 5 us
each (``fpqvar.quant.fast_lean``); the quantizer and the accumulation are each one loop here. The integer dot
products (:func:`int_dot`, the GEMM ``"native"`` of :mod:`fpqvar.kernels.int_gemm`) are one call per layer where a
GEMM library makes one per segment, and stream one byte per weight; :func:`int_linear` also scales and sums them
tile by tile, so no block of per-segment products goes through memory. No library offers the datapath's quantizer
(absmax scale per group, codes from the exact quotient). Plain C called through ``ctypes``:
it builds in a fraction of a second with ``cc``, needs neither torch's C++ headers nor a Python extension build.

Availability: a C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang`` on the ``PATH``), CPU tensors, and a
successful build. Where any is missing, :func:`unavailable` says why, and the kernel selector keeps the PyTorch
ops (operations ``lean``, ``fpqvar.quant.fast_lean``, and ``int_sums``, ``fpqvar.quant.kernels_gemm_ops``).
``FPQVAR_NATIVE=0`` turns it off. The shared library is cached under ``$FPQVAR_CACHE_DIR/native`` (default
``~/.cache/fpqvar/native``; a temporary folder when that is not writable), named by a hash of the sources, the
flags, the compiler's version and the machine type, written atomically.

Flags: ``-O3 -std=c99 -ffp-contract=off`` and no ``-march``: every float operation is one IEEE float32 operation in
the source's order (no fused multiply-add, no reassociation), the same on every x86-64 or Arm CPU; the bits are
checked against the PyTorch reference in ``tests/kernels/test_native.py``. ``-fno-math-errno -fno-trapping-math``
change no value (no library call sets ``errno``; no code reads the floating-point exception flags) and let the
loops vectorise. The integer dot products (``native_dot.c``) also have an AVX2 form (a function-level
``target("avx2")``, chosen at run time by :func:`isa` where the CPU has it): integer sums are exact in any
instruction set and order. Their fused sums (:func:`int_linear`) scale and add in the same written order with
``vmulps`` / ``vaddps``, one IEEE float32 operation per lane (that target enables no FMA), the same bits.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["unavailable", "compiler", "library", "quantize", "quantize_dfq", "accumulate", "accumulate_block",
           "isa", "int_dot", "int_linear", "pack_weight", "DotWeight", "output_ranges", "ISA_NAMES", "FLAGS"]

SOURCES = tuple(Path(__file__).with_name(n) for n in ("native_lean.c", "native_dot.c"))
FLAGS = ("-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
_lock = threading.Lock()
_state: dict = {}  # "lib": the loaded library, or "why": the reason it is not available


def compiler() -> str | None:
    """The C compiler that builds the kernels: ``$CC``, else ``cc``, ``gcc`` or ``clang`` (``None``: none found)."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc)
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cache_dir() -> Path:
    base = os.environ.get("FPQVAR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "fpqvar")
    d = Path(base) / "native"
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=d, delete=True)
        probe.close()
        return d
    except OSError:
        d = Path(tempfile.gettempdir()) / f"fpqvar-native-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        d.mkdir(parents=True, exist_ok=True)
        return d


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    src = b"\0".join(p.read_bytes() for p in SOURCES)
    # (the machine too: a home folder shared by an x86 and an Arm box must not hand one the other's library)
    what = "\0".join([*FLAGS, version, platform.machine(), sys.platform])
    key = hashlib.sha256(src + what.encode()).hexdigest()[:16]
    out = _cache_dir() / f"fpqvar_lean_{key}.so"
    if out.is_file():
        return out
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        r = subprocess.run([cc, *FLAGS, "-o", tmp, *map(str, SOURCES), "-lm"], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            names = " ".join(p.name for p in SOURCES)
            raise RuntimeError(f"{cc} failed on {names} ({r.returncode}): {(r.stderr or r.stdout)[-400:]}")
        os.replace(tmp, out)  # atomic: another process never loads a half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _load() -> None:
    if os.environ.get("FPQVAR_NATIVE", "1") == "0":
        _state["why"] = "turned off (FPQVAR_NATIVE=0)"
        return
    cc = compiler()
    if cc is None:
        _state["why"] = "no C compiler ($CC, cc, gcc or clang) on the PATH"
        return
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _state["why"] = f"build or load failed: {type(e).__name__}: {e}"[:500]
        return
    P, I64, I, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.fq_quantize.argtypes = [P, I64, I64, I64, I, I, I, F, I, P, P, P, P]
    lib.fq_quantize.restype = I
    lib.fq_quantize_dfq.argtypes = [P, I64, I64, I64, I, F, I, I, I, F, I, P, P, P, P]
    lib.fq_quantize_dfq.restype = I
    lib.fq_accumulate.argtypes = [P, P, P, P, P, I64, I64, I64, I64, P]
    lib.fq_accumulate.restype = None
    lib.fq_accumulate_block.argtypes = [P, I64, I64, I64, I64, I64, I64, P, I64, I64, P, P, I, P]
    lib.fq_accumulate_block.restype = None
    lib.fq_isa.argtypes = []
    lib.fq_isa.restype = I
    lib.fq_int_dot.argtypes = [P, I64, I64, P, P, I64, I64, I64, I64, I64, P, I, I]
    lib.fq_int_dot.restype = I
    lib.fq_int_linear.argtypes = [P, I64, I64, I64, P, P, I64, I64, I64, I64, I64, P, P, P, I, I]
    lib.fq_int_linear.restype = I
    _state["lib"] = lib


def library():
    """The loaded library (built on first call), or ``None`` (then :func:`unavailable` says why)."""
    if "lib" not in _state and "why" not in _state:
        with _lock:
            if "lib" not in _state and "why" not in _state:
                _load()
    return _state.get("lib")


def unavailable(device: torch.device | str | None = None) -> str | None:
    """Why the C kernels cannot run on ``device`` (``None``: they can)."""
    if torch.device(device if device is not None else "cpu").type != "cpu":
        return "CPU only"
    if library() is None:
        return _state["why"]
    return None


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _quantize(fn, x_TGS: torch.Tensor, P: int, grid_args: tuple, ties_up: bool, dtype: torch.dtype):
    """Run the C quantizer ``fn`` (``fq_quantize`` / ``fq_quantize_dfq``) for ``P`` parts: ``(codes (P*T, G*S),
    s (P, T, G), lo, hi)``, or ``None`` where it reports the input out of the exact range."""
    if x_TGS.dtype != torch.float32 or x_TGS.ndim != 3 or not x_TGS.is_contiguous() or x_TGS.device.type != "cpu":
        raise ValueError(f"native quantize: x must be contiguous float32 (T, G, S) on the CPU, got {x_TGS.dtype} "
                         f"{tuple(x_TGS.shape)} on {x_TGS.device}")
    if dtype not in (torch.int8, torch.float32):
        raise ValueError(f"native codes: int8 or float32, got {dtype}")
    T, G, S = x_TGS.shape
    codes = torch.empty((P * T, G * S), dtype=dtype)
    s = torch.empty((P, T, G), dtype=torch.float32)
    rng = torch.empty(2, dtype=torch.float32)
    c8, c32 = (codes, None) if dtype == torch.int8 else (None, codes)
    if fn(x_TGS.data_ptr(), T, G, S, *grid_args, int(ties_up), _ptr(c8), _ptr(c32), s.data_ptr(), rng.data_ptr()):
        return None
    lo, hi = rng.tolist()
    return codes, s, lo, hi


def quantize(x_TGS: torch.Tensor, grid, ties_up: bool, dtype: torch.dtype = torch.int8):
    """``(codes (T, G*S), s (T, G), lo, hi)`` of ``quantize_act_ranged`` with groups of ``S`` (``grid``: an
    ``IntGrid``; codes in ``dtype``); ``None`` where the quantizer raises ``OutOfExactRange``."""
    q = _quantize(library().fq_quantize, x_TGS, 1, (grid.k, grid.emin, grid.mbits, grid.max_value), ties_up, dtype)
    return None if q is None else (q[0], q[1][0], *q[2:])


def quantize_dfq(x_TGS: torch.Tensor, neg, pos, ties_up: bool, dtype: torch.dtype = torch.int8):
    """``(codes (2T, G*S): negative half then positive half, s (2, T, G), lo, hi)`` of ``quantize_act_dfq_ranged``
    with groups of ``S``; ``None`` where it raises ``OutOfExactRange``."""
    return _quantize(library().fq_quantize_dfq, x_TGS, 2,
                     (neg.k, neg.max_value, pos.k, pos.emin, pos.mbits, pos.max_value), ties_up, dtype)


def accumulate(s_PTG: torch.Tensor, sw_GPO: torch.Tensor, d_GRO: torch.Tensor, bias_O: torch.Tensor | None
               ) -> torch.Tensor:
    """``(T, O)`` float32: ``accumulate_products`` of the scales ``s_PTG``, the weight scales ``sw_GPO`` (times
    the unit) and the exact dot products ``d_GRO`` (``R = P * T`` rows, int32 or float32), then ``+ bias_O``."""
    P, T, G = s_PTG.shape
    O = sw_GPO.shape[-1]
    for name, t, dt in (("s", s_PTG, (torch.float32,)), ("sw", sw_GPO, (torch.float32,)),
                        ("d", d_GRO, (torch.int32, torch.float32))):
        if t.dtype not in dt or not t.is_contiguous() or t.device.type != "cpu":
            raise ValueError(f"native accumulate: {name} must be contiguous {dt} on the CPU, got {t.dtype}")
    if sw_GPO.shape != (G, P, O) or d_GRO.shape != (G, P * T, O):
        raise ValueError(f"native accumulate: shapes s {tuple(s_PTG.shape)}, sw {tuple(sw_GPO.shape)}, "
                         f"d {tuple(d_GRO.shape)} do not match (P, T, G), (G, P, O), (G, P*T, O)")
    if bias_O is not None and (bias_O.dtype != torch.float32 or bias_O.shape != (O,) or not bias_O.is_contiguous()):
        raise ValueError(f"native accumulate: bias must be contiguous float32 ({O},), got {bias_O.dtype} "
                         f"{tuple(bias_O.shape)}")
    y = torch.empty((T, O), dtype=torch.float32)
    is32 = d_GRO.dtype == torch.int32
    library().fq_accumulate(s_PTG.data_ptr(), sw_GPO.data_ptr(), d_GRO.data_ptr() if is32 else None,
                            None if is32 else d_GRO.data_ptr(), _ptr(bias_O), G, P, T, O, y.data_ptr())
    return y


def accumulate_block(s_PTG: torch.Tensor, sw_GPO: torch.Tensor, d_gRO: torch.Tensor, t0: int, g0: int, add: bool,
                     y_rO: torch.Tensor) -> None:
    """In place: ``y_rO`` (the rows ``t0 .. t0 + r`` of the output) plus, or set to (``add=False``), the datapath's
    sum of the segments ``g0 .. g0 + gn``: ``accumulate_products`` of ``s_PTG[:, rows, segments]``, ``sw_GPO`` and
    the exact dot products ``d_gRO`` (``(gn, P * r, O)``, int32 or float32)."""
    P, T, G = s_PTG.shape
    gn, R, O = d_gRO.shape
    r = y_rO.shape[0]
    for name, t, dt in (("s", s_PTG, (torch.float32,)), ("sw", sw_GPO, (torch.float32,)),
                        ("d", d_gRO, (torch.int32, torch.float32)), ("y", y_rO, (torch.float32,))):
        if t.dtype not in dt or not t.is_contiguous() or t.device.type != "cpu":
            raise ValueError(f"native accumulate_block: {name} must be contiguous {dt} on the CPU, got {t.dtype}")
    if (sw_GPO.shape != (G, P, O) or R != P * r or y_rO.shape != (r, O) or not (0 <= t0 and t0 + r <= T)
            or not (0 <= g0 and g0 + gn <= G)):
        raise ValueError(f"native accumulate_block: shapes s {tuple(s_PTG.shape)}, sw {tuple(sw_GPO.shape)}, "
                         f"d {tuple(d_gRO.shape)}, y {tuple(y_rO.shape)} at rows {t0}.. segments {g0}.. do not match")
    is32 = d_gRO.dtype == torch.int32
    library().fq_accumulate_block(s_PTG.data_ptr(), T, G, t0, r, g0, gn, sw_GPO.data_ptr(), P, O,
                                  d_gRO.data_ptr() if is32 else None, None if is32 else d_gRO.data_ptr(), int(add),
                                  y_rO.data_ptr())


ISA_NAMES = {0: "portable C", 1: "AVX2"}
MAX_DOT_SEGMENT = 1 << 17  # every int32 partial sum below 128 * 127 * 2**17 < 2**31 (pack_weight: why 127)


def isa() -> int:
    """The fastest instruction set :func:`int_dot` can use on this CPU (a key of :data:`ISA_NAMES`; asked once)."""
    if "isa" not in _state:
        _state["isa"] = library().fq_isa()
    return _state["isa"]


@dataclass(frozen=True, eq=False)
class DotWeight:
    """int8 weight codes packed for :func:`int_dot` / :func:`int_linear` (:func:`pack_weight`): per segment, blocks
    of 8 outputs, each 4 consecutive codes of its 8 outputs in 32 bytes (``native_dot.c``: why), zero padded."""

    data: torch.Tensor  # (G, ceil(O / 8), ceil(S / 4), 8, 4) int8
    colsum_GO: torch.Tensor  # (G, 8 * ceil(O / 8)) int32: each segment's column sums (the offset form's correction)
    O: int
    S: int
    absmax: int  # the largest |code| (lets AVX2 take vpmaddubsw)

    @property
    def G(self) -> int:
        return self.data.shape[0]


def pack_weight(w_IO: torch.Tensor, seg: int) -> DotWeight:
    """int8 weight codes ``(I, O)`` in segments of ``seg`` inputs as :func:`int_dot`'s operand."""
    I, O = w_IO.shape
    if w_IO.dtype != torch.int8 or w_IO.device.type != "cpu" or not 1 <= seg <= MAX_DOT_SEGMENT or I % seg:
        raise ValueError(f"native pack_weight: int8 (I, O) on the CPU with I a multiple of the segment {seg} "
                         f"(1 .. {MAX_DOT_SEGMENT}), got {w_IO.dtype} {tuple(w_IO.shape)} on {w_IO.device}")
    G, Ob, S4 = I // seg, -(-O // 8), -(-seg // 4)
    w = torch.zeros((G, 4 * S4, 8 * Ob), dtype=torch.int8)
    w[:, :seg, :O] = w_IO.view(G, seg, O)
    data = w.view(G, S4, 4, Ob, 8).permute(0, 3, 1, 4, 2).contiguous()
    colsum = w.sum(1, dtype=torch.int32)
    absmax = int(w_IO.to(torch.int16).abs().max()) if w_IO.numel() else 0  # (via int16: abs(-128) overflows int8)
    if 128 * absmax * seg >= 2**31:  # (only -128 weights in segments of 2**17: -128 codes against them overflow)
        raise ValueError(f"native pack_weight: a segment of {seg} with weight codes of magnitude {absmax} could "
                         f"overflow the int32 sums (128 * {absmax} * {seg} >= 2**31)")
    return DotWeight(data, colsum, O, seg, absmax)


# Multiply-adds per thread, at least. Measured in stop 25 (dev CPU, 2 vCPUs, AVX2 caps, fc2 of var-d16): 2 threads
# were slower than 1 up to 16 rows (2**27 multiply-adds: the hand-off, and torch's OpenMP threads still spinning
# after the previous op) and 1.1x to 1.4x faster from 32 rows (the float layer: 1.3x to 1.9x; these 2 vCPUs may
# share one core's vector units, so a machine with real cores should gain more).
MIN_THREAD_MACS = 1 << 27


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of ``n`` threads for the split calls (made once per size; ctypes releases the GIL in the C call)."""
    with _lock:
        if _state.get("pool", (0, None))[0] != n:
            old = _state.get("pool", (0, None))[1]
            _state["pool"] = (n, ThreadPoolExecutor(max_workers=n, thread_name_prefix="fpqvar-native"))
            if old is not None:
                old.shutdown(wait=False)
        return _state["pool"][1]


def output_ranges(O: int, macs: int, threads: int) -> list[tuple[int, int]]:
    """The output blocks of 8 (``ceil(O / 8)`` of them) split into ranges of whole pairs, one per thread: at most
    ``threads``, each with at least :data:`MIN_THREAD_MACS` of the call's ``macs`` multiply-adds."""
    pairs = -(-O // 16)
    n = max(1, min(int(threads), pairs, macs // max(MIN_THREAD_MACS, 1)))
    Ob = -(-O // 8)
    bounds = [min(Ob, 2 * (pairs * i // n)) for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _split(call, O: int, macs: int, threads: int | None) -> bool:
    """``call(ob0, ob1)`` over :func:`output_ranges`, the first range on this thread; True when any call failed."""
    ranges = output_ranges(O, macs, torch.get_num_threads() if threads is None else threads)
    if len(ranges) == 1:
        return bool(call(*ranges[0]))
    futures = [_pool(len(ranges) - 1).submit(call, *r) for r in ranges[1:]]
    failed = bool(call(*ranges[0]))
    return any([bool(f.result()) for f in futures]) or failed


def _check_rows(what: str, a_RI: torch.Tensor, w: DotWeight) -> None:
    if not isinstance(w, DotWeight):
        raise ValueError(f"native {what}: the weight must be a DotWeight (native.pack_weight), got {type(w).__name__}")
    I = w.G * w.S
    if (a_RI.dtype != torch.int8 or a_RI.ndim != 2 or a_RI.shape[1] != I or a_RI.stride(1) != 1
            or a_RI.device.type != "cpu"):
        raise ValueError(f"native {what}: codes must be int8 (R, {I}) on the CPU with unit column stride, got "
                         f"{a_RI.dtype} {tuple(a_RI.shape)} strides {a_RI.stride()} on {a_RI.device}")


def int_dot(a_RI: torch.Tensor, w: DotWeight, g0: int = 0, g1: int | None = None,
            out: torch.Tensor | None = None, isa_: int | None = None, threads: int | None = None) -> torch.Tensor:
    """``(g1 - g0, R, O)`` int32: the exact dot products of the int8 codes ``a_RI`` (rows of ``I = G * S``, row
    stride free) with the segments ``g0 .. g1`` of the packed weight ``w`` (:func:`pack_weight`), by the C loop
    (``isa_``: :data:`ISA_NAMES`' key, default :func:`isa`; an instruction set the CPU lacks falls back to C), on up
    to ``threads`` threads (default torch's count), each making a range of outputs (:func:`output_ranges`)."""
    _check_rows("int_dot", a_RI, w)
    G, O, S = w.G, w.O, w.S
    g1 = G if g1 is None else g1
    R = a_RI.shape[0]
    if not 0 <= g0 <= g1 <= G:
        raise ValueError(f"native int_dot: segments {g0}..{g1} of {G} out of range")
    shape = (g1 - g0, R, O)
    if out is None:
        out = torch.empty(shape, dtype=torch.int32)
    elif out.dtype != torch.int32 or tuple(out.shape) != shape or not out.is_contiguous():
        raise ValueError(f"native int_dot: out must be contiguous int32 {shape}, got {out.dtype} "
                         f"{tuple(out.shape)}")
    if R and g1 > g0 and O:
        a = a_RI[:, g0 * S:] if g0 else a_RI
        lib, isa1 = library(), isa() if isa_ is None else int(isa_)

        def call(ob0: int, ob1: int) -> int:
            return lib.fq_int_dot(a.data_ptr(), R, a_RI.stride(0), w.data[g0].data_ptr(), w.colsum_GO[g0].data_ptr(),
                                  g1 - g0, O, S, ob0, ob1, out.data_ptr(), isa1, w.absmax)

        if _split(call, O, R * (g1 - g0) * S * O, threads):
            raise MemoryError("native int_dot: no memory for the scratch buffers")
    return out


def int_linear(a_RI: torch.Tensor, w: DotWeight, s_PTG: torch.Tensor, sw_GPO: torch.Tensor,
               bias_O: torch.Tensor | None = None, isa_: int | None = None, threads: int | None = None
               ) -> torch.Tensor:
    """``y_TO`` float32: the datapath's exact linear on the codes ``a_RI`` (``P * T`` rows, part-major: DFQ's
    negative half first) with the scales ``s_PTG`` and ``sw_GPO`` (``s_w * unit`` per part), then the bias:
    :func:`accumulate` of :func:`int_dot`'s products, the same bits, with no products in memory (each tile of them
    is scaled and summed as it is made, in the (segment, part) order); ``threads`` as in :func:`int_dot`."""
    _check_rows("int_linear", a_RI, w)
    G, O, S = w.G, w.O, w.S
    if s_PTG.ndim != 3:
        raise ValueError(f"native int_linear: s must be (P, T, {G}), got {tuple(s_PTG.shape)}")
    P, T = s_PTG.shape[:2]
    for name, t, shape in (("s", s_PTG, (P, T, G)), ("sw", sw_GPO, (G, P, O))):
        if t.dtype != torch.float32 or tuple(t.shape) != shape or not t.is_contiguous() or t.device.type != "cpu":
            raise ValueError(f"native int_linear: {name} must be contiguous float32 {shape} on the CPU, got "
                             f"{t.dtype} {tuple(t.shape)}")
    if a_RI.shape[0] != P * T:
        raise ValueError(f"native int_linear: {a_RI.shape[0]} rows of codes for {P} part(s) of {T} rows")
    if bias_O is not None and (bias_O.dtype != torch.float32 or tuple(bias_O.shape) != (O,)):
        raise ValueError(f"native int_linear: bias must be float32 ({O},), got {bias_O.dtype} {tuple(bias_O.shape)}")
    y = torch.empty((T, O), dtype=torch.float32)
    if T and O:
        if G == 0:
            y.zero_()
        else:
            lib, isa1 = library(), isa() if isa_ is None else int(isa_)

            def call(ob0: int, ob1: int) -> int:
                return lib.fq_int_linear(a_RI.data_ptr(), T, P, a_RI.stride(0), w.data.data_ptr(),
                                         w.colsum_GO.data_ptr(), G, O, S, ob0, ob1, s_PTG.data_ptr(),
                                         sw_GPO.data_ptr(), y.data_ptr(), isa1, w.absmax)

            if _split(call, O, P * T * G * S * O, threads):
                raise MemoryError("native int_linear: no memory for the scratch buffers")
        if bias_O is not None:
            y.add_(bias_O)  # fl32(acc + b): bias last
    return y
