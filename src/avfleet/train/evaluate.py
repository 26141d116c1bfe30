"""Evaluation: mIoU overall and per domain, from confusion matrices.

IoU of class c = TP / (TP + FP + FN); mIoU averages the classes that appear in
the ground truth or the prediction of the frames evaluated (a class absent
from both has no IoU). Per domain: the same over that domain's frames only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from avfleet.fleet.scene import NUM_CLASSES
from avfleet.train.data import iter_all


def confusion(
    pred_BHW: np.ndarray, target_BHW: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = truth, columns = prediction."""
    idx = target_BHW.astype(np.int64).ravel() * num_classes + pred_BHW.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou(conf: np.ndarray) -> float:
    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if present.any() else float("nan")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    miou: float
    miou_per_domain: dict[str, float]
    frames_per_domain: dict[str, int]
    pixel_accuracy: float


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset_uri: str, batch_size: int = 32) -> Evaluation:
    """mIoU of the ensemble mean (or the single net) on every frame of a dataset."""
    model.eval()
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    per_domain: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for batch in iter_all(dataset_uri, batch_size):
        pred = model(batch.images).softmax(2).mean(1).argmax(1).numpy()
        target = batch.masks.numpy()
        for i, domain in enumerate(batch.domains):
            c = confusion(pred[i], target[i])
            total += c
            per_domain[domain] = per_domain.get(domain, 0) + c
            counts[domain] = counts.get(domain, 0) + 1
    return Evaluation(
        miou=miou(total),
        miou_per_domain={d: miou(c) for d, c in sorted(per_domain.items())},
        frames_per_domain=dict(sorted(counts.items())),
        pixel_accuracy=float(np.trace(total) / max(total.sum(), 1)),
    )


def mean_by_time_of_day(miou_per_domain: dict[str, float]) -> dict[str, float]:
    """Per-domain mIoU (keys time/weather/road) averaged over the domains of each time of day."""
    groups: dict[str, list[float]] = {}
    for domain, value in miou_per_domain.items():
        groups.setdefault(domain.split("/")[0], []).append(value)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}
