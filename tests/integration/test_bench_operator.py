"""The kopf handlers of operators/bench_operator.py, called as kopf calls them, without a cluster.

A Kubernetes API server cannot run here, so this test plays its part: it keeps the
resources in dicts, hands the handlers kopf-shaped indices and `kopf.Patch`
objects, and applies the patches they return, tick by tick. The benches are real
bench agents on localhost; a real model is validated on them.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time

import kopf
import pytest

from avfleet.bench.local import local_agent
from operators import bench_operator

NS = "avfleet"
TOKEN = "operator-test-token-0123456789"
CREATED = "2026-12-01T00:00:00Z"
"""Every validation's creationTimestamp: days old, as avfleet_validation_age_seconds shows."""


class Cluster:
    """What the API server and kopf's watch streams would hold: resources by kind."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict]] = {"benches": {}, "validations": {}}

    def index(self, kind: str) -> dict[str, list[dict]]:
        return {f"{NS}/{n}": [copy.deepcopy(o)] for n, o in self.objects[kind].items()}

    def tick(self) -> None:
        """One round of both timers. The indices are read once per round, as a watch stream
        lags the patches: only the operator's own claims keep a bench from being leased twice."""
        for name, bench in self.objects["benches"].items():
            patch = kopf.Patch()
            bench_operator.probe_bench(namespace=NS, name=name, spec=bench["spec"], patch=patch)
            bench["status"].update(patch.status)
        benches, validations = self.index("benches"), self.index("validations")
        for name, v in self.objects["validations"].items():
            if not bench_operator._unfinished(v["status"]):
                continue
            patch = kopf.Patch()
            bench_operator.reconcile_validation(
                namespace=NS,
                name=name,
                meta={"creationTimestamp": CREATED},
                spec=v["spec"],
                status=v["status"],
                patch=patch,
                bench_index=benches,
                validation_index=validations,
            )
            v["status"].update(patch.status)


def validation(release, name: str, **gates) -> dict:
    return {
        "spec": {
            "modelUri": str(release / "model.onnx"),
            "bundleUri": str(release / "bundle.npz"),
            "reportUri": str(release / f"{name}.json"),
            "runs": 400,
            "warmup": 2,
            "referenceMiou": 1.0,  # the labels are the model's own argmax: the engine must match
            "gates": gates,
        },
        "status": {},
    }


@pytest.fixture
def secrets(release, monkeypatch):
    """Each bench's Secret, as the API server would hand them to the operator."""
    tokens = {}
    asked = []

    def read_secret_token(namespace: str, secret: str) -> str:
        asked.append((namespace, secret))
        return tokens[(namespace, secret)]

    monkeypatch.setattr(bench_operator, "read_secret_token", read_secret_token)
    monkeypatch.setenv(bench_operator.REPORTS_PREFIX_ENV, str(release))
    bench_operator._claims.clear()
    bench_operator._tokens.clear()
    return tokens


def add_bench(stack, cluster, secrets, release, tmp_path, name: str) -> None:
    """A real agent with its own token, its XavierBench naming the Secret that holds it."""
    token = f"{name}-token-{'x' * 16}"
    secrets[(NS, f"{name}-token")] = token
    agent = stack.enter_context(
        local_agent(str(tmp_path / name), read_prefixes=(str(release),), token=token)
    )
    cluster.objects["benches"][name] = {
        "spec": {"address": agent["address"], "tokenSecret": f"{name}-token"},
        "status": {},
    }


def test_the_operator_leases_each_bench_to_one_validation_and_finishes_all(
    release, tmp_path, secrets
):
    from prometheus_client import REGISTRY

    def metric(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"namespace": NS, **labels})

    finished_before = metric("avfleet_validations_finished_total", phase="Succeeded") or 0
    cluster = Cluster()
    with contextlib.ExitStack() as stack:
        for name in ("xavier-1", "xavier-2"):
            add_bench(stack, cluster, secrets, release, tmp_path, name)
        for name, gates in (("v1", {}), ("v2", {}), ("v3", {"latency_p99_ms": 0.0001})):
            cluster.objects["validations"][name] = validation(release, name, **gates)
        cluster.tick()
        running = {n: v["status"] for n, v in cluster.objects["validations"].items()}
        # The operator's metrics: both benches healthy, every unfinished validation aged from
        # its creation under its phase.
        assert metric("avfleet_bench_healthy", bench="xavier-1") == 1.0
        waiting = next(n for n, s in running.items() if s["phase"] == "Pending")
        age = metric("avfleet_validation_age_seconds", validation=waiting, phase="Pending")
        assert age is not None and age > 24 * 3600
        # Two benches, three validations: one each, the third waits; no bench leased twice.
        assert sorted(s.get("bench") for s in running.values() if s["phase"] == "Running") == [
            "xavier-1",
            "xavier-2",
        ]
        assert [s["phase"] for s in running.values()].count("Pending") == 1
        for _ in range(200):
            cluster.tick()
            phases = [v["status"]["phase"] for v in cluster.objects["validations"].values()]
            if all(p in ("Succeeded", "Rejected", "Failed") for p in phases):
                break
        statuses = {n: v["status"] for n, v in cluster.objects["validations"].items()}
    assert statuses["v1"]["phase"] == statuses["v2"]["phase"] == "Succeeded"
    assert statuses["v3"]["phase"] == "Rejected" and "budget" in statuses["v3"]["message"]
    assert all(s["summary"]["argmaxAgreement"] == 1.0 for s in statuses.values())
    assert os.path.exists(release / "v3.json") and not bench_operator._claims
    bench = cluster.objects["benches"]["xavier-1"]["status"]
    assert bench["health"] == "Healthy" and bench["runtime"] == "onnxruntime"
    # Finished validations are counted once each, and no longer aged.
    assert metric("avfleet_validations_finished_total", phase="Succeeded") == finished_before + 2
    assert metric("avfleet_validations_finished_total", phase="Rejected") >= 1
    for name in statuses:
        for phase in ("Pending", "Running"):
            assert metric("avfleet_validation_age_seconds", validation=name, phase=phase) is None


