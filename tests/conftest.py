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
