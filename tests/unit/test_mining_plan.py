"""The nightly plan: yesterday in the fleet's timezone, the model version, and queue publishing."""

from __future__ import annotations

import json

import pytest

from avfleet import taxonomy
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.mining.plan import plan_mining, publish_queue


def repo_with_versions(tmp_path, n):
    for v in range(1, n + 1):
        d = tmp_path / "repo" / "dpe" / str(v)
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(b"x")
    return str(tmp_path / "repo")


def test_yesterday_is_taken_in_the_fleet_timezone(tmp_path):
    repo = repo_with_versions(tmp_path, 3)
    # 01:30 UTC on the 21st is still the 20th in Los Angeles: yesterday there is the 19th.
    plan = plan_mining("2026-11-21T01:30:00Z", "America/Los_Angeles", "/m", repo, "dpe")
    assert plan == {"date": "2026-11-19", "model-ref": "dpe:3", "out": "/m/2026-11-19/dpe-v3"}
    assert plan_mining("2026-11-21T01:30:00Z", "UTC", "/m", repo, "dpe:2")["date"] == "2026-11-20"
    backfill = plan_mining("2026-11-21T01:30:00Z", "UTC", "/m", repo, "dpe", date="2026-10-01")
    assert backfill["date"] == "2026-10-01"


def test_bad_plans_are_clear(tmp_path):
    repo = repo_with_versions(tmp_path, 0)
    with pytest.raises(PermanentError, match="no published version"):
        plan_mining("2026-11-21T01:30:00Z", "UTC", "/m", repo, "dpe")
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        plan_mining("2026-11-21T01:30:00Z", "Mars/Olympus", "/m", repo, "dpe")
    with pytest.raises(ConfigError, match="no UTC offset"):
        plan_mining("2026-11-21T01:30:00", "UTC", "/m", repo, "dpe")
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        plan_mining("2026-11-21T01:30:00Z", "UTC", "/m", repo, "dpe", date="yesterday")


def test_publish_queue_is_idempotent(tmp_path):
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps([{"id": 1, "data": {"frame_id": "f"}}]))
    for _ in range(2):
        published = publish_queue(str(queue), str(tmp_path / "queues"), "2026-11-20")
    assert json.loads(open(published).read()) == json.loads(queue.read_text())
    latest = json.loads((tmp_path / "queues" / "latest.json").read_text())
    assert latest["date"] == "2026-11-20" and latest["tasks"] == 1
    assert sorted(p.name for p in (tmp_path / "queues").iterdir()) == [
        "2026-11-20.json",
        "label-config.xml",  # the Label Studio project's config, beside its tasks
        "latest.json",
    ]
    assert open(latest["label_config"]).read() == taxonomy.label_studio_config()
