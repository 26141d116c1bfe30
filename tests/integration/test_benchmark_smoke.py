"""Every benchmark of this suite runs in its smoke mode (tiny sizes), so none can rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, tool

pytestmark = pytest.mark.integration


SCRIPTS = sorted(p.name for p in (REPO_ROOT / "benchmarks").glob("[a-z]*.py"))


def test_every_benchmark_is_listed():
    assert "compression.py" in SCRIPTS and "mining_serving.py" in SCRIPTS and len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_mode_runs(script, tmp_path):
    if script == "triton_perf.py":
        tool("perf_analyzer")  # Triton's load generator, from tools/build.sh
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), "--smoke"],
        env={**os.environ, "AVFLEET_BENCH_RESULTS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert any(tmp_path.glob("*-smoke.json")), "no result saved"
