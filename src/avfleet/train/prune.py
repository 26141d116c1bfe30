"""Joint training and pruning: channel groups, their proximal step, and physical removal.

Every convolution here feeds a BatchNorm, which undoes any scaling of what
comes before it. A penalty on conv weights can therefore shrink a whole layer
uniformly for free: the next BatchNorm renormalises it. The group theta_l^n
the proximal step shrinks is therefore the last BatchNorm on channel n's path
(network slimming's choice, the "filter" of Alvarez & Salzmann with BatchNorm
folded in). Two kinds of groups, by what a removed channel leaves behind
(avfleet.latency.widths names every prunable width of the arch):

* "constant" (a block's expanded hidden channels, the decoder's fuse output):
  only the scale gamma is penalised. At gamma = 0 the channel outputs the
  constant ReLU6(beta) whatever the input, and its consumer is a 1x1 conv, so
  removal stays exact: the constant goes into the consumer (a block's project
  BatchNorm: subtracted from its running mean; the head: added to its bias).
* "zero" (the stem's output, every stage's output, the decoder's reduce): the
  consumers include 3x3 convs with zero padding (the fuse reads the skip and
  the reduce), where a constant channel is not constant at the borders, and
  residual adds that tie stages together. Here scale and shift are penalised
  together, over every producer of the width (both BatchNorms of a residual
  space), and a channel goes only once its output is exactly zero: then its
  filters and every consumer's input column go, with nothing to absorb.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from avfleet.latency.widths import WidthVariable, width_variables, with_widths
from avfleet.train import regularizers
from avfleet.train.models import Arch, SegNet, build

BN_BUFFERS = ("running_mean", "running_var")

Slice = tuple[str, int, int]  # (state-dict key, dim, offset of this width's channels in it)


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """One prunable width and where its channels live in the state dict."""

    var: WidthVariable
    penalised: tuple[tuple[str, int], ...]  # BatchNorm scales (and shifts for "zero")
    carried: tuple[Slice, ...]  # removed with the channel, not penalised
    shift: str = ""  # "constant": the last BatchNorm's shift (a dead channel outputs ReLU6(shift))
    consumer: str = ""  # "constant": the 1x1 weight (out, size, 1, 1) that reads the channel
    absorb: tuple[str, int] = ("", 1)  # "constant": (key, sign) the consumer's constant goes to

    @property
    def name(self) -> str:
        return self.var.name

    @property
    def size(self) -> int:
        return self.var.size


def _bn(prefix: str, *params: str) -> list[tuple[str, int]]:
    return [(f"{prefix}.{p}", 0) for p in params]


def _hidden_group(var: WidthVariable, i: int, spec: dict) -> ChannelGroup:
    p = f"blocks.{i}"
    stages = (
        [f"{p}.depthwise.0", f"{p}.depthwise.1"] if spec.get("decompose") else [f"{p}.depthwise"]
    )
    carried: list[Slice] = [(f"{p}.expand.0.weight", 0, 0)]
    carried += [(k, d, 0) for k, d in _bn(f"{p}.expand.1", "weight", "bias")]
    for stage in stages[:-1]:
        carried += [(f"{stage}.0.weight", 0, 0)]
        carried += [(k, d, 0) for k, d in _bn(f"{stage}.1", "weight", "bias")]
    last = stages[-1]
    carried += [
        (f"{last}.0.weight", 0, 0),
        (f"{last}.1.bias", 0, 0),
        (f"{p}.project.0.weight", 1, 0),
    ]
    return ChannelGroup(
        var,
        ((f"{last}.1.weight", 0),),
        tuple(carried),
        shift=f"{last}.1.bias",
        consumer=f"{p}.project.0.weight",
        absorb=(f"{p}.project.1.running_mean", -1),  # BN(z + c) = BN with mean - c
    )


def _zero_group(var: WidthVariable, arch: Arch) -> ChannelGroup:
    """A width whose producers end in BatchNorm (no act or ReLU6): stem, stage outputs, reduce."""
    last_block = len(arch["blocks"]) - 1
    penalised: list[tuple[str, int]] = []
    carried: list[Slice] = []
    for path in var.paths:
        if path == ("stem",):
            producer = "stem"
        elif path == ("decoder", "reduce"):
            producer = "reduce"
            carried.append(("fuse.0.weight", 1, 0))  # the fuse reads cat(reduce, skip)
        elif path == ("decoder", "skip"):
            producer = ""
            carried.append(("fuse.0.weight", 1, arch["decoder"]["reduce"]))
        elif path[2] == "in":
            producer = ""
            carried.append((f"blocks.{path[1]}.expand.0.weight", 1, 0))
        else:  # ("blocks", i, "out")
            producer = f"blocks.{path[1]}.project"
            if path[1] == last_block:
                carried.append(("reduce.0.weight", 1, 0))
        if producer:
            penalised += _bn(f"{producer}.1", "weight", "bias")
            carried.append((f"{producer}.0.weight", 0, 0))
    return ChannelGroup(var, tuple(penalised), tuple(carried))


def channel_groups(model: SegNet) -> list[ChannelGroup]:
    """Per prunable width: the penalised BatchNorm parameters and everything removed with them."""
    if model.members != 1:
        raise ValueError("pruning works on a single network (members=1), not a stacked ensemble")
    arch = model.arch
    if any(b.get("expand_rank") or b.get("project_rank") for b in arch["blocks"]):
        raise ValueError("prune before the low-rank reload: this net has factored convolutions")
    if any(b.get("groups", 1) > 1 for b in arch["blocks"]):
        raise ValueError(
            "pruning keeps no group structure: this net has grouped 1x1 convs "
            "(search it at the smaller latency target instead)"
        )
    if arch.get("expand_ratio", 1) > 1:
        raise ValueError("contract the ExpandNets net (expand.contracted_model) before pruning it")
    groups = []
    for var in width_variables(arch):
        if var.name.startswith("blocks.") and var.name.endswith(".hidden"):
            i = int(var.name.split(".")[1])
            groups.append(_hidden_group(var, i, arch["blocks"][i]))
        elif var.name == "decoder.fuse":
            groups.append(
                ChannelGroup(
                    var,
                    (("fuse.1.weight", 0),),
                    (("fuse.0.weight", 0, 0), ("fuse.1.bias", 0, 0), ("head.weight", 1, 0)),
                    shift="fuse.1.bias",
                    consumer="head.weight",
                    absorb=("head.bias", 1),
                )
            )
        else:
            groups.append(_zero_group(var, arch))
    return groups


def _per_channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(channels, rest) view with the channel dim first."""
    return t.movedim(dim, 0).reshape(t.shape[dim], -1)


