"""Training batches from a dataset version through Petastorm, sharded by rank, deterministic.

Petastorm assigns row group i to shard i mod world_size, so each rank can
compute how many rows it holds; every rank runs the same number of steps per
epoch (the smallest shard's), or DDP would wait forever on the rank with more.
Within a rank's shard the order is a seeded permutation per epoch: the same
(seed, epoch, rank) always gives the same batches, which is what makes a
resumed run end with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.dataset.build import check_dataset

COLUMNS = ["frame_id", "image_jpeg", "mask_png", "time_of_day", "weather", "road_type"]
SOURCE_COLUMN = "label_source"
"""Read too where the dataset records it (its manifest counts frames per source)."""


@dataclasses.dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    masks: torch.Tensor  # (B, H, W) int64 class ids
    frame_ids: list[str]
    domains: list[str]
    sources: list[str]
    """Each frame's label source (human, oracle, pseudo; '' for datasets before sources)."""


def _row_group_sizes(
    dataset_uri: str, manifest: dict, storage_config: storage.StorageConfig | None
) -> list[int]:
    import pyarrow.parquet as pq

    sizes = []
    for rel in manifest["data_files"]:
        uri = storage.join(dataset_uri, rel)
        with storage.filesystem(uri, storage_config).open(storage.strip_protocol(uri), "rb") as f:
            meta = pq.ParquetFile(f).metadata
            sizes += [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return sizes


def _petastorm_filesystem(url: str, storage_config: storage.StorageConfig | None):  # noqa: ANN202
    """What Petastorm 0.12 reads a dataset through: for S3, our configured s3fs (endpoint and
    region) in pyarrow's legacy fsspec wrapper. Given s3fs itself, or only its options,
    Petastorm hands pyarrow 14 a new-API filesystem with `validate_schema`, which pyarrow
    refuses ("not yet supported with the new Dataset API"); pyarrow's S3FSWrapper calls an
    s3fs method that is a coroutine in today's s3fs. Local paths need nothing (None)."""
    if storage.protocol_of(url) != "s3":
        return None
    from pyarrow.filesystem import DaskFileSystem

    class LegacyFsspec(DaskFileSystem):
        """pyarrow's legacy wrapper of an fsspec filesystem, with the two questions it
        leaves unanswered."""

        def isdir(self, path: str) -> bool:
            return self.fs.isdir(path)

        def isfile(self, path: str) -> bool:
            return self.fs.isfile(path)

    with warnings.catch_warnings():  # deprecated since pyarrow 3, and all Petastorm 0.12 takes
        warnings.filterwarnings("ignore", category=FutureWarning, message="The pyarrow.filesystem")
        return LegacyFsspec(storage.filesystem(url, storage_config))


def steps_per_epoch(row_group_sizes: list[int], world_size: int, batch_size: int) -> int:
    shard_rows = [sum(row_group_sizes[r::world_size]) for r in range(world_size)]
    return min(shard_rows) // batch_size


def decode(image_jpeg: bytes, mask_png: bytes) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(image_jpeg)).convert("RGB"), dtype=np.uint8)
    mask = np.asarray(Image.open(io.BytesIO(mask_png)), dtype=np.uint8)
    return image, mask


