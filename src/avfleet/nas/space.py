"""The search space: a candidate block per searchable layer, a channel count per width variable.

The space is the segmentation family of `avfleet.train.models` opened up:

* four searchable layers, the default net's encoder stages (stride 2, 2, 2, 1);
  each picks one block from `OPS`: inverted residual with expansion 1, 3 or 6,
  kernel 3 or 5, as k x k or decomposed into k x 1 then 1 x k, dilation 1 or 2,
  grouped 1x1 convs, or `skip` where the shapes allow (stride 1, in = out);
* five width variables, each a few channel counts: the stem (also the
  decoder's skip), the three stage outputs (the last stage's input and output
  are one space: it may be a residual block or skipped), and the decoder.

A point of the space, a `Choice`, is one value per variable; `to_arch` turns it
into the ordinary arch dict, so a searched net trains, prunes, exports, benches
and deploys through the paths every other net takes. Pure data: no torch here.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

from avfleet.core.errors import ConfigError
from avfleet.taxonomy import NUM_CLASSES

Arch = dict[str, Any]

OPS: dict[str, dict | None] = {
    "e1_k3": {"expansion": 1, "kernel": 3, "decompose": False, "dilation": 1, "groups": 1},
    "e3_k3": {"expansion": 3, "kernel": 3, "decompose": False, "dilation": 1, "groups": 1},
    "e6_k3": {"expansion": 6, "kernel": 3, "decompose": False, "dilation": 1, "groups": 1},
    "e3_k5": {"expansion": 3, "kernel": 5, "decompose": False, "dilation": 1, "groups": 1},
    "e6_k5": {"expansion": 6, "kernel": 5, "decompose": False, "dilation": 1, "groups": 1},
    "e3_k3x1": {"expansion": 3, "kernel": 3, "decompose": True, "dilation": 1, "groups": 1},
    "e6_k5x1": {"expansion": 6, "kernel": 5, "decompose": True, "dilation": 1, "groups": 1},
    "e3_k3_d2": {"expansion": 3, "kernel": 3, "decompose": False, "dilation": 2, "groups": 1},
    "e6_k3_g2": {"expansion": 6, "kernel": 3, "decompose": False, "dilation": 1, "groups": 2},
    "skip": None,
}
"""Candidate blocks: name -> inverted residual settings (None: the identity)."""


@dataclasses.dataclass(frozen=True)
class Layer:
    stride: int
    width_in: str
    """The width variable of the layer's input."""
    width_out: str
    ops: tuple[str, ...]

    @property
    def can_skip(self) -> bool:
        return self.stride == 1 and self.width_in == self.width_out


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    layers: tuple[Layer, ...]
    widths: dict[str, tuple[int, ...]]
    """Width variable -> its channel counts, ascending."""
    num_classes: int = NUM_CLASSES

    def variables(self) -> dict[str, tuple]:
        """Every variable (op.L for layer L, then the widths) -> its choices, in a fixed order."""
        out: dict[str, tuple] = {f"op.{i}": layer.ops for i, layer in enumerate(self.layers)}
        out.update(self.widths)
        return out

    def check(self) -> None:
        for name, choices in self.widths.items():
            if not choices or list(choices) != sorted(set(choices)) or choices[0] < 4:
                raise ConfigError(f"widths.{name}", f"ascending channel counts >= 4, got {choices}")
            if any(c % 4 for c in choices):
                raise ConfigError(f"widths.{name}", "channel counts must be multiples of 4")
        for i, layer in enumerate(self.layers):
            for op in layer.ops:
                if op not in OPS:
                    raise ConfigError(f"layers.{i}", f"unknown op {op!r} (known: {', '.join(OPS)})")
                if op == "skip" and not layer.can_skip:
                    raise ConfigError(f"layers.{i}", "skip needs stride 1 and one width in and out")
            for w in (layer.width_in, layer.width_out):
                if w not in self.widths:
                    raise ConfigError(f"layers.{i}", f"unknown width variable {w!r}")
        if "stem" not in self.widths or "decoder" not in self.widths:
            raise ConfigError("widths", "the space needs 'stem' and 'decoder' width variables")

    def size(self) -> int:
        n = 1
        for choices in self.variables().values():
            n *= len(choices)
        return n


