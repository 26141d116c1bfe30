"""`avfleet local-run` of the rendered nightly-mining CronWorkflow (on demand) and data-engine template."""

from __future__ import annotations

import json

import pytest
import torch

from avfleet.core.storage import read_parquet
from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import OracleLabels
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from avfleet.serve.graph import ScoringGraph, export_onnx
from avfleet.serve.repository import publish
from avfleet.taxonomy import NUM_CLASSES
from avfleet.train.models import build, default_arch
from tests.integration.conftest import DATE, free_port, local_run
from tests.integration.test_triton import start_server, stop


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    torch.manual_seed(0)
    graph = ScoringGraph(build(default_arch(), members=2))
    root = str(tmp_path_factory.mktemp("wf-repo"))
    publish(
        root, "dpe", export_onnx(graph, 64, 128), {}, num_classes=NUM_CLASSES, height=64, width=128
    )
    return root


def test_nightly_mining_runs_on_demand_through_triton(clean_fleet, repo, tmp_path):
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    server = start_server(repo, ports, "dpe:1")
    try:
        run = local_run(
            "workflows/nightly-mining.yaml",
            {
                "recordings": clean_fleet,
                "index": str(tmp_path / "index"),
                "pushgateway": "",
                "model-repo": repo,
                "model": "dpe",
                "triton-url": f"grpc://127.0.0.1:{ports['grpc']}",
                "budget": "10",
                "mining-root": str(tmp_path / "mining"),
                "queues": str(tmp_path / "queues"),
                "date": DATE,  # a backfill: the test fleet drove on DATE, not yesterday
            },
            tmp_path / "wd",
        )
    finally:
        stop(server)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    latest = json.loads((tmp_path / "queues" / "latest.json").read_text())
    assert latest["date"] == DATE and latest["tasks"] == 10
    selection = read_parquet(str(tmp_path / "mining" / DATE / "dpe-v1" / "selection.parquet"))
    assert len(selection) == 10 and selection["model"].eq("dpe:1").all()
    metrics = (tmp_path / "mining" / DATE / "dpe-v1" / "metrics.prom").read_text()
    assert "avfleet_mine_triton_latency_seconds" in metrics


def test_data_engine_chains_index_dataset_train_publish_mine(clean_fleet, tmp_path):
    heldout_index = str(tmp_path / "heldout-index")
    run_index(
        IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=heldout_index), LoopEngine()
    )
    heldout = build_dataset(
        DatasetConfig(index_uri=heldout_index, selection="random:16", out_uri=str(tmp_path / "ho")),
        OracleLabels(clean_fleet),
    ).uri
    repo = str(tmp_path / "repo")
    run = local_run(
        "workflows/data-engine.yaml",
        {
            "recordings": clean_fleet,
            "date": DATE,
            "index": str(tmp_path / "index"),
            "pushgateway": "",
            "frames": "random:48",
            "labels": f"oracle:{clean_fleet}",
            "datasets": str(tmp_path / "datasets"),
            "runs": str(tmp_path / "runs"),
            "heldout": heldout,
            "run-name": "r0",
            "members": "2",
            "epochs": "1",
            "nodes": "1",
            "model-repo": repo,
            "model": "dpe",
            "triton-url": "",
            "budget": "8",
            "mining-root": str(tmp_path / "mining"),
            "queues": str(tmp_path / "queues"),
        },
        tmp_path / "wd",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    info = json.loads((tmp_path / "repo" / "dpe" / "1" / "avfleet.json").read_text())
    assert info["source_model"].endswith("r0/ensemble/model") and info["members"] == 2
    queue = json.loads((tmp_path / "queues" / "latest.json").read_text())
    assert queue["tasks"] == 8
    selection = read_parquet(str(tmp_path / "mining" / DATE / "r0" / "selection.parquet"))
    assert selection["model"].eq("dpe:1").all()
