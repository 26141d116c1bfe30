"""`avfleet local-run` of the rendered train workflow: dataset -> two PyTorchJobs (torchrun) -> evaluation."""

from __future__ import annotations

import json
import pathlib

import pytest

from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import OracleLabels
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from tests.integration.conftest import DATE, local_run


@pytest.fixture(scope="module")
def index_and_heldout(clean_fleet, tmp_path_factory):
    index = str(tmp_path_factory.mktemp("wf-index"))
    run_index(IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=index), LoopEngine())
    heldout = build_dataset(
        DatasetConfig(
            index_uri=index,
            selection="random:32",
            out_uri=str(tmp_path_factory.mktemp("wf-heldout")),
            seed=9,
        ),
        OracleLabels(clean_fleet),
    )
    return index, heldout.uri


def test_train_workflow_runs_locally(index_and_heldout, clean_fleet, tmp_path):
    index, heldout = index_and_heldout
    runs = tmp_path / "runs"
    params = {
        "index": index,
        "frames": "random:64",
        "labels": f"oracle:{clean_fleet}",
        "datasets": str(tmp_path / "datasets"),
        "runs": str(runs),
        "heldout": heldout,
        "run-name": "t",
        "members": "2",
        "epochs": "1",
        "nodes": "1",
        "group-sparsity": "0.01",
        "width": "1.0",
    }
    run = local_run("workflows/train.yaml", params, tmp_path / "wd")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for kind in ("ensemble", "deployable"):
        result = json.loads((runs / "t" / kind / "result.json").read_text())
        assert result["steps"] > 0
        evaluation = json.loads((runs / "t" / kind / "model" / "evaluation.json").read_text())
        assert 0.0 <= evaluation["miou"] <= 1.0
    ensemble_arch = json.loads((runs / "t" / "ensemble" / "model" / "arch.json").read_text())
    assert ensemble_arch["members"] == 2
    assert "miou=" in run.stdout and pathlib.Path(heldout).exists()
