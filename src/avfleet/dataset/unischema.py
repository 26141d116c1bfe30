"""The Petastorm Unischema of a dataset version, and its materialisation.

Every version's data/ folder carries Petastorm's metadata (`_common_metadata`):
the pickled Unischema below and the row-group count of each file, the two
entries Petastorm's `materialize_dataset` writes. So a Petastorm user opens an
avfleet dataset with `make_reader(url)` and gets decoded arrays: `image_jpeg`
as an (H, W, 3) uint8 RGB image and `mask_png` as an (H, W) uint8 map of
taxonomy class ids, through Petastorm's CompressedImageCodec (OpenCV), pixel
for pixel what avfleet's own PIL decode gives (tests/integration/test_dataset.py).

The columns are written by the build (bytes as fetched and verified, masks as
PNG), not re-encoded by the codecs: a JPEG re-encode would change every pixel
and the content digests the version is named from. So the metadata is added
after the parts are in place, with Petastorm's own `add_to_dataset_metadata`,
without the Spark session `materialize_dataset` wants only to count row groups
(which the Parquet footers give here).

avfleet's trainer reads the raw columns with `make_batch_reader` (train.data),
so datasets written before this metadata existed still train.
"""

from __future__ import annotations

import json
import os
import warnings

from avfleet.core import storage

# Petastorm 0.12 calls pyarrow's legacy dataset API, and pyarrow 14 warns (FutureWarning) at
# every call, attributed to Petastorm's modules, from its worker threads as well as here: a
# dozen lines per rank per epoch. Ignored for warnings from Petastorm's own modules only, and
# process-wide, since catch_warnings neither reaches the reader's threads nor survives the
# generator's yields. Remove with Petastorm (or pyarrow's legacy API).
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
# Datasets carry a Unischema (below) for Petastorm users' make_reader; the trainer
# reads the raw columns with make_batch_reader on purpose (PIL decodes, as serving does), which
# Petastorm warns about once per reader (train.data). That one message, from Petastorm, is expected.
warnings.filterwarnings(
    "ignore", message=r"Please use make_reader", category=UserWarning, module=r"petastorm(\.|$)"
)

_STRING_COLUMNS = (
    "frame_id",
    "recording_id",
    "recording_uri",
    "vehicle",
    "date",
    "time_of_day",
    "weather",
    "road_type",
    "label_version",
    "label_source",
)


def frame_unischema():  # noqa: ANN201 - petastorm.unischema.Unischema, imported lazily
    """The Unischema of a dataset row: lineage and domain fields, the image and its mask."""
    import numpy as np
    from petastorm.codecs import CompressedImageCodec, ScalarCodec
    from petastorm.unischema import Unischema, UnischemaField
    from pyspark.sql.types import IntegerType, LongType, StringType

    fields = [
        UnischemaField(c, np.str_, (), ScalarCodec(StringType()), False) for c in _STRING_COLUMNS
    ]
    fields += [
        UnischemaField("frame_index", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("log_time_ns", np.int64, (), ScalarCodec(LongType()), False),
        UnischemaField(
            "image_jpeg", np.uint8, (None, None, 3), CompressedImageCodec("jpeg"), False
        ),
        UnischemaField("mask_png", np.uint8, (None, None), CompressedImageCodec("png"), False),
    ]
    return Unischema("AvfleetFrame", fields)


def petastorm_url(data_uri: str) -> str:
    """What Petastorm opens: a URL with a scheme (file:// for local folders)."""
    return data_uri if "://" in data_uri else f"file://{os.path.abspath(data_uri)}"


def petastorm_filesystem(url: str, storage_config: storage.StorageConfig | None):  # noqa: ANN201
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


def materialize(data_uri: str, storage_config: storage.StorageConfig | None = None) -> None:
    """Add the Unischema and the row groups per file to a data/ folder's _common_metadata."""
    import pyarrow.parquet as pq
    from petastorm.etl.dataset_metadata import ROW_GROUPS_PER_FILE_KEY, _generate_unischema_metadata
    from petastorm.utils import add_to_dataset_metadata

    url = petastorm_url(data_uri)
    path = storage.strip_protocol(url)
    with warnings.catch_warnings():  # pyarrow's legacy dataset API, all Petastorm 0.12 speaks
        warnings.filterwarnings("ignore", category=FutureWarning)
        filesystem = petastorm_filesystem(url, storage_config)
        if filesystem is None:
            from pyarrow.filesystem import LocalFileSystem

            filesystem = LocalFileSystem()
        dataset = pq.ParquetDataset(
            path, filesystem=filesystem, validate_schema=False, use_legacy_dataset=True
        )
        counts = {}
        for piece in dataset.pieces:
            with filesystem.open(piece.path, "rb") as f:
                counts[os.path.relpath(piece.path, dataset.paths)] = pq.ParquetFile(
                    f
                ).num_row_groups
        _generate_unischema_metadata(dataset, frame_unischema())
        add_to_dataset_metadata(dataset, ROW_GROUPS_PER_FILE_KEY, json.dumps(counts))
