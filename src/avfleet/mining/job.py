"""`avfleet mine`: one index date -> scores -> selection -> a labeling queue.

    <out>/run.json                     what this folder mines (date, model, index): reruns must match
    <out>/scores/shard-00000.parquet   per-frame scores of one shard of recordings (atomic, skipped if present)
    <out>/selection.parquet            the K picks, with rank, domain, quota and reason
    <out>/frames/<frame_id>.jpg        the picked frames' images, for the labeling tool
    <out>/queue.json                   Label Studio tasks, one per pick
    <out>/summary.json                 written last: the run is complete once it exists

The index partition is de-duplicated in time first (only candidates are
fetched and scored), then scored shard by shard with one ranged read per
frame; a killed run, rerun, skips finished shards, and everything after the
shards is rewritten whole, so no row is ever written twice.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np
import pandas as pd

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.core.metrics import JobMetrics, MetricsConfig
from avfleet.core.progress import progress
from avfleet.dataset.build import LINEAGE_COLUMNS, read_manifest
from avfleet.dataset.fetch import fetch_frames
from avfleet.index.table import IndexTable
from avfleet.mining.select import SelectionConfig, domain_of, select, temporal_dedup
from avfleet.serve.outputs import OUTPUTS, SCORES

log = logging.getLogger(__name__)
INDEX_ORDER = ["vehicle", "recording_id", "frame_index"]  # IndexTable.read's order


class Scorer(Protocol):
    def score_batches(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]: ...


class InProcessScorer:
    """The repository version's ONNX graph in ONNX Runtime here: the reference for the served path."""

    def __init__(self, onnx: bytes, threads: int = 2) -> None:
        from avfleet.bench.engines import ort_session

        self.session = ort_session(onnx, threads=threads)

    def score_batches(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for batch in batches:
            yield dict(
                zip(OUTPUTS, self.session.run(list(OUTPUTS), {"frames": batch}), strict=True)
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class MineConfig:
    index_uri: str
    """Frame index root."""
    date: str
    """Index date to mine, YYYY-MM-DD."""
    model: str
    """NAME:VERSION in the model repository."""
    out_uri: str
    """This mining run's folder (scores, selection, queue, report)."""
    selection: SelectionConfig
    """How the budget is spent over the scored frames."""
    labeled_uri: str | None = None
    """A dataset version whose frames are already labeled: never candidates again."""
    shard_recordings: int = 8
    """Recordings per shard: the unit a rerun skips."""
    batch_size: int = 32
    """Frames per scoring request."""
    storage: storage.StorageConfig = dataclasses.field(default_factory=storage.StorageConfig)
    """How to reach the index, recordings, repository and outputs."""
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    """Where metrics go."""
    pre_annotate_with: str = ""
    """A model folder (the scoring version's source ensemble) whose predicted masks go into
    each task's `predictions`, so labelers correct rather than draw; empty: none."""

    def __post_init__(self) -> None:
        if self.shard_recordings <= 0 or self.batch_size <= 0:
            raise ConfigError("shard_recordings", "shard size and batch size must be positive")


@dataclasses.dataclass(frozen=True)
class MineReport:
    frames_indexed: int
    candidates: int
    shards: int
    shards_skipped: int
    frames_scored: int
    frames_per_s: float
    selected: int
    selected_per_domain: dict[str, int]
    fleet_share_per_domain: dict[str, float]
    bytes_fetched: int
    frames_rejected: int = 0
    """Frames left out because their bytes failed a check (rejected.json says which and why)."""


def decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


def _batches(images: list[np.ndarray], size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(images), size):
        yield np.stack(images[i : i + size])


def _claim_folder(config: MineConfig) -> None:
    doc = {"date": config.date, "model": config.model, "index_uri": config.index_uri}
    uri = storage.join(config.out_uri, "run.json")
    if storage.exists(uri, config.storage):
        found = json.loads(storage.read_bytes(uri, config.storage))
        if found != doc:
            raise ConfigError(
                "out",
                f"{config.out_uri} holds a mining run of {found}, not {doc}: use another folder",
            )
        return
    storage.atomic_write_text(uri, json.dumps(doc, indent=2), config.storage)


def score_shard(
    frames: pd.DataFrame, scorer: Scorer, config: MineConfig, rejected: list[dict] | None = None
) -> tuple[pd.DataFrame, int]:
    """Fetch, decode and score one shard's frames; (rows with scores, bytes fetched).

    A frame whose bytes fail a check (avfleet.dataset.fetch) goes to `rejected`
    with its recording, offset and reason, and is not scored; the others are."""
    rejected = [] if rejected is None else rejected
    images, bytes_read = fetch_frames(frames, config.storage, rejected=rejected)
    frames = frames[frames["frame_id"].isin(images)]
    frames = frames.sort_values("frame_id").reset_index(drop=True)
    decoded = [decode_jpeg(images[f]) for f in frames["frame_id"]]
    outs = list(scorer.score_batches(_batches(decoded, config.batch_size)))
    rows = frames[LINEAGE_COLUMNS].copy()  # a pick traces back as a training row does
    for name in SCORES:
        rows[name] = np.concatenate([o[name].reshape(-1) for o in outs]).astype(np.float64)
    rows["class_probability"] = [list(map(float, p)) for o in outs for p in o["class_probability"]]
    rows["model"] = config.model
    return rows, bytes_read


def label_studio_tasks(
    selection: pd.DataFrame, frames_uri: str, predictions: dict[str, dict] | None = None
) -> list[dict]:
    """One Label Studio task per pick: the image to label and everything to trace it back;
    with `predictions` (frame_id -> a prediction), the model's mask to start from."""
    predictions = predictions or {}
    return [
        {
            "id": int(row.rank) + 1,
            "data": {
                "image": storage.join(frames_uri, f"{row.frame_id}.jpg"),
                "frame_id": row.frame_id,
                "recording_id": row.recording_id,
                "recording_uri": row.recording_uri,
                "frame_index": int(row.frame_index),
                "domain": row.domain,
                "reason": row.reason,
            },
            **({"predictions": [predictions[row.frame_id]]} if row.frame_id in predictions else {}),
        }
        for row in selection.itertuples()
    ]


def pre_annotations(
    model_uri: str, frames: dict[str, bytes], model_version: str, batch_size: int = 32
) -> dict[str, dict]:
    """frame_id -> Label Studio prediction: the ensemble mean's per-pixel argmax as brush
    layers, scored by its mean confidence."""
    import torch

    from avfleet.dataset import labelstudio
    from avfleet.train.loop import load_model

    model = load_model(model_uri).eval()
    ids = sorted(frames)
    out = {}
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        images = np.stack([decode_jpeg(frames[f]) for f in batch])
        with torch.no_grad():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
            probs = model(x).softmax(2).mean(1)  # (B, K, H, W), the members' mean
        confidence, masks = probs.max(1)
        for i, f in enumerate(batch):
            out[f] = labelstudio.prediction(
                masks[i].numpy().astype(np.uint8), model_version, float(confidence[i].mean())
            )
    return out


def run_name(out_uri: str) -> str:
    """A mining run's name: its output folder's last part (the workflow's run-name)."""
    return out_uri.rstrip("/").rsplit("/", 1)[-1]


def day_candidates(
    index: IndexTable, date: str, window_s: float, batch_rows: int = 65_536
) -> tuple[pd.DataFrame, int, pd.Series]:
    """A date's candidates (`temporal_dedup` of its frames, in the index's order), how many
    frames it indexed, and their share per domain.

    Read a batch of rows at a time, so the job holds the candidates, not the day (it held
    the day's whole frames table, ~1.7 KB per frame: benchmarks/mining_growth.py). A
    recording's rows are contiguous in its part, so the rows of each batch's last recording
    wait for the next batch and the result equals de-duplicating the whole day; a last pass
    over the candidates keeps the window even for a recording split some other way."""
    kept: list[pd.DataFrame] = []
    carry: pd.DataFrame | None = None
    indexed, per_domain = 0, pd.Series(dtype="float64")
    for batch in index.iter_batches("frames", date, batch_rows):
        indexed += len(batch)
        per_domain = per_domain.add(domain_of(batch).value_counts(), fill_value=0)
        if carry is not None:
            batch = pd.concat([carry, batch], ignore_index=True)
        tail = batch["recording_id"] == batch["recording_id"].iloc[-1]
        carry = batch[tail]
        kept.append(temporal_dedup(batch[~tail], window_s))
    if carry is not None:
        kept.append(temporal_dedup(carry, window_s))
    if not kept:
        return pd.DataFrame(), 0, per_domain
    candidates = temporal_dedup(pd.concat(kept, ignore_index=True), window_s)
    candidates = candidates.sort_values(INDEX_ORDER, kind="stable").reset_index(drop=True)
    shares = (per_domain / indexed).sort_index().sort_values(ascending=False, kind="stable")
    return candidates, indexed, shares


def run_mine(
    config: MineConfig, scorer: Scorer, *, show_progress: bool | None = None
) -> MineReport:
    st = config.storage
    candidates, frames_indexed, fleet_domains = day_candidates(
        IndexTable(config.index_uri, st), config.date, config.selection.window_s
    )
    if not frames_indexed:
        raise PermanentError(f"{config.index_uri}: no indexed frames on {config.date}")
    _claim_folder(config)
    # De-dup first, then drop what is labeled: the candidates are one fixed grid per date, and
    # a labeled frame's near-duplicates in time do not come back as candidates.
    if config.labeled_uri:
        labeled = read_manifest(config.labeled_uri, st)["frame_ids"]
        candidates = candidates[~candidates["frame_id"].isin(labeled)].reset_index(drop=True)
    recordings = sorted(candidates["recording_id"].unique())
    shards = [
        recordings[i : i + config.shard_recordings]
        for i in range(0, len(recordings), config.shard_recordings)
    ]
    scored, skipped, bytes_fetched, started = 0, 0, 0, time.time()
    parts: list[pd.DataFrame] = []
    rejected: list[dict] = []
    with progress("scoring shards", len(shards), show_progress) as bar:
        for i, shard in enumerate(shards):
            uri = storage.join(config.out_uri, "scores", f"shard-{i:05d}.parquet")
            rejected_uri = storage.join(config.out_uri, "scores", f"shard-{i:05d}.rejected.json")
            if storage.exists(uri, st):  # finished by an earlier attempt
                parts.append(storage.read_parquet(uri, st))
                rejected += json.loads(storage.read_bytes(rejected_uri, st))
                skipped += 1
            else:
                shard_rejected: list[dict] = []
                rows, n = score_shard(
                    candidates[candidates["recording_id"].isin(shard)],
                    scorer,
                    config,
                    shard_rejected,
                )
                # the rejects first: a shard's scores file means both are there
                storage.atomic_write_text(rejected_uri, json.dumps(shard_rejected), st)
                rejected += shard_rejected
                storage.write_parquet(rows, uri, st)
                parts.append(rows)
                scored += len(rows)
                bytes_fetched += n
            bar.advance()
    seconds = time.time() - started
    scores = pd.concat(parts, ignore_index=True)
    if len(scores) + len(rejected) != len(candidates) or not scores["frame_id"].is_unique:
        raise PermanentError(
            f"{config.out_uri}/scores holds {len(scores)} rows and {len(rejected)} rejected "
            f"frames for {len(candidates)} candidates"
        )
    selection = select(scores, config.selection)
    frames_uri = storage.join(config.out_uri, "frames")
    late: list[dict] = []  # changed between scoring and now: out of the queue too
    picked, n = fetch_frames(
        candidates[candidates["frame_id"].isin(selection["frame_id"])], st, rejected=late
    )
    bytes_fetched += n
    rejected += late
    selection = selection[selection["frame_id"].isin(picked)].reset_index(drop=True)
    storage.write_parquet(selection, storage.join(config.out_uri, "selection.parquet"), st)
    for r in rejected:
        log.warning(
            "frame %s of %s at offset %s not mined: %s",
            r["frame_id"], r["recording_uri"], r["offset"], r["reason"],
        )  # fmt: skip
    storage.atomic_write_text(
        storage.join(config.out_uri, "rejected.json"), json.dumps(rejected, indent=2), st
    )
    for frame_id, jpeg in picked.items():
        storage.atomic_write_bytes(storage.join(frames_uri, f"{frame_id}.jpg"), jpeg, st)
    predictions = (
        pre_annotations(config.pre_annotate_with, picked, config.model)
        if config.pre_annotate_with
        else None
    )
    storage.atomic_write_text(
        storage.join(config.out_uri, "queue.json"),
        json.dumps(label_studio_tasks(selection, frames_uri, predictions), indent=2),
        st,
    )
    report = MineReport(
        frames_indexed=frames_indexed,
        candidates=len(candidates),
        shards=len(shards),
        shards_skipped=skipped,
        frames_scored=scored,
        frames_per_s=scored / seconds if seconds > 0 and scored else 0.0,
        selected=len(selection),
        selected_per_domain={k: int(v) for k, v in selection["domain"].value_counts().items()},
        fleet_share_per_domain={k: float(v) for k, v in fleet_domains.items()},
        bytes_fetched=bytes_fetched,
        frames_rejected=len(rejected),
    )
    _finish_metrics(config, report, scores, scorer)
    storage.atomic_write_text(
        storage.join(config.out_uri, "summary.json"),
        json.dumps(dataclasses.asdict(report), indent=2),
        st,
    )
    return report


def _finish_metrics(
    config: MineConfig, report: MineReport, scores: pd.DataFrame, scorer: Scorer
) -> None:
    metrics = JobMetrics("mine", {"date": config.date}, run_id=run_name(config.out_uri))
    metrics.set("frames_scored_per_second", report.frames_per_s, "Frames scored per second")
    metrics.set("frames_scored", report.frames_scored, "Frames scored by this run")
    for name in SCORES:
        for q in (0.5, 0.9, 0.99):
            metrics.set(
                "score",
                float(scores[name].quantile(q)),
                "Score distribution: quantiles over the candidates",
                {"score": name, "quantile": str(q)},
            )
    for domain, n in report.selected_per_domain.items():
        metrics.set("selected_frames", n, "Frames selected for labeling", {"domain": domain})
    latencies = getattr(scorer, "latencies_s", None)
    if latencies:
        for q in (0.5, 0.99):
            metrics.set(
                "triton_latency_seconds",
                float(np.quantile(latencies, q)),
                "Triton request latency",
                {"quantile": str(q)},
            )
    metrics.finish(config.metrics, storage.join(config.out_uri, "metrics.prom"), config.storage)
