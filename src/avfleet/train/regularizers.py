"""Regularisers and proximal steps (ALGORITHMS.md, Training), as pure functions on tensors.

* DPE (Chitta et al. 2018): for every weight position, the E member values are
  samples of one Gaussian (mean mu, variance sigma^2 across members), pulled
  towards the prior N(0, sigma_p^2) by KL = log(sigma_p / sigma) +
  (sigma^2 + mu^2) / (2 sigma_p^2) - 1/2, summed over positions and layers;
  sigma_p^2 = 2 / fan_in (He initialisation), as the paper does.
* Group sparsity (Alvarez & Salzmann 2016): r = sum_l lambda_l sqrt(P_l)
  sum_n ||theta_l^n||_2 over filters n; its proximal step soft-thresholds each
  filter's norm: theta <- max(0, 1 - eta lambda sqrt(P) / ||theta||) theta.
* Low rank (Alvarez & Salzmann 2017): the nuclear norm's proximal step
  soft-thresholds the singular values of a layer's weight matrix.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-8


def dpe_kl(weight_E: torch.Tensor, fan_in: int) -> torch.Tensor:
    """KL of the members' per-position Gaussian to the He prior; weight_E is (E, ...) per member."""
    mu = weight_E.mean(0)
    var = weight_E.var(0, unbiased=False).clamp_min(EPS)
    prior_var = 2.0 / fan_in
    kl = 0.5 * math.log(prior_var) - 0.5 * torch.log(var) + (var + mu**2) / (2.0 * prior_var) - 0.5
    return kl.sum()


def member_view(conv: torch.nn.Conv2d, members: int) -> torch.Tensor:
    """A stacked conv's weight as (E, out_per_member, in_per_group, kh, kw)."""
    w = conv.weight
    return w.view(members, w.shape[0] // members, *w.shape[1:])


def ensemble_kl(model: torch.nn.Module, members: int) -> torch.Tensor:
    """DPE regulariser summed over every convolution of a stacked ensemble."""
    total = torch.zeros(())
    for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        fan_in = conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]
        total = total + dpe_kl(member_view(conv, members), fan_in)
    return total


def group_norms(weight_OI: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output filter (dim 0) of a weight tensor."""
    return weight_OI.flatten(1).norm(dim=1)


def group_shrink(norms: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-group scale of the group-lasso proximal step: max(0, 1 - t / ||theta^n||)."""
    return (1.0 - threshold / norms.clamp_min(EPS)).clamp_min(0.0)


@torch.no_grad()
def group_soft_threshold_(weight_OI: torch.Tensor, threshold: float) -> torch.Tensor:
    """In place: scale each filter by max(0, 1 - t sqrt(P) / ||filter||); returns the norms after."""
    scale = group_shrink(group_norms(weight_OI), threshold * math.sqrt(weight_OI[0].numel()))
    weight_OI.mul_(scale.view(-1, *([1] * (weight_OI.dim() - 1))))
    return group_norms(weight_OI)


@torch.no_grad()
def singular_value_soft_threshold_(weight_OI: torch.Tensor, threshold: float) -> int:
    """In place: the nuclear norm's proximal step on the (out, rest) matrix; returns the rank."""
    matrix = weight_OI.flatten(1)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    s = (s - threshold).clamp_min(0.0)
    weight_OI.copy_(((u * s) @ vh).view_as(weight_OI))
    return int((s > 0).sum())
