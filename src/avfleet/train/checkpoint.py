"""Checkpoints that count only when complete.

    <run>/checkpoints/step-00000120/model.pt, optim.pt   weights (torch.save of tensors)
    <run>/checkpoints/step-00000120/meta.json            written last: step, epoch, sha256 of each file

A checkpoint exists once its meta.json does, and is loaded only if every
file's sha256 matches: a truncated or corrupt file is skipped (logged), and
training resumes from the newest checkpoint that is whole. Loading uses
`torch.load(weights_only=True)`: no pickled code runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re

import torch

from avfleet.core import storage
from avfleet.core.errors import PermanentError

log = logging.getLogger(__name__)
_STEP = re.compile(r"step-(\d+)$")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    step: int
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict
    uri: str
    meta: dict = dataclasses.field(default_factory=dict)
    """meta.json as saved: step, epoch, sha256, and the caller's `extra`."""


def _bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save(
    run_uri: str,
    step: int,
    epoch: int,
    model_state: dict,
    optimizer_state: dict,
    extra: dict | None = None,
    storage_config: storage.StorageConfig | None = None,
) -> str:
    folder = storage.join(run_uri, "checkpoints", f"step-{step:08d}")
    files = {"model.pt": _bytes(model_state), "optim.pt": _bytes(optimizer_state)}
    for name, data in files.items():
        storage.atomic_write_bytes(storage.join(folder, name), data, storage_config)
    meta = {
        "step": step,
        "epoch": epoch,
        "sha256": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
        **(extra or {}),
    }
    storage.atomic_write_text(
        storage.join(folder, "meta.json"), json.dumps(meta, indent=2), storage_config
    )
    return folder


def _load_verified(folder: str, storage_config: storage.StorageConfig | None) -> Checkpoint:
    meta = json.loads(storage.read_bytes(storage.join(folder, "meta.json"), storage_config))
    loaded = {}
    for name, digest in meta["sha256"].items():
        data = storage.read_bytes(storage.join(folder, name), storage_config)
        if hashlib.sha256(data).hexdigest() != digest:
            raise PermanentError(f"{folder}/{name}: sha256 mismatch (truncated or corrupt)")
        loaded[name] = torch.load(io.BytesIO(data), weights_only=True)
    return Checkpoint(
        step=meta["step"],
        epoch=meta["epoch"],
        model=loaded["model.pt"],
        optimizer=loaded["optim.pt"],
        uri=folder,
        meta=meta,
    )


def latest_complete(
    run_uri: str, storage_config: storage.StorageConfig | None = None
) -> Checkpoint | None:
    """The newest checkpoint whose meta exists and whose files all verify; None if there is none."""
    root = storage.join(run_uri, "checkpoints")
    metas = storage.list_files(root, "meta.json", storage_config)
    steps = []
    for uri, _ in metas:
        match = _STEP.search(uri.rsplit("/", 2)[-2])
        if match:
            steps.append((int(match.group(1)), uri.rsplit("/", 1)[0]))
    for _, folder in sorted(steps, reverse=True):
        try:
            return _load_verified(folder, storage_config)
        except (PermanentError, RuntimeError, EOFError, json.JSONDecodeError, KeyError) as e:
            log.warning("skipping checkpoint %s: %s", folder, e)
    return None