def _group_norms(params: dict[str, torch.Tensor], group: ChannelGroup) -> torch.Tensor:
    sq = torch.zeros(group.size)
    for key, dim in group.penalised:
        sq = sq + _per_channel(params[key].detach().cpu(), dim).pow(2).sum(1)
    return sq.sqrt()


def group_size(group: ChannelGroup) -> int:
    """P: how many parameters one channel's group holds (every penalised tensor is per channel)."""
    return len(group.penalised)


def group_norms(model: SegNet, group: ChannelGroup) -> torch.Tensor:
    """||theta^n||_2 of every channel n of `group`."""
    return _group_norms(dict(model.named_parameters()), group)


def all_group_norms(
    model: SegNet, groups: list[ChannelGroup] | None = None
) -> dict[str, torch.Tensor]:
    """Width name -> ||theta^n||_2 of each of its channels."""
    params = dict(model.named_parameters())
    return {g.name: _group_norms(params, g) for g in groups or channel_groups(model)}


def alive_counts(model: SegNet, groups: list[ChannelGroup] | None = None) -> dict[str, int]:
    """Channels of each width whose group is not exactly zero."""
    return {name: int((n > 0).sum()) for name, n in all_group_norms(model, groups).items()}


@torch.no_grad()
def proximal_step_(
    model: SegNet,
    lr: float,
    strength: float,
    weights: dict[str, float] | None = None,
    groups: list[ChannelGroup] | None = None,
) -> dict[str, int]:
    """Group soft-thresholding after an optimizer step; returns zeroed channels per width.

    Width l's threshold is lr * strength * weights[l] * sqrt(P_l): `weights` are the
    paper's per-layer lambda_l relative to `strength` (latency per channel, say). Every
    training step calls this: pass `groups` (channel_groups of the model) to not rebuild them.
    """
    params = dict(model.named_parameters())
    zeroed = {}
    for group in groups or channel_groups(model):
        weight = 1.0 if weights is None else weights[group.name]
        threshold = lr * strength * weight * math.sqrt(group_size(group))
        scale = regularizers.group_shrink(_group_norms(params, group), threshold)
        _scale_(params, group, scale)
        zeroed[group.name] = int((scale == 0).sum())
    return zeroed


