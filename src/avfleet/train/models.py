"""A small encoder-decoder segmentation family, described by a plain architecture dict.

Blocks (the candidates of architecture search, avfleet.nas): inverted residual
with an expansion ratio, kernel k as k x k or as k x 1 then 1 x k
(DecomposeMe/ERFNet), dilation, and grouped 1x1 convs ("groups": the expand and
project convs split into g groups, ShuffleNet-style without the shuffle: the
depthwise conv between them mixes nothing, the next block does).
A block's 1x1 expand or project may be factored through a rank r
("expand_rank", "project_rank": a cin -> r conv, then r -> cout): what the
low-rank reload (lowrank.py) leaves behind.
The architecture dict holds every width, so a pruned net is just a dict with
smaller numbers: saved next to its weights, it rebuilds without guessing
shapes (`build(arch)`).

`members` stacks E independent networks in one graph: every convolution runs
with E times the channels and E times the groups, so member e only ever sees
member e's channels. One forward pass computes all members (a DPE ensemble)
for less than E separate passes cost.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from avfleet.taxonomy import NUM_CLASSES

Arch = dict[str, Any]


def default_arch(
    num_classes: int = NUM_CLASSES, width: float = 1.0, expansion: int = 4, decompose: bool = True
) -> Arch:
    """Stem, three encoder stages (stride 2 each), a dilated context block, a decoder."""
    w = lambda c: max(4, int(round(c * width)))  # noqa: E731
    stem = w(16)
    stages = []
    in_ch = stem
    for out_ch, stride, dilation in ((w(24), 2, 1), (w(32), 2, 1), (w(48), 2, 1), (w(48), 1, 2)):
        stages.append(
            {
                "in": in_ch,
                "hidden": in_ch * expansion,
                "out": out_ch,
                "stride": stride,
                "dilation": dilation,
                "kernel": 3,
                "decompose": decompose,
            }
        )
        in_ch = out_ch
    return {
        "version": 1,
        "num_classes": num_classes,
        "stem": stem,
        "blocks": stages,
        "decoder": {"skip": stem, "reduce": w(32), "fuse": w(32)},
    }


class ExpandedConv(nn.Module):
    """ExpandNets (Guo, Alvarez & Salzmann, NeurIPS 2020): a dense k x k conv, over-parameterised.

    cin -> r*cin (1x1), r*cin -> r*cout (k x k, the layer's stride, padding and
    dilation), r*cout -> cout (1x1), with nothing nonlinear between: the chain
    is one linear map, so after training it contracts exactly into the compact
    k x k conv (`contracted_weight`). Zero padding commutes with a bias-free 1x1
    conv, so the contraction is exact at the borders too.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int],
        ratio: int,
        *,
        stride: int,
        padding: tuple[int, int],
        dilation: int,
        bias: bool,
    ) -> None:
        super().__init__()
        self.a = nn.Conv2d(cin, ratio * cin, 1, bias=False)
        self.b = nn.Conv2d(
            ratio * cin,
            ratio * cout,
            kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=False,
        )
        self.c = nn.Conv2d(ratio * cout, cout, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x)))

    def contracted_weight(self) -> torch.Tensor:
        """W[o, i] = sum_{p, q} C[o, q] B[q, p] A[p, i], per kernel tap: (cout, cin, kh, kw)."""
        a = self.a.weight.flatten(1)  # (r cin, cin)
        c = self.c.weight.flatten(1)  # (cout, r cout)
        return torch.einsum("oq,qpyx,pi->oiyx", c, self.b.weight, a)


def _conv(
    cin: int,
    cout: int,
    kernel: tuple[int, int],
    members: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
    expand: int = 1,
) -> nn.Module:
    """A stacked conv; a dense one (groups 1, one member) expanded when expand > 1."""
    kh, kw = kernel
    pad = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
    if expand > 1 and groups == 1 and members == 1:
        return ExpandedConv(
            cin, cout, kernel, expand, stride=stride, padding=pad, dilation=dilation, bias=bias
        )
    return nn.Conv2d(
        cin * members,
        cout * members,
        kernel,
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups * members,
        bias=bias,
    )


