"""Joint training and pruning: channel groups, their proximal step, and physical removal.

Every convolution here feeds a BatchNorm, which undoes any scaling of what
comes before it. A penalty on conv weights, or on a BatchNorm's scale and
shift together, can therefore shrink a whole layer uniformly for free: the
next BatchNorm renormalises it. The group theta_l^n the proximal step shrinks
is the scale gamma of the last BatchNorm on channel n's path (P = 1: the
"filter" of Alvarez & Salzmann with BatchNorm folded in, network slimming's
choice). Its shift beta is not penalised, so shrinking gamma changes what the
channel adds.

When gamma is zero the channel outputs the constant ReLU6(beta), whatever the
input. Removing it is still exact: the constant goes into its consumer (a
block's 1x1 project, followed by BatchNorm: subtracted from that BatchNorm's
running mean; the decoder's fuse output, consumed by the head's 1x1: added to
the head's bias), and the filters producing the channel and the input column
consuming it are dropped. Prunable channels of `SegNet` (members=1): the
expanded hidden channels of every inverted residual block and the decoder's
fuse output. Block outputs stay (residual connections tie them together), and
so does the decoder's reduce output (a 3x3 conv with zero padding consumes it:
a constant channel there is not constant at the borders).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from avfleet.train import regularizers
from avfleet.train.models import Arch, SegNet, build

BN_PARAMS = ("weight", "bias")
BN_BUFFERS = ("running_mean", "running_var")


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels of one width in the arch, and where each lives in the state dict: (key, dim)."""

    arch_path: tuple  # e.g. ("blocks", 2, "hidden")
    slices: tuple[tuple[str, int], ...]  # penalised: the last BatchNorm's scale
    size: int
    carried: tuple[tuple[str, int], ...] = ()  # removed with the channel, not penalised
    shift: str = ""  # the last BatchNorm's shift: a removed channel outputs ReLU6(shift)
    consumer: str = ""  # the 1x1 weight (out, size, 1, 1) that reads the channel
    absorb: tuple[str, int] = ("", 1)  # (key, sign): the consumer's constant is added times sign


def _bn(prefix: str) -> list[tuple[str, int]]:
    return [(f"{prefix}.{p}", 0) for p in BN_PARAMS]


def channel_groups(model: SegNet) -> list[ChannelGroup]:
    """Per prunable width: the penalised BatchNorm scale and everything removed with it."""
    if model.members != 1:
        raise ValueError("pruning works on a single network (members=1), not a stacked ensemble")
    arch = model.arch
    if any(b.get("expand_rank") or b.get("project_rank") for b in arch["blocks"]):
        raise ValueError("prune before the low-rank reload: this net has factored convolutions")
    groups = []
    for i, spec in enumerate(arch["blocks"]):
        p = f"blocks.{i}"
        stages = (
            [f"{p}.depthwise.0", f"{p}.depthwise.1"]
            if spec.get("decompose")
            else [f"{p}.depthwise"]
        )
        carried = [(f"{p}.expand.0.weight", 0), *_bn(f"{p}.expand.1")]
        for stage in stages[:-1]:
            carried += [(f"{stage}.0.weight", 0), *_bn(f"{stage}.1")]
        last = stages[-1]
        carried += [(f"{last}.0.weight", 0), (f"{last}.1.bias", 0), (f"{p}.project.0.weight", 1)]
        groups.append(
            ChannelGroup(
                ("blocks", i, "hidden"),
                ((f"{last}.1.weight", 0),),
                spec["hidden"],
                tuple(carried),
                shift=f"{last}.1.bias",
                consumer=f"{p}.project.0.weight",
                absorb=(f"{p}.project.1.running_mean", -1),  # BN(z + c) = BN with mean - c
            )
        )
    fuse = arch["decoder"]["fuse"]
    groups.append(
        ChannelGroup(
            ("decoder", "fuse"),
            (("fuse.1.weight", 0),),
            fuse,
            (("fuse.0.weight", 0), ("fuse.1.bias", 0), ("head.weight", 1)),
            shift="fuse.1.bias",
            consumer="head.weight",
            absorb=("head.bias", 1),
        )
    )
    return groups


