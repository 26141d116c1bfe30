"""Publish a trained ensemble to the Triton model repository as its scoring graph."""

from __future__ import annotations

import hashlib
import json

from avfleet.core import storage
from avfleet.serve import repository
from avfleet.serve.graph import Reduction, ScoringGraph, export_onnx

FRAME_SHAPE = (64, 128)  # the fleet's camera frames, as the index records them


def publish_model(
    model_uri: str,
    repo_uri: str,
    name: str,
    reduction: Reduction | None = None,
    frame_shape: tuple[int, int] = FRAME_SHAPE,
    storage_config: storage.StorageConfig | None = None,
    serving: repository.ServingConfig | None = None,
) -> str:
    """NAME:VERSION of the model's scoring graph; republishing the same model reuses its version.
    `serving`: how Triton runs it (config.pbtxt; default: GPU instances)."""
    from avfleet.train.loop import load_model

    name = name.partition(":")[0]
    reduction = reduction or Reduction()
    weights = storage.read_bytes(storage.join(model_uri, "weights.pt"), storage_config)
    arch = storage.read_bytes(storage.join(model_uri, "arch.json"), storage_config)
    source = hashlib.sha256(weights + arch + repr(reduction).encode()).hexdigest()
    for version in reversed(repository.versions(repo_uri, name, storage_config)):
        info_uri = storage.join(repo_uri, name, str(version), repository.INFO_FILE)
        if json.loads(storage.read_bytes(info_uri, storage_config)).get("source_sha256") == source:
            return f"{name}:{version}"  # a retried step: already published
    model = load_model(model_uri)
    height, width = frame_shape
    version = repository.publish(
        repo_uri,
        name,
        export_onnx(ScoringGraph(model, reduction), height, width),
        {
            "source_model": model_uri,
            "source_sha256": source,
            "members": int(getattr(model, "members", 1)),
            "reduction": {"how": reduction.how, "top_fraction": reduction.top_fraction},
        },
        num_classes=int(model.arch["num_classes"]),
        height=height,
        width=width,
        serving=serving or repository.ServingConfig(),
        config=storage_config,
    )
    return f"{name}:{version}"
