"""The kernel selector with fake candidates and a fake clock: no test here measures or asserts on wall time."""

import json
import os

import pytest
import torch

from fpqvar.kernels.select import MAX_ROUNDS, SLOW_FACTOR, Candidate, KernelUnavailable, Operation, Selector


class FakeClock:
    """Advances only when a fake candidate "runs"."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake(name, ms, clock, calls=None, result=0, probe_ms=None, fail_at=None, why_missing=None):
    """A candidate that takes ``ms`` (``probe_ms`` on the probe) of fake time and returns ``result``."""

    def bench(device, size):
        if fail_at == "build":
            raise RuntimeError(f"{name} cannot build")

        def run():
            if fail_at == size:
                raise RuntimeError(f"{name} failed on {size}")
            if calls is not None:
                calls.append((name, size))
            clock.now += 1e-3 * (probe_ms if (size == "probe" and probe_ms is not None) else ms)
            return result

        return run

    return Candidate(name, f"fake {name}", bench, lambda d: why_missing)


def selector(cands, clock, **op_kw):
    return Selector({"op": Operation("op", "a fake operation", tuple(cands), **op_kw)}, clock=clock)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in ("FPQVAR_KERNELS", "FPQVAR_KERNEL_HOOK", "FPQVAR_KERNEL_CACHE"):
        monkeypatch.delenv(k, raising=False)


def test_picks_the_measured_fastest(clock):
    s = selector([fake("a", 10, clock), fake("b", 2, clock), fake("c", 5, clock)], clock)
    c = s.choice("op")
    assert c.name == "b" and c.source == "measured"
    assert c.times_ms == pytest.approx({"a": 10, "b": 2, "c": 5})
    assert s.choose("op") == "b"


def test_margin_keeps_the_baseline_on_near_ties(clock):
    assert selector([fake("a", 10, clock), fake("b", 9, clock)], clock, margin=1.25).choose("op") == "a"
    assert selector([fake("a", 10, clock), fake("b", 7, clock)], clock, margin=1.25).choose("op") == "b"


def test_missing_and_failing_candidates_fall_back(clock):
    s = selector([fake("a", 10, clock), fake("b", 1, clock, why_missing="no such unit"),
                  fake("c", 2, clock, fail_at="probe"), fake("d", 3, clock, fail_at="build"),
                  fake("e", 4, clock, fail_at="full"), fake("f", 8, clock)], clock)
    c = s.choice("op")
    assert c.name == "f"
    assert c.dropped["b"] == "no such unit"
    assert "c failed on probe" in c.dropped["c"] and "d cannot build" in c.dropped["d"]
    assert "e failed on full" in c.dropped["e"]


def test_baseline_missing_takes_the_fastest_other(clock):
    s = selector([fake("a", 1, clock, why_missing="absent"), fake("b", 5, clock), fake("c", 3, clock)], clock)
    assert s.choose("op") == "c"


def test_nothing_runs_raises_with_the_reasons(clock):
    s = selector([fake("a", 1, clock, why_missing="absent"), fake("b", 1, clock, fail_at="probe")], clock)
    with pytest.raises(KernelUnavailable, match="absent"):
        s.choose("op")


def test_exact_operation_drops_a_candidate_with_a_different_result(clock):
    s = selector([fake("a", 10, clock, result=torch.tensor([1.0, 2.0])),
                  fake("b", 1, clock, result=torch.tensor([1.0, 2.5]))], clock, exact=True)
    c = s.choice("op")
    assert c.name == "a" and "differs" in c.dropped["b"]
    ok = selector([fake("a", 10, clock, result=torch.tensor([1.0, 2.0])),
                   fake("b", 1, clock, result=torch.tensor([1.0, 2.0]))], clock, exact=True)
    assert ok.choose("op") == "b"


def test_short_calls_get_more_rounds_up_to_a_cap(clock):
    calls = []
    # a takes 1 ms, b 2 ms: 10 rounds until a has 10 ms of timed runs (b passes 10 ms after 5)
    s = selector([fake("a", 1, clock, calls), fake("b", 2, clock, calls)], clock, rounds=3, min_seconds=0.010)
    assert s.choose("op") == "a"
    assert calls.count(("a", "full")) == 10 and calls.count(("b", "full")) == 10  # interleaved: same count
    calls.clear()
    s = selector([fake("a", 1e-4, clock, calls)], clock, rounds=3, min_seconds=1.0)
    s.choose("op")
    assert calls.count(("a", "full")) == MAX_ROUNDS
    calls.clear()
    s = selector([fake("a", 5, clock, calls)], clock, rounds=3, min_seconds=0.001)  # already enough: the minimum
    s.choose("op")
    assert calls.count(("a", "full")) == 3


def test_slow_on_the_probe_is_dropped_without_the_full_run(clock):
    calls = []
    s = selector([fake("a", 10, clock, calls, probe_ms=1), fake("b", 1, clock, calls, probe_ms=SLOW_FACTOR * 2)],
                 clock)
    c = s.choice("op")
    assert c.name == "a" and "slower than a on the probe" in c.dropped["b"]
    assert ("b", "full") not in calls and ("a", "full") in calls


def test_explicit_choice_wins_and_is_checked(clock, monkeypatch):
    calls = []
    s = selector([fake("a", 10, clock, calls), fake("b", 1, clock, calls),
                  fake("m", 1, clock, why_missing="not built")], clock)
    assert s.choose("op", explicit="a") == "a" and not calls  # no measurement for an explicit choice
    assert s.choice("op", explicit="a").source == "explicit"
    with s.override(op="a"):
        assert s.choose("op") == "a"
        with s.override(op="auto"):
            assert s.choose("op") == "b"
    monkeypatch.setenv("FPQVAR_KERNELS", "op=a")
    assert s.choose("op") == "a"
    monkeypatch.delenv("FPQVAR_KERNELS")
    assert s.choose("op") == "b"
    with pytest.raises(KernelUnavailable, match="not built"):
        s.choose("op", explicit="m")
    with pytest.raises(KernelUnavailable, match="known: a, b, m"):
        s.choose("op", explicit="zz")
    with pytest.raises(KernelUnavailable, match="unknown kernel operation"):
        s.choose("nope")


def test_env_hook_makes_a_candidate_missing_failing_or_slow(clock, monkeypatch):
    def fresh():
        return selector([fake("a", 10, clock), fake("b", 1, clock)], clock)

    for action, reason in (("missing", "missing"), ("fail", "fails")):
        monkeypatch.setenv("FPQVAR_KERNEL_HOOK", f"op.b={action}")
        c = fresh().choice("op")
        assert c.name == "a" and reason in c.dropped["b"]
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "op.b=slow")
    c = fresh().choice("op")
    assert c.name == "a" and "slower" in c.dropped["b"]  # 1000x on the probe too
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "op.a=missing")
    with pytest.raises(KernelUnavailable, match="missing"):
        fresh().choose("op", explicit="a")
    monkeypatch.setenv("FPQVAR_KERNEL_HOOK", "op.b=sluggish")
    with pytest.raises(ValueError, match="missing, fail or slow"):
        fresh().choose("op")


def test_cached_per_process_and_per_thread_count(clock):
    calls = []
    s = selector([fake("a", 10, clock, calls), fake("b", 1, clock, calls)], clock)
    s.choose("op")
    n = len(calls)
    assert s.choose("op") == "b" and s.choose("op", "cpu") == "b" and len(calls) == n
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(old + 1)
        s.choose("op")
        assert len(calls) > n  # another thread count: measured again
    finally:
        torch.set_num_threads(old)
    m = len(calls)
    s.reset()
    s.choose("op")
    assert len(calls) > m


def test_demote_after_a_run_time_failure(clock):
    s = selector([fake("a", 10, clock), fake("b", 1, clock), fake("c", 5, clock)], clock)
    assert s.choose("op") == "b"
    assert s.demote("op", "cpu", "b", "kernel crashed") == "c"
    c = s.choice("op")
    assert c.name == "c" and c.source == "fallback" and "kernel crashed" in c.dropped["b"]
    assert s.demote("op", "cpu", "b", "again") == "c"  # not the current choice: unchanged


def test_disk_cache_round_trip_and_key(clock, tmp_path, monkeypatch):
    path = tmp_path / "kernels.json"
    monkeypatch.setenv("FPQVAR_KERNEL_CACHE", str(path))
    calls = []
    s1 = selector([fake("a", 10, clock, calls), fake("b", 1, clock, calls)], clock)
    assert s1.choose("op") == "b"
    data = json.loads(path.read_text())
    (key, rec), = data.items()
    k = json.loads(key)
    assert rec["name"] == "b" and k["op"] == "op" and k["threads"] == torch.get_num_threads()
    assert {"cpu_model", "cpu_capability", "torch", "isa_env"} <= set(k)
    n = len(calls)
    s2 = selector([fake("a", 10, clock, calls), fake("b", 1, clock, calls)], clock)
    c = s2.choice("op")
    assert c.name == "b" and c.source == "disk-cache" and len(calls) == n
    other_cap = "SSE41" if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other_cap)  # another ISA cap: another key, measured again
    s3 = selector([fake("a", 10, clock, calls), fake("b", 1, clock, calls)], clock)
    assert s3.choice("op").source == "measured" and len(calls) > n
    path.write_text("{not json")  # a broken cache is only a cache
    assert selector([fake("a", 10, clock), fake("b", 1, clock)], clock).choose("op") == "b"


def test_report_lists_every_decision(clock):
    s = selector([fake("a", 10, clock), fake("b", 1, clock)], clock)
    s.choose("op")
    s.choose("op", explicit="a")
    r = s.report()
    assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and r["torch"] == torch.__version__
    assert sorted((c["name"], c["source"]) for c in r["choices"]) == [("a", "explicit"), ("b", "measured")]
    json.dumps(r)


def test_a_family_override_is_checked_against_its_base_operations_only(clock):
    from fpqvar.kernels.select import refinement

    base = Operation("fam:1", "", (fake("a", 10, clock), fake("b", 1, clock)))
    shape = Operation(refinement("fam:1", "8x8"), "", (fake("a", 10, clock),))  # b did not survive for this shape
    s = Selector({o.name: o for o in (base, shape)}, clock=clock)
    with s.override(fam="b"):
        assert s.choose("fam:1") == "b"
    with pytest.raises(KernelUnavailable, match="no candidate 'c'"):
        with s.override(fam="c"):
            pass


def test_operation_validation():
    c = Candidate("a", "", lambda d, s: (lambda: None))
    with pytest.raises(ValueError, match="unique"):
        Operation("x", "", (c, c))
    with pytest.raises(ValueError, match="margin"):
        Operation("x", "", (c,), margin=0.5)
    with pytest.raises(ValueError, match="rounds"):
        Operation("x", "", (c,), rounds=0)
    with pytest.raises(ValueError, match="min_seconds"):
        Operation("x", "", (c,), min_seconds=-1.0)
