"""Training batches from a dataset version streamed through Petastorm, sharded by rank.

Petastorm assigns row group i to shard i mod world_size, so each rank can
compute how many rows it holds; every rank runs the same number of steps per
epoch (the smallest shard's), or DDP would wait forever on the rank with more.

An epoch streams the rank's shard: Petastorm's reader visits its row groups in
a seeded order with one worker and a short results queue, and a bounded
shuffle buffer (SHUFFLE_BUFFER_ROWS, drawn from a seeded generator) mixes rows
across row groups. Memory is the queue plus the buffer, whatever the dataset's
size (benchmarks/train_throughput.py measures it at 1x, 4x and 16x), and the
same (seed, epoch, rank) always gives the same batches, which is what makes a
resumed run end with the same weights as an uninterrupted one. Petastorm's own
torch DataLoader is not used: its shuffling queue draws from numpy's global
generator, so a resumed run would see other batches.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from collections.abc import Callable, Iterator

import numpy as np
import torch

from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.dataset.build import check_dataset
from avfleet.dataset.unischema import petastorm_filesystem, petastorm_url

COLUMNS = ["frame_id", "image_jpeg", "mask_png", "time_of_day", "weather", "road_type"]
SOURCE_COLUMN = "label_source"
"""Read too where the dataset records it (its manifest counts frames per source)."""
SHUFFLE_BUFFER_ROWS = 512
"""Rows an epoch holds to shuffle across row groups (16 of the builder's 32-row groups)."""
READER_QUEUE_ROW_GROUPS = 2
"""Row groups Petastorm may read ahead of the shuffle buffer."""


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

    def _stream(self, columns: list[str], seed: int | None) -> Iterator[tuple]:
        """This rank's rows as Petastorm reads them: row groups in a seeded order (file order
        for None), one worker, a short results queue; rows failing `keep` left out.

        Petastorm's FutureWarnings about pyarrow's legacy API are filtered where avfleet meets
        Petastorm (avfleet.dataset.unischema; they come from the reader's threads too).
        """
        from petastorm import make_batch_reader

        # Petastorm wants a folder of Parquet files only
        url = petastorm_url(storage.join(self.uri, "data"))
        reader = make_batch_reader(
            url,
            filesystem=petastorm_filesystem(url, self.storage),
            schema_fields=columns,
            cur_shard=self.rank,
            shard_count=self.world_size,
            shuffle_row_groups=seed is not None,
            seed=seed,
            num_epochs=1,
            workers_count=1,
            results_queue_size=READER_QUEUE_ROW_GROUPS,
        )
        with reader:
            for chunk in reader:
                for i in range(len(chunk.frame_id)):
                    if self._keep(str(chunk.frame_id[i])):
                        yield tuple(getattr(chunk, c)[i] for c in columns)

    def _load_shard(self) -> list[tuple]:
        """Every row of this rank's shard in frame_id order, in memory (evaluation sets only)."""
        return sorted(self._stream(self.columns, None), key=lambda r: r[0])

    def _keep(self, frame_id: str) -> bool:
        return True

    def split_off(self, keep: Callable[[str], bool], seed: int) -> ShardedDataset:
        """Move this rank's frames whose id passes `keep` into a dataset of their own (its own
        seed); this one keeps the rest. Both stream; counting them reads frame ids only.

        Every rank must run as many steps as the others: the caller sets each one's
        `steps_per_epoch` from the smallest over the ranks.
        """
        before = self._keep
        other = copy.copy(self)
        other.seed = seed
        other._keep = lambda f: before(f) and keep(f)  # type: ignore[method-assign]
        self._keep = lambda f: before(f) and not keep(f)  # type: ignore[method-assign]
        for data in (self, other):
            rows = sum(1 for _ in data._stream(["frame_id"], None))
            data.steps_per_epoch = rows // data.batch_size
        return other

    def epoch(self, epoch: int, skip_steps: int = 0) -> Iterator[Batch]:
        """steps_per_epoch batches; the first `skip_steps` are read but not decoded (resume)."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        reader_seed = int(rng.integers(2**31))
        batch: list[tuple] = []
        step = 0
        for row in _shuffled(self._stream(self.columns, reader_seed), rng, SHUFFLE_BUFFER_ROWS):
            batch.append(row)
            if len(batch) < self.batch_size:
                continue
            if step >= skip_steps:
                yield collate(batch)
            batch = []
            step += 1
            if step == self.steps_per_epoch:
                return


def batches_from(data: ShardedDataset, step: int) -> Iterator[Batch]:
    """Batches from global step `step` on, epoch after epoch, from one open stream per epoch."""
    while True:
        epoch, skip = divmod(step, data.steps_per_epoch)
        for batch in data.epoch(epoch, skip_steps=skip):
            yield batch
            step += 1


def _shuffled(rows: Iterator[tuple], rng: np.random.Generator, capacity: int) -> Iterator[tuple]:
    """Rows in a random order drawn from `rng`, holding at most `capacity` at a time."""
    buffer: list[tuple] = []
    for row in rows:
        buffer.append(row)
        if len(buffer) >= capacity:
            i = int(rng.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    for i in rng.permutation(len(buffer)):
        yield buffer[i]


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