def _per_channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(channels, rest) view with the channel dim first."""
    return t.movedim(dim, 0).reshape(t.shape[dim], -1)


def _group_norms(params: dict[str, torch.Tensor], group: ChannelGroup) -> torch.Tensor:
    sq = torch.zeros(group.size)
    for key, dim in group.slices:
        sq = sq + _per_channel(params[key], dim).pow(2).sum(1)
    return sq.sqrt()


def _group_size(params: dict[str, torch.Tensor], group: ChannelGroup) -> int:
    """P: how many parameters one channel's group holds."""
    return sum(params[k].numel() // params[k].shape[d] for k, d in group.slices)


def group_norms(model: SegNet, group: ChannelGroup) -> torch.Tensor:
    """||theta^n||_2 of every channel n of `group`."""
    return _group_norms(dict(model.named_parameters()), group)


@torch.no_grad()
def proximal_step_(model: SegNet, lr: float, strength: float) -> dict[tuple, int]:
    """Group soft-thresholding after an optimizer step; returns zeroed channels per group."""
    params = dict(model.named_parameters())
    zeroed = {}
    for group in channel_groups(model):
        threshold = lr * strength * math.sqrt(_group_size(params, group))
        scale = regularizers.group_shrink(_group_norms(params, group), threshold)
        for key, dim in group.slices:
            shape = [1] * params[key].dim()
            shape[dim] = group.size
            params[key].mul_(scale.view(shape))
        zeroed[group.arch_path] = int((scale == 0).sum())
    return zeroed


ALIGN = 8
"""Kept widths are rounded up to a multiple of this (measured: odd widths ran no faster on ONNX
Runtime than the unpruned net, 45% fewer parameters notwithstanding). Keeping a zeroed channel
is exact too: it adds its constant where it is."""


@torch.no_grad()
def prune(model: SegNet, align: int = ALIGN) -> tuple[Arch, dict[str, torch.Tensor]]:
    """The smaller dense architecture and its weights, with the all-zero channel groups removed."""
    import copy

    arch = copy.deepcopy(model.arch)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for group in channel_groups(model):
        alive = group_norms(model, group) > 0
        width = min(group.size, max(align, -(-int(alive.sum()) // align) * align))
        dead = (~alive).nonzero().flatten()
        alive[dead[: width - int(alive.sum())]] = True  # round up with zeroed channels
        keep = alive.nonzero().flatten()
        _absorb_constant_channels(state, group, ~alive)
        node = arch
        for part in group.arch_path[:-1]:
            node = node[part]
        node[group.arch_path[-1]] = len(keep)
        for key, dim in group.slices + group.carried:
            keys = [key]
            if key.endswith(".weight") and f"{key[:-7]}.running_mean" in state:
                keys += [f"{key[:-7]}.{b}" for b in BN_BUFFERS]
            for k in keys:
                state[k] = state[k].index_select(dim, keep)
    return arch, state


def _absorb_constant_channels(
    state: dict[str, torch.Tensor], group: ChannelGroup, removed: torch.Tensor
) -> None:
    """Channels with zero scale output ReLU6(shift) everywhere: move that into the consumer."""
    if not removed.any():
        return
    constant = torch.nn.functional.relu6(state[group.shift][removed])
    weight = state[group.consumer].flatten(2).sum(2)  # (out, size): a 1x1 conv
    contribution = weight[:, removed] @ constant
    key, sign = group.absorb
    state[key] = state[key] + sign * contribution


def pruned_model(model: SegNet, align: int = ALIGN) -> SegNet:
    arch, state = prune(model, align)
    small = build(arch)
    small.load_state_dict(state)
    return small
