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

import kopf
import numpy as np
import pytest
import torch

from avfleet.bench.local import local_agent
from avfleet.bench.measure import Bundle, to_input
from avfleet.train.export import export_onnx
from avfleet.train.models import build, default_arch
from operators import bench_operator

NS = "avfleet"
TOKEN = "operator-test-token-0123456789"


@pytest.fixture
def release(tmp_path):
    torch.manual_seed(0)
    net = build(default_arch(width=0.25)).eval()
    (tmp_path / "model.onnx").write_bytes(export_onnx(net, 32, 64))
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = net(torch.from_numpy(to_input(frames[:4]))).numpy()
    masks = ref.argmax(2)[:, 0].astype(np.uint8)
    bundle = Bundle(frames[:4], masks, np.array(["day/clear/urban"] * 4), ref, frames)
    (tmp_path / "bundle.npz").write_bytes(bundle.to_bytes())
    return tmp_path


class Cluster:
    """What the API server and kopf's watch streams would hold: resources by kind."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict]] = {"benches": {}, "validations": {}}

    def index(self, kind: str) -> dict[str, list[dict]]:
        return {f"{NS}/{n}": [copy.deepcopy(o)] for n, o in self.objects[kind].items()}

    def tick(self) -> None:
        """One round of both timers. The indices are read once per round, as a watch stream
        lags the patches: only the operator's own claims keep a bench from being leased twice."""
        for bench in self.objects["benches"].values():
            patch = kopf.Patch()
            bench_operator.probe_bench(spec=bench["spec"], patch=patch)
            bench["status"].update(patch.status)
        benches, validations = self.index("benches"), self.index("validations")
        for name, v in self.objects["validations"].items():
            if not bench_operator._unfinished(v["status"]):
                continue
            patch = kopf.Patch()
            bench_operator.reconcile_validation(
                namespace=NS,
                name=name,
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


def test_the_operator_leases_each_bench_to_one_validation_and_finishes_all(
    release, tmp_path, monkeypatch
):
    monkeypatch.setenv("AVFLEET_BENCH_TOKEN", TOKEN)
    bench_operator._claims.clear()
    cluster = Cluster()
    with contextlib.ExitStack() as stack:
        for name in ("xavier-1", "xavier-2"):
            agent = stack.enter_context(local_agent(str(tmp_path / name), token=TOKEN))
            cluster.objects["benches"][name] = {"spec": {"address": agent["address"]}, "status": {}}
        for name, gates in (("v1", {}), ("v2", {}), ("v3", {"latency_p99_ms": 0.0001})):
            cluster.objects["validations"][name] = validation(release, name, **gates)
        cluster.tick()
        running = {n: v["status"] for n, v in cluster.objects["validations"].items()}
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
