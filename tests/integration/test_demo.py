"""`avfleet demo` end to end on a tiny fleet: fleet -> index -> train -> deploy -> mine -> summary."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from avfleet import taxonomy
from avfleet.demo import DemoConfig, run_demo

TINY = {
    "vehicles": 3,
    "minutes_per_day": 2.0,
    "segment_s": 60.0,
    "heldout_vehicles": 2,
    "heldout_minutes": 1.0,
    "heldout_frames": 48,
    "heldout_hazard_frames": 16,
    "train_frames": 96,
    "epochs": 1,
    "members": 2,
    "rounds": 1,
    "budget": 16,
}
"""A demo of a few minutes: 6 recordings (3 hostile), one round of the loop."""

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_dom(page) -> str:  # noqa: ANN001
    """The page's DOM after load, as headless Chromium (Debian's package) leaves it."""
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


def test_demo_runs_the_loop(tmp_path):
    out = tmp_path / "demo"
    config = DemoConfig(out_dir=str(out), **TINY)
    assert run_demo(config) == 0
    report = json.loads(next((out / "index" / "_runs").glob("*/report.json")).read_text())
    assert report["num_quarantined"] == 3 and report["num_files"] == 6
    for kind in ("ensemble", "deployable"):
        assert (out / "runs" / "round-0" / kind / "model" / "evaluation.json").exists()
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
    # Each task carries the mining model's mask as a Label Studio prediction to correct.
    from avfleet.dataset.labelstudio import mask_from_results

    for task in queue:
        (pred,) = task["predictions"]
        assert pred["model_version"] == "dpe:1" and 0 < pred["score"] <= 1
        assert mask_from_results(pred["result"]).shape == (64, 128)
    first = json.loads((out / "runs" / "round-0" / "ensemble" / "config.json").read_text())
    grown = json.loads((out / "loop" / "runs" / "round-1" / "ensemble" / "config.json").read_text())
    manifest = json.loads(open(grown["dataset_uri"] + "/manifest.json").read())
    assert manifest["base"] == first["dataset_uri"] and manifest["num_frames"] == 96 + 16
    assert (out / "loop" / "runs" / "round-1" / "ensemble" / "model" / "weights.pt").exists()
    # The random arm: the same round from the same first model, random picks, same budget.
    random = json.loads((out / "loop-random" / "rounds.json").read_text())
    assert random["selection"]["strategy"] == "random"
    assert random["rounds"][0]["dataset_frames"] == 96 + 16
    # The report: summary.json with the rounds of both arms, compression, the promoted engine.
    summary = json.loads((out / "report" / "summary.json").read_text())
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["miou_random"] == pytest.approx(random["rounds"][0]["miou"])
    assert sum(rounds[1]["picks_by_domain"].values()) == 16
    assert abs(sum(rounds[1]["fleet_share_by_domain"].values()) - 1) < 1e-6
    assert set(rounds[1]["miou_by_time_of_day"]) <= {"day", "twilight", "night"}
    assert summary["compression"]["params_after"] <= summary["compression"]["params_before"]
    assert summary["compression"]["miou_before"] is not None
    assert summary["promoted"]["release"] == pointer["release_id"]
    assert "search" not in summary
    assert [line.split(":")[0] for line in summary["story"] if line.startswith("Round")] == [
        "Round 1",
        "Round 1 hazards",
    ]
    # Each mined round says what it found of the long tail, for both arms (the oracle's view).
    for key in ("hazard_pick_share", "hazard_pick_share_random", "hazard_pool_share"):
        assert 0.0 <= rounds[1][key] <= 1.0, key
    assert rounds[1]["hazard_iou_random"] == random["rounds"][0]["hazard_iou"]
    assert set(rounds[1]["iou_per_class"]) <= set(taxonomy.NAMES)
    assert any(line.startswith("Round 1 hazards") for line in summary["story"])
    page = out / "report" / "index.html"
    html = page.read_text()
    assert not re.search(r"(src|href)=[\"']?https?:", html)  # self-contained: no network
    # `avfleet report --run` redraws both files from the run folder alone.
    shutil.rmtree(out / "report")
    subprocess.run(
        [sys.executable, "-m", "avfleet", "report", "--run", str(out)],
        check=True,
        capture_output=True,
    )
    assert json.loads((out / "report" / "summary.json").read_text())["rounds"] == rounds
    if CHROMIUM is None:
        pytest.skip("no chromium to render the report (.ci/run installs Debian's chromium)")
    dom = rendered_dom(page)
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    assert images >= 3 and loaded == images, dom[:2000]
