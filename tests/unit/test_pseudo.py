"""Pseudo-labels: which domains are short, and the consensus mask with disagreement ignored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfleet.core.errors import ConfigError
from avfleet.dataset.labels import IGNORE
from avfleet.mining.pseudo import PseudoConfig, consensus_masks, shortfall
from avfleet.train.loop import TrainConfig, frame_weights, loss_fn


def test_shortfall_fills_towards_the_mean_per_domain():
    labeled = {"day/clear/urban": 90, "night/clear/urban": 6, "day/rain/urban": 24}
    domains = ["day/clear/urban", "night/clear/urban", "day/rain/urban", "day/snow/urban"]
    # mean over the 4 domains the date holds: 120 / 4 = 30
    assert shortfall(labeled, domains) == {
        "day/rain/urban": 6,
        "day/snow/urban": 30,
        "night/clear/urban": 24,
    }
    assert shortfall({"a": 5, "b": 5}, ["a", "b"]) == {}
    assert shortfall(labeled, []) == {}


def test_consensus_mask_ignores_pixels_where_members_disagree():
    probs = torch.zeros(1, 3, 4, 2, 2)  # N, E, K, H, W
    probs[0, :, 1] = 0.7  # every member says class 1 ...
    probs[0, :, 0] = 0.3
    probs[0, 2, 3, 0, 0] = 0.9  # ... except member 2 at pixel (0, 0)
    masks, labeled = consensus_masks(probs)
    assert masks.dtype == np.uint8
    assert masks[0].tolist() == [[IGNORE, 1], [1, 1]]
    assert labeled.tolist() == [0.75]


def test_pseudo_weight_scales_frames_and_ignored_pixels_count_for_nothing():
    logits = torch.randn(2, 3, 5, 4, 4)
    masks = torch.randint(0, 5, (2, 4, 4))
    assert frame_weights(["oracle", "human"], 0.5) is None
    assert frame_weights(["oracle", "pseudo"], 1.0) is None
    w = frame_weights(["oracle", "pseudo"], 0.0)
    assert w.tolist() == [1.0, 0.0]
    # weight 0 on frame 1: its pixels count in the mean's denominator but add no loss
    full = loss_fn(logits, masks, w)
    only_first = loss_fn(logits[:1], masks[:1])
    assert torch.allclose(full, only_first / 2)
    ignored = masks.clone()
    ignored[1] = IGNORE
    assert torch.allclose(loss_fn(logits, ignored), only_first)
    with pytest.raises(ConfigError, match="pseudo_label_weight"):
        TrainConfig(dataset_uri="d", out_uri="o", pseudo_label_weight=2.0)
    with pytest.raises(ConfigError, match="confidence_quantile"):
        PseudoConfig(confidence_quantile=0.0)