def _scale_(params: dict[str, torch.Tensor], group: ChannelGroup, scale: torch.Tensor) -> None:
    for key, dim in group.penalised:
        shape = [1] * params[key].dim()
        shape[dim] = group.size
        params[key].mul_(scale.view(shape).to(params[key].device, params[key].dtype))


@torch.no_grad()
def mask_(
    model: SegNet, dead: dict[str, torch.Tensor], groups: list[ChannelGroup] | None = None
) -> None:
    """Keep removed channels at exactly zero (after their width is decided, training goes on)."""
    params = dict(model.named_parameters())
    for group in groups or channel_groups(model):
        if group.name in dead:
            _scale_(params, group, (~dead[group.name]).float())


@torch.no_grad()
def revive_(model: SegNet, group: ChannelGroup, channels: torch.Tensor, scale: float = 0.1) -> None:
    """Give dead channels of `group` a small BatchNorm scale again, so they can train.

    A channel at scale 0 and shift 0 outputs ReLU6(0) = 0, where ReLU6's gradient
    is 0 too: it would never come back by itself. Scale `scale`, shift 0 makes
    it a small, fresh feature of the inputs its filters still read.
    """
    params = dict(model.named_parameters())
    for key, dim in group.penalised:
        value = scale if key.endswith(".weight") else 0.0
        params[key].index_fill_(dim, channels.to(params[key].device), value)


ALIGN = 8
"""Without a latency table, kept widths round up to a multiple of this (measured: odd widths ran
no faster on ONNX Runtime). With a table, `compress.snap` picks the fastest measured width."""


@torch.no_grad()
def prune(
    model: SegNet, widths: dict[str, int] | None = None, align: int = ALIGN
) -> tuple[Arch, dict[str, torch.Tensor]]:
    """The smaller dense architecture and its weights, with the all-zero channel groups removed.

    `widths`: the width to keep for each group (at least its live channels; the
    rest of the kept channels are dead ones, which is exact too). Without it,
    live channels round up to a multiple of `align`.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    segments: dict[tuple[str, int], list[tuple[int, int, torch.Tensor]]] = {}
    groups = channel_groups(model)
    norms = all_group_norms(model, groups)
    kept_widths = {}
    for group in groups:
        alive = norms[group.name] > 0
        live = int(alive.sum())
        if widths is not None:
            width = widths[group.name]
            if not live <= width <= group.size:
                raise ValueError(
                    f"width {width} for {group.name}: it has {live} live of {group.size}"
                )
        else:
            width = min(group.size, max(align, -(-live // align) * align))
        dead = (~alive).nonzero().flatten()
        alive[dead[: width - live]] = True  # fill up with dead channels: exact where they stay
        if group.consumer:
            _absorb_constant_channels(state, group, ~alive)
        keep = alive.nonzero().flatten()
        kept_widths[group.name] = len(keep)
        for key, dim, offset in [(k, d, 0) for k, d in group.penalised] + list(group.carried):
            keys = [key]
            if key.endswith(".weight") and f"{key[:-7]}.running_mean" in state:
                keys += [f"{key[:-7]}.{b}" for b in BN_BUFFERS]
            for k in keys:
                segments.setdefault((k, dim), []).append((offset, group.size, keep))
    for (key, dim), parts in segments.items():
        state[key] = state[key].index_select(dim, _kept_index(state[key].shape[dim], parts))
    return with_widths(model.arch, kept_widths), state


def _kept_index(total: int, parts: list[tuple[int, int, torch.Tensor]]) -> torch.Tensor:
    """Indices along a dim that several widths share (the fuse reads reduce then skip)."""
    pieces, at = [], 0
    for offset, size, keep in sorted(parts, key=lambda p: p[0]):
        pieces += [torch.arange(at, offset), keep + offset]
        at = offset + size
    pieces.append(torch.arange(at, total))
    return torch.cat(pieces)


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


def pruned_model(model: SegNet, widths: dict[str, int] | None = None, align: int = ALIGN) -> SegNet:
    arch, state = prune(model, widths, align)
    small = build(arch)
    small.load_state_dict(state)
    return small
