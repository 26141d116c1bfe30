"""Where labels come from: the oracle (demo), a labeling tool's export, or the ensemble's pseudo-labels.

Each answers `labels(frames)` with one PNG-encoded class mask per frame_id and
carries a `label_version` and a `source` (SOURCES), so every dataset records
which labels it was built on and every row whether a person, the oracle or a
model labeled it. Pseudo-label masks mark pixels the ensemble's members
disagree on with IGNORE: training skips them.
"""

from __future__ import annotations

import hashlib
import io
from typing import Protocol

import numpy as np
import pandas as pd

from avfleet.core import storage
from avfleet.core.errors import PermanentError

SOURCES = ("human", "oracle", "pseudo")
"""Label sources: a labeling tool's export, the synthetic fleet's oracle, a model's prediction."""
IGNORE = 255
"""Mask value of a pixel without a label (pseudo-labels where the members disagree)."""


def encode_mask_png(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def decode_mask_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


class Labeler(Protocol):
    label_version: str
    source: str
    """One of SOURCES."""

    def labels(self, frames: pd.DataFrame) -> dict[str, bytes]:
        """frame_id -> PNG mask for every row of `frames` (frame_id, recording_id, frame_index)."""
        ...


class OracleLabels:
    """The oracle labeler standing in for human labelers."""

    source = "oracle"

    def __init__(self, fleet_uri: str, storage_config: storage.StorageConfig | None = None) -> None:
        from avfleet.fleet.oracle import OracleLabeler

        self._oracle = OracleLabeler.from_uri(fleet_uri, storage_config)
        self.label_version = (
            "oracle-" + hashlib.sha256(self._oracle.spec.to_json().encode()).hexdigest()[:12]
        )

    def labels(self, frames: pd.DataFrame) -> dict[str, bytes]:
        return {
            row.frame_id: encode_mask_png(
                self._oracle.label(row.recording_id, int(row.frame_index)).mask
            )
            for row in frames.itertuples()
        }


class ToolLabels:
    """Labels exported by a labeling tool: Parquet with frame_id and mask_png columns."""

    source = "human"
    _prefix = "tool"

    def __init__(
        self, labels_uri: str, storage_config: storage.StorageConfig | None = None
    ) -> None:
        import pyarrow.parquet as pq

        data = storage.read_bytes(labels_uri, storage_config)
        table = pq.read_table(io.BytesIO(data))
        missing = {"frame_id", "mask_png"} - set(table.column_names)
        if missing:
            raise PermanentError(f"{labels_uri}: label export lacks column(s) {sorted(missing)}")
        self._masks = dict(
            zip(table["frame_id"].to_pylist(), table["mask_png"].to_pylist(), strict=True)
        )
        self.label_version = f"{self._prefix}-" + hashlib.sha256(data).hexdigest()[:12]
        self.uri = labels_uri

    def labels(self, frames: pd.DataFrame) -> dict[str, bytes]:
        missing = [f for f in frames["frame_id"] if f not in self._masks]
        if missing:
            raise PermanentError(
                f"{self.uri}: no label for {len(missing)} selected frame(s), e.g. {missing[:3]}"
            )
        return {f: self._masks[f] for f in frames["frame_id"]}


class PseudoLabels(ToolLabels):
    """The ensemble's pseudo-labels (`avfleet.mining.pseudo`): the same table, another source."""

    source = "pseudo"
    _prefix = "pseudo"
