"""avfleet's one class taxonomy: ids, names and colours of the segmentation classes.

The simulator paints scenes and its oracle labels them with these ids; training builds nets
with NUM_CLASSES outputs; evaluation names each class's IoU; Label Studio's labeling
config (`label_studio_config`) offers these names in these colours; the report draws masks
in them. A new class is added here, at the end (ids are stored in masks and models).
"""

from __future__ import annotations

import dataclasses
from xml.sax.saxutils import quoteattr


@dataclasses.dataclass(frozen=True)
class SegClass:
    id: int
    name: str
    color: tuple[int, int, int]
    """RGB: the simulator's base paint, the mask colour in the report and in Label Studio."""
    description: str


CLASSES: tuple[SegClass, ...] = (
    SegClass(0, "road", (92, 92, 96), "drivable surface"),
    SegClass(1, "sidewalk", (150, 140, 130), "walkway beside an urban road"),
    SegClass(2, "building", (160, 110, 90), "facades"),
    SegClass(3, "vegetation", (60, 120, 50), "trees, verges beside a freeway"),
    SegClass(4, "sky", (135, 180, 235), "sky"),
    SegClass(5, "car", (180, 30, 30), "vehicles"),
    SegClass(6, "pedestrian", (230, 180, 60), "people on foot"),
    SegClass(7, "cyclist", (40, 90, 200), "people on bicycles"),
)
NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
NUM_CLASSES = len(CLASSES)
assert [c.id for c in CLASSES] == list(range(NUM_CLASSES)), "ids are 0..N-1 in order"


def by_name(name: str) -> SegClass:
    for c in CLASSES:
        if c.name == name:
            return c
    raise KeyError(f"no class {name!r} in the taxonomy (classes: {', '.join(NAMES)})")


def hex_color(c: SegClass) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c.color)


def label_studio_config(image: str = "image", brush: str = "mask") -> str:
    """Label Studio's labeling config for avfleet's frames: one image, a BrushLabels tool
    offering every class by name, in its colour (the queue's tasks carry `data.image`)."""
    labels = "\n".join(
        f"    <Label value={quoteattr(c.name)} background={quoteattr(hex_color(c))}/>"
        for c in CLASSES
    )
    return (
        "<View>\n"
        f'  <Image name={quoteattr(image)} value={quoteattr("$" + image)} zoom="true"/>\n'
        f"  <BrushLabels name={quoteattr(brush)} toName={quoteattr(image)}>\n"
        f"{labels}\n"
        "  </BrushLabels>\n"
        "</View>\n"
    )
