"""Ensemble uncertainty (ALGORITHMS.md, Mining): pure functions on probability arrays.

Shapes are in the names: probs_BEKHW is (batch, members, classes, height, width).
Natural logarithms. Per-pixel maps reduce to one score per frame by the mean,
or by the mean of the top-q fraction of pixels (`reduce_map`).
"""

from __future__ import annotations

import torch

EPS = 1e-12


def entropy(probs_BK: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return -(probs_BK * torch.log(probs_BK.clamp_min(EPS))).sum(dim)


def predictive_entropy(probs_BEKHW: torch.Tensor) -> torch.Tensor:
    """H[mean_e p_e] per pixel: (B, H, W)."""
    return entropy(probs_BEKHW.mean(1), dim=1)


def expected_entropy(probs_BEKHW: torch.Tensor) -> torch.Tensor:
    """mean_e H[p_e] per pixel: (B, H, W)."""
    return entropy(probs_BEKHW, dim=2).mean(1)


def mutual_information(probs_BEKHW: torch.Tensor) -> torch.Tensor:
    """BALD: predictive minus expected entropy (>= 0 up to rounding), per pixel."""
    return (predictive_entropy(probs_BEKHW) - expected_entropy(probs_BEKHW)).clamp_min(0.0)


def variation_ratio(probs_BEKHW: torch.Tensor) -> torch.Tensor:
    """1 - (members voting for the modal class) / E, per pixel."""
    votes_BEHW = probs_BEKHW.argmax(2)
    num_classes = probs_BEKHW.shape[2]
    counts_BHWK = torch.nn.functional.one_hot(votes_BEHW, num_classes).sum(1)
    return 1.0 - counts_BHWK.max(-1).values.float() / probs_BEKHW.shape[1]


def reduce_map(map_BHW: torch.Tensor, how: str = "mean", top_fraction: float = 0.1) -> torch.Tensor:
    """One score per frame: "mean", or "top" (mean of the top `top_fraction` of pixels)."""
    flat = map_BHW.flatten(1)
    if how == "mean":
        return flat.mean(1)
    if how == "top":
        k = max(1, int(int(flat.shape[1]) * top_fraction + 0.5))  # a constant when traced
        return flat.topk(k, dim=1).values.mean(1)
    raise ValueError(f"reduce_map: unknown reduction {how!r} (mean or top)")
