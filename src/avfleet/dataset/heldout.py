"""Held-out sets the way the fleet is: a test set drawn from the fleet's own world, and its
hazard-rich slice.

A held-out set must match what mining can reach: the same distribution of domains as the
pool (so no held-out domain is one the pool never holds), from recordings of its own seed
(never mined, never trained on). The long-tail hazards are a few percent of frames, so a
natural sample holds too few of their pixels to score them: the hazard slice adds frames of
the same held-out fleet that show one (the oracle says which), scored together with the
held-out set for the hazard IoU (train.evaluate.evaluate_with_slice), so false alarms on ordinary
frames still count against a hazard class.

    <root>/fleet, <root>/index                the held-out fleet and its index
    <root>/datasets/ds-...                    the held-out set and the hazard slice
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import OracleLabels
from avfleet.fleet.generate import generate_fleet
from avfleet.fleet.oracle import OracleLabeler
from avfleet.fleet.world import FleetSpec
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from avfleet.index.table import IndexTable


@dataclasses.dataclass(frozen=True)
class HeldOut:
    dataset_uri: str
    """The held-out set: a random sample of the held-out fleet's frames."""
    hazard_uri: str
    """Its hazard slice: other frames of the same fleet that show a hazard ('' if none does)."""
    hazard_frames: int


def build_heldout(
    spec: FleetSpec,
    root: str,
    *,
    frames: int,
    hazard_frames: int,
    spacing_s: float = 1.0,
    seed: int = 0,
    show_progress: bool | None = None,
) -> HeldOut:
    """Generate `spec` under root (a local folder), index it, and build both datasets.

    Candidates are one frame per `spacing_s` of every recording (neighbours in time are near
    duplicates); `frames` of them at random make the held-out set, and up to `hazard_frames`
    of the rest that show a hazard, spread evenly over them, the slice."""
    out = pathlib.Path(root)
    fleet, index = str(out / "fleet"), str(out / "index")
    done = out / "fleet" / ".complete"
    if not done.exists():
        generate_fleet(spec, fleet, show_progress=show_progress)
        done.write_text("ok\n")
    table = IndexTable(index)
    if spec.start_date not in table.dates():
        run_index(
            IndexConfig(recordings_uri=fleet, date=spec.start_date, out_uri=index), LoopEngine()
        )
    every = max(1, int(round(spacing_s * spec.camera_hz)))
    candidates = table.read("frames", [spec.start_date])
    candidates = candidates[candidates["frame_index"] % every == 0].sort_values("frame_id")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(candidates), min(frames, len(candidates)), replace=False)
    main = candidates.iloc[np.sort(picked)]
    rest = candidates.drop(candidates.index[picked])
    shows = np.array(OracleLabeler.from_uri(fleet).hazard_frames(rest), dtype=bool)
    hazards = rest[shows]
    if len(hazards) > hazard_frames:
        hazards = hazards.iloc[np.linspace(0, len(hazards) - 1, hazard_frames).astype(int)]

    def dataset(rows, name: str) -> str:  # noqa: ANN001
        selection = out / f"{name}.json"
        selection.write_text(json.dumps(sorted(rows["frame_id"])))
        return build_dataset(
            DatasetConfig(index_uri=index, selection=str(selection), out_uri=str(out / "datasets")),
            OracleLabels(fleet),
            show_progress=show_progress,
        ).uri

    return HeldOut(
        dataset_uri=dataset(main, "heldout"),
        hazard_uri=dataset(hazards, "hazards") if len(hazards) else "",
        hazard_frames=len(hazards),
    )
