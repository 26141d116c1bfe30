"""Label Studio's brush masks: its RLE encoding, predictions to pre-annotate, exports to masks.

A BrushLabels result carries one painted layer as `rle`: the layer's RGBA pixels (height x
width x 4, row-major) packed with the rle-pack scheme Label Studio's front end uses:

    32 bits   number of values N
    5 bits    word size - 1 (8: bytes)
    4 x 4 bits  the four run-length field sizes - 1 (3, 4, 8, 16)
    then, until N values: 1 bit kind (1: one value repeated, 0: literal values),
    2 bits which length field, that field's bits (run length - 1), then the word once
    (repeated) or run-length words (literal); bits MSB first, the last byte zero-padded.

Written here, not imported: label-studio-sdk implements the same codec, but it needs
numpy 2 and avfleet's serving stack (nvidia-pytriton) needs numpy 1, so the two cannot share
an environment. tests/unit/test_labelstudio.py checks this codec against the SDK's (in its own
venv, tools/build.sh) in both directions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd

from avfleet import taxonomy
from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.dataset.labels import IGNORE, encode_mask_png

WORD_BITS = 8
RUN_FIELDS = (3, 4, 8, 16)
"""Bits of the four run-length fields (a run of up to 2**16 values in one chunk)."""
BRUSH = "mask"
IMAGE = "image"
"""The labeling config's tag names (taxonomy.label_studio_config)."""


class _Bits:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, bits: int) -> None:
        for shift in range(bits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> shift) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                self.acc = self.n = 0

    def done(self) -> list[int]:
        if self.n:
            self.out.append(self.acc << (8 - self.n))
        return list(self.out)


def _field(length: int) -> int:
    """The smallest run-length field that holds `length - 1`."""
    for i, bits in enumerate(RUN_FIELDS):
        if length - 1 < (1 << bits):
            return i
    raise AssertionError("runs are split below the largest field")


def encode_rle(values: np.ndarray) -> list[int]:
    """uint8 values -> Label Studio's RLE bytes (as the JSON list of ints it stores)."""
    values = np.asarray(values, dtype=np.uint8).ravel()
    bits = _Bits()
    bits.put(len(values), 32)
    bits.put(WORD_BITS - 1, 5)
    for size in RUN_FIELDS:
        bits.put(size - 1, 4)
    longest = 1 << RUN_FIELDS[-1]
    if not len(values):
        return bits.done()
    starts = np.flatnonzero(np.diff(values.astype(np.int16))) + 1
    bounds = np.concatenate([[0], starts, [len(values)]]).astype(np.int64)
    literal: list[int] = []

    def flush_literal() -> None:
        while literal:
            chunk, literal[:] = literal[:longest], literal[longest:]
            field = _field(len(chunk))
            bits.put(0, 1)
            bits.put(field, 2)
            bits.put(len(chunk) - 1, RUN_FIELDS[field])
            for v in chunk:
                bits.put(v, WORD_BITS)

    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        run, value = int(b - a), int(values[a])
        if run == 1:
            literal.append(value)
            continue
        flush_literal()
        while run:
            chunk = min(run, longest)
            field = _field(chunk)
            bits.put(1, 1)
            bits.put(field, 2)
            bits.put(chunk - 1, RUN_FIELDS[field])
            bits.put(value, WORD_BITS)
            run -= chunk
    flush_literal()
    return bits.done()


def decode_rle(rle: list[int] | bytes) -> np.ndarray:
    """Label Studio's RLE bytes -> the uint8 values; a clear error for a malformed one."""
    data = bytes(rle)
    total_bits = len(data) * 8
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        if pos + n > total_bits:
            raise PermanentError(f"brush RLE ends early (bit {pos} of {total_bits})")
        value = 0
        for _ in range(n):
            value = (value << 1) | ((data[pos >> 3] >> (7 - (pos & 7))) & 1)
            pos += 1
        return value

    count = take(32)
    word = take(5) + 1
    fields = [take(4) + 1 for _ in range(4)]
    if count > 64 * 1024 * 1024:
        raise PermanentError(f"brush RLE declares {count} values (a 4k RGBA mask is 35M)")
    out = np.zeros(count, dtype=np.uint8)
    i = 0
    while i < count:
        repeated = take(1)
        run = take(fields[take(2)]) + 1
        if i + run > count:
            raise PermanentError(f"brush RLE run past its {count} values")
        if repeated:
            out[i : i + run] = take(word)
        else:
            out[i : i + run] = [take(word) for _ in range(run)]
        i += run
    return out


def layer_rle(painted: np.ndarray) -> list[int]:
    """A (H, W) boolean layer as Label Studio paints it: RGBA, 255 where painted."""
    return encode_rle(np.repeat(np.where(painted, 255, 0).astype(np.uint8).ravel(), 4))