class ConvBNAct(nn.Sequential):
    def __init__(
        self,
        cin: int,
        cout: int,
        k: int | tuple[int, int],
        members: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: bool = True,
        expand: int = 1,
    ) -> None:
        kh, kw = (k, k) if isinstance(k, int) else k
        layers: list[nn.Module] = [
            _conv(
                cin,
                cout,
                (kh, kw),
                members,
                stride=stride,
                dilation=dilation,
                groups=groups,
                expand=expand,
            ),
            nn.BatchNorm2d(cout * members),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise k x k (or k x 1 then 1 x k), dilated -> 1x1 project, residual when shapes allow."""

    def __init__(self, spec: dict, members: int, expand: int = 1) -> None:
        super().__init__()
        cin, hidden, cout = spec["in"], spec["hidden"], spec["out"]
        k, stride, dilation = spec["kernel"], spec["stride"], spec["dilation"]
        # A factored 1x1 conv is `*_in` (cin -> rank, no BN) followed by the usual ConvBNAct.
        groups = int(spec.get("groups", 1))
        if groups > 1 and (spec.get("expand_rank") or spec.get("project_rank")):
            raise ValueError("a block is either grouped or low-rank factored, not both")
        self.expand_in, expand_cin = _factor(cin, spec.get("expand_rank"), members)
        self.expand = ConvBNAct(expand_cin, hidden, 1, members, groups=groups, expand=expand)
        if spec.get("decompose"):
            self.depthwise = nn.Sequential(
                ConvBNAct(
                    hidden,
                    hidden,
                    (k, 1),
                    members,
                    stride=stride,
                    dilation=dilation,
                    groups=hidden,
                    act=False,
                ),
                ConvBNAct(hidden, hidden, (1, k), members, dilation=dilation, groups=hidden),
            )
        else:
            self.depthwise = ConvBNAct(
                hidden, hidden, k, members, stride=stride, dilation=dilation, groups=hidden
            )
        self.project_in, project_cin = _factor(hidden, spec.get("project_rank"), members)
        self.project = ConvBNAct(
            project_cin, cout, 1, members, groups=groups, act=False, expand=expand
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.project_in(self.depthwise(self.expand(self.expand_in(x)))))
        return x + y if self.residual else y


def _factor(cin: int, rank: int | None, members: int) -> tuple[nn.Module, int]:
    """(the cin -> rank first factor, or identity when unfactored; the channels it outputs)."""
    if rank is None:
        return nn.Identity(), cin
    return nn.Conv2d(cin * members, rank * members, 1, groups=members, bias=False), rank


class SegNet(nn.Module):
    """Input (B, 3, H, W) in [0, 1]; output logits (B, members, classes, H, W)."""

    def __init__(self, arch: Arch, members: int = 1) -> None:
        super().__init__()
        self.arch = copy.deepcopy(arch)
        self.members = members
        r = int(arch.get("expand_ratio", 1))  # ExpandNets: dense convs trained expanded
        self.stem = ConvBNAct(3, arch["stem"], 3, members, stride=2, expand=r)  # 3E in, E groups
        self.blocks = nn.Sequential(*[InvertedResidual(b, members, r) for b in arch["blocks"]])
        dec = arch["decoder"]
        self.reduce = ConvBNAct(arch["blocks"][-1]["out"], dec["reduce"], 1, members, expand=r)
        self.fuse = ConvBNAct(dec["reduce"] + dec["skip"], dec["fuse"], 3, members, expand=r)
        self.head = _conv(dec["fuse"], arch["num_classes"], (1, 1), members, bias=True, expand=r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.members > 1:
            x = x.repeat(1, self.members, 1, 1)  # each member gets its own copy of the image
        skip = self.stem(x)
        y = self.reduce(self.blocks(skip))
        y = nn.functional.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(_interleave(y, skip, self.members))
        logits = self.head(y)
        logits = nn.functional.interpolate(
            logits, size=(h, w), mode="bilinear", align_corners=False
        )
        return logits.view(b, self.members, self.arch["num_classes"], h, w)


def _interleave(a: torch.Tensor, b: torch.Tensor, members: int) -> torch.Tensor:
    """Concatenate channels member by member, so grouped convs keep members apart."""
    if members == 1:
        return torch.cat([a, b], dim=1)
    n = a.shape[0]
    a = a.view(n, members, -1, *a.shape[-2:])
    b = b.view(n, members, -1, *b.shape[-2:])
    return torch.cat([a, b], dim=2).flatten(1, 2)


def build(arch: Arch, members: int = 1) -> SegNet:
    if arch.get("expand_ratio", 1) > 1 and members != 1:
        raise ValueError("ExpandNets (expand_ratio > 1) trains a single network, not an ensemble")
    return SegNet(arch, members)


def contracted_model(model: SegNet) -> SegNet:
    """The compact net of an ExpandNets net: every ExpandedConv contracted exactly into one conv."""
    arch = copy.deepcopy(model.arch)
    if arch.pop("expand_ratio", 1) <= 1:
        return model
    state = {}
    expanded = {n: m for n, m in model.named_modules() if isinstance(m, ExpandedConv)}
    for key, value in model.state_dict().items():
        owner = next((n for n in expanded if key.startswith(f"{n}.")), None)
        if owner is None:
            state[key] = value
    with torch.no_grad():
        for name, module in expanded.items():
            state[f"{name}.weight"] = module.contracted_weight()
            if module.c.bias is not None:
                state[f"{name}.bias"] = module.c.bias.detach().clone()
    compact = build(arch)
    compact.load_state_dict(state)
    return compact.train(model.training)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
