"""`avfleet demo` end to end on a tiny fleet: fleet -> index -> train -> deploy -> mine -> summary."""

from __future__ import annotations

import json

from avfleet.demo import DemoConfig, run_demo


def test_demo_runs_the_loop(tmp_path):
    out = tmp_path / "demo"
    config = DemoConfig(
        out_dir=str(out),
        vehicles=3,
        minutes_per_day=2.0,
        train_frames=96,
        epochs=1,
        members=2,
        rounds=1,
        budget=16,
    )
    assert run_demo(config) == 0
    report = json.loads(next((out / "index" / "_runs").glob("*/report.json")).read_text())
    assert report["num_quarantined"] == 3 and report["num_files"] == 6
    for kind in ("ensemble", "deployable"):
        assert (out / "runs" / "round-0" / kind / "model" / "evaluation.json").exists()
    assert (out / "report" / "domain_mix.png").stat().st_size > 0
    # The deployable net trained against a budget from this machine's latency table; a run this
    # short (6 steps) cannot meet it, and says so rather than pretending.
    deployable = json.loads(
        (out / "runs" / "round-0" / "deployable" / "model" / "arch.json").read_text()
    )
    budget = deployable["compression"]["budget"]
    assert budget["budget"]["target_latency_ms"] > 0 and budget["budget"]["target_params"] > 0
    assert (budget["met"] is True) == (
        budget["predicted_latency_ms"] <= budget["budget"]["target_latency_ms"]
        and budget["parameters"] <= budget["budget"]["target_params"]
    )
    assert (out / "latency" / "lut.json").exists()
    # Deployed: validated on the local bench, promoted; the first mining round uses that version.
    pointer = json.loads((out / "registry" / "promoted.json").read_text())
    record = json.loads(open(pointer["record_uri"]).read())
    assert record["verdict"]["passed"] and record["export"]["model_uri"].endswith(
        "deployable/model"
    )
    mined = json.loads((out / "loop" / "mining" / "round-1" / "run.json").read_text())
    assert mined["model"] == pointer["model_ref"] == "dpe:1"
    # One round of the loop: mined through Triton, labeled, dataset grown, retrained.
    queue = json.loads((out / "loop" / "mining" / "round-1" / "queue.json").read_text())
    assert len(queue) == 16
    first = json.loads((out / "runs" / "round-0" / "ensemble" / "config.json").read_text())
    grown = json.loads((out / "loop" / "runs" / "round-1" / "ensemble" / "config.json").read_text())
    manifest = json.loads(open(grown["dataset_uri"] + "/manifest.json").read())
    assert manifest["base"] == first["dataset_uri"] and manifest["num_frames"] == 96 + 16
    assert (out / "loop" / "runs" / "round-1" / "ensemble" / "model" / "weights.pt").exists()
    assert (out / "report" / "rounds.png").stat().st_size > 0
