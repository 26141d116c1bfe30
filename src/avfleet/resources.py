"""The files avfleet ships beside its code, read through importlib.resources.

`avfleet/data/` holds the rendered manifests (kustomize base, components,
overlays), the job scripts the workflows run (what images hold under
/opt/avfleet/jobs) and the rendered infra files (Prometheus rules, Grafana
dashboards, the Label Studio config). In a checkout these are links to the
repository's own manifests/, jobs/ and infra/, where kustomize, the
Dockerfiles and people look for them; a built wheel carries copies, so an
installed avfleet renders, checks and runs workflows without a checkout.
"""

from __future__ import annotations

import pathlib
from importlib import resources


def data_root() -> pathlib.Path:
    """avfleet/data as a directory (avfleet is installed as files, never from a zip)."""
    root = resources.files("avfleet") / "data"
    if not isinstance(root, pathlib.Path) or not root.is_dir():
        raise FileNotFoundError(f"avfleet's package data is not a directory on disk: {root}")
    return root


def manifests_dir() -> pathlib.Path:
    """manifests/: base/, components/, overlays/{local,staging,prod}/."""
    return data_root() / "manifests"


def jobs_dir() -> pathlib.Path:
    """The job scripts (index_recordings.py, train.py, search.py, mine.py)."""
    return data_root() / "jobs"


def infra_dir() -> pathlib.Path:
    """Rendered files outside Kubernetes: Prometheus rules, Grafana JSON, Label Studio config."""
    return data_root() / "infra"
