"""`avfleet dataset build`: selection -> fetched, labeled frames -> a versioned training set.

    <out>/<version>/data/part-00000.parquet ...   rows: image_jpeg, mask_png, tags, lineage,
                                                  label_version and label_source
    <out>/<version>/manifest.json                 written last: the dataset exists once it does

Every row says where its label came from (`label_source`: human, oracle or
pseudo; see avfleet.dataset.labels) and the manifest counts them
(`frames_per_source`, `label_versions`): pseudo-labels extend a human-labeled
version as a third source and are never mistaken for it.

The version is content-addressed: a hash of the selected frame ids, their
image bytes, their label bytes and the label version. Building the same
selection with the same labels again finds the version complete and returns it;
a half-written version (no manifest) is rebuilt. Training reads the data files
through Petastorm; every row traces back to its recording and frame.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
import pandas as pd

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.core.progress import progress
from avfleet.dataset.fetch import fetch_frames
from avfleet.dataset.labels import SOURCES, Labeler
from avfleet.dataset.unischema import materialize
from avfleet.index.table import IndexTable

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ENGINES = ("auto", "loop", "spark")
ROWS_PER_ROW_GROUP = 32  # Petastorm shards by row group: small groups spread over ranks evenly
LINEAGE_COLUMNS = [
    "frame_id",
    "recording_id",
    "recording_uri",
    "frame_index",
    "log_time_ns",
    "vehicle",
    "date",
    "time_of_day",
    "weather",
    "road_type",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    index_uri: str
    """Frame index root."""
    selection: str
    """`random:N` (a seeded sample of the index) or the URI of a table with a frame_id column."""
    out_uri: str
    """Datasets root; each version is a folder under it."""
    dates: tuple[str, ...] = ()
    """Index dates to select from; empty means every committed date."""
    seed: int = 0
    """Seed of random selections."""
    exclude_uri: str | None = None
    """A dataset version whose frames must not be selected again (random selections)."""
    base_uri: str | None = None
    """A dataset version to extend: the new version holds its frames (labels as they were)
    plus the selected ones; selected frames already in it are not fetched again."""
    engine: str = "auto"
    """loop (one process), spark, or auto: spark from spark_min_frames selected frames."""
    spark_master: str | None = None
    """Spark master for engine spark (None: what spark-submit chose, else local[*])."""
    spark_min_frames: int = 20_000
    """Selections this large build on Spark under engine auto."""
    frames_per_task: int = 5_000
    """On Spark, about this many frames per task (at least 2 tasks per core): a task holds its
    part's images and masks until it writes them, so this bounds a worker's memory."""
    storage: storage.StorageConfig = dataclasses.field(default_factory=storage.StorageConfig)
    """How to reach index, recordings and outputs."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError("engine", f"{self.engine!r}: expected one of {ENGINES}")
        if self.frames_per_task <= 0:
            raise ConfigError("frames_per_task", f"must be positive, got {self.frames_per_task}")


@dataclasses.dataclass(frozen=True)
class DatasetVersion:
    uri: str
    version: str
    num_frames: int
    label_version: str
    frames_per_domain: dict[str, int]
    reused: bool


def resolve_selection(config: DatasetConfig) -> pd.DataFrame:
    """The index rows of the selected frames, sorted by frame_id; unknown frame ids are an error."""
    table = IndexTable(config.index_uri, config.storage)
    frames = table.read("frames", list(config.dates) or None)
    if config.exclude_uri:
        frames = frames[
            ~frames["frame_id"].isin(read_manifest(config.exclude_uri, config.storage)["frame_ids"])
        ]
    if config.selection.startswith("random:") and config.base_uri:  # N frames new to the base
        base = read_manifest(config.base_uri, config.storage)["frame_ids"]
        frames = frames[~frames["frame_id"].isin(base)]
    if config.selection.startswith("random:"):
        try:
            n = int(config.selection.split(":", 1)[1])
        except ValueError:
            raise ConfigError("selection", f"{config.selection!r}: expected random:N") from None
        if n <= 0 or n > len(frames):
            raise ConfigError(
                "selection", f"asked for {n} random frames; the index offers {len(frames)}"
            )
        rng = np.random.default_rng(config.seed)
        chosen = frames.iloc[np.sort(rng.choice(len(frames), n, replace=False))]
    else:
        wanted = _read_frame_ids(config.selection, config.storage)
        chosen = frames[frames["frame_id"].isin(wanted)]
        missing = sorted(set(wanted) - set(chosen["frame_id"]))
        if missing:
            raise PermanentError(
                f"{config.selection}: {len(missing)} selected frame(s) are not in the index {config.index_uri}, e.g. {missing[:3]}"
            )
    return chosen.sort_values("frame_id").reset_index(drop=True)