def layer_from_rle(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    values = decode_rle(rle)
    if values.size != height * width * 4:
        raise PermanentError(
            f"brush RLE holds {values.size} values, not {height}x{width} RGBA pixels"
        )
    return values.reshape(height, width, 4)[:, :, 3] > 0


def mask_results(mask: np.ndarray) -> list[dict]:
    """A class mask -> one BrushLabels result per class it shows (IGNORE pixels unpainted)."""
    height, width = mask.shape
    return [
        {
            "from_name": BRUSH,
            "to_name": IMAGE,
            "type": "brushlabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": layer_rle(mask == c.id), "brushlabels": [c.name]},
        }
        for c in taxonomy.CLASSES
        if (mask == c.id).any()
    ]


def prediction(mask: np.ndarray, model_version: str, score: float | None = None) -> dict:
    """A task's `predictions` entry: the model's mask as brush layers, for labelers to correct."""
    out = {"model_version": model_version, "result": mask_results(mask)}
    if score is not None:
        out["score"] = float(score)
    return out


def mask_from_results(results: list[dict]) -> np.ndarray | None:
    """Brush results of one annotation -> a class mask (unpainted pixels IGNORE; where layers
    overlap, the later one wins, as Label Studio draws them); None when it has no brush."""
    mask = None
    for r in results:
        if r.get("type", "").lower() != "brushlabels":
            continue
        value = r.get("value", r)
        names = value.get("brushlabels") or []
        if value.get("format", "rle") != "rle" or len(names) != 1:
            raise PermanentError(f"brush result {r.get('id', '?')}: one label in RLE expected")
        try:
            cls = taxonomy.by_name(names[0])
        except KeyError as e:
            raise PermanentError(f"brush result {r.get('id', '?')}: {e.args[0]}") from None
        height, width = int(r["original_height"]), int(r["original_width"])
        if mask is None:
            mask = np.full((height, width), IGNORE, dtype=np.uint8)
        elif mask.shape != (height, width):
            raise PermanentError(f"brush result {r.get('id', '?')}: size differs from the others")
        mask[layer_from_rle(value["rle"], height, width)] = cls.id
    return mask


@dataclasses.dataclass(frozen=True)
class Annotation:
    frame_id: str
    mask: np.ndarray
    annotation_id: int
    annotator: str
    task_id: int


def annotations(export: list[dict]) -> dict[str, Annotation]:
    """Label Studio's JSON export -> frame_id -> its newest submitted, not cancelled,
    annotation with a brush mask."""
    out: dict[str, Annotation] = {}
    for task in export:
        frame_id = (task.get("data") or {}).get("frame_id")
        if not frame_id:
            raise PermanentError(f"task {task.get('id')}: no data.frame_id (not an avfleet task)")
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        for a in sorted(done, key=lambda a: (a.get("updated_at") or "", a.get("id", 0)))[::-1]:
            mask = mask_from_results(a.get("result") or [])
            if mask is not None:
                who = a.get("completed_by")
                annotator = who.get("email", "") if isinstance(who, dict) else str(who or "")
                out[frame_id] = Annotation(frame_id, mask, int(a["id"]), annotator, task["id"])
                break
    return out


class LabelStudioLabels:
    """Labels from a Label Studio project's JSON export (`--labels labelstudio:URI`): a
    person's masks, each frame's annotation id and annotator kept as its provenance."""

    source = "human"

    def __init__(
        self, export_uri: str, storage_config: storage.StorageConfig | None = None
    ) -> None:
        data = storage.read_bytes(export_uri, storage_config)
        try:
            export = json.loads(data)
        except json.JSONDecodeError as e:
            raise PermanentError(f"{export_uri}: not Label Studio's JSON export ({e})") from None
        if not isinstance(export, list):
            raise PermanentError(
                f"{export_uri}: expected a list of tasks (Label Studio's JSON export)"
            )
        self.annotations = annotations(export)
        self.label_version = "labelstudio-" + hashlib.sha256(data).hexdigest()[:12]

    @property
    def provenance(self) -> dict[str, dict]:
        return {
            f: {"annotation_id": a.annotation_id, "annotator": a.annotator, "task_id": a.task_id}
            for f, a in self.annotations.items()
        }

    def labels(self, frames: pd.DataFrame) -> dict[str, bytes]:
        missing = sorted(set(frames["frame_id"]) - set(self.annotations))
        if missing:
            raise PermanentError(
                f"{len(missing)} selected frames have no annotation in the export, e.g. {missing[0]}"
            )
        return {f: encode_mask_png(self.annotations[f].mask) for f in frames["frame_id"]}
