"""Segmentation accuracy as pure numpy: confusion matrices and mIoU.

IoU of class c = TP / (TP + FP + FN); mIoU averages the classes that appear in
the ground truth or the prediction of the frames counted (a class absent from
both has no IoU). Numpy only, so the bench agent (a small image on the device)
scores task accuracy with the same definition as training-time evaluation.
"""

from __future__ import annotations

import numpy as np


def confusion(pred_BHW: np.ndarray, target_BHW: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = truth, columns = prediction."""
    idx = target_BHW.astype(np.int64).ravel() * num_classes + pred_BHW.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class absent from both truth and prediction."""
    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def miou(conf: np.ndarray) -> float:
    iou = class_iou(conf)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else float("nan")
