"""Render the Hera builders into manifests/ and detect drift.

`avfleet workflows render` (check) exits 1 when a committed file differs from
what the builders produce; `--write` regenerates them (`make render`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import yaml

from avfleet.workflows import deploy, fleet_index, mining, nas, train

HEADER = (
    "# Rendered from src/avfleet/workflows by `avfleet workflows render --write`. Do not edit.\n"
)

BUILDERS: dict[str, Callable[[], object]] = {
    "workflows/fleet-index.yaml": fleet_index.build,
    "workflows/train.yaml": train.build,
    "workflows/nightly-mining.yaml": mining.build_nightly,
    "workflows/data-engine.yaml": mining.build_data_engine,
    "workflows/deploy.yaml": deploy.build,
    "workflows/nas.yaml": nas.build_nas,
    "workflows/sweep.yaml": nas.build_sweep,
}


def default_manifests_dir() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[3] / "manifests"


def render_all() -> dict[str, str]:
    """Relative path -> YAML text of every rendered manifest."""
    out = {}
    for rel, build in BUILDERS.items():
        doc = build().to_dict()  # type: ignore[attr-defined]
        out[rel] = HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)
    return out


def check_or_write(manifests_dir: str | None, *, write: bool) -> list[str]:
    """Paths that differ from the builders (written when `write`)."""
    root = pathlib.Path(manifests_dir) if manifests_dir else default_manifests_dir()
    changed = []
    for rel, text in render_all().items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            changed.append(str(path))
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return changed
