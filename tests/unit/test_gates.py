"""Promotion gates: every miss is named; values worked out by hand."""

from __future__ import annotations

import pytest

from avfleet.bench.gates import Gates, judge
from avfleet.core.errors import ConfigError


def report(p99=10.0, error=1e-4, agreement=0.999, miou=0.50):
    return {
        "latency": {"p50_ms": p99 / 2, "p99_ms": p99},
        "parity": {"max_abs_error": error, "argmax_agreement": agreement},
        "accuracy": {"miou": miou},
    }


def test_a_report_within_every_gate_passes():
    verdict = judge(report(), reference_miou=0.505, gates=Gates())  # drop 0.005 <= 0.01
    assert verdict.passed and verdict.reasons == []
    assert verdict.checks["miou_drop"]["value"] == pytest.approx(0.005)


def test_each_gate_missed_is_named():
    gates = Gates(
        latency_p99_ms=20, max_abs_error=0.01, min_argmax_agreement=0.99, max_miou_drop=0.01
    )
    # p99 25 > 20; error 0.2 > 0.01; agreement 0.9 < 0.99; drop 0.55 - 0.50 = 0.05 > 0.01
    verdict = judge(report(p99=25, error=0.2, agreement=0.9), reference_miou=0.55, gates=gates)
    assert not verdict.passed
    assert len(verdict.reasons) == 4
    assert "p99 latency 25.00 ms is over the 20 ms budget" in verdict.reasons
    assert any("5.0 points under" in r for r in verdict.reasons)
    assert [c["passed"] for c in verdict.checks.values()] == [False] * 4


def test_only_the_latency_budget_missed():
    verdict = judge(report(p99=51), reference_miou=0.5, gates=Gates(latency_p99_ms=50))
    assert not verdict.passed and len(verdict.reasons) == 1 and "latency" in verdict.reasons[0]


def test_gates_from_a_resource_reject_unknown_names_and_bad_values():
    assert Gates.from_dict({"latency_p99_ms": "30"}).latency_p99_ms == 30.0
    with pytest.raises(ConfigError, match="latency_ms"):
        Gates.from_dict({"latency_ms": 30})
    with pytest.raises(ConfigError, match="min_argmax_agreement"):
        Gates(min_argmax_agreement=1.5)


def test_the_promotion_policy_is_within_bounds_and_refuses_loose_gates():
    from avfleet.bench.gates import BOUNDS, policy_gates
    from avfleet.deploy.registry import promotion_policy

    shipped = promotion_policy()
    assert shipped == Gates()  # the reviewed file says what the defaults say
    good = {"gates": {name: getattr(shipped, name) for name in BOUNDS}}
    assert policy_gates(good, "p") == shipped
    for name, value, says in [
        ("max_miou_drop", 0.5, "outside"),
        ("min_argmax_agreement", 0.1, "outside"),
        ("latency_p99_ms", True, "must be a number"),
        ("max_abs_error", "0.05", "must be a number"),
    ]:
        bad = {"gates": {**good["gates"], name: value}}
        with pytest.raises(ConfigError, match=says):
            policy_gates(bad, "p")
    with pytest.raises(ConfigError, match="not set"):
        policy_gates({"gates": {"latency_p99_ms": 10}}, "p")
    with pytest.raises(ConfigError, match="one key"):
        policy_gates({**good, "extra": 1}, "p")
