"""Uncertainty measures against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from avfleet import uncertainty as u


def probs(*members):
    # one frame, one pixel: (B=1, E, K, H=1, W=1)
    return torch.tensor(members, dtype=torch.float64).view(1, len(members), -1, 1, 1)


def test_disagreeing_confident_members():
    # Members say [1, 0] and [0, 1]: mean [0.5, 0.5], H = ln 2; each member's H = 0, so MI = ln 2.
    p = probs([1.0, 0.0], [0.0, 1.0])
    assert u.predictive_entropy(p).item() == pytest.approx(math.log(2))
    assert u.expected_entropy(p).item() == pytest.approx(0.0, abs=1e-9)
    assert u.mutual_information(p).item() == pytest.approx(math.log(2))
    assert u.variation_ratio(p).item() == pytest.approx(0.5)  # 1 vote of 2 for the modal class


def test_agreeing_uncertain_members_have_no_mutual_information():
    # Both say [0.5, 0.5]: H = ln 2 everywhere, MI = 0, all votes agree.
    p = probs([0.5, 0.5], [0.5, 0.5])
    assert u.predictive_entropy(p).item() == pytest.approx(math.log(2))
    assert u.mutual_information(p).item() == pytest.approx(0.0, abs=1e-9)
    assert u.variation_ratio(p).item() == 0.0


def test_reduce_map_mean_and_top():
    m = torch.tensor([[[1.0, 2.0], [3.0, 10.0]]])  # one frame, 4 pixels
    assert u.reduce_map(m, "mean").item() == pytest.approx(4.0)
    assert u.reduce_map(m, "top", 0.25).item() == pytest.approx(10.0)  # top 1 of 4
    assert u.reduce_map(m, "top", 0.5).item() == pytest.approx(6.5)  # (10 + 3) / 2
    with pytest.raises(ValueError, match="unknown reduction"):
        u.reduce_map(m, "median")
