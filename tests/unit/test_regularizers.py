"""DPE KL, group soft-thresholding and the nuclear-norm step, by hand."""

from __future__ import annotations

import math

import numpy as np
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


def test_enet_class_weights_lift_rare_classes_within_bounds():
    """w_k = 1 / ln(1.02 + p_k): half the pixels 1/ln(1.52) = 2.39, 49% 1/ln(1.51) = 2.43, a class with
    1% of them 1/ln(1.03) = 33.8, an absent class the bound 1/ln(1.02) = 50.5."""
    from avfleet.train.loop import enet_class_weights

    w = enet_class_weights(np.array([50, 49, 1, 0]))
    assert w.tolist() == pytest.approx([2.388, 2.427, 33.83, 50.50], abs=0.01)


def test_class_weights_reweigh_the_loss_and_keep_its_scale():
    """With equal weights the weighted loss is the plain one; a weight on one class moves the
    mean towards that class's pixels (a weighted mean over the labeled pixels, both paths)."""
    from avfleet.train.loop import loss_fn

    torch.manual_seed(0)
    logits = torch.randn(2, 2, 3, 4, 4)
    masks = torch.randint(0, 3, (2, 4, 4))
    ones = torch.ones(3)
    assert torch.allclose(loss_fn(logits, masks, None, ones), loss_fn(logits, masks))
    frames = torch.tensor([1.0, 1.0])
    assert torch.allclose(loss_fn(logits, masks, frames, ones), loss_fn(logits, masks))
    only_0 = torch.tensor([1.0, 0.0, 0.0])
    target = masks.unsqueeze(1).expand(2, 2, 4, 4).reshape(4, 4, 4)
    per_pixel = torch.nn.functional.cross_entropy(
        logits.reshape(4, 3, 4, 4), target, reduction="none"
    )
    class_0 = 2 * per_pixel[target == 0].mean()  # the members' sum
    assert torch.allclose(loss_fn(logits, masks, None, only_0), class_0)
    assert torch.allclose(loss_fn(logits, masks, frames, only_0), class_0)
