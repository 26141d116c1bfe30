"""`avfleet deploy export`: a trained model -> a release folder the build and the bench use.

    <releases>/<release_id>/
        model.onnx       the model (input "images" float (N, 3, H, W), output "logits")
        bundle.npz       validation frames + labels, PyTorch reference logits, calibration frames
        export.json      what was exported, its parity with PyTorch, the reference mIoU,
                         and the lineage (model -> training run -> dataset); written last

The release id comes from the model's bytes (weights + architecture), so a retried
export of the same model lands in the same folder. The export fails, naming the
numbers, when ONNX Runtime disagrees with PyTorch beyond `max_export_error`: a
broken export must not reach a bench.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle

import numpy as np
import torch

from avfleet.bench.measure import Bundle, accuracy, to_input
from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.train.data import iter_all
from avfleet.train.export import export_onnx, parity
from avfleet.train.loop import load_model

EXPORT_INFO = "export.json"


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
    calibration_frames: int = 64
    parity_frames: int = 16
    max_export_error: float = 1e-3
    """ONNX Runtime vs PyTorch on the parity frames, max absolute logit difference."""
    storage: storage.StorageConfig = storage.StorageConfig()


def model_sha256(model_uri: str, config: storage.StorageConfig | None = None) -> str:
    weights = storage.read_bytes(storage.join(model_uri, "weights.pt"), config)
    arch = storage.read_bytes(storage.join(model_uri, "arch.json"), config)
    return hashlib.sha256(weights + b"\0" + arch).hexdigest()


def training_run(model_uri: str, config: storage.StorageConfig | None = None) -> dict:
    """The training run's config.json (one folder above model/), or {} if there is none."""
    run = model_uri.rstrip("/").rsplit("/", 1)[0]
    uri = storage.join(run, "config.json")
    return json.loads(storage.read_bytes(uri, config)) if storage.exists(uri, config) else {}


def _frames(dataset_uri: str, count: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`count` frames spread evenly over the dataset (frame_id order): uint8 NHWC, masks, domains."""
    images, masks, domains = [], [], []
    for batch in iter_all(dataset_uri, 64):
        images.append((batch.images.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy())
        masks.append(batch.masks.to(torch.uint8).numpy())
        domains += batch.domains
    all_images, all_masks = np.concatenate(images), np.concatenate(masks)
    pick = np.unique(np.linspace(0, len(all_images) - 1, min(count, len(all_images))).astype(int))
    return all_images[pick], all_masks[pick], [domains[i] for i in pick]


def export_release(config: ExportConfig) -> str:
    """The release folder's URI (reused when this model was exported before)."""
    st = config.storage
    source_sha = model_sha256(config.model_uri, st)
    release_uri = storage.join(config.releases_uri, source_sha[:16])
    if storage.exists(storage.join(release_uri, EXPORT_INFO), st):
        return release_uri
    try:  # load_model checks the weights against the sha256 training recorded
        model = load_model(config.model_uri)
    except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise PermanentError(f"{config.model_uri}: the model does not load: {e}") from e
    frames, masks, domains = _frames(config.validation_uri, config.validation_frames)
    height, width = frames.shape[1:3]
    onnx = export_onnx(model, height, width)
    parity_input = torch.from_numpy(to_input(frames[: config.parity_frames]))
    check = parity(model, onnx, parity_input)
    if check["max_abs_error"] > config.max_export_error:
        raise PermanentError(
            f"{config.model_uri}: ONNX Runtime differs from PyTorch by {check['max_abs_error']:.3g} "
            f"(allowed {config.max_export_error:g}); argmax agreement {check['argmax_agreement']:.4f}"
        )
    with torch.no_grad():
        reference = model(parity_input).numpy()
    run = training_run(config.model_uri, st)
    calibration_uri = config.calibration_uri or run.get("dataset_uri", "")
    if not calibration_uri:
        raise PermanentError(
            f"{config.model_uri}: no training run config names its dataset; pass a calibration dataset"
        )
    calibration, _, _ = _frames(calibration_uri, config.calibration_frames)
    bundle = Bundle(frames, masks, np.array(domains), reference, calibration)
    # The framework model's accuracy on exactly the frames the bench scores: the accuracy gate's base.
    with torch.no_grad():
        reference_accuracy = accuracy(
            lambda x: model(torch.from_numpy(x)).numpy(), bundle, int(model.arch["num_classes"])
        )
    storage.atomic_write_bytes(storage.join(release_uri, "model.onnx"), onnx, st)
    storage.atomic_write_bytes(storage.join(release_uri, "bundle.npz"), bundle.to_bytes(), st)
    info = {
        "release_id": source_sha[:16],
        "model_uri": config.model_uri,
        "model_sha256": source_sha,
        "onnx_sha256": hashlib.sha256(onnx).hexdigest(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "members": int(getattr(model, "members", 1)),
        "export_parity": check,
        "reference_miou": reference_accuracy["miou"],
        "reference_miou_per_domain": reference_accuracy["miou_per_domain"],
        "validation_uri": config.validation_uri,
        "validation_frames": int(len(frames)),
        "calibration_uri": calibration_uri,
        "training_run": run,
        "dataset_uri": run.get("dataset_uri"),
    }
    storage.atomic_write_text(
        storage.join(release_uri, EXPORT_INFO), json.dumps(info, indent=2), st
    )
    return release_uri


def read_export(release_uri: str, config: storage.StorageConfig | None = None) -> dict:
    uri = storage.join(release_uri, EXPORT_INFO)
    if not storage.exists(uri, config):
        raise PermanentError(f"{release_uri}: no {EXPORT_INFO}; export the model first")
    return json.loads(storage.read_bytes(uri, config))
