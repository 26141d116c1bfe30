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

import hashlib
import json
import pickle

import numpy as np
import torch

from avfleet.bench.engines import ort_runner
from avfleet.bench.measure import Bundle, accuracy, parity, to_input
from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.deploy.config import ExportConfig
from avfleet.train.data import decode, domain_of, read_rows
from avfleet.train.export import export_onnx
from avfleet.train.loop import load_model
from avfleet.train.models import num_parameters

EXPORT_INFO = "export.json"


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
    """`count` frames spread evenly over the dataset (frame_id order): uint8 NHWC, masks, domains.

    Only the picked frames are decoded.
    """
    rows = read_rows(dataset_uri, count)
    images, masks = zip(*(decode(r[1], r[2]) for r in rows), strict=True)
    return np.stack(images), np.stack(masks), [domain_of(r) for r in rows]


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
    parity_input = to_input(frames[: config.parity_frames])
    with torch.no_grad():
        reference = model(torch.from_numpy(parity_input)).numpy()
    check = parity(reference, ort_runner(onnx)(parity_input))
    if check["max_abs_error"] > config.max_export_error:
        raise PermanentError(
            f"{config.model_uri}: ONNX Runtime differs from PyTorch by {check['max_abs_error']:.3g} "
            f"(allowed {config.max_export_error:g}); argmax agreement {check['argmax_agreement']:.4f}"
        )
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
        "parameters": num_parameters(model),
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
