"""A SegNet architecture (avfleet.train.models' arch dict) as the operator units its engine runs.

Pure data: the arch dict in, the units (avfleet.bench.profile's JSON shapes)
out, each tagged with the part of the net it belongs to, so a prediction can
say where the time goes. Mirrors `SegNet.forward` for one network (members=1)
as ONNX Runtime runs it after export: BatchNorm folded into the convolution,
ReLU6 fused into it, the factored 1x1 of a low-rank block a plain conv, an
ExpandNets net contracted (its engine is the compact net's).
"""

from __future__ import annotations

from typing import Any

from avfleet.bench.profile import conv_out_size, reorder_unit

Arch = dict[str, Any]


def conv(
    cin: int,
    cout: int,
    hw: tuple[int, int],
    kernel: tuple[int, int] = (1, 1),
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    act: bool = True,
) -> dict:
    return {
        "op": "conv",
        "cin": cin,
        "cout": cout,
        "kernel": list(kernel),
        "stride": stride,
        "dilation": dilation,
        "groups": groups,
        "act": act,
        "hw": list(hw),
    }


def conv_out_hw(hw: tuple[int, int], kernel: tuple[int, int], stride: int, dilation: int):
    """The output size of a 'same'-padded conv, as models.ConvBNAct pads it."""
    return (
        conv_out_size(hw[0], kernel[0], stride, dilation),
        conv_out_size(hw[1], kernel[1], stride, dilation),
    )


Step = tuple[str, dict, tuple | None]
"""(part, unit, when): `when` None counts the unit always; ("edge", a, b) counts a reorder
between conv units a and b (None: an op that is not a conv) only where a writes the blocked
layout and b does not read it, or the other way round; ("unfused", a) counts an add unless
conv a writes blocked (ONNX Runtime then fuses the add into a as its Sum input)."""


def _edge(part: str, channels: int, hw: tuple[int, int], a: dict | None, b: dict | None) -> Step:
    """A layout edge: the reorder of `channels` (timed rounded up to a multiple of 4, as the
    runtime's blocked tensors pad them)."""
    return (part, reorder_unit(channels, hw), ("edge", a, b))


def block_steps(
    spec: dict, hw: tuple[int, int], part: str, previous: dict | None
) -> tuple[list[Step], tuple[int, int], dict]:
    """The steps of one inverted residual block at input size hw, its output size, its last conv."""
    steps: list[Step] = []
    cin, hidden, cout = spec["in"], spec["hidden"], spec["out"]
    k, stride, dilation = spec["kernel"], spec["stride"], spec["dilation"]
    groups = int(spec.get("groups", 1))

    def add(unit: dict, channels: int, at: tuple[int, int]) -> None:
        nonlocal previous
        steps.append(_edge(part, channels, at, previous, unit))
        steps.append((part, unit, None))
        previous = unit

    c = cin
    if spec.get("expand_rank"):
        add(conv(c, spec["expand_rank"], hw, act=False), c, hw)
        c = spec["expand_rank"]
    add(conv(c, hidden, hw, groups=groups), c, hw)
    if spec.get("decompose"):
        add(
            conv(
                hidden,
                hidden,
                hw,
                (k, 1),
                stride=stride,
                dilation=dilation,
                groups=hidden,
                act=False,
            ),
            hidden,
            hw,
        )
        hw = conv_out_hw(hw, (k, 1), stride, dilation)
        add(conv(hidden, hidden, hw, (1, k), dilation=dilation, groups=hidden), hidden, hw)
    else:
        add(
            conv(hidden, hidden, hw, (k, k), stride=stride, dilation=dilation, groups=hidden),
            hidden,
            hw,
        )
        hw = conv_out_hw(hw, (k, k), stride, dilation)
    c = hidden
    if spec.get("project_rank"):
        add(conv(c, spec["project_rank"], hw, act=False), c, hw)
        c = spec["project_rank"]
    add(conv(c, cout, hw, act=False, groups=groups), c, hw)
    if stride == 1 and cin == cout:
        steps.append((part, {"op": "add", "channels": cout, "hw": list(hw)}, ("unfused", previous)))
    return steps, hw, previous


def net_plan(arch: Arch, input_hw: tuple[int, int]) -> list[Step]:
    """Every step of the net at batch 1, in order, with when each counts; the call first.

    The layout edges are where ONNX Runtime's optimised graph of these nets
    puts its reorders: between a blocked conv and a Resize, Concat or unblocked
    conv (the image itself goes into the stem as it is).
    """
    hw = tuple(input_hw)
    stem = conv(3, arch["stem"], hw, (3, 3), stride=2)
    steps: list[Step] = [("call", {"op": "call"}, None), ("stem", stem, None)]
    skip_hw = hw = conv_out_hw(hw, (3, 3), 2, 1)
    previous = stem
    for i, spec in enumerate(arch["blocks"]):
        block, hw, previous = block_steps(spec, hw, f"blocks.{i}", previous)
        steps += block
    dec = arch["decoder"]
    reduce = conv(arch["blocks"][-1]["out"], dec["reduce"], hw)
    steps += [
        _edge("decoder", arch["blocks"][-1]["out"], hw, previous, reduce),
        ("decoder", reduce, None),
    ]
    steps.append(_edge("decoder", dec["reduce"], hw, reduce, None))
    if tuple(hw) != tuple(skip_hw):
        resize = {
            "op": "resize",
            "channels": dec["reduce"],
            "hw": list(hw),
            "out_hw": list(skip_hw),
        }
        steps.append(("decoder", resize, None))
    steps.append(_edge("decoder", dec["skip"], skip_hw, stem, None))
    concat = {"op": "concat", "channels": [dec["reduce"], dec["skip"]], "hw": list(skip_hw)}
    fuse = conv(dec["reduce"] + dec["skip"], dec["fuse"], skip_hw, (3, 3))
    head = conv(dec["fuse"], arch["num_classes"], skip_hw, act=False)
    steps += [
        ("decoder", concat, None),
        _edge("decoder", dec["reduce"] + dec["skip"], skip_hw, None, fuse),
        ("decoder", fuse, None),
        _edge("head", dec["fuse"], skip_hw, fuse, head),
        ("head", head, None),
        _edge("head", arch["num_classes"], skip_hw, head, None),
        (
            "head",
            {
                "op": "resize",
                "channels": arch["num_classes"],
                "hw": list(skip_hw),
                "out_hw": list(input_hw),
            },
            None,
        ),
    ]
    return steps


def net_units(arch: Arch, input_hw: tuple[int, int]) -> list[tuple[str, dict]]:
    """(part, unit) of every unit a prediction of the net may need, the call first."""
    return [(part, unit) for part, unit, _ in net_plan(arch, input_hw)]
