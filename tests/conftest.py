"""Shared fixtures: where ../shared/testdata is, and skips that say how to get it."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("AVFLEET_SHARED", REPO_ROOT.parent / "shared"))
TESTDATA = SHARED / "testdata"


def shared_testdata(name: str) -> pathlib.Path:
    path = TESTDATA / name
    if not path.is_dir():
        pytest.skip(
            f"{path} is absent: clone the project with ../shared beside it (or set AVFLEET_SHARED)"
        )
    return path


def tool_path(name: str) -> str | None:
    """A tool tools/build.sh builds ($AVFLEET_TOOLS/bin, default ~/.cache/avfleet-tools/bin),
    else one on PATH; None where neither has it."""
    import shutil

    tools = os.environ.get("AVFLEET_TOOLS", os.path.expanduser("~/.cache/avfleet-tools"))
    path = os.path.join(tools, "bin", name)
    return path if os.access(path, os.X_OK) else shutil.which(name)


def go_module_dir(module: str, tools_dir: pathlib.Path, *parts: str) -> pathlib.Path | None:
    """`parts` inside the source of `module` as the go.mod in `tools_dir` pins it, from the Go
    module cache; None without a go command, or when the module is not downloaded (`go list -m`
    then prints an empty Dir and succeeds: a relative path would name a folder of this repo)."""
    import shutil
    import subprocess

    if not shutil.which("go"):
        return None
    done = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", module], cwd=tools_dir,
                          capture_output=True, text=True)  # fmt: skip
    found = done.stdout.strip()
    if done.returncode != 0 or not found or not os.path.isabs(found):
        return None
    path = pathlib.Path(found, *parts)
    return path if path.is_dir() else None


def tool(name: str) -> str:
    """`tool_path`, or the test skips saying how to get it."""
    path = tool_path(name)
    if not path:
        pytest.skip(f"{name} is not built: run tools/build.sh (make test does)")
    return path