class ShardedDataset:
    def __init__(
        self,
        dataset_uri: str,
        *,
        rank: int,
        world_size: int,
        batch_size: int,
        seed: int,
        storage_config: storage.StorageConfig | None = None,
    ) -> None:
        self.uri = dataset_uri
        self.manifest = check_dataset(dataset_uri, storage_config)
        self.rank, self.world_size, self.batch_size, self.seed = rank, world_size, batch_size, seed
        self.storage = storage_config
        self.columns = COLUMNS + ([SOURCE_COLUMN] if "frames_per_source" in self.manifest else [])
        sizes = _row_group_sizes(dataset_uri, self.manifest, storage_config)
        if len(sizes) < world_size:
            raise ValueError(
                f"{dataset_uri}: {len(sizes)} row groups cannot feed {world_size} ranks"
            )
        self.steps_per_epoch = steps_per_epoch(sizes, world_size, batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{dataset_uri}: too few frames per rank for batch size {batch_size}")
        self._rows: list[tuple] | None = None

    def _load_shard(self) -> list[tuple]:
        """This rank's rows, read through Petastorm once (datasets for one rank fit in memory).

        Petastorm 0.12 still calls pyarrow's legacy dataset API, and pyarrow warns
        (FutureWarning) at each call, a dozen lines per rank per dataset: those
        warnings, and only those, are silenced here.
        """
        from petastorm import make_batch_reader

        data_dir = storage.join(self.uri, "data")  # Petastorm wants a folder of Parquet files only
        url = data_dir if "://" in data_dir else f"file://{os.path.abspath(data_dir)}"
        rows: list[tuple] = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm\.")
            with make_batch_reader(
                url,
                filesystem=_petastorm_filesystem(url, self.storage),
                schema_fields=self.columns,
                cur_shard=self.rank,
                shard_count=self.world_size,
                shuffle_row_groups=False,
                num_epochs=1,
                workers_count=1,
            ) as reader:
                for chunk in reader:
                    for i in range(len(chunk.frame_id)):
                        rows.append(tuple(getattr(chunk, c)[i] for c in self.columns))
        rows.sort(key=lambda r: r[0])  # reader threads may interleave row groups: fix the order
        return rows

    def split_off(self, keep: Callable[[str], bool], seed: int) -> ShardedDataset:
        """Move this rank's frames whose id passes `keep` into a dataset of their own (its own
        seed); this one keeps the rest. Rows are read once for both.

        Every rank must run as many steps as the others: the caller sets each one's
        `steps_per_epoch` from the smallest over the ranks.
        """
        if self._rows is None:
            self._rows = self._load_shard()
        other = copy.copy(self)
        other.seed = seed
        other._rows = [r for r in self._rows if keep(str(r[0]))]
        self._rows = [r for r in self._rows if not keep(str(r[0]))]
        for data in (self, other):
            data.steps_per_epoch = len(data._rows) // data.batch_size
        return other

    def epoch(self, epoch: int, skip_steps: int = 0) -> Iterator[Batch]:
        if self._rows is None:
            self._rows = self._load_shard()
        order = np.random.default_rng([self.seed, epoch, self.rank]).permutation(len(self._rows))
        for step in range(skip_steps, self.steps_per_epoch):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield collate([self._rows[i] for i in idx])


def domain_of(row: tuple) -> str:
    """A row's domain, time of day / weather / road."""
    return f"{row[3]}/{row[4]}/{row[5]}"


def collate(rows: list[tuple]) -> Batch:
    images, masks = zip(*(decode(r[1], r[2]) for r in rows), strict=True)
    return Batch(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0),
        masks=torch.from_numpy(np.stack(masks).astype(np.int64)),
        frame_ids=[r[0] for r in rows],
        domains=[domain_of(r) for r in rows],
        sources=[str(r[6]) if len(r) > 6 else "" for r in rows],
    )


def read_rows(
    dataset_uri: str, count: int | None = None, storage_config: storage.StorageConfig | None = None
) -> list[tuple]:
    """Every row (or `count` spread evenly over them), in frame_id order, still encoded.

    What evaluation and validation read: a dataset holding pseudo-labels is refused, a
    model's own predictions never score a model."""
    data = ShardedDataset(
        dataset_uri, rank=0, world_size=1, batch_size=1, seed=0, storage_config=storage_config
    )
    pseudo = data.manifest.get("frames_per_source", {}).get("pseudo", 0)
    if pseudo:
        raise PermanentError(
            f"{dataset_uri}: {pseudo} frame(s) carry pseudo-labels; a held-out or validation set "
            "holds human or oracle labels only"
        )
    rows = data._load_shard()
    if count is not None and count < len(rows):
        rows = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, count).astype(int))]
    return rows


def iter_all(
    dataset_uri: str, batch_size: int, storage_config: storage.StorageConfig | None = None
) -> Iterator[Batch]:
    """Every frame once, in frame_id order (evaluation)."""
    rows = read_rows(dataset_uri, storage_config=storage_config)
    for i in range(0, len(rows), batch_size):
        yield collate(rows[i : i + batch_size])
