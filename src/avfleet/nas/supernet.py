"""The supernet: every candidate block of every layer, mixed through Gumbel-softmax masks.

Architecture parameters alpha_v (one logit vector per variable of the space)
give masks by Gumbel-softmax (Jang et al. 2017, as FBNet uses it):

    m_v = softmax((alpha_v + g_v) / tau),   g_v = -log(-log(u)),  u ~ U(0, 1)

A layer outputs sum_i m_{l,i} * block_i(x) (`hard=False`, FBNet: every
candidate runs), or, with `hard=True` (GDAS, Dong & Yang 2019), only the
sampled candidate runs and the mask is the straight-through one-hot
(value one-hot, gradient the softmax's): a step costs one sampled net, not
all of them, which is what makes a search fit on two CPU cores.

A width variable masks channels (FBNetV2's channel masking): candidates are
built at the largest width and channel c is scaled by sum_j m_{v,j} * [c < w_j],
the probability that the sampled width keeps it.

The Gumbel noise comes from a generator seeded by (seed, step), the same on
every rank, so under DDP every rank samples the same architecture each step and
the architecture parameters, updated from all-reduced gradients, stay identical.
"""

from __future__ import annotations

import torch
from torch import nn

from avfleet.nas.space import OPS, SearchSpace, block_spec
from avfleet.train.models import ConvBNAct, InvertedResidual


def gumbel_masks(
    alpha: dict[str, torch.Tensor],
    tau: float,
    generator: torch.Generator | None,
    *,
    hard: bool,
    noise: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Per variable: soft Gumbel-softmax masks, or straight-through one-hot ones (`hard`).

    `noise` (u per variable, in (0, 1)) replaces the generator's draws: for tests.
    """
    out = {}
    for name, logits in alpha.items():
        u = (
            noise[name]
            if noise is not None
            else torch.rand(logits.shape, generator=generator).clamp_(1e-9, 1 - 1e-9)
        )
        soft = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=0)
        if hard:
            one_hot = torch.zeros_like(soft)
            one_hot[int(soft.argmax())] = 1.0
            soft = one_hot - soft.detach() + soft
        out[name] = soft
    return out


def annealed_tau(step: int, total: int, start: float, end: float) -> float:
    """Exponential annealing from `start` at step 0 to `end` at `total` (FBNet decays per epoch)."""
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    return start * (end / start) ** frac


class SuperNet(nn.Module):
    """Input (B, 3, H, W); output logits (B, 1, classes, H, W), as SegNet with one member."""

    members = 1

    def __init__(self, space: SearchSpace, *, hard: bool = True) -> None:
        super().__init__()
        self.space, self.hard = space, hard
        top = {name: max(choices) for name, choices in space.widths.items()}
        for name, choices in space.widths.items():
            keep = torch.tensor(
                [[1.0 if c < w else 0.0 for c in range(top[name])] for w in choices]
            )
            self.register_buffer(f"keep_{name}", keep, persistent=False)
        self.stem = ConvBNAct(3, top["stem"], 3, 1, stride=2)
        self.layers = nn.ModuleList()
        for layer in space.layers:
            cin, cout = top[layer.width_in], top[layer.width_out]
            self.layers.append(
                nn.ModuleList(
                    nn.Identity()
                    if OPS[op] is None
                    else InvertedResidual(block_spec(OPS[op], cin, cout, layer.stride), 1)
                    for op in layer.ops
                )
            )
        self.reduce = ConvBNAct(top[space.layers[-1].width_out], top["decoder"], 1, 1)
        self.fuse = ConvBNAct(top["decoder"] + top["stem"], top["decoder"], 3, 1)
        self.head = nn.Conv2d(top["decoder"], space.num_classes, 1, bias=True)

    def _channels(self, x: torch.Tensor, masks: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        keep = masks[name] @ getattr(self, f"keep_{name}")  # (C,): P(channel c is kept)
        return x * keep.view(1, -1, 1, 1)

    def _mix(self, candidates: nn.ModuleList, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.hard:
            i = int(mask.detach().argmax())
            return mask[i] * candidates[i](x)
        return sum(mask[i] * block(x) for i, block in enumerate(candidates))

    def forward(self, x: torch.Tensor, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        _, _, h, w = x.shape
        skip = self._channels(self.stem(x), masks, "stem")
        y = skip
        for i, (layer, candidates) in enumerate(zip(self.space.layers, self.layers, strict=True)):
            y = self._channels(self._mix(candidates, masks[f"op.{i}"], y), masks, layer.width_out)
        y = self._channels(self.reduce(y), masks, "decoder")
        y = nn.functional.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        y = self._channels(self.fuse(torch.cat([y, skip], dim=1)), masks, "decoder")
        logits = nn.functional.interpolate(
            self.head(y), size=(h, w), mode="bilinear", align_corners=False
        )
        return logits.unsqueeze(1)


def init_alpha(space: SearchSpace) -> dict[str, torch.Tensor]:
    """Zero logits: every choice equally likely at the start."""
    return {
        name: torch.zeros(len(choices), requires_grad=True)
        for name, choices in space.variables().items()
    }


def argmax_choice(space: SearchSpace, alpha: dict[str, torch.Tensor]) -> dict:
    variables = space.variables()
    return {name: variables[name][int(alpha[name].argmax())] for name in variables}
