"""The export's configuration, apart from the export itself (which needs torch): the CLI
builds its options from these fields at every call."""

from __future__ import annotations

import dataclasses

from avfleet.core import storage


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportConfig:
    model_uri: str
    """A trained model folder (arch.json + weights.pt), e.g. <run>/deployable/model."""
    validation_uri: str
    """Dataset whose frames the bench scores (the held-out set)."""
    releases_uri: str
    """Where release folders are written."""
    calibration_uri: str = ""
    """Dataset INT8 calibration frames come from ('' = the model's training dataset)."""
    validation_frames: int = 240
    """Frames of the validation dataset the release's bundle holds (what the bench scores)."""
    calibration_frames: int = 64
    """Frames INT8 calibration reads."""
    parity_frames: int = 16
    """Frames ONNX Runtime and PyTorch are compared on before a release is written."""
    max_export_error: float = 1e-3
    """ONNX Runtime vs PyTorch on the parity frames, max absolute logit difference."""
    storage: storage.StorageConfig = storage.StorageConfig()
