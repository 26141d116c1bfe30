"""A Triton model repository of scoring graphs: what the cluster's Triton and the local server both load.

    <repo>/<name>/config.pbtxt                 ONNX Runtime backend, dynamic batching, instance groups
    <repo>/<name>/<version>/model.onnx         the scoring graph (serve/graph.py)
    <repo>/<name>/<version>/avfleet.json       lineage: source model, reduction, frame size, sha256

Versions are integers, as Triton wants. A version is published by writing
avfleet.json, then model.onnx last (each an atomic object write): Triton,
polling the repository, finds no model.onnx in a half-published version and
tries again at the next poll; `load_version` refuses it with a clear error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.serve.outputs import OUTPUTS, SCORES

MODEL_FILE = "model.onnx"
INFO_FILE = "avfleet.json"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """How Triton runs the model (config.pbtxt)."""

    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (32, 64)
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "KIND_GPU"
    """KIND_GPU in the cluster; KIND_CPU on one machine."""


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    onnx: bytes
    info: dict


def parse_ref(ref: str) -> tuple[str, int | None]:
    """NAME:VERSION (or NAME: the newest) -> (name, version)."""
    name, _, version = ref.partition(":")
    if not NAME.match(name) or (version and not version.isdigit()):
        raise ConfigError("model", f"{ref!r}: expected NAME:VERSION, e.g. dpe-scorer:3")
    return name, int(version) if version else None


def config_pbtxt(
    name: str, num_classes: int, height: int, width: int, serving: ServingConfig
) -> str:
    scores = "\n".join(
        f'  {{ name: "{s}" data_type: TYPE_FP32 dims: [ 1 ] reshape: {{ shape: [ ] }} }},'
        for s in SCORES
    )
    preferred = ", ".join(str(b) for b in serving.preferred_batch_sizes)
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {serving.max_batch_size}
input [
  {{ name: "frames" data_type: TYPE_UINT8 dims: [ {height}, {width}, 3 ] }}
]
output [
{scores}
  {{ name: "class_probability" data_type: TYPE_FP32 dims: [ {num_classes} ] }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {serving.max_queue_delay_us}
}}
instance_group [
  {{ count: {serving.instances} kind: {serving.kind} }}
]
version_policy: {{ latest: {{ num_versions: 2 }} }}
"""


def versions(repo_uri: str, name: str, config: storage.StorageConfig | None = None) -> list[int]:
    """Complete versions (model.onnx present), ascending."""
    found = storage.list_files(storage.join(repo_uri, name), f"/{MODEL_FILE}", config)
    out = []
    for uri, _ in found:
        part = uri.rstrip("/").split("/")[-2]
        if part.isdigit():
            out.append(int(part))
    return sorted(out)


def publish(
    repo_uri: str,
    name: str,
    onnx: bytes,
    info: dict,
    *,
    num_classes: int,
    height: int,
    width: int,
    serving: ServingConfig = ServingConfig(),
    config: storage.StorageConfig | None = None,
) -> int:
    """Add `onnx` as the next version of `name` (config.pbtxt written or refreshed); its number."""
    if not NAME.match(name):
        raise ConfigError("model", f"{name!r} is not a valid model name")
    version = (versions(repo_uri, name, config) or [0])[-1] + 1
    root = storage.join(repo_uri, name)
    storage.atomic_write_text(
        storage.join(root, "config.pbtxt"),
        config_pbtxt(name, num_classes, height, width, serving),
        config,
    )
    doc = {
        **info,
        "name": name,
        "version": version,
        "outputs": list(OUTPUTS),
        "frame_shape": [height, width, 3],
        "num_classes": num_classes,
        "onnx_sha256": hashlib.sha256(onnx).hexdigest(),
    }
    vdir = storage.join(root, str(version))
    storage.atomic_write_text(storage.join(vdir, INFO_FILE), json.dumps(doc, indent=2), config)
    storage.atomic_write_bytes(storage.join(vdir, MODEL_FILE), onnx, config)
    return version


def load_version(
    repo_uri: str, ref: str, config: storage.StorageConfig | None = None
) -> ModelVersion:
    """NAME:VERSION (or NAME for the newest) from the repository, checked against its sha256."""
    name, version = parse_ref(ref)
    available = versions(repo_uri, name, config)
    if version is None:
        if not available:
            raise PermanentError(f"{repo_uri}: model {name!r} has no published version")
        version = available[-1]
    if version not in available:
        raise PermanentError(
            f"{repo_uri}: model {name}:{version} is not published (versions: {available})"
        )
    vdir = storage.join(repo_uri, name, str(version))
    onnx = storage.read_bytes(storage.join(vdir, MODEL_FILE), config)
    info = json.loads(storage.read_bytes(storage.join(vdir, INFO_FILE), config))
    if hashlib.sha256(onnx).hexdigest() != info["onnx_sha256"]:
        raise PermanentError(f"{vdir}/{MODEL_FILE}: sha256 does not match {INFO_FILE}")
    return ModelVersion(name, version, onnx, info)
