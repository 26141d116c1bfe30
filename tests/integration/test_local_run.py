"""`avfleet local-run` of the rendered fleet-index YAML gives the same index as `avfleet index`."""

from __future__ import annotations

import subprocess
import sys

from avfleet.index.table import IndexTable
from avfleet.workflows.render import default_manifests_dir
from tests.integration.conftest import DATE


def avfleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "avfleet", *args], capture_output=True, text=True, timeout=600
    )


def test_local_run_matches_avfleet_index(corrupt_fleet_uri, tmp_path):
    via_cli, via_workflow = str(tmp_path / "cli"), str(tmp_path / "workflow")
    cli = avfleet("index", "--recordings", corrupt_fleet_uri, "--date", DATE, "--index", via_cli)
    assert cli.returncode == 0, cli.stderr[-3000:]
    manifest = str(default_manifests_dir() / "workflows" / "fleet-index.yaml")
    run = avfleet(
        "local-run",
        manifest,
        "-p",
        f"recordings={corrupt_fleet_uri}",
        "-p",
        f"date={DATE}",
        "-p",
        f"index={via_workflow}",
        "-p",
        "pushgateway=",
        "--workdir",
        str(tmp_path / "runs"),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Succeeded" in run.stdout and "quarantined=5" in run.stdout
    for table in ("frames", "files", "quarantine"):
        a = (
            IndexTable(via_cli)
            .read(table, [DATE])
            .drop(columns=["part_uri", "peak_rss_bytes", "scan_seconds"], errors="ignore")
        )
        b = (
            IndexTable(via_workflow)
            .read(table, [DATE])
            .drop(columns=["part_uri", "peak_rss_bytes", "scan_seconds"], errors="ignore")
        )
        assert a.equals(b), table


def test_bad_input_exits_with_a_permanent_code(tmp_path):
    bad_date = avfleet(
        "index",
        "--recordings",
        str(tmp_path),
        "--date",
        "2026-13-01",
        "--index",
        str(tmp_path / "i"),
    )
    assert bad_date.returncode == 78
    assert "IndexConfig.date" in bad_date.stderr
    job = subprocess.run(
        [
            sys.executable,
            "jobs/index_recordings.py",
            "--recordings",
            str(tmp_path),
            "--date",
            "nope",
            "--index",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert job.returncode == 78
