"""The claims table: every claim present, the GHT FLOP formula exact, the 'implied' figures checked."""

import re

import pytest

from fpqvar.hw.perf.accelerator import default_gpu, fpqvar_vck190, integer_vck190
from fpqvar.hw.perf.claims import evaluate_claims, ght_flop_ratio
from fpqvar.hw.perf.estimate import estimate
from fpqvar.hw.perf.recipes import get_hw_recipe
from fpqvar.model.zoo import get_model_spec


@pytest.fixture(scope="module")
def claims():
    cl, results = evaluate_claims(fpqvar_vck190(), integer_vck190(), default_gpu())
    return {c.key: c for c in cl}, results


def test_all_claims_present(claims):
    by_key, results = claims
    assert set(by_key) == {"throughput", "int_throughput", "int_energy", "gpu_energy", "pipeline", "ght_flops",
                           "ght_speed"}
    paper = {"throughput": 1.1, "int_throughput": 3.1, "int_energy": 3.6, "gpu_energy": 2.8, "pipeline": 2.3,
             "ght_flops": 15.0, "ght_speed": 3.9}  # fpqvar-method.md "Additional figures"
    assert {k: c.paper for k, c in by_key.items()} == paper
    assert all(c.status in ("reproduced", "not reproduced", "exact (formula)") for c in by_key.values())
    assert by_key["throughput"].model == pytest.approx(results["fpqvar"].images_per_s)
    seq, fp = results["sequential"], results["fpqvar"]
    assert by_key["pipeline"].model == pytest.approx(seq.latency_s / fp.latency_s)


def test_ght_flop_claim_is_the_dense_count(claims):
    assert claims[0]["ght_flops"].model == 15.0
    r = ght_flop_ratio(1920, 128)
    assert r["dense"] == 1920 / 128 and r["fwht"] == pytest.approx(11 / 7, abs=0.02)


def test_implied_bandwidth_reaches_the_claim(claims):
    # the claim's "implied" text names the DDR bandwidth at which the model reaches 1.1 image/s: check it.
    m = re.search(r">= ([\d.]+) GB/s", claims[0]["throughput"].implied)
    if m is None:
        pytest.skip("the model does not reach 1.1 image/s by bandwidth alone with these defaults")
    bw = float(m.group(1)) * 1e9 * 1.001  # printed with one decimal
    spec = get_model_spec("var-d30")
    acc = fpqvar_vck190().with_overrides({"memory": {"offchip_bandwidth_bytes_per_s": bw}})
    assert estimate("var-d30", spec.var, spec.vae, acc, get_hw_recipe("fpqvar-w4a4")).images_per_s >= 1.1
