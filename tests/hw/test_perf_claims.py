"""The claims table against named designs: every claim present, entries name a design pair and assumptions, the
verdicts follow the values, and the GHT FLOP formula is exact."""

import pytest

from fpqvar.hw.perf.accelerator import default_gpu
from fpqvar.hw.perf.claims import PAPER, TOLERANCE, evaluate_claims, ght_flop_ratio
from fpqvar.hw.perf.designs import named_designs
from fpqvar.model.zoo import get_model_spec


@pytest.fixture(scope="module")
def claims():
    spec = get_model_spec("var-d30")
    designs = named_designs(spec.var)
    results = {n: d.run("var-d30", spec.var, spec.vae) for n, d in designs.items()}
    cl = evaluate_claims(designs, results, default_gpu(), spec.var, spec.vae)
    return {c.key: c for c in cl}, results


def test_all_claims_present_with_pairs(claims):
    by_key, results = claims
    # fpqvar-method.md "Additional figures" (written here, not read from the code under test)
    paper = {"throughput": 1.1, "int_throughput": 3.1, "int_energy": 3.6, "gpu_energy": 2.8, "pipeline": 2.3,
             "ght_flops": 15.0, "ght_speed": 3.9}
    assert {k: c.paper for k, c in by_key.items()} == paper == PAPER
    for c in by_key.values():
        assert c.entries and all(e.assumptions for e in c.entries)
        for e in c.entries:
            if e.verdict != "exact (formula)":
                assert e.verdict == ("holds" if e.value >= c.paper * (1 - TOLERANCE) else "fails")
        assert set(c.holds_for) | set(c.fails_for) and "holds for" in c.summary
    tp = {(e.design, e.reference): e.value for e in by_key["int_throughput"].entries}
    assert tp[("fpqvar", "dsp58-int8")] == pytest.approx(results["fpqvar"].images_per_s
                                                         / results["dsp58-int8"].images_per_s)
    pipe = {(e.design, e.reference): e.value for e in by_key["pipeline"].entries}
    assert pipe[("fpqvar", "fpqvar-seq")] == pytest.approx(results["fpqvar-seq"].latency_s
                                                           / results["fpqvar"].latency_s)
    # the stream schedule overlaps more than level 2
    assert pipe[("fpqvar-stream", "fpqvar-seq")] > pipe[("fpqvar", "fpqvar-seq")]


def test_ght_flop_claim_is_the_dense_count(claims):
    e = claims[0]["ght_flops"].entries[0]
    assert e.value == 15.0 and e.verdict == "exact (formula)"
    r = ght_flop_ratio(1920, 128)
    assert r["dense"] == 1920 / 128 and r["fwht"] == pytest.approx(11 / 7, abs=0.02)
