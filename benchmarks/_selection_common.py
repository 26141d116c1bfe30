"""Shared by the selection benchmarks (selection_rounds.py, pseudo_domain.py): the long-tail
pool, the held-out fleet of the same world with its hazard slice, and label-bound trainings."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
from _common import RESULTS, SMOKE, cached_fleet
from _train_common import _indexed

from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.heldout import HeldOut, build_heldout
from avfleet.dataset.labels import OracleLabels
from avfleet.fleet.oracle import OracleLabeler
from avfleet.fleet.world import FleetSpec
from avfleet.index.table import IndexTable
from avfleet.mining.rounds import RoundsConfig, scored_model, train_ensemble
from avfleet.mining.select import SelectionConfig, temporal_dedup

POOL_SPEC = FleetSpec(seed=55, vehicles=16, minutes_per_day=4.0, segment_s=20.0)
"""One fleet day: 20-second recordings (~90 drives), hazards in ~5% of the candidates."""
HELDOUT_SPEC = FleetSpec(seed=56, vehicles=8, minutes_per_day=4.0, segment_s=20.0)
"""The held-out fleet: the same world (the same mix of domains), a seed of its own."""
HELDOUT_FRAMES, HELDOUT_HAZARD_FRAMES = (40, 8) if SMOKE else (500, 200)
STEPS, ROUND_STEPS = (4, 2) if SMOKE else (1200, 600)
"""From-scratch trainings (round 0, the whole pool) and each round's fine-tune, in steps. 600
and 300 were step-bound: the whole pool's ensemble reached 55.9 mIoU and 3.1 hazard IoU at
600 steps, and a single net on it 54.1 / 2.6 at 600, 59.5 / 13.5 at 1,200, 62.0 / 17.1 at
2,400 (lr 0.05), 62.4 / 15.8 at 1,200 with lr 0.1 (docs/selection.md)."""
LR = 0.1
CLASS_WEIGHTS = "enet"


@dataclasses.dataclass(frozen=True)
class Pool:
    fleet: str
    index: str
    frames: object  # the candidates (a DataFrame)
    hazard_share: float
    heldout: HeldOut


def pool() -> Pool:
    """The pool's fleet, index and candidates (temporal de-dup: all mining can ever pick), and
    the held-out set with its hazard slice; generated once and cached."""
    fleet = cached_fleet(POOL_SPEC)
    index = _indexed(fleet, POOL_SPEC.start_date)
    frames = IndexTable(index).read("frames", [POOL_SPEC.start_date])
    frames = temporal_dedup(frames, SelectionConfig(budget=1).window_s)
    frames = frames.sort_values("frame_id").reset_index(drop=True)
    shows = OracleLabeler.from_uri(fleet).hazard_frames(frames)
    spec = HELDOUT_SPEC
    if SMOKE:
        spec = dataclasses.replace(HELDOUT_SPEC, vehicles=2, minutes_per_day=1.0)
    heldout = build_heldout(
        spec,
        str(RESULTS / "cache" / f"heldout-{spec.seed}{'-smoke' if SMOKE else ''}"),
        frames=HELDOUT_FRAMES,
        hazard_frames=HELDOUT_HAZARD_FRAMES,
        spacing_s=1.0,
    )
    share = float(np.mean(shows)) if len(frames) else 0.0
    return Pool(fleet, index, frames, share, heldout)


def labeled_set(index: str, fleet: str, frame_ids: list[str], out: pathlib.Path) -> str:
    """A dataset of these frames with the oracle's labels."""
    out.mkdir(parents=True, exist_ok=True)
    selection = out / f"{len(frame_ids)}-frames.json"
    selection.write_text(json.dumps(sorted(frame_ids)))
    return build_dataset(
        DatasetConfig(index_uri=index, selection=str(selection), out_uri=str(out / "datasets")),
        OracleLabels(fleet),
        show_progress=False,
    ).uri


def base_config(p: Pool, seed: int, **kw) -> RoundsConfig:  # noqa: ANN003
    """The rounds' settings every arm shares: label-bound trainings, in-process scoring."""
    return RoundsConfig(
        root="",
        fleet_uri=p.fleet,
        index_uri=p.index,
        date=POOL_SPEC.start_date,
        heldout_uri=p.heldout.dataset_uri,
        hazard_heldout_uri=p.heldout.hazard_uri,
        first_run="",
        steps=ROUND_STEPS,
        warm_start=True,
        class_weights=CLASS_WEIGHTS,
        lr=LR,
        seed=seed,
        triton=False,
        **kw,
    )


def trained(dataset: str, run: pathlib.Path, base: RoundsConfig, **kw) -> str:  # noqa: ANN003
    """A from-scratch training of STEPS steps (round 0, the whole pool; `kw` overrides), reused
    when its run folder is complete."""
    if not (run / "result.json").exists():
        config = dataclasses.replace(base, **{"steps": STEPS, "warm_start": False, **kw})
        train_ensemble(dataset, str(run), config, kw.get("members"))
    return str(run)


def scored(run: str, base: RoundsConfig) -> dict:
    """A run's held-out scores (rounds.scored_model), cached beside it (scored.json)."""
    path = pathlib.Path(run) / "scored.json"
    if not path.exists():
        path.write_text(json.dumps(scored_model(f"{run}/model", base)))
    return json.loads(path.read_text())


def ms(values: list[float]) -> dict:
    """Mean, sample std and count."""
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
        "n": len(values),
    }
