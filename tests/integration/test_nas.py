"""Architecture search for real: torchrun (DDP, gloo) with resume, and the `nas` map job via local-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import OracleLabels
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from tests.conftest import REPO_ROOT
from tests.integration.conftest import DATE, local_run

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


@pytest.fixture(scope="module")
def data(clean_fleet, tmp_path_factory):
    """(train dataset, held-out dataset, the search space's latency table on this machine)."""
    index = str(tmp_path_factory.mktemp("nas-index"))
    run_index(IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=index), LoopEngine())
    datasets = [
        build_dataset(
            DatasetConfig(
                index_uri=index,
                selection=f"random:{n}",
                out_uri=str(tmp_path_factory.mktemp("nas-ds")),
                seed=seed,
            ),
            OracleLabels(clean_fleet),
        ).uri
        for n, seed in ((128, 1), (32, 9))
    ]
    lut = str(tmp_path_factory.mktemp("nas-lut") / "lut.json")
    subprocess.run(
        [sys.executable, "-m", "avfleet", "nas", "profile", "--out", lut],
        check=True,
        capture_output=True,
    )
    return datasets[0], datasets[1], lut


def search(dataset: str, lut: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", str(REPO_ROOT / "jobs" / "search.py")]
    cmd += ["--dataset", dataset, "--out", out, "--latency-lut", lut]
    cmd += ["--target-latency-ms", "1.2", "--epochs", "3", "--batch-size", "4"]
    cmd += ["--checkpoint-every", "5", *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_search_under_torchrun_resumes_to_the_same_architecture_parameters(data, tmp_path):
    dataset, _, lut = data
    whole = search(dataset, lut, str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    done = json.loads((tmp_path / "whole" / "search.json").read_text())
    assert done["finished"] and done["steps"] > 10
    assert done["history"][-1]["expected_ms"] > 0  # alpha steps ran after the warm-up
    # Stopped at a checkpoint, then run again: resumes there and ends where the whole run did.
    part = tmp_path / "part"
    first = search(dataset, lut, str(part), "--stop-after-steps", "10")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not json.loads((part / "search.json").read_text())["finished"]
    second = search(dataset, lut, str(part))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumes the search" in second.stderr
    resumed = json.loads((part / "search.json").read_text())
    assert resumed["alpha"] == done["alpha"]
    assert resumed["argmax"] == done["argmax"]
    bad = search(dataset, str(tmp_path / "missing-lut.json"), str(tmp_path / "bad"))
    assert bad.returncode != 0 and "missing-lut.json" in bad.stderr


def map_job_parameters(data, out) -> dict:  # noqa: ANN001
    """What both map jobs take here: tiny epochs and a short bench."""
    dataset, heldout, _ = data
    return {
        "dataset": dataset,
        "validation": heldout,
        "out": str(out),
        "train-epochs": "1",
        "batch-size": "4",
        "nodes": "1",
        "bench-runs": "30",
        "bench-warmup": "5",
        "max-miou-drop": "1",
    }


def test_nas_workflow_fans_out_over_targets_and_draws_the_front(data, tmp_path):
    out = tmp_path / "nas"
    params = map_job_parameters(data, out)
    params.update(
        {
            "targets": "0.8,1.4",
            "search-epochs": "2",
            "lut-cache": str(tmp_path / "latency-cache"),
            "budget-ms": "100",
        }
    )
    run = local_run("workflows/nas.yaml", params, tmp_path / "wd")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    pareto = json.loads((folder / "pareto" / "pareto.json").read_text())
    names = [c["name"] for c in pareto["candidates"]]
    assert names == ["t0.8ms", "t1.4ms"]  # the fan-in sees the items in plan order
    for c in pareto["candidates"]:
        assert c["p50_ms"] > 0 and 0 <= c["miou"] <= 1
        assert c["predicted_ms"] is not None and c["search"]["process_hours"] > 0
        arch = json.loads((folder / c["name"] / "arch.json").read_text())
        assert arch["target_ms"] == float(c["name"][1:-2])
    assert (folder / "pareto" / "pareto.png").stat().st_size > 1000
    assert "| candidate |" in (folder / "pareto" / "pareto.md").read_text()
    assert "pick" in run.stdout and "candidates(0:name:t0.8ms,target_ms:0.8)" in run.stdout


def test_sweep_is_the_same_fan_out_over_a_grid(data, tmp_path):
    out = tmp_path / "sweep"
    params = {**map_job_parameters(data, out), "grid": "lr=0.02,0.05"}
    run = local_run("workflows/sweep.yaml", params, tmp_path / "wd")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    pareto = json.loads((folder / "pareto" / "pareto.json").read_text())
    assert [c["name"] for c in pareto["candidates"]] == ["lr0.02", "lr0.05"]
    assert [c["settings"]["lr"] for c in pareto["candidates"]] == ["0.02", "0.05"]
    config = json.loads((folder / "lr0.05" / "train" / "config.json").read_text())
    assert config["lr"] == 0.05 and config["group_sparsity"] == 0.0
    assert "Skipped" in run.stdout  # no budget-ms: pick is skipped by its `when`
