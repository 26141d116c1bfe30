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
    hazard: bool = False
    """A long-tail hazard: rare in the fleet (a few percent of frames), the frames mining exists
    to find; reported apart (hazard IoU, the share of picks that contain one)."""


CLASSES: tuple[SegClass, ...] = (
    SegClass(0, "road", (92, 92, 96), "drivable surface"),
    SegClass(1, "sidewalk", (150, 140, 130), "walkway beside an urban road"),
    SegClass(2, "building", (160, 110, 90), "facades"),
    SegClass(3, "vegetation", (60, 120, 50), "trees, verges beside a freeway"),
    SegClass(4, "sky", (135, 180, 235), "sky"),
    SegClass(5, "car", (180, 30, 30), "vehicles"),
    SegClass(6, "pedestrian", (230, 180, 60), "people on foot"),
    SegClass(7, "cyclist", (40, 90, 200), "people on bicycles"),
    # The long tail (2026-12-07): each in roughly 0.5-5% of the fleet's frames (fleet/scene.py).
    SegClass(
        8, "animal", (120, 78, 36), "deer, moose and cattle on or beside the road", hazard=True
    ),
    SegClass(
        9, "construction", (255, 120, 0), "traffic cones and barriers of a road works zone", True
    ),
    SegClass(
        10,
        "debris",
        (90, 96, 60),
        "lost cargo lying on the road: boxes, a mattress, planks",
        hazard=True,
    ),
    SegClass(
        11,
        "emergency_vehicle",
        (205, 230, 30),
        "ambulances in hi-vis yellow with a blue checker band, stopped, lights flashing",
        hazard=True,
    ),
)
NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
NUM_CLASSES = len(CLASSES)
assert [c.id for c in CLASSES] == list(range(NUM_CLASSES)), "ids are 0..N-1 in order"
HAZARD_IDS: tuple[int, ...] = tuple(c.id for c in CLASSES if c.hazard)
HAZARD_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES if c.hazard)
HAZARD_MIN_PIXELS = 12
"""A frame *contains* a hazard when its mask holds at least this many pixels of one: about a
3 x 4 px object at the fleet's 64 x 128 frames, what a labeler would still outline."""


def by_name(name: str) -> SegClass:
    for c in CLASSES:
        if c.name == name:
            return c
    raise KeyError(f"no class {name!r} in the taxonomy (classes: {', '.join(NAMES)})")


def hazards_in(mask) -> list[str]:  # noqa: ANN001 - a numpy array; this module stays numpy-free
    """The hazard classes a mask contains (at least HAZARD_MIN_PIXELS pixels each)."""
    # (no zip(strict=): the bench agent imports this module on JetPack's Python 3.8)
    return [c.name for c in CLASSES if c.hazard and int((mask == c.id).sum()) >= HAZARD_MIN_PIXELS]


def hazard_iou(iou_per_class: dict[str, float]) -> float | None:
    """Mean IoU over the hazard classes present in an evaluation (None when none is)."""
    values = [iou_per_class[n] for n in HAZARD_NAMES if n in iou_per_class]
    return sum(values) / len(values) if values else None


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
