"""The trainer under torchrun with NCCL and AMP on every local GPU."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_torchrun_trains_with_nccl(tmp_path):
    from avfleet.dataset.build import DatasetConfig, build_dataset
    from avfleet.dataset.labels import OracleLabels
    from avfleet.fleet.generate import generate_fleet
    from avfleet.fleet.world import FleetSpec
    from avfleet.index.job import IndexConfig, LoopEngine, run_index

    spec = FleetSpec(seed=3, vehicles=2, minutes_per_day=1.0, segment_s=20.0)
    fleet, index = str(tmp_path / "fleet"), str(tmp_path / "index")
    generate_fleet(spec, fleet)
    run_index(IndexConfig(recordings_uri=fleet, date=spec.start_date, out_uri=index), LoopEngine())
    dataset = build_dataset(
        DatasetConfig(index_uri=index, selection="random:64", out_uri=str(tmp_path / "ds")),
        OracleLabels(fleet),
    ).uri
    gpus = torch.cuda.device_count()
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "run"
    cmd = [
        torchrun,
        "--standalone",
        f"--nproc_per_node={gpus}",
        str(REPO_ROOT / "jobs" / "train.py"),
    ]
    cmd += [
        "--dataset",
        dataset,
        "--out",
        str(out),
        "--members",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] > 0 and result["samples_per_s"] > 0
