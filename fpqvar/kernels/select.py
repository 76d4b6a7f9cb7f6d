"""The kernel selector: per operation, candidates, a capability check, a short measurement at first use, a cache.

Why (environment.md section 0, issue 12): the same torch wheel runs bf16 GEMMs 7x faster than float32 on one CPU
and 350x slower on the next, ``torch._int_mm`` 5x faster or 270x slower. So nothing is chosen by assumption: an
:class:`Operation` lists its :class:`Candidate` implementations, the first being the baseline (always available,
the reference), and :meth:`Selector.choose` picks by measurement on the actual device:

1. an explicit choice wins (argument, :func:`override` context, or ``FPQVAR_KERNELS="op=name,..."``); it is
   still checked for availability and refused with the reason when it cannot run;
2. else the per-process cache, keyed by (operation, device, torch thread count); then the optional disk cache
   (``FPQVAR_KERNEL_CACHE=<file.json>``, keyed also by CPU model, ISA capability, the ISA-cap environment
   variables and the torch version);
3. else measure: every available candidate runs once on a small *probe* (exact candidates are verified there
   against the baseline's result, bit for bit); one that raises or mismatches is dropped with the reason;
   one more than ``SLOW_FACTOR`` x slower than the baseline on the probe is dropped without the full run (a
   350x-slow kernel costs milliseconds, not seconds); the rest run ``rounds`` interleaved times at a
   representative size (more rounds, up to ``MAX_ROUNDS``, while a finalist's timed runs add up to less than the
   operation's ``min_seconds``: short calls need more samples to rise above the noise), best wall time kept.
   The fastest wins, but a non-baseline candidate must beat the
   baseline by the operation's ``margin`` (inexact alternatives use a margin > 1, so that near-ties do not
   flip the numerics from run to run).

Every decision is recorded (:meth:`Selector.report`): chosen name, measured times, why others were dropped.

Test hook: ``FPQVAR_KERNEL_HOOK="op.candidate=missing|fail|slow,..."`` makes a candidate report itself
unavailable, raise, or measure 1000x slower (to exercise the fallbacks on a fast machine). Operations named
``family:variant`` (``int_gemm:16``) are also addressed by their family (``int_gemm``) in overrides, in
``FPQVAR_KERNELS`` and in the hook.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

__all__ = ["Candidate", "Operation", "Choice", "Selector", "KernelUnavailable", "Timed", "SLOW_FACTOR", "MAX_ROUNDS",
           "SLOW_HOOK_FACTOR", "device_key", "parse_pairs"]

SLOW_FACTOR = 8.0  # probe time beyond this multiple of the baseline's: dropped without the full measurement
SLOW_HOOK_FACTOR = 1000.0  # what the test hook "slow" multiplies a measured time by
MAX_ROUNDS = 64  # the most measurement rounds an operation's ``min_seconds`` can ask for
_ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


class KernelUnavailable(ValueError):
    """An explicitly requested candidate cannot run here, or no candidate of an operation can."""


@dataclass(frozen=True)
class Timed:
    """Returned by a benchmark closure that times itself (e.g. after a state change it must not be charged
    for, such as a new thread count): the selector uses ``seconds`` instead of its own measurement."""

    seconds: float


@dataclass(frozen=True)
class Candidate:
    """One implementation of an operation.

    ``bench(device, size)`` builds (outside the timing) and returns a closure that runs the implementation once
    on inputs of ``size`` ("probe" or "full") and returns its result; ``unavailable(device)`` says why it cannot
    run there (``None``: it can)."""

    name: str
    summary: str
    bench: Callable[[torch.device, str], Callable[[], object]]
    unavailable: Callable[[torch.device], str | None] = lambda device: None


@dataclass(frozen=True)
class Operation:
    """An operation with several implementations; ``candidates[0]`` is the baseline (the reference).

    ``exact``: every candidate returns the baseline's result bit for bit (checked on the probe).
    ``margin``: how much faster than the baseline another candidate must measure to be chosen.
    ``rounds``: interleaved timed runs per finalist, at least; ``min_seconds``: more rounds (up to ``MAX_ROUNDS``)
    while any finalist's timed runs add up to less than this.
    ``per_threads``: whether the choice depends on torch's thread count (the cache key)."""

    name: str
    summary: str
    candidates: tuple[Candidate, ...]
    exact: bool = False
    margin: float = 1.0
    rounds: int = 3
    per_threads: bool = True
    min_seconds: float = 0.0

    def __post_init__(self) -> None:
        names = [c.name for c in self.candidates]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"Operation({self.name!r}).candidates must be non-empty with unique names, got {names}")
        if not (self.margin >= 1.0):
            raise ValueError(f"Operation({self.name!r}).margin must be >= 1, got {self.margin!r}")
        if not (isinstance(self.rounds, int) and self.rounds >= 1):
            raise ValueError(f"Operation({self.name!r}).rounds must be an int >= 1, got {self.rounds!r}")
        if not (self.min_seconds >= 0.0):
            raise ValueError(f"Operation({self.name!r}).min_seconds must be >= 0, got {self.min_seconds!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.candidates)

    def candidate(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KernelUnavailable(f"operation {self.name!r} has no candidate {name!r}; known: "
                                f"{', '.join(self.names)} (or 'auto')")


@dataclass(frozen=True)
class Choice:
    """A decision: ``name`` for ``op`` on ``device`` at ``threads``; ``times_ms`` the measured best times
    (probe-only times for candidates dropped as too slow), ``dropped`` why others were not eligible,
    ``source`` one of measured / explicit / disk-cache / fallback."""

    op: str
    name: str
    device: str
    threads: int
    source: str
    times_ms: dict = field(default_factory=dict)
    probe_ms: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def device_key(device: torch.device | str | None) -> str:
    """``"cpu"`` or ``"cuda:<name>"`` (the GPU model, not its index: the choice depends on the hardware)."""
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return dev.type


def parse_pairs(text: str | None, what: str) -> dict[str, str]:
    """``"a=x,b=y"`` -> ``{"a": "x", "b": "y"}`` (errors name ``what`` and the bad item)."""
    out: dict[str, str] = {}
    for item in (p.strip() for p in (text or "").split(",")):
        if not item:
            continue
        k, sep, v = item.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise ValueError(f"{what}: cannot parse {item!r} (expected key=value[,key=value...])")
        out[k.strip()] = v.strip()
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_key() -> dict:
    """What a cached decision depends on besides the operation, device and thread count."""
    return {"cpu_model": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "isa_env": {k: os.environ[k] for k in _ISA_ENV if k in os.environ}}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def refinement(base: str, detail: str) -> str:
    """The name of a per-shape refinement of operation ``base`` (``int_gemm:16@256x768s128p1r64``): in ``base``'s
    family, so explicit choices of the family cover it."""
    return f"{base}@{detail}"


def refined_base(op: str) -> str | None:
    """The operation ``op`` refines (:func:`refinement`), or ``None`` for a base operation."""
    return op.split("@", 1)[0] if "@" in op else None


class Selector:
    """Chooses and caches; one per process by default (:data:`fpqvar.kernels.SELECTOR`). ``clock`` is
    injectable (tests pass a fake one)."""

    def __init__(self, operations: dict[str, Operation] | Callable[[], dict[str, Operation]],
                 clock: Callable[[], float] = time.perf_counter):
        self._ops_src = operations
        self._ops: dict[str, Operation] | None = None
        self.clock = clock
        self._cache: dict[tuple, Choice] = {}
        self._quick: dict[tuple, str] = {}  # (op, device as given, threads, env) -> name
        self._overrides: list[dict[str, str]] = []
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- registry
    @property
    def operations(self) -> dict[str, Operation]:
        if self._ops is None:
            self._ops = self._ops_src() if callable(self._ops_src) else dict(self._ops_src)
        return self._ops

    def register(self, op: Operation) -> None:
        """Add (or replace) an operation defined by a higher layer; forgets that operation's earlier decisions."""
        with self._lock:
            self.operations[op.name] = op
            for key in [k for k in self._cache if k[0] == op.name]:
                del self._cache[key]
            self._quick.clear()

    def base_operations(self) -> list[str]:
        """The operations that stand alone: not the per-shape refinements (:func:`refinement`), which a higher
        layer registers at a call of that shape and measures on that call's operands (``fpqvar.quant.kernels_tune``)."""
        return [o for o in self.operations if refined_base(o) is None]

    def operation(self, op: str) -> Operation:
        if op not in self.operations:
            raise KernelUnavailable(f"unknown kernel operation {op!r}; known: {', '.join(self.operations)}")
        return self.operations[op]

    def reset(self) -> None:
        """Forget every decision (tests; after changing the machine's state on purpose)."""
        with self._lock:
            self._cache.clear()
            self._quick.clear()

    # ---------------------------------------------------------------- explicit choices
    def family(self, op: str) -> list[str]:
        """``op`` itself, or the operations ``op:<variant>`` it names (``int_gemm`` -> ``int_gemm:16``, ...)."""
        if op in self.operations:
            return [op]
        fam = [o for o in self.operations if o.split(":", 1)[0] == op]
        if not fam:
            raise KernelUnavailable(f"unknown kernel operation {op!r}; known: {', '.join(self.operations)}")
        return fam

    @contextlib.contextmanager
    def override(self, **choices: str):
        """Within the block, ``op=name`` is used as if passed explicitly (``"auto"``: measure); ``op`` may name a
        family (``int_gemm`` for every ``int_gemm:<bound>``). The name is checked against the family's base
        operations: a per-shape refinement (:func:`refinement`) lists only its base's surviving candidates, and a
        choice it lacks falls back to the base choice there (``fpqvar.quant.kernels_tune``)."""
        for op, name in choices.items():
            if name != "auto":
                for o in self.family(op):
                    if refined_base(o) is None:
                        self.operation(o).candidate(name)
        self._overrides.append(dict(choices))
        try:
            yield self
        finally:
            self._overrides.pop()

    def _explicit(self, op: str, explicit: str | None) -> str | None:
        if explicit is not None and explicit != "auto":
            return explicit
        fam = op.split(":", 1)[0]
        env = parse_pairs(os.environ.get("FPQVAR_KERNELS"), "FPQVAR_KERNELS")
        for d in [*reversed(self._overrides), env]:
            for key in (op, fam):  # the exact operation first, then its family
                if key in d:
                    return None if d[key] == "auto" else d[key]
        return None

    def _hooks(self, op: str) -> dict[str, str]:
        out = {}
        for k, v in parse_pairs(os.environ.get("FPQVAR_KERNEL_HOOK"), "FPQVAR_KERNEL_HOOK").items():
            o, _, c = k.rpartition(".")
            if v not in ("missing", "fail", "slow"):
                raise ValueError(f"FPQVAR_KERNEL_HOOK: {k}={v!r}: the action must be missing, fail or slow")
            if o in (op, op.split(":", 1)[0]):  # an operation or its family
                out[c] = v
        return out

    def _why_unavailable(self, op: Operation, cand: Candidate, device: torch.device) -> str | None:
        if self._hooks(op.name).get(cand.name) == "missing":
            return "missing (FPQVAR_KERNEL_HOOK)"
        return cand.unavailable(device)

    # ---------------------------------------------------------------- choosing
    def choose(self, op: str, device: torch.device | str | None = None, explicit: str | None = None) -> str:
        """The candidate name to use for ``op`` on ``device`` (see the module docstring for the order).

        Hot path (called per layer call): a dict hit unless an explicit choice or override is in play."""
        quick = explicit is None and not self._overrides
        if quick:
            k = (op, device, torch.get_num_threads(), os.environ.get("FPQVAR_KERNELS"),
                 os.environ.get("FPQVAR_KERNEL_HOOK"))
            name = self._quick.get(k)
            if name is not None:
                return name
        name = self.choice(op, device, explicit).name
        if quick:
            self._quick[k] = name
        return name

    def choice(self, op: str, device: torch.device | str | None = None, explicit: str | None = None) -> Choice:
        o = self.operation(op)
        dev = torch.device(device if device is not None else "cpu")
        threads = torch.get_num_threads() if o.per_threads else 0
        name = self._explicit(op, explicit)
        if name is not None:
            why = self._why_unavailable(o, o.candidate(name), dev)
            if why is not None:
                raise KernelUnavailable(f"kernel {op}={name} was requested but cannot run on {dev}: {why}")
            key = (op, device_key(dev), threads, "explicit", name)
            with self._lock:
                if key not in self._cache:
                    self._cache[key] = Choice(op, name, device_key(dev), threads, "explicit")
                return self._cache[key]
        key = (op, device_key(dev), threads)
        with self._lock:
            c = self._cache.get(key)
            if c is None:
                c = self._from_disk(o, dev, threads) or self._measure(o, dev, threads)
                self._cache[key] = c
                self._to_disk(c)
            return c

    def demote(self, op: str, device: torch.device | str | None, name: str, reason: str) -> str:
        """Record that ``name`` failed at run time on ``device``: drop it and re-choose among the rest."""
        o = self.operation(op)
        dev = torch.device(device if device is not None else "cpu")
        threads = torch.get_num_threads() if o.per_threads else 0
        key = (op, device_key(dev), threads)
        with self._lock:
            old = self._cache.get(key) or self._measure(o, dev, threads)
            if old.name != name:
                return old.name
            dropped = {**old.dropped, name: f"failed at run time: {reason}"}
            times = {k: v for k, v in old.times_ms.items() if k not in dropped}
            if not times:
                raise KernelUnavailable(f"kernel {op}: no candidate left on {dev} ({dropped})")
            best = self._pick(o, times)
            self._quick.clear()
            self._cache[key] = Choice(op, best, old.device, threads, "fallback", old.times_ms, old.probe_ms, dropped)
            return best

    def _pick(self, o: Operation, times: dict[str, float]) -> str:
        fastest = min(times, key=times.get)
        base = o.candidates[0].name
        if base in times and fastest != base and times[fastest] * o.margin > times[base]:
            return base  # not faster by the margin
        return fastest

    def _time_once(self, fn, device) -> tuple[float, object]:
        _sync(device)
        t0 = self.clock()
        out = fn()
        _sync(device)
        t = self.clock() - t0
        return (out.seconds, None) if isinstance(out, Timed) else (t, out)

    def _measure(self, o: Operation, dev: torch.device, threads: int) -> Choice:
        hooks = self._hooks(o.name)
        dropped: dict[str, str] = {}
        probe: dict[str, float] = {}
        runners: dict[str, Callable] = {}
        ref = None
        for i, cand in enumerate(o.candidates):
            why = self._why_unavailable(o, cand, dev)
            if why is not None:
                dropped[cand.name] = why
                continue
            try:
                if hooks.get(cand.name) == "fail":
                    raise RuntimeError("fails (FPQVAR_KERNEL_HOOK)")
                fn = cand.bench(dev, "probe")
                self._time_once(fn, dev)  # warm-up (first-call allocation, JIT, library init)
                t, out = self._time_once(fn, dev)
                if o.exact and i > 0 and ref is not None and not _same(out, ref[1]):
                    raise RuntimeError(f"result differs from the baseline {ref[0]!r} on the probe (not exact here)")
                if i == 0:
                    ref = (cand.name, out)
                runners[cand.name] = cand.bench(dev, "full")
            except Exception as e:  # noqa: BLE001 - a failing candidate is dropped with its reason
                dropped[cand.name] = f"failed: {type(e).__name__}: {e}"[:300]
                continue
            probe[cand.name] = t * (SLOW_HOOK_FACTOR if hooks.get(cand.name) == "slow" else 1.0)
        if not probe:
            raise KernelUnavailable(f"kernel {o.name}: no candidate can run on {dev}: {dropped}")
        floor = probe.get(o.candidates[0].name, min(probe.values()))
        for name, t in probe.items():
            if t > SLOW_FACTOR * floor:
                dropped[name] = f"{t / floor:.0f}x slower than {o.candidates[0].name} on the probe"
        finalists = [n for n in probe if n not in dropped]
        best = {n: float("inf") for n in finalists}
        spent = dict.fromkeys(finalists, 0.0)
        rounds = 0
        while rounds < o.rounds or (rounds < MAX_ROUNDS and best and min(spent[n] for n in best) < o.min_seconds):
            rounds += 1
            for n in finalists:  # interleaved: a noisy neighbour affects every candidate alike
                if n not in best:
                    continue
                try:
                    t, _ = self._time_once(runners[n], dev)
                except Exception as e:  # noqa: BLE001
                    dropped[n] = f"failed: {type(e).__name__}: {e}"[:300]
                    best.pop(n)
                    continue
                spent[n] += t
                best[n] = min(best[n], t * (SLOW_HOOK_FACTOR if hooks.get(n) == "slow" else 1.0))
        finalists = [n for n in finalists if n in best]
        if not finalists:
            raise KernelUnavailable(f"kernel {o.name}: every candidate failed on {dev}: {dropped}")
        times = {n: 1e3 * best[n] for n in finalists}
        return Choice(o.name, self._pick(o, times), device_key(dev), threads, "measured", times,
                      {n: 1e3 * t for n, t in probe.items()}, dropped)

    # ---------------------------------------------------------------- disk cache (opt-in)
    def _disk_path(self) -> str | None:
        return os.environ.get("FPQVAR_KERNEL_CACHE") or None

    def _disk_key(self, op: str, device: str, threads: int) -> str:
        return json.dumps({"op": op, "device": device, "threads": threads, **machine_key()}, sort_keys=True)

    def _read_disk(self) -> dict:
        path = self._disk_path()
        if path is None or not os.path.isfile(path):
            return {}
        try:
            with open(path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}  # a broken cache file is only a cache: measure again (and overwrite it)

    def _from_disk(self, o: Operation, dev: torch.device, threads: int) -> Choice | None:
        rec = self._read_disk().get(self._disk_key(o.name, device_key(dev), threads))
        if not isinstance(rec, dict) or rec.get("name") not in o.names:
            return None
        if self._why_unavailable(o, o.candidate(rec["name"]), dev) is not None:
            return None
        return Choice(o.name, rec["name"], device_key(dev), threads, "disk-cache", rec.get("times_ms", {}),
                      rec.get("probe_ms", {}), rec.get("dropped", {}))

    def _to_disk(self, c: Choice) -> None:
        path = self._disk_path()
        if path is None or c.source != "measured":
            return
        from fpqvar.io_utils import atomic_write_json

        data = self._read_disk()
        data[self._disk_key(c.op, c.device, c.threads)] = {"name": c.name, "times_ms": c.times_ms,
                                                           "probe_ms": c.probe_ms, "dropped": c.dropped}
        atomic_write_json(path, data)

    # ---------------------------------------------------------------- reporting
    def report(self) -> dict:
        """Every decision of this process so far, with the machine it was made on (JSON-ready)."""
        with self._lock:
            choices = [c.to_dict() for c in self._cache.values()]
        return {**machine_key(), "threads": torch.get_num_threads(), "choices": choices}
