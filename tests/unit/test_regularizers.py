"""DPE KL, group soft-thresholding and the nuclear-norm step, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from avfleet.train import regularizers as r


def test_dpe_kl_by_hand():
    # Two members, one position, fan_in 2 -> prior variance 2/2 = 1.
    # Values +1, -1: mu 0, sigma^2 1: KL = log 1 - 0.5 log 1 + (1 + 0)/2 - 1/2 = 0.
    assert r.dpe_kl(torch.tensor([[1.0], [-1.0]]), fan_in=2).item() == pytest.approx(0.0, abs=1e-6)
    # Values +0.5, -0.5: sigma^2 0.25: KL = -0.5 ln 0.25 + 0.25/2 - 0.5 = 0.693147 + 0.125 - 0.5.
    assert r.dpe_kl(torch.tensor([[0.5], [-0.5]]), fan_in=2).item() == pytest.approx(
        math.log(2) - 0.375, abs=1e-6
    )
    # Collapsed members (no spread) are penalised far more: diversity is what the term buys.
    assert r.dpe_kl(torch.tensor([[0.5], [0.499]]), fan_in=2).item() > 5.0


def test_group_soft_threshold_by_hand():
    # Filter [3, 4] has norm 5; P = 2, threshold t with t * sqrt(2) = 1 -> scale 1 - 1/5 = 0.8.
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    norms = r.group_soft_threshold_(w, threshold=1 / math.sqrt(2))
    assert torch.allclose(w[0], torch.tensor([2.4, 3.2]))
    assert torch.equal(w[1], torch.zeros(2))  # norm 0.5 < 1: the whole filter goes to exactly zero
    assert norms.tolist() == pytest.approx([4.0, 0.0])


def test_singular_value_soft_threshold_by_hand():
    w = torch.diag(torch.tensor([3.0, 1.0])).view(2, 2, 1, 1)
    rank = r.singular_value_soft_threshold_(w, threshold=1.0)
    assert rank == 1
    assert torch.allclose(w.view(2, 2), torch.diag(torch.tensor([2.0, 0.0])), atol=1e-6)