Choice = dict[str, Any]
"""Variable name -> chosen value (an op name, or channels)."""


def default_space(num_classes: int = NUM_CLASSES) -> SearchSpace:
    """The default net's four stages, every op, three widths per variable around width 1."""
    searchable = tuple(op for op in OPS if op != "skip")
    space = SearchSpace(
        layers=(
            Layer(2, "stem", "s1", searchable),
            Layer(2, "s1", "s2", searchable),
            Layer(2, "s2", "s3", searchable),
            Layer(1, "s3", "s3", (*searchable, "skip")),
        ),
        widths={
            "stem": (8, 16, 24),
            "s1": (16, 24, 32),
            "s2": (24, 32, 48),
            "s3": (32, 48, 64),
            "decoder": (16, 32, 48),
        },
        num_classes=num_classes,
    )
    space.check()
    return space


def check_choice(space: SearchSpace, choice: Choice) -> Choice:
    variables = space.variables()
    if set(choice) != set(variables):
        missing, extra = set(variables) - set(choice), set(choice) - set(variables)
        raise ConfigError("choice", f"missing {sorted(missing)}, unknown {sorted(extra)}")
    for name, value in choice.items():
        if value not in variables[name]:
            raise ConfigError(f"choice.{name}", f"{value!r} is not one of {variables[name]}")
    return choice


def block_spec(op: dict, cin: int, cout: int, stride: int) -> dict:
    """The arch dict's block for an op of `OPS` between widths cin and cout."""
    return {
        "in": cin,
        "hidden": cin * op["expansion"],
        "out": cout,
        "stride": stride,
        "dilation": op["dilation"],
        "kernel": op["kernel"],
        "decompose": op["decompose"],
        "groups": op["groups"],
    }


def to_arch(space: SearchSpace, choice: Choice) -> Arch:
    """The arch dict of a point of the space (a skipped layer is simply not there)."""
    check_choice(space, choice)
    blocks = []
    for i, layer in enumerate(space.layers):
        op = OPS[choice[f"op.{i}"]]
        if op is None:
            continue
        blocks.append(block_spec(op, choice[layer.width_in], choice[layer.width_out], layer.stride))
    dec = choice["decoder"]
    return {
        "version": 1,
        "num_classes": space.num_classes,
        "stem": choice["stem"],
        "blocks": blocks,
        "decoder": {"skip": choice["stem"], "reduce": dec, "fuse": dec},
    }


def reference_choice(space: SearchSpace) -> Choice:
    """The first op and the middle width of every variable: what a term's other variables take."""
    out: Choice = {}
    for name, choices in space.variables().items():
        out[name] = choices[0] if name.startswith("op.") else choices[len(choices) // 2]
    return out


@dataclasses.dataclass(frozen=True)
class Term:
    """A part of the net whose latency depends only on `variables` (a cost per assignment)."""

    part: str
    """"stem", "layer.L", "decoder" (the decoder and head), "call"."""
    variables: tuple[str, ...]


def terms(space: SearchSpace) -> list[Term]:
    """The net's latency as a sum of terms, each over the few variables it depends on."""
    out = [Term("call", ()), Term("stem", ("stem",))]
    for i, layer in enumerate(space.layers):
        names = [f"op.{i}", layer.width_in, layer.width_out]
        out.append(Term(f"layer.{i}", tuple(dict.fromkeys(names))))
    out.append(
        Term("decoder", tuple(dict.fromkeys((space.layers[-1].width_out, "decoder", "stem"))))
    )
    return out


def assignments(space: SearchSpace, term: Term) -> Iterator[tuple[tuple, Choice]]:
    """(index per variable, a full choice with the term's variables set, the rest at reference)."""
    variables = space.variables()
    ref = reference_choice(space)
    ranges = [range(len(variables[v])) for v in term.variables]
    for index in itertools.product(*ranges):
        choice = dict(ref)
        for v, i in zip(term.variables, index, strict=True):
            choice[v] = variables[v][i]
        yield index, choice
