"""The built wheel, installed in a fresh virtualenv outside the checkout, is a working avfleet.

Nothing here may reach into the repository: the wheel carries its manifests,
job scripts and infra files as package data, and the venv gets only what the
package (with its [spark] extra) declares, at the versions requirements.txt
pins (uv, from its cache where `make setup` filled it).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[2]
UV = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")


def run(*argv: str, cwd: pathlib.Path, env: dict | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[pathlib.Path, dict]:
    """(a working directory outside the checkout, the environment of a venv holding the wheel)."""
    if UV is None:
        pytest.skip("uv is not installed (make setup installs it)")
    root = tmp_path_factory.mktemp("wheel")
    wheels = root / "dist"
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", str(wheels), str(REPO), cwd=root,
    )  # fmt: skip
    (wheel,) = wheels.glob("avfleet-*.whl")
    venv = root / "venv"
    run(UV, "venv", "-q", "--python", sys.executable, str(venv), cwd=root)
    run(
        UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
        f"{wheel}[spark]", "-c", str(REPO / "requirements.txt"), cwd=root,
    )  # fmt: skip
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(root)),
        "JAVA_HOME": os.environ.get("JAVA_HOME", ""),
        "VIRTUAL_ENV": str(venv),
    }
    work = root / "work"
    work.mkdir()
    return work, env


def test_version_and_where_it_is_imported_from(installed):
    work, env = installed
    assert run("avfleet", "--version", cwd=work, env=env).startswith("avfleet ")
    where = run(
        "python", "-c", "import avfleet, avfleet.resources as r; "
        "print(avfleet.__file__); print(r.manifests_dir())", cwd=work, env=env,
    ).split()  # fmt: skip
    assert all(not p.startswith(str(REPO)) for p in where), where
    assert "site-packages" in where[1]


def test_the_packaged_manifests_match_what_the_builders_render(installed):
    work, env = installed
    run("avfleet", "workflows", "render", cwd=work, env=env)  # check mode: exit 0 or 1


def test_a_small_local_run_indexes_a_fleet(installed):
    work, env = installed
    fleet, index = work / "fleet", work / "index"
    run(
        "avfleet", "fleet", "generate", "--out", str(fleet), "--vehicles", "1",
        "--minutes-per-day", "0.2", "--segment-s", "6", "--workers", "1", cwd=work, env=env,
    )  # fmt: skip
    manifests = run(
        "python", "-c", "import avfleet.resources as r; print(r.manifests_dir())",
        cwd=work, env=env,
    ).strip()  # fmt: skip
    spec = json.loads((fleet / "fleet.json").read_text())["spec"]
    out = run(
        "avfleet", "local-run", f"{manifests}/base/workflows/fleet-index.yaml",
        "-p", f"recordings={fleet}", "-p", f"date={spec['start_date']}", "-p", f"index={index}",
        "-p", "pushgateway=", "--workdir", str(work / "runs"), cwd=work, env=env,
    )  # fmt: skip
    assert "Succeeded" in out
    frames = run(
        "python", "-c",
        f"from avfleet.index.table import IndexTable; print(len(IndexTable({str(index)!r}).read('frames')))",
        cwd=work, env=env,
    )  # fmt: skip
    assert int(frames) > 0
