"""A PyTorchJob run by Kubeflow's own training-operator (tests/e2e/kubeflow.py) on real pods:
a master and a worker from avfleet's training image find each other through the master's
Service and all-reduce over gloo on the CPU."""

from __future__ import annotations

import json

import pytest

from tests.e2e import images, kubeflow

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ALL_REDUCE = """
import torch, torch.distributed as dist
dist.init_process_group("gloo")  # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE: the operator's
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
print(f"rank {dist.get_rank()} of {dist.get_world_size()}: sum {t.item()}", flush=True)
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def operator(images_loaded):
    lacking = kubeflow.missing()
    if lacking:
        pytest.skip("the training-operator needs " + ", ".join(lacking))
    with kubeflow.training_operator(images_loaded):
        yield images_loaded


def replica(command: list[str]) -> dict:
    return {
        "replicas": 1,
        "restartPolicy": "OnFailure",
        "template": {"spec": {"containers": [{
            "name": "pytorch",  # the container the operator configures
            "image": images.IMAGES["train"].ref,
            "imagePullPolicy": "Never",
            "command": command,
            # requests well under the limits: avfleet's own pods share this 2-core node
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                          "limits": {"cpu": "1", "memory": "2Gi"}},
        }]}},
    }  # fmt: skip


def test_a_pytorchjob_all_reduces_across_two_pods(operator, tmp_path):
    command = ["python3", "-c", ALL_REDUCE]
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "allreduce", "namespace": "default"},
        "spec": {"pytorchReplicaSpecs": {"Master": replica(command), "Worker": replica(command)}},
    }
    operator.apply("pytorchjob-allreduce", job)  # through the operator's webhook
    done = operator.kubectl("wait", "--for=condition=Succeeded", "--timeout=300s",
                            "pytorchjob/allreduce", check=False, timeout=330)  # fmt: skip
    pods = json.loads(operator.kubectl(
        "get", "pods", "-l", "training.kubeflow.org/job-name=allreduce", "-o", "json"
    ))["items"]  # fmt: skip
    logs = {p["metadata"]["name"]: operator.kubectl("logs", p["metadata"]["name"], check=False)
            for p in pods}  # fmt: skip
    states = {p["metadata"]["name"]: p["status"] for p in pods}
    assert "condition met" in done, (states, logs)
    assert sorted(logs) == ["allreduce-master-0", "allreduce-worker-0"]
    for name, text in logs.items():
        assert "of 2: sum 3.0" in text, (name, text)
    operator.kubectl("delete", "pytorchjob", "allreduce", "--wait=true")