def run_until_done(cluster: Cluster, ticks: int = 200) -> dict:
    for _ in range(ticks):
        cluster.tick()
        if not any(
            bench_operator._unfinished(v["status"]) for v in cluster.objects["validations"].values()
        ):
            break
    return {n: v["status"] for n, v in cluster.objects["validations"].items()}


def test_each_bench_gets_only_its_own_token_and_reports_stay_under_the_prefix(
    release, tmp_path, secrets
):
    cluster = Cluster()
    with contextlib.ExitStack() as stack:
        add_bench(stack, cluster, secrets, release, tmp_path, "xavier-1")
        add_bench(stack, cluster, secrets, release, tmp_path, "xavier-2")
        # Swap the Secrets: each agent now sees the other's token and refuses it.
        secrets[(NS, "xavier-1-token")], secrets[(NS, "xavier-2-token")] = (
            secrets[(NS, "xavier-2-token")],
            secrets[(NS, "xavier-1-token")],
        )
        cluster.tick()
        for bench in cluster.objects["benches"].values():
            assert bench["status"]["health"] == "Healthy"  # /healthz needs no token
        cluster.objects["validations"]["v1"] = validation(release, "v1")
        statuses = run_until_done(cluster, ticks=3)
        assert statuses["v1"]["phase"] == "Failed" and "401" in statuses["v1"]["message"]
        # A reportUri outside the prefix fails before any bench is used.
        cluster.objects["validations"]["v2"] = v2 = validation(release, "v2")
        elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"  # release is tmp_path
        v2["spec"]["reportUri"] = str(elsewhere / "v2.json")
        statuses = run_until_done(cluster, ticks=2)
        assert statuses["v2"]["phase"] == "Failed" and "reports prefix" in statuses["v2"]["message"]
        assert not elsewhere.exists()


def test_a_validation_stuck_running_times_out_and_fails_with_the_reason(release, tmp_path, secrets):
    cluster = Cluster()
    with contextlib.ExitStack() as stack:
        add_bench(stack, cluster, secrets, release, tmp_path, "xavier-1")
        cluster.objects["validations"]["v1"] = v1 = validation(release, "v1")
        v1["spec"].update(runs=10_000, warmup=1000, batch=64, timeoutSeconds=1, maxAttempts=1)
        cluster.tick()
        assert v1["status"]["phase"] == "Running"
        time.sleep(1.2)  # past timeoutSeconds (startedAt is rounded down), well inside the ~3 s job
        statuses = run_until_done(cluster, ticks=20)
        assert statuses["v1"]["phase"] == "Failed"
        assert "timeoutSeconds=1" in str(statuses["v1"])  # why, in the benches lost
        # The job was cancelled: the bench is free for the next validation.
        cluster.tick()
        assert cluster.objects["benches"]["xavier-1"]["status"]["busy"] is False


def test_a_bench_whose_token_secret_is_missing_gets_a_clear_retry_not_a_traceback(monkeypatch):
    """A XavierBench applied before its Secret (seen on the real cluster: the local overlay's
    bench before the site made its token): the probe says which Secret to create and retries,
    as a kopf TemporaryError, instead of logging the API's 404 with a traceback."""
    import kubernetes

    class NoSecrets:
        def read_namespaced_secret(self, name: str, namespace: str) -> None:
            raise kubernetes.client.ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", NoSecrets)
    with pytest.raises(
        kopf.TemporaryError, match="'xavier-01-token' is not in namespace 'avfleet'"
    ):
        bench_operator.read_secret_token("avfleet", "xavier-01-token")
