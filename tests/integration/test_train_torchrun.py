"""Real torchrun on CPU (gloo): DDP training, and a worker killed mid-run resuming to the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import OracleLabels
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from tests.conftest import REPO_ROOT
from tests.integration.conftest import DATE

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


@pytest.fixture(scope="module")
def dataset(clean_fleet, tmp_path_factory):
    index = str(tmp_path_factory.mktemp("train-index"))
    run_index(IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=index), LoopEngine())
    out = str(tmp_path_factory.mktemp("train-ds"))
    return build_dataset(
        DatasetConfig(index_uri=index, selection="random:192", out_uri=out, seed=1),
        OracleLabels(clean_fleet),
    ).uri


def torchrun_cmd(dataset_uri: str, out: str, *extra: str) -> list[str]:
    return [
        TORCHRUN,
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=1",
        str(REPO_ROOT / "jobs" / "train.py"),
        "--dataset",
        dataset_uri,
        "--out",
        out,
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "6",
        *extra,
    ]


def final_weights(run: str) -> dict[str, torch.Tensor]:
    return torch.load(os.path.join(run, "model", "weights.pt"), weights_only=True)


def test_killed_worker_resumes_to_identical_weights(dataset, tmp_path):
    whole, interrupted = str(tmp_path / "whole"), str(tmp_path / "interrupted")
    subprocess.run(torchrun_cmd(dataset, whole), check=True, capture_output=True, timeout=600)

    run_until_killed(torchrun_cmd(dataset, interrupted), interrupted, 12)  # one worker dies

    result = json.loads(open(os.path.join(interrupted, "result.json")).read())
    assert result["resumed_from"] is not None and result["resumed_from"] >= 12, result
    a, b = final_weights(whole), final_weights(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), (
            f"{key} differs after resume"
        )  # bitwise, not approximately


def test_pruned_and_factored_net_is_smaller_and_loads_from_its_arch(dataset, tmp_path):
    from avfleet.train.export import export_onnx, parity
    from avfleet.train.loop import load_model
    from avfleet.train.models import num_parameters

    run = str(tmp_path / "compressed")
    cmd = torchrun_cmd(dataset, run, "--group-sparsity", "0.5", "--low-rank", "2.0")
    cmd += ["--finetune-epochs", "1", "--low-rank-energy", "0.95"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    result = json.loads(open(os.path.join(run, "result.json")).read())
    assert result["pruned_parameters"] < result["num_parameters"]
    model = load_model(os.path.join(run, "model"))
    assert num_parameters(model) == result["pruned_parameters"]
    assert any("expand_rank" in b or "project_rank" in b for b in model.arch["blocks"])
    dense = load_model(os.path.join(run, "model", "dense"))
    assert num_parameters(dense) == result["num_parameters"]
    images = torch.rand(2, 3, 64, 128)
    assert parity(model, export_onnx(model, 64, 128), images)["max_abs_error"] < 1e-4


def run_until_killed(cmd: list[str], run: str, step: int) -> str:
    """Start torchrun, SIGKILL one worker once checkpoint `step` exists, return the output."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 300
    marker = os.path.join(run, "checkpoints", f"step-{step:08d}", "meta.json")
    while not os.path.exists(marker):
        assert proc.poll() is None and time.time() < deadline, "training ended before the kill"
        time.sleep(0.05)
    workers = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "train.py" in " ".join(p.cmdline())
    ]
    os.kill(workers[-1].pid, signal.SIGKILL)
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, output[-3000:]
    return output


def test_a_budgeted_pruning_resumes_to_the_same_net_and_reports_its_budget(dataset, tmp_path):
    from avfleet.train.loop import load_model
    from avfleet.train.models import build, default_arch, num_parameters

    dense_params = num_parameters(build(default_arch(width=1.0)))
    budget = ["--target-params", str(dense_params // 2), "--group-sparsity", "0.05"]
    whole, interrupted = str(tmp_path / "whole"), str(tmp_path / "interrupted")
    subprocess.run(
        torchrun_cmd(dataset, whole, *budget), check=True, capture_output=True, timeout=600
    )
    run_until_killed(torchrun_cmd(dataset, interrupted, *budget), interrupted, 18)
    a, b = load_model(os.path.join(whole, "model")), load_model(os.path.join(interrupted, "model"))
    assert a.arch == b.arch
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    doc = json.loads(open(os.path.join(whole, "model", "arch.json")).read())
    record = doc["compression"]
    assert record["budget"]["met"] is True, record["budget"]["message"]
    assert record["parameters"]["after"] == num_parameters(a) <= dense_params // 2
    assert record["parameters"]["before"] == dense_params
    assert record["measured_latency_ms"]["after"] < record["measured_latency_ms"]["before"]


def test_a_latency_budget_no_pruning_can_meet_exits_78_naming_it(dataset, tmp_path):
    from avfleet.latency.lut import build_table, local_profiler, pruning_units, save_table
    from avfleet.train.models import default_arch

    units = pruning_units(default_arch(width=1.0), (64, 128))
    lut = str(tmp_path / "lut.json")
    save_table(build_table(units, (64, 128), local_profiler(str(tmp_path / "cache"))), lut)
    cmd = torchrun_cmd(dataset, str(tmp_path / "run"), "--target-latency-ms", "0.001")
    proc = subprocess.run([*cmd, "--latency-lut", lut], capture_output=True, timeout=600, text=True)
    assert proc.returncode != 0
    assert "below the fastest net pruning can reach" in proc.stdout + proc.stderr
    assert not os.path.exists(os.path.join(tmp_path, "run", "checkpoints"))


def test_steps_fix_the_compute_whatever_the_epochs(dataset, tmp_path):
    out = str(tmp_path / "steps")
    # 192 frames, 2 ranks, batch 8: 12 steps per epoch; --steps 15 runs into a second epoch
    done = subprocess.run(
        torchrun_cmd(dataset, out, "--steps", "15", "--log-every", "5"),
        check=True,
        capture_output=True,
        timeout=600,
        text=True,
    )
    assert json.loads(open(os.path.join(out, "result.json")).read())["steps"] == 15
    # Not on a terminal (a pod's log): rank 0 reports every 5 steps and at the end, one line
    # each, with loss, learning rate and throughput.
    lines = [line for line in (done.stdout + done.stderr).splitlines() if ": step " in line]
    assert [line.split(": step ")[1].split(" ")[0] for line in lines] == ["5/15", "10/15", "15/15"]
    assert all(" loss " in line and " lr " in line and "frames/s" in line for line in lines)


def test_a_warm_start_begins_at_the_given_weights_and_refuses_another_net(dataset, tmp_path):
    first, again = str(tmp_path / "first"), str(tmp_path / "again")
    subprocess.run(
        torchrun_cmd(dataset, first, "--steps", "3"), check=True, capture_output=True, timeout=600
    )
    # lr 0: the warm-started run's weights are exactly where it started (batch-norm running
    # statistics still move with every batch seen, so they are left out)
    subprocess.run(
        torchrun_cmd(dataset, again, "--steps", "2", "--lr", "0", "--init", f"{first}/model"),
        check=True,
        capture_output=True,
        timeout=600,
    )
    a, b = final_weights(first), final_weights(again)
    learned = [
        k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    assert learned and all(torch.equal(a[k], b[k]) for k in learned)
    assert not all(torch.equal(a[k], b[k]) for k in a if k.endswith("running_mean"))
    other = subprocess.run(
        torchrun_cmd(dataset, str(tmp_path / "x"), "--members", "2", "--init", f"{first}/model"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode != 0 and "warm starts need the same architecture" in other.stderr
