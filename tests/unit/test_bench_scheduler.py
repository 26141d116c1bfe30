"""The bench operator's transitions, as pure steps over in-memory resources.

`FakeBench` stands in for a Xavier's agent (no Xavier here); the real agent
and the same loop run in tests/integration/test_deploy.py.
"""

from __future__ import annotations

import json

from avfleet.bench import scheduler
from avfleet.bench.client import BenchBusy, BenchUnavailable
from avfleet.core.errors import PermanentError

REPORT = {
    "latency": {"p50_ms": 3.0, "p99_ms": 4.0},
    "parity": {"max_abs_error": 1e-5, "argmax_agreement": 1.0},
    "accuracy": {"miou": 0.5},
    "engine": {"key": "k1", "cached": False},
}


class FakeBench:
    """What a client of one bench agent answers; `behaviour` scripts it."""

    def __init__(self, behaviour: str = "ok", target: str = "xavier") -> None:
        self.behaviour, self.target, self.submitted = behaviour, target, []
        self.job_state = "running"

    def health(self) -> dict:
        if self.behaviour == "down":
            raise BenchUnavailable("connection refused")
        return {"status": "ok", "busy": False, "target": self.target, "runtime": "onnxruntime"}

    def submit(self, request: dict) -> str:
        if self.behaviour == "busy":
            raise BenchBusy("409 busy")
        if self.behaviour == "refuse":
            raise PermanentError("422: the model is not a valid ONNX model")
        self.submitted.append(request)
        return f"job-{len(self.submitted)}"

    def job(self, job_id: str) -> dict:
        if self.behaviour == "down":
            raise BenchUnavailable("connection refused")
        if self.job_state == "succeeded":
            return {"state": "succeeded", "report": REPORT}
        if self.job_state == "failed":
            return {"state": "failed", "error": "TensorRT could not build a int8 engine"}
        return {"state": "running"}


def spec(tmp_path, **gates) -> dict:
    return {
        "modelUri": "s3://r/model.onnx",
        "bundleUri": "s3://r/bundle.npz",
        "reportUri": str(tmp_path / "report.json"),
        "target": "xavier",
        "referenceMiou": 0.505,
        "gates": gates,
        "maxAttempts": 2,
    }


def cluster(fakes: dict[str, FakeBench]):
    benches = {}
    for name, fake in fakes.items():
        b_spec = {"address": name, "target": "xavier"}
        benches[name] = {"spec": b_spec, "status": scheduler.probe(b_spec, fake)}
    return benches, (lambda b_spec: fakes[b_spec["address"]])


def advance(name, s, status, benches, validations, client_for):
    patch = scheduler.step(
        name,
        s,
        status,
        benches,
        validations,
        client_for,
        reports_prefix=s["reportUri"].rsplit("/", 1)[0],
    )
    return {**status, **patch}


def test_probe_marks_unreachable_and_mismatched_benches_unhealthy():
    assert scheduler.probe({"target": "xavier"}, FakeBench())["health"] == scheduler.HEALTHY
    down = scheduler.probe({"target": "xavier"}, FakeBench("down"))
    assert down["health"] == scheduler.UNHEALTHY and "refused" in down["message"]
    other = scheduler.probe({"target": "xavier"}, FakeBench(target="orin"))
    assert other["health"] == scheduler.UNHEALTHY and "orin" in other["message"]


def test_a_validation_takes_a_free_healthy_bench_of_its_target(tmp_path):
    fakes = {"a": FakeBench(), "b": FakeBench(), "c": FakeBench("down")}
    benches, client_for = cluster(fakes)
    benches["b"]["spec"]["target"] = "orin"
    others = {"v0": {"spec": {}, "status": {"phase": "Running", "bench": "a"}}}  # a is leased
    assert scheduler.free_benches(benches, others, "xavier") == []
    status = advance("v1", spec(tmp_path), {}, benches, others, client_for)
    assert status["phase"] == "Pending" and "waiting for a free healthy bench" in status["message"]
    status = advance("v1", spec(tmp_path), {}, benches, {}, client_for)
    assert status["phase"] == "Running" and status["bench"] == "a" and status["attempts"] == 1
    assert fakes["a"].submitted[0]["model_uri"] == "s3://r/model.onnx"


def test_a_busy_bench_is_skipped_for_the_next(tmp_path):
    fakes = {"a": FakeBench("busy"), "b": FakeBench()}
    benches, client_for = cluster(fakes)
    status = advance("v1", spec(tmp_path), {}, benches, {}, client_for)
    assert status["bench"] == "b" and status["jobId"] == "job-1"


def test_a_bench_that_dies_loses_the_validation_to_another(tmp_path):
    fakes = {"a": FakeBench(), "b": FakeBench()}
    benches, client_for = cluster(fakes)
    status = advance("v1", spec(tmp_path), {}, benches, {}, client_for)
    assert status["bench"] == "a"
    fakes["a"].behaviour = "down"  # the agent stops answering before the next probe
    status = advance("v1", spec(tmp_path), status, benches, {}, client_for)
    assert status["phase"] == "Pending" and status["benchesLost"] == ["a"]
    benches["a"]["status"] = scheduler.probe(benches["a"]["spec"], fakes["a"])
    status = advance("v1", spec(tmp_path), status, benches, {}, client_for)
    assert status["phase"] == "Running" and status["bench"] == "b" and status["attempts"] == 2
    fakes["b"].job_state = "succeeded"
    status = advance("v1", spec(tmp_path), status, benches, {}, client_for)
    assert status["phase"] == "Succeeded" and status["summary"]["p99Ms"] == 4.0
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["verdict"]["passed"] and written["latency"]["p99_ms"] == 4.0
    assert (
        scheduler.step(
            "v1", spec(tmp_path), status, benches, {}, client_for, reports_prefix=str(tmp_path)
        )
        == {}
    )


def test_a_gate_missed_is_rejected_with_the_reason(tmp_path):
    fakes = {"a": FakeBench()}
    benches, client_for = cluster(fakes)
    s = spec(tmp_path, latency_p99_ms=2.0)
    status = advance("v1", s, {}, benches, {}, client_for)
    fakes["a"].job_state = "succeeded"
    status = advance("v1", s, status, benches, {}, client_for)
    assert status["phase"] == "Rejected"
    assert "p99 latency 4.00 ms is over the 2 ms budget" in status["message"]
    assert not json.loads((tmp_path / "report.json").read_text())["verdict"]["passed"]


def test_refusals_and_device_failures_fail_without_retrying_elsewhere(tmp_path):
    benches, client_for = cluster({"a": FakeBench("refuse"), "b": FakeBench()})
    status = advance("v1", spec(tmp_path), {}, benches, {}, client_for)
    assert status["phase"] == "Failed" and "not a valid ONNX model" in status["message"]
    fakes = {"a": FakeBench()}
    benches, client_for = cluster(fakes)
    status = advance("v2", spec(tmp_path), {}, benches, {}, client_for)
    fakes["a"].job_state = "failed"
    status = advance("v2", spec(tmp_path), status, benches, {}, client_for)
    assert status["phase"] == "Failed" and "could not build" in status["message"]


def test_attempts_are_bounded(tmp_path):
    benches, client_for = cluster({"a": FakeBench()})
    status = {"phase": "Pending", "attempts": 2, "benchesLost": ["a", "a"]}
    status = advance("v1", spec(tmp_path), status, benches, {}, client_for)
    assert status["phase"] == "Failed" and "in 2 attempts" in status["message"]
