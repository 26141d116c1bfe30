"""`avfleet demo` end to end on a tiny fleet: fleet -> index workflow -> train workflow -> summary."""

from __future__ import annotations

import json

from avfleet.demo import DemoConfig, run_demo


def test_demo_runs_the_loop(tmp_path):
    out = tmp_path / "demo"
    config = DemoConfig(
        out_dir=str(out), vehicles=3, minutes_per_day=2.0, train_frames=96, epochs=1, members=2
    )
    assert run_demo(config) == 0
    report = json.loads(next((out / "index" / "_runs").glob("*/report.json")).read_text())
    assert report["num_quarantined"] == 3 and report["num_files"] == 6
    for kind in ("ensemble", "deployable"):
        assert (out / "runs" / "round-0" / kind / "model" / "evaluation.json").exists()
    assert (out / "report" / "domain_mix.png").stat().st_size > 0
