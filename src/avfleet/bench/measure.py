"""What a bench measures on an engine: latency, parity with the framework model, task accuracy.

The validation bundle (`bundle.npz`, written by `avfleet deploy export`) carries
everything the bench needs and nothing it must fetch elsewhere:

- `frames_NHWC` uint8 and `masks_NHW` uint8: validation frames with their labels,
  and `domains`: each frame's domain (time of day / weather / road);
- `reference_logits`: the PyTorch model's logits on the first frames (parity);
- `calibration_NHWC` uint8: training frames for INT8 calibration.
"""

from __future__ import annotations

import dataclasses
import io
import time
import zipfile
from collections.abc import Callable

import numpy as np

from avfleet.bench.engines import Runner
from avfleet.core.errors import PermanentError
from avfleet.segmentation import class_iou, confusion, miou
from avfleet.taxonomy import NAMES

BUNDLE_KEYS = ("frames_NHWC", "masks_NHW", "domains", "reference_logits", "calibration_NHWC")


@dataclasses.dataclass(frozen=True)
class Bundle:
    frames_NHWC: np.ndarray
    masks_NHW: np.ndarray
    domains: np.ndarray
    reference_logits: np.ndarray
    calibration_NHWC: np.ndarray

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, **dataclasses.asdict(self))
        return buf.getvalue()


def unpacked_bytes(data: bytes) -> int:
    """What an .npz's arrays take once decompressed, from its zip directory (nothing inflated)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise PermanentError(f"the validation bundle is not a readable .npz: {e}") from e


def load_bundle(data: bytes, max_unpacked_bytes: int | None = None) -> Bundle:
    """The bundle in `data`; with `max_unpacked_bytes`, refused before inflating beyond it.

    (zipfile never inflates a member past its declared size, so the directory's
    sizes bound what np.load allocates.)
    """
    if max_unpacked_bytes is not None and unpacked_bytes(data) > max_unpacked_bytes:
        raise PermanentError(
            f"the validation bundle unpacks to more than {max_unpacked_bytes} bytes"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as doc:
            missing = [k for k in BUNDLE_KEYS if k not in doc]
            if missing:
                raise PermanentError(f"the validation bundle lacks {missing}")
            bundle = Bundle(**{k: doc[k] for k in BUNDLE_KEYS})
    except (ValueError, OSError, EOFError) as e:  # zipfile/npz errors derive from these
        raise PermanentError(f"the validation bundle is not a readable .npz: {e}") from e
    n = len(bundle.frames_NHWC)
    if bundle.frames_NHWC.ndim != 4 or len(bundle.masks_NHW) != n or len(bundle.domains) != n:
        raise PermanentError(
            f"the validation bundle's frames {bundle.frames_NHWC.shape}, masks "
            f"{bundle.masks_NHW.shape} and domains {bundle.domains.shape} do not line up"
        )
    return bundle


def to_input(frames_NHWC: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> the model's float32 (N, 3, H, W) in [0, 1], as training feeds it."""
    return np.ascontiguousarray(frames_NHWC.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _go_on() -> None:
    pass


def call_times_ms(
    call: Callable[[], object], warmup: int, runs: int, check: Callable[[], None] = _go_on
) -> np.ndarray:
    """Milliseconds of each of `runs` timed calls after `warmup` untimed ones.

    `check` runs between calls: it raises to stop the measurement (a job's
    time limit or a cancel), so no measurement holds a bench beyond its bound.
    """
    for _ in range(warmup):
        check()
        call()
    times = np.empty(runs)
    for i in range(runs):
        check()
        started = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - started) * 1000.0
    return times


def latency_ms(
    runner: Runner,
    images_NCHW: np.ndarray,
    warmup: int,
    runs: int,
    check: Callable[[], None] = _go_on,
) -> dict:
    """p50/p99/mean of `runs` timed calls after `warmup` untimed ones."""
    times = call_times_ms(lambda: runner(images_NCHW), warmup, runs, check)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(times.mean()),
        "runs": runs,
        "warmup": warmup,
        "batch": int(images_NCHW.shape[0]),
    }


def parity(reference_logits: np.ndarray, logits: np.ndarray) -> dict:
    """Max absolute logit error, and the share of pixels whose argmax class agrees."""
    if reference_logits.shape != logits.shape:
        raise PermanentError(
            f"the engine's output {logits.shape} does not match the reference {reference_logits.shape}"
        )
    return {
        "max_abs_error": float(np.abs(reference_logits - logits).max()),
        "argmax_agreement": float((reference_logits.argmax(2) == logits.argmax(2)).mean()),
        "frames": int(len(logits)),
    }


def accuracy(
    runner: Runner,
    bundle: Bundle,
    num_classes: int,
    batch: int = 16,
    check: Callable[[], None] = _go_on,
) -> dict:
    """mIoU of the engine's predictions (ensemble mean, when E > 1) overall, per domain and
    per class (by the taxonomy's names; a class absent from truth and prediction left out)."""
    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    per_domain: dict[str, np.ndarray] = {}
    for start in range(0, len(bundle.frames_NHWC), batch):
        check()
        logits = runner(to_input(bundle.frames_NHWC[start : start + batch]))
        pred = softmax(logits, axis=2).mean(1).argmax(1)
        for i, target in enumerate(bundle.masks_NHW[start : start + batch]):
            c = confusion(pred[i], target, num_classes)
            total += c
            domain = str(bundle.domains[start + i])
            per_domain[domain] = per_domain.get(domain, 0) + c
    return {
        "miou": miou(total),
        "miou_per_domain": {d: miou(c) for d, c in sorted(per_domain.items())},
        "iou_per_class": {
            (NAMES[k] if k < len(NAMES) else str(k)): float(v)
            for k, v in enumerate(class_iou(total))
            if not np.isnan(v)
        },
        "frames": int(len(bundle.frames_NHWC)),
    }


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def measure(
    runner: Runner,
    bundle: Bundle,
    *,
    warmup: int = 20,
    runs: int = 200,
    batch: int = 1,
    check: Callable[[], None] = _go_on,
) -> dict:
    """The bench report's measurements: latency (batch `batch`), parity, accuracy."""
    reference = bundle.reference_logits
    logits = []
    for i in range(len(reference)):
        check()
        logits.append(runner(to_input(bundle.frames_NHWC[i : i + 1])))
    num_classes = int(reference.shape[2])
    return {
        "latency": latency_ms(runner, to_input(bundle.frames_NHWC[:batch]), warmup, runs, check),
        "parity": parity(reference, np.concatenate(logits)),
        "accuracy": accuracy(runner, bundle, num_classes, check=check),
    }
