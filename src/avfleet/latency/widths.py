"""The widths of a SegNet architecture that pruning can change, and the values each may take.

A width variable is one channel count of the arch dict together with every
other field that must equal it: a stage's output feeds the next block's
input, a residual block's input and output are one space (x + y), the stem's
output is also the decoder's skip. Pure data (the arch dict), shared by
pruning (train.prune maps each variable to state-dict slices) and the latency
table (which widths to profile).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

Arch = dict[str, Any]
Path = tuple  # a path into the arch dict, e.g. ("blocks", 2, "hidden")


@dataclasses.dataclass(frozen=True)
class WidthVariable:
    name: str
    """The first path, dotted: "stem", "blocks.0.hidden", "blocks.2.out", "decoder.fuse"."""
    paths: tuple[Path, ...]
    """Every arch field holding this width."""
    size: int
    kind: str
    """"constant": a zero-scale channel outputs a constant (absorbed by its 1x1 consumer);
    "zero": a channel is removed only when its output is exactly zero (scale and shift 0)."""


def _name(path: Path) -> str:
    return ".".join(str(p) for p in path)


def residual(spec: dict) -> bool:
    return spec["stride"] == 1 and spec["in"] == spec["out"]


def width_variables(arch: Arch) -> list[WidthVariable]:
    """Every prunable width of the arch, in a fixed order (block hiddens, spaces, decoder)."""
    out = [
        WidthVariable(
            _name(("blocks", i, "hidden")), (("blocks", i, "hidden"),), b["hidden"], "constant"
        )
        for i, b in enumerate(arch["blocks"])
    ]
    space: list[Path] = [("stem",), ("decoder", "skip")]
    for i, spec in enumerate(arch["blocks"]):
        space.append(("blocks", i, "in"))
        if not residual(spec):
            out.append(WidthVariable(_name(space[0]), tuple(space), _get(arch, space[0]), "zero"))
            space = []
        space.append(("blocks", i, "out"))
    out.append(WidthVariable(_name(space[0]), tuple(space), _get(arch, space[0]), "zero"))
    out.append(
        WidthVariable("decoder.reduce", (("decoder", "reduce"),), arch["decoder"]["reduce"], "zero")
    )
    out.append(
        WidthVariable("decoder.fuse", (("decoder", "fuse"),), arch["decoder"]["fuse"], "constant")
    )
    return out


def _get(arch: Arch, path: Path) -> Any:
    node = arch
    for part in path:
        node = node[part]
    return node


def with_widths(arch: Arch, widths: dict[str, int]) -> Arch:
    """A copy of the arch with the named width variables set (every path of each)."""
    new = copy.deepcopy(arch)
    for var in width_variables(arch):
        if var.name in widths:
            for path in var.paths:
                node = new
                for part in path[:-1]:
                    node = node[part]
                node[path[-1]] = int(widths[var.name])
    return new


def sizes(arch: Arch) -> dict[str, int]:
    """Each width variable's channels in this arch."""
    return {v.name: v.size for v in width_variables(arch)}


MIN_WIDTH = 8


def width_choices(size: int) -> list[int]:
    """The widths a variable of `size` channels may be pruned to: a grid, profiled on the bench.

    Multiples of a step (8 up to 128 channels, size/16 rounded up to 8 beyond)
    and the full size: at most about 17 values, so a table covering every choice
    of every unit stays about two thousand entries (seconds on the bench). Which of them runs fastest is the
    bench's to say (`snap`), not assumed.
    """
    if size <= MIN_WIDTH:
        return [size]
    step = 8 if size <= 128 else -(-size // 128) * 8
    return sorted({*range(MIN_WIDTH, size, step), size})


def narrowest(arch: Arch) -> Arch:
    """The arch with every width at its smallest grid value: the floor of what pruning reaches."""
    return with_widths(arch, {name: width_choices(size)[0] for name, size in sizes(arch).items()})
