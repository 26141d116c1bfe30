"""Evaluation: mIoU overall and per domain, from confusion matrices (avfleet.segmentation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from avfleet.segmentation import class_iou, confusion, miou
from avfleet.taxonomy import HAZARD_NAMES, NAMES, NUM_CLASSES
from avfleet.train.data import iter_all


@dataclasses.dataclass(frozen=True)
class Evaluation:
    miou: float
    miou_per_domain: dict[str, float]
    frames_per_domain: dict[str, int]
    pixel_accuracy: float
    iou_per_class: dict[str, float] = dataclasses.field(default_factory=dict)
    """IoU of each taxonomy class by name, over every frame (absent from truth and prediction:
    left out)."""


@torch.no_grad()
def _confusions(
    model: torch.nn.Module, dataset_uri: str, batch_size: int
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """The confusion matrix over every frame of a dataset, also per domain, and frames per domain."""
    model.eval()
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    per_domain: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for batch in iter_all(dataset_uri, batch_size):
        pred = model(batch.images).softmax(2).mean(1).argmax(1).numpy()
        target = batch.masks.numpy()
        for i, domain in enumerate(batch.domains):
            c = confusion(pred[i], target[i], NUM_CLASSES)
            total += c
            per_domain[domain] = per_domain.get(domain, 0) + c
            counts[domain] = counts.get(domain, 0) + 1
    return total, per_domain, counts


def evaluate(model: torch.nn.Module, dataset_uri: str, batch_size: int = 32) -> Evaluation:
    """mIoU of the ensemble mean (or the single net) on every frame of a dataset."""
    return evaluate_with_slice(model, dataset_uri, None, batch_size)


def evaluate_with_slice(
    model: torch.nn.Module, dataset_uri: str, slice_uri: str | None, batch_size: int = 32
) -> Evaluation:
    """`evaluate` on the held-out set, except the hazard classes' IoU: over the held-out set and
    its hazard-rich slice together (a rare class's IoU needs enough of its pixels, and false
    alarms on the ordinary frames still count against it). mIoU and the domains are the
    held-out set's alone."""
    total, per_domain, counts = _confusions(model, dataset_uri, batch_size)
    per_class = iou_per_class(total)
    if slice_uri:
        both = iou_per_class(total + _confusions(model, slice_uri, batch_size)[0])
        per_class.update({n: v for n, v in both.items() if n in HAZARD_NAMES})
    return Evaluation(
        miou=miou(total),
        miou_per_domain={d: miou(c) for d, c in sorted(per_domain.items())},
        frames_per_domain=dict(sorted(counts.items())),
        pixel_accuracy=float(np.trace(total) / max(total.sum(), 1)),
        iou_per_class=per_class,
    )


def iou_per_class(conf: np.ndarray) -> dict[str, float]:
    return {NAMES[c]: float(v) for c, v in enumerate(class_iou(conf)) if not np.isnan(v)}


def mean_by_time_of_day(miou_per_domain: dict[str, float]) -> dict[str, float]:
    """Per-domain mIoU (keys time/weather/road) averaged over the domains of each time of day."""
    groups: dict[str, list[float]] = {}
    for domain, value in miou_per_domain.items():
        groups.setdefault(domain.split("/")[0], []).append(value)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}