def _read_frame_ids(uri: str, storage_config: storage.StorageConfig) -> list[str]:
    import io

    import pyarrow.parquet as pq

    data = storage.read_bytes(uri, storage_config)
    if uri.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data), columns=["frame_id"])
        return table["frame_id"].to_pylist()
    if uri.endswith(".json"):
        doc = json.loads(data)
        return list(doc["frame_ids"] if isinstance(doc, dict) else doc)
    raise ConfigError("selection", f"{uri}: expected a .parquet table or .json list of frame ids")


def build_part(
    frames: pd.DataFrame,
    labeler: Labeler,
    part_uri: str,
    storage_config: storage.StorageConfig,
    on_recording: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Fetch and label `frames` (whole recordings), write them to `part_uri`; one digest row per frame.

    The unit of work of both engines: a Spark task runs it on its recordings,
    the loop on all of them. What it returns (frame_id, image and mask sha256,
    part_uri, bytes_read of the part) is all the driver needs to name the version.
    """
    images: dict[str, bytes] = {}
    bytes_read = 0
    rejected: list[dict] = []  # frames whose bytes fail a check: reported, left out
    for _, group in frames.groupby("recording_uri", sort=True):
        fetched, n = fetch_frames(group, storage_config, rejected=rejected)
        images.update(fetched)
        bytes_read += n
        if on_recording:
            on_recording()
    bad = frames[frames["frame_id"].isin([r["frame_id"] for r in rejected])]
    frames = frames[frames["frame_id"].isin(images)]
    masks = labeler.labels(frames)
    rows = frames[LINEAGE_COLUMNS].sort_values("frame_id").reset_index(drop=True)
    rows["image_jpeg"] = [images[f] for f in rows["frame_id"]]
    rows["mask_png"] = [masks[f] for f in rows["frame_id"]]
    rows["label_version"] = labeler.label_version
    rows["label_source"] = source_of(labeler)
    _write_parquet(rows, part_uri, storage_config)
    out = digest_rows(rows, part_uri, bytes_read)
    if rejected:
        why = {r["frame_id"]: json.dumps(r, sort_keys=True) for r in rejected}
        lost = bad[LINEAGE_COLUMNS].assign(
            image_sha256="", mask_sha256="", part_uri="", bytes_read=bytes_read,
            label_version=labeler.label_version, label_source=source_of(labeler),
        )  # fmt: skip
        lost["rejected"] = lost["frame_id"].map(why)
        out = pd.concat([out, lost[out.columns]], ignore_index=True)
    return out


def source_of(labeler: Labeler) -> str:
    source = getattr(labeler, "source", "")
    if source not in SOURCES:
        raise ConfigError("labels", f"labeler source {source!r}: expected one of {SOURCES}")
    return source


def _row_sources(rows: pd.DataFrame) -> pd.Series:
    """Each row's label source; versions written before sources were recorded say it in the
    label version's prefix (oracle-..., tool-...)."""
    if "label_source" in rows:
        return rows["label_source"]
    return rows["label_version"].map(lambda v: "oracle" if v.startswith("oracle-") else "human")


def digest_rows(rows: pd.DataFrame, part_uri: str, bytes_read: int) -> pd.DataFrame:
    """What the driver keeps of a part's rows: ids, content digests, domains, where they are."""
    return pd.DataFrame(
        {
            "frame_id": rows["frame_id"],
            "image_sha256": [hashlib.sha256(b).hexdigest() for b in rows["image_jpeg"]],
            "mask_sha256": [hashlib.sha256(b).hexdigest() for b in rows["mask_png"]],
            "part_uri": part_uri,
            "bytes_read": bytes_read,
            "time_of_day": rows["time_of_day"],
            "weather": rows["weather"],
            "road_type": rows["road_type"],
            "recording_uri": rows["recording_uri"],
            "label_version": rows["label_version"],
            "label_source": _row_sources(rows),
            "rejected": "",  # JSON {frame_id, recording_uri, offset, reason} for a rejected frame
        }
    )


class BuildEngine(Protocol):
    def build_parts(
        self,
        selected: pd.DataFrame,
        labeler: Labeler,
        staging_uri: str,
        storage_config: storage.StorageConfig,
    ) -> pd.DataFrame:
        """Digest rows (see `build_part`) of every selected frame, parts written under staging_uri."""
        ...


class LoopEngine:
    """One process: small selections (the demo's), and the baseline."""

    def __init__(self, show_progress: bool | None = None) -> None:
        self.show_progress = show_progress

    def build_parts(self, selected, labeler, staging_uri, storage_config):  # noqa: ANN001, ANN201
        recordings = selected["recording_uri"].nunique()
        with progress("fetching frames", recordings, self.show_progress) as bar:
            part = storage.join(staging_uri, "part-00000.parquet")
            return build_part(selected, labeler, part, storage_config, bar.advance)


def build_dataset(
    config: DatasetConfig,
    labeler: Labeler,
    *,
    engine: BuildEngine | None = None,
    show_progress: bool | None = None,
) -> DatasetVersion:
    """Build (or find complete) the version of this selection and labels.

    Parts are staged under <out>/_staging/<build id>/ by the engine, then the
    version is named from the frames' digests; the parts are copied into
    <version>/data/ and the manifest is written last. A crash anywhere leaves
    either no manifest (the next build redoes the version) or a complete one.
    """
    selected = resolve_selection(config)
    base = base_digests(config.base_uri, config.storage) if config.base_uri else None
    if base is not None:
        selected = selected[~selected["frame_id"].isin(base["frame_id"])].reset_index(drop=True)
    expected = sorted([*selected["frame_id"], *(base["frame_id"] if base is not None else [])])
    if not expected:
        raise ConfigError("selection", f"{config.selection}: selects no frames")
    engine = engine or _engine_for(config, len(selected), show_progress)
    staging = storage.join(config.out_uri, "_staging", uuid.uuid4().hex)
    try:
        parts = (
            [engine.build_parts(selected, labeler, staging, config.storage)]
            if len(selected)
            else []
        )
        digests = pd.concat([*parts, *([base] if base is not None else [])], ignore_index=True)
        versions = sorted(set(digests["label_version"]))
        label_version = (
            versions[0]
            if len(versions) == 1
            else "mixed-" + hashlib.sha256("+".join(versions).encode()).hexdigest()[:12]
        )
        new_frames = set(selected["frame_id"])
        provenance = {
            **(
                read_manifest(config.base_uri, config.storage).get("label_provenance", {})
                if config.base_uri
                else {}
            ),
            **{  # only the frames this build labels: the base's keep theirs
                f: p for f, p in getattr(labeler, "provenance", {}).items() if f in new_frames
            },
        }
        return _commit(config, label_version, expected, digests, provenance)
    finally:
        if storage.exists(staging, config.storage):
            storage.remove(staging, config.storage, recursive=True)


def _engine_for(config: DatasetConfig, num_frames: int, show_progress: bool | None) -> BuildEngine:
    use_spark = config.engine == "spark" or (
        config.engine == "auto" and num_frames >= config.spark_min_frames
    )
    if not use_spark:
        return LoopEngine(show_progress)
    from avfleet.dataset.spark import SparkEngine
    from avfleet.index.spark import spark_session

    log.info("building %d frames on Spark", num_frames)
    return SparkEngine(
        spark_session("avfleet-dataset", config.spark_master or "local[*]"),
        frames_per_task=config.frames_per_task,
    )


def base_digests(base_uri: str, storage_config: storage.StorageConfig) -> pd.DataFrame:
    """Digest rows (as `build_part` returns them) of an existing version's frames, parts as they are."""
    import pyarrow.parquet as pq

    manifest = check_dataset(base_uri, storage_config)
    rows = []
    for rel in manifest["data_files"]:
        uri = storage.join(base_uri, rel)
        fs = storage.filesystem(uri, storage_config)
        with storage.translate_errors(uri):
            table = pq.read_table(storage.strip_protocol(uri), filesystem=fs).to_pandas()
        rows.append(digest_rows(table, uri, bytes_read=0))
    return pd.concat(rows, ignore_index=True)


def _commit(
    config: DatasetConfig,
    label_version: str,
    expected: list[str],
    digests: pd.DataFrame,
    provenance: dict[str, dict] | None = None,
) -> DatasetVersion:
    """Name the version from `digests` (exactly the `expected` frames, less those rejected on
    fetch, which the manifest lists with their reasons), copy parts, manifest last.
    `provenance`: frame_id -> who labeled it (a labeling tool's annotation id and annotator)."""
    digests = digests.sort_values("frame_id").reset_index(drop=True)
    flagged = digests["rejected"].fillna("") != ""
    rejected = [json.loads(r) for r in digests.loc[flagged, "rejected"]]
    for r in rejected:
        log.warning(
            "frame %s of %s at offset %s left out: %s",
            r["frame_id"], r["recording_uri"], r["offset"], r["reason"],
        )  # fmt: skip
    digests = digests[~flagged].reset_index(drop=True)
    left_out = {r["frame_id"] for r in rejected}
    expected = [f for f in expected if f not in left_out]
    if not expected:
        raise PermanentError(f"every selected frame was rejected on fetch, e.g. {rejected[:1]}")
    if list(digests["frame_id"]) != expected:
        lost = sorted(set(expected) - set(digests["frame_id"]))
        raise PermanentError(f"dataset build returned the wrong frames; e.g. missing {lost[:3]}")
    version = content_version(
        digests["frame_id"], digests["image_sha256"], digests["mask_sha256"], label_version
    )
    root = storage.join(config.out_uri, version)
    counts = digests.groupby(["time_of_day", "weather", "road_type"]).size()
    per_domain = {"/".join(k): int(v) for k, v in counts.items()}
    per_source = {k: int(v) for k, v in digests["label_source"].value_counts().sort_index().items()}
    versions = {k: sorted(set(g)) for k, g in digests.groupby("label_source")["label_version"]}
    if storage.exists(storage.join(root, MANIFEST), config.storage):
        log.info("dataset %s already complete; reusing it", root)
        return DatasetVersion(root, version, len(digests), label_version, per_domain, reused=True)
    data_dir = storage.join(root, "data")
    if storage.exists(data_dir, config.storage):  # a crashed build of this version: start over
        storage.remove(data_dir, config.storage, recursive=True)
    parts = sorted(digests["part_uri"].unique())
    data_files = [f"data/part-{i:05d}.parquet" for i in range(len(parts))]
    for src, rel in zip(parts, data_files, strict=True):
        storage.copy(src, storage.join(root, rel), config.storage)
    materialize(data_dir, config.storage)  # Petastorm's Unischema and row groups per file
    kept = set(digests["frame_id"])
    manifest = {
        "version": version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "label_version": label_version,
        "num_frames": len(digests),
        "frame_ids": list(digests["frame_id"]),
        "recordings": sorted(digests["recording_uri"].unique()),
        "frames_per_domain": per_domain,
        "frames_per_source": per_source,
        "label_versions": versions,
        "selection": config.selection,
        "base": config.base_uri,
        "index_uri": config.index_uri,
        "bytes_fetched": int(digests.groupby("part_uri")["bytes_read"].first().sum()),
        "data_files": data_files,
        "rejected_frames": rejected,
        "label_provenance": {f: p for f, p in sorted((provenance or {}).items()) if f in kept},
    }
    storage.atomic_write_text(
        storage.join(root, MANIFEST), json.dumps(manifest, indent=2), config.storage
    )
    return DatasetVersion(root, version, len(digests), label_version, per_domain, reused=False)


def content_version(
    frame_ids: Iterable[str],
    image_sha256: Iterable[str],
    mask_sha256: Iterable[str],
    label_version: str,
) -> str:
    """ds-<hash> of the label version and every (frame id, image digest, mask digest), in frame order."""
    digest = hashlib.sha256(label_version.encode())
    for frame_id, image, mask in zip(frame_ids, image_sha256, mask_sha256, strict=True):
        digest.update(frame_id.encode())
        digest.update(bytes.fromhex(image))
        digest.update(bytes.fromhex(mask))
    return "ds-" + digest.hexdigest()[:16]


def _write_parquet(rows: pd.DataFrame, uri: str, storage_config: storage.StorageConfig) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = storage.filesystem(uri, storage_config)
    with storage.translate_errors(uri):
        fs.makedirs(storage.strip_protocol(uri).rsplit("/", 1)[0], exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(rows, preserve_index=False),
            storage.strip_protocol(uri),
            filesystem=fs,
            row_group_size=ROWS_PER_ROW_GROUP,
        )


def read_manifest(dataset_uri: str, storage_config: storage.StorageConfig | None = None) -> dict:
    uri = storage.join(dataset_uri, MANIFEST)
    if not storage.exists(uri, storage_config):
        raise PermanentError(
            f"{dataset_uri}: no {MANIFEST}; the dataset is incomplete or does not exist"
        )
    return json.loads(storage.read_bytes(uri, storage_config))


def check_dataset(dataset_uri: str, storage_config: storage.StorageConfig | None = None) -> dict:
    """The manifest, after checking that the data holds exactly the frames it names."""
    import pyarrow.parquet as pq

    manifest = read_manifest(dataset_uri, storage_config)
    present: list[str] = []
    for rel in manifest["data_files"]:
        uri = storage.join(dataset_uri, rel)
        fs = storage.filesystem(uri, storage_config)
        with storage.translate_errors(uri):
            present += pq.read_table(
                storage.strip_protocol(uri), filesystem=fs, columns=["frame_id"]
            )["frame_id"].to_pylist()
    missing = sorted(set(manifest["frame_ids"]) - set(present))
    if missing:
        raise PermanentError(
            f"{dataset_uri}: manifest names {len(missing)} frame(s) missing from the data, e.g. {missing[:3]}"
        )
    extra = sorted(set(present) - set(manifest["frame_ids"]))
    if extra or len(present) != len(manifest["frame_ids"]):
        raise PermanentError(
            f"{dataset_uri}: data holds frames the manifest does not name, e.g. {extra[:3]}"
        )
    return manifest
