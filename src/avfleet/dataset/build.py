"""`avfleet dataset build`: selection -> fetched, labeled frames -> a versioned training set.

    <out>/<version>/data/part-00000.parquet ...   rows: image_jpeg, mask_png, tags, lineage
    <out>/<version>/manifest.json                 written last: the dataset exists once it does

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

import numpy as np
import pandas as pd

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.core.progress import progress
from avfleet.dataset.fetch import fetch_frames
from avfleet.dataset.labels import Labeler
from avfleet.index.table import IndexTable

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
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
    storage: storage.StorageConfig = dataclasses.field(default_factory=storage.StorageConfig)
    """How to reach index, recordings and outputs."""


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


def build_dataset(
    config: DatasetConfig, labeler: Labeler, *, show_progress: bool | None = None
) -> DatasetVersion:
    selected = resolve_selection(config)
    images: dict[str, bytes] = {}
    bytes_read = 0
    with progress("fetching frames", selected["recording_uri"].nunique(), show_progress) as bar:
        for _, group in selected.groupby("recording_uri", sort=True):
            fetched, n = fetch_frames(group, config.storage)
            images.update(fetched)
            bytes_read += n
            bar.advance()
    masks = labeler.labels(selected)
    rows = selected[LINEAGE_COLUMNS].copy()
    rows["image_jpeg"] = [images[f] for f in rows["frame_id"]]
    rows["mask_png"] = [masks[f] for f in rows["frame_id"]]
    rows["label_version"] = labeler.label_version
    version = _content_version(rows, labeler.label_version)
    root = storage.join(config.out_uri, version)
    counts = rows.groupby(["time_of_day", "weather", "road_type"]).size()
    per_domain = {"/".join(k): int(v) for k, v in counts.items()}
    if storage.exists(storage.join(root, MANIFEST), config.storage):
        log.info("dataset %s already complete; reusing it", root)
        return DatasetVersion(
            root, version, len(rows), labeler.label_version, per_domain, reused=True
        )
    _write_rows(rows, root, config.storage)
    manifest = {
        "version": version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "label_version": labeler.label_version,
        "num_frames": len(rows),
        "frame_ids": list(rows["frame_id"]),
        "recordings": sorted(rows["recording_uri"].unique()),
        "frames_per_domain": per_domain,
        "selection": config.selection,
        "index_uri": config.index_uri,
        "bytes_fetched": bytes_read,
        "data_files": ["data/part-00000.parquet"],
    }
    storage.atomic_write_text(
        storage.join(root, MANIFEST), json.dumps(manifest, indent=2), config.storage
    )
    return DatasetVersion(root, version, len(rows), labeler.label_version, per_domain, reused=False)


def _content_version(rows: pd.DataFrame, label_version: str) -> str:
    digest = hashlib.sha256(label_version.encode())
    for frame_id, image, mask in zip(
        rows["frame_id"], rows["image_jpeg"], rows["mask_png"], strict=True
    ):
        digest.update(frame_id.encode())
        digest.update(hashlib.sha256(image).digest())
        digest.update(hashlib.sha256(mask).digest())
    return "ds-" + digest.hexdigest()[:16]


def _write_rows(rows: pd.DataFrame, root: str, storage_config: storage.StorageConfig) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    uri = storage.join(root, "data", "part-00000.parquet")
    fs = storage.filesystem(uri, storage_config)
    with storage.translate_errors(uri):
        fs.makedirs(storage.strip_protocol(storage.join(root, "data")), exist_ok=True)
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
