"""A Triton model repository of scoring graphs: what the cluster's Triton and the local server both load.

    <repo>/<name>/config.pbtxt                 ONNX Runtime backend, dynamic batching, instance
                                               groups, warm-up, the versions to serve
    <repo>/<name>/pins.json                    versions kept served whatever is newer: the
                                               registry's promoted ones, pinned backfills
    <repo>/<name>/<version>/model.onnx         the scoring graph (serve/graph.py)
    <repo>/<name>/<version>/avfleet.json       lineage: source model, reduction, frame size, sha256

Versions are integers, as Triton wants. The cluster's Triton runs in explicit model-control
mode (Triton's docs warn that polling can load a half-written repository): nothing is
loaded until a step asks (`serve.client.load_model`, Triton's repository load API), after
the version is complete. A version is published by writing avfleet.json, then model.onnx
(each an atomic object write), and only then config.pbtxt naming it; `load_version`
refuses a half-published one with a clear error.

Which versions Triton serves is `version_policy: { specific: ... }`: the newest
KEEP_LATEST plus every pinned version (`set_pins`): promotion pins the version the registry
points at and its predecessor (the rollback target), a backfill pins the older version it
mines with; so a pointer or a pinned backfill never names a version Triton unloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError, TransientError
from avfleet.serve.outputs import OUTPUTS, SCORES

MODEL_FILE = "model.onnx"
INFO_FILE = "avfleet.json"
CONFIG_FILE = "config.pbtxt"
PINS_FILE = "pins.json"
KEEP_LATEST = 2
"""Newest versions served besides the pinned ones."""
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
INSTANCE_KINDS = ("KIND_GPU", "KIND_CPU")


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """How Triton runs the model (config.pbtxt)."""

    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (32, 64)
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "KIND_GPU"
    """Where Triton runs the model's instances (config.pbtxt instance_group): KIND_GPU in a
    cluster, KIND_CPU where Triton has no GPU (one machine, the local overlay)."""

    def __post_init__(self) -> None:
        if self.kind not in INSTANCE_KINDS:
            raise ConfigError("instance_kind", f"{self.kind!r}: expected one of {INSTANCE_KINDS}")


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
    name: str,
    num_classes: int,
    height: int,
    width: int,
    serving: ServingConfig,
    served: list[int] | tuple[int, ...] = (1,),
) -> str:
    """Triton's model configuration; `served`: the versions its version policy names."""
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
model_warmup [
  {{
    name: "zeros"
    batch_size: 1
    inputs {{ key: "frames" value: {{ data_type: TYPE_UINT8 dims: [ {height}, {width}, 3 ] zero_data: true }} }}
  }}
]
{version_policy(served)}
"""


def version_policy(served: list[int] | tuple[int, ...]) -> str:
    return (
        f"version_policy: {{ specific: {{ versions: [ {', '.join(map(str, sorted(served)))} ] }} }}"
    )


_POLICY = re.compile(r"^version_policy: .*$", re.MULTILINE)


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
    # config.pbtxt last, naming the versions to serve (this one now among them)
    _write_policy(
        repo_uri, name, config, config_pbtxt(name, num_classes, height, width, serving, [version])
    )
    return version


def pins(repo_uri: str, name: str, config: storage.StorageConfig | None = None) -> dict[int, str]:
    """Pinned version -> why."""
    return _parse_pins(_pins_text(storage.join(repo_uri, name, PINS_FILE), config))


def _pins_text(uri: str, config: storage.StorageConfig | None) -> str | None:
    return storage.read_bytes(uri, config).decode() if storage.exists(uri, config) else None


def _parse_pins(text: str | None) -> dict[int, str]:
    return {int(v): why for v, why in json.loads(text or "{}").items()}


def served_versions(
    repo_uri: str, name: str, config: storage.StorageConfig | None = None
) -> list[int]:
    """What Triton serves of `name`: the newest KEEP_LATEST complete versions and every pinned
    one that is complete, ascending."""
    available = versions(repo_uri, name, config)
    return sorted(
        set(available[-KEEP_LATEST:]) | (set(pins(repo_uri, name, config)) & set(available))
    )


def set_pins(
    repo_uri: str,
    name: str,
    change: dict[int, str | None],
    config: storage.StorageConfig | None = None,
) -> list[int]:
    """Pin (version -> reason) or unpin (version -> None) versions of `name`, then rewrite the
    version policy of its config.pbtxt; the versions now served. A concurrent change to the
    pins is retried (compare-and-swap), never lost."""
    available = versions(repo_uri, name, config)
    missing = [v for v, why in change.items() if why is not None and v not in available]
    if missing:
        raise PermanentError(
            f"{repo_uri}: cannot pin {name}:{missing[0]}: not published (versions: {available})"
        )
    uri = storage.join(repo_uri, name, PINS_FILE)
    for _ in range(10):
        text = _pins_text(uri, config)
        current = _parse_pins(text)
        for version, why in change.items():
            if why is None:
                current.pop(version, None)
            else:
                current[version] = why
        try:
            storage.swap_text(
                uri, text, json.dumps({str(v): current[v] for v in sorted(current)}), config
            )
            break
        except storage.Conflict:
            continue
    else:
        raise TransientError(f"{uri}: changed by others ten times in a row")
    return _write_policy(repo_uri, name, config)


def _write_policy(
    repo_uri: str, name: str, config: storage.StorageConfig | None, pbtxt: str | None = None
) -> list[int]:
    """Write config.pbtxt (`pbtxt`, or the one there) with its version policy set to what is
    served now, until a re-read of the pins agrees (a pin written meanwhile by another step
    gets into the file); the served versions."""
    config_uri = storage.join(repo_uri, name, CONFIG_FILE)
    served = served_versions(repo_uri, name, config)
    unwritten = pbtxt is not None
    for _ in range(5):
        pbtxt = pbtxt if pbtxt is not None else storage.read_bytes(config_uri, config).decode()
        policy = version_policy(served)
        if unwritten or _POLICY.search(pbtxt).group(0) != policy:  # type: ignore[union-attr]
            pbtxt = _POLICY.sub(policy, pbtxt)
            storage.atomic_write_text(config_uri, pbtxt, config)
            unwritten = False
        now = served_versions(repo_uri, name, config)
        if now == served:
            return served
        served = now
    raise TransientError(f"{config_uri}: the pins kept changing while its policy was written")


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
