"""Procedural road scenes: an RGB frame and its semantic mask at a time in a drive.

A pinhole camera 1.5 m above a straight road looks ahead. Ground rows map to
distances (d = f * h / (row - horizon)), facades stand at a fixed lateral
offset, and buildings/trees are laid out along the road by a hash of their
position, so they slide past with real parallax as the car moves: consecutive
frames are near-duplicates, as in real video. Cars, pedestrians and cyclists
are boxes in the world projected with the same camera.

Conditions change the pixels the way they change real images: light from the
sun's elevation (day, twilight, night with head/tail lights and street lamps),
rain (darker, streaks, wet sheen), fog (contrast falling with distance), snow
(white ground, flakes). The mask never changes with conditions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avfleet import taxonomy
from avfleet.fleet.world import SegmentPlan, stable_seed

CLASSES = taxonomy.NAMES
NUM_CLASSES = taxonomy.NUM_CLASSES
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PEDESTRIAN, CYCLIST = (
    taxonomy.by_name(n).id
    for n in ("road", "sidewalk", "building", "vegetation", "sky", "car", "pedestrian", "cyclist")
)
ANIMAL, CONSTRUCTION, DEBRIS, EMERGENCY = (
    taxonomy.by_name(n).id for n in ("animal", "construction", "debris", "emergency_vehicle")
)
HAZARDS_PER_KM = {  # (urban, freeway): each hazard in ~0.5-5% of frames (tests/unit/test_fleet.py)
    ANIMAL: (0.4, 0.3),
    CONSTRUCTION: (0.35, 0.3),
    DEBRIS: (0.45, 0.4),
    EMERGENCY: (0.25, 0.2),
}
"""Hazards per kilometre of road, by road type: the Poisson rate along a drive."""
CROSSERS_PER_KM = 0.8
"""Pedestrians crossing an urban road, per kilometre."""
LEAD_CYCLIST_DRIVES = 0.12
"""Share of urban drives with a cyclist riding close ahead in the lane for part of the time."""
DIRTY_LENS_DRIVES, SHAKE_DRIVES, GLARE_DRIVES = 0.04, 0.05, 0.5
"""Shares of drives with a dirty lens, with camera shake (motion blur), and facing the sun
(glare whenever it is low: elevation -1 to 12 degrees)."""
ROUTE_M = 8000.0
"""Hazards and crossers are laid out over this much road: longer than any drive covers."""

CAMERA_HEIGHT_M = 1.5
BASE_COLORS = np.array([c.color for c in taxonomy.CLASSES], dtype=np.float32)
"""Each class's paint before the scene's jitter (the taxonomy's colours)."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Per-drive constants of the world, from the drive's seed."""

    road_half_width_m: float
    sidewalk_m: float
    facade_m: float
    block_m: float
    speed_phase: float
    palette_jitter: np.ndarray
    cars: np.ndarray  # (n, 3): lane offset m, distance at t=0 m, own speed m/s
    walkers: np.ndarray  # (n, 3): side (+-1), position along road m, kind (0 ped, 1 cyclist)
    hazards: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))
    """(n, 4): class id, position along the road m, lateral offset m, phase."""
    crossers: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))
    """(n, 2): position along the road m, phase of a pedestrian crossing it."""
    lead_cyclist_gap_m: float = 0.0
    """> 0: a cyclist rides this far ahead in the lane (part of the time, LEAD_WINDOW_S)."""
    lens_dirt: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))
    """(n, 4): row and column (fractions of the frame), radius (fraction of height), opacity."""
    shake: tuple[float, float] = (0.0, 0.0)
    """Motion blur direction (row, column step): (0, 0) for a steady camera."""
    glare_col: float = -1.0
    """Column (fraction of the width) of the low sun's glare; < 0: the drive never faces it."""


LEAD_WINDOW_S = (120.0, 40.0)
"""A lead cyclist is there for the first 40 s of every 120 s of the drive."""


def drive_layout(plan: SegmentPlan) -> Layout:
    rng = np.random.default_rng(plan.scene_seed)
    freeway = plan.road_type == "freeway"
    n_cars = int(rng.integers(3, 8))
    lanes = np.array([-5.25, -1.75, 1.75, 5.25]) if freeway else np.array([-1.75, 1.75])
    cars = np.stack(
        [
            rng.choice(lanes, n_cars),
            rng.uniform(8, 120, n_cars),
            rng.uniform(24, 34, n_cars) if freeway else rng.uniform(3, 12, n_cars),
        ],
        axis=1,
    )
    n_walkers = 0 if freeway else int(rng.integers(4, 14))
    walkers = np.stack(
        [
            rng.choice([-1.0, 1.0], n_walkers),
            rng.uniform(0, 2000, n_walkers),
            (rng.random(n_walkers) < 0.35).astype(float),
        ],
        axis=1,
    )
    tail = np.random.default_rng(plan.scene_seed + 1)  # the long tail's own stream
    half_width = 7.0 if freeway else 3.5
    hazards = []
    for cls, rates in HAZARDS_PER_KM.items():
        n = int(tail.poisson(rates[int(freeway)] * ROUTE_M / 1000.0))
        for pos in tail.uniform(30.0, ROUTE_M, n):
            if cls == CONSTRUCTION:  # closes the right-hand lane from its edge
                lateral = half_width - 1.2
            elif cls == EMERGENCY:  # stopped half on the shoulder, either side
                lateral = float(tail.choice([-1.0, 1.0])) * (half_width - 0.6)
            else:  # animals and debris anywhere across the road
                lateral = float(tail.uniform(-half_width + 0.5, half_width - 0.5))
            hazards.append((cls, pos, lateral, float(tail.uniform(0, 2 * np.pi))))
    n_cross = 0 if freeway else int(tail.poisson(CROSSERS_PER_KM * ROUTE_M / 1000.0))
    crossers = np.stack(
        [tail.uniform(30.0, ROUTE_M, n_cross), tail.uniform(0, 2 * np.pi, n_cross)], axis=1
    )
    lead = 0.0 if freeway or tail.random() >= LEAD_CYCLIST_DRIVES else float(tail.uniform(5, 9))
    dirt = np.zeros((0, 4))
    if tail.random() < DIRTY_LENS_DRIVES:
        k = int(tail.integers(2, 5))
        dirt = np.stack(
            [
                tail.uniform(0.2, 0.9, k),
                tail.uniform(0.1, 0.9, k),
                tail.uniform(0.08, 0.2, k),
                tail.uniform(0.5, 0.85, k),
            ],
            axis=1,
        )
    shake = (0.0, 0.0)
    if tail.random() < SHAKE_DRIVES:
        angle = tail.uniform(0, np.pi)
        shake = (float(np.sin(angle)), float(np.cos(angle)))
    glare = float(tail.uniform(0.15, 0.85)) if tail.random() < GLARE_DRIVES else -1.0
    return Layout(
        road_half_width_m=half_width,
        sidewalk_m=2.5 if not freeway else 4.0,
        facade_m=(7.0 if freeway else 3.5)
        + (2.5 if not freeway else 4.0)
        + float(rng.uniform(0.5, 3.0)),
        block_m=float(rng.uniform(8, 18)),
        speed_phase=float(rng.uniform(0, 2 * np.pi)),
        palette_jitter=rng.uniform(-18, 18, (NUM_CLASSES, 3)).astype(np.float32),
        cars=cars,
        walkers=walkers,
        hazards=np.array(hazards, dtype=np.float64).reshape(-1, 4),
        crossers=crossers,
        lead_cyclist_gap_m=lead,
        lens_dirt=dirt,
        shake=shake,
        glare_col=glare,
    )


def cruise_speed_mps(plan: SegmentPlan, layout: Layout, drive_t_s: np.ndarray) -> np.ndarray:
    """The speed the road invites over drive time: freeways cruise, city traffic stops and goes."""
    if plan.road_type == "freeway":
        return 28.0 + 3.0 * np.sin(2 * np.pi * drive_t_s / 90.0 + layout.speed_phase)
    return np.maximum(0.0, 6.0 + 8.0 * np.sin(2 * np.pi * drive_t_s / 53.0 + layout.speed_phase))


HAZARD_SLOWDOWN = (50.0, 5.0, {"urban": 0.3, "freeway": 0.8})
"""A driver sees a hazard ahead: from 50 m the speed falls linearly to a share of cruise at
5 m (30% in town; 80% on a freeway, easing off and moving over, so traffic still reads as a
freeway's: domains.FREEWAY_MIN_SPEED_MPS), and stays there until the car has passed it."""


def _hazard_factor(hazards_m: np.ndarray, s: float, road_type: str = "urban") -> float:
    """The share of cruise speed at distance s, given the sorted positions of the hazards."""
    start, close, floors = HAZARD_SLOWDOWN
    floor = floors[road_type]
    i = int(np.searchsorted(hazards_m, s - 1.0))  # the next one not yet passed
    if i == len(hazards_m):
        return 1.0
    return float(
        np.clip(floor + (1 - floor) * (hazards_m[i] - s - close) / (start - close), floor, 1)
    )


def ego_motion(
    plan: SegmentPlan, layout: Layout, drive_t_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(distance driven since the drive began m, speed m/s) at drive times: cruise speed,
    slowed for hazards ahead, integrated on a 0.05 s grid."""
    step = 0.05
    grid = np.arange(0.0, float(np.max(drive_t_s)) + 2 * step, step)
    cruise = cruise_speed_mps(plan, layout, grid)
    hazards_m = np.sort(layout.hazards[:, 1]) if len(layout.hazards) else np.zeros(0)
    speed = np.empty_like(grid)
    dist = np.empty_like(grid)
    s = 0.0
    for k in range(len(grid)):
        speed[k] = cruise[k] * _hazard_factor(hazards_m, s, plan.road_type)
        dist[k] = s
        s += speed[k] * step
    return np.interp(drive_t_s, grid, dist), np.interp(drive_t_s, grid, speed)


def ego_speed_mps(plan: SegmentPlan, layout: Layout, drive_t_s: np.ndarray) -> np.ndarray:
    """Speed over drive time (cruise, slowed for hazards)."""
    return ego_motion(plan, layout, drive_t_s)[1]


def ego_distance_m(plan: SegmentPlan, layout: Layout, drive_t_s: np.ndarray) -> np.ndarray:
    """Distance driven since the drive began."""
    return ego_motion(plan, layout, drive_t_s)[0]


def _hash01(values: np.ndarray, salt: int) -> np.ndarray:
    x = (values.astype(np.int64) * 2654435761 + salt * 97531) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 2246822519) & 0xFFFFFFFF
    x ^= x >> 13
    return (x & 0xFFFF) / 65535.0


@dataclasses.dataclass
class Geometry:
    """What the camera sees before light and weather: the mask and where each pixel lies."""

    mask: np.ndarray  # uint8 (H, W)
    depth: np.ndarray  # float (H, W), metres
    obj_uv: np.ndarray  # float (2, H, W): position inside the nearest object (0-1), NaN off objects
    objects: list[SceneObject]
    horizon: float
    focal_px: float


@dataclasses.dataclass(frozen=True)
class SceneObject:
    distance_m: float
    lateral_m: float
    width_m: float
    height_m: float
    cls: int
    shape: str = "box"
    """box, cone, animal or debris: the outline inside the object's box (SHAPES)."""


def _cone(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(u - 0.5) <= 0.08 + 0.42 * (1.0 - v)


def _animal(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    body = ((u - 0.45) / 0.4) ** 2 + ((v - 0.6) / 0.2) ** 2 <= 1.0
    legs = (v < 0.5) & ((np.abs(u - 0.2) < 0.06) | (np.abs(u - 0.68) < 0.06))
    head = ((u - 0.88) / 0.12) ** 2 + ((v - 0.82) / 0.16) ** 2 <= 1.0
    return body | legs | head


def _debris(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return v <= 0.45 + 0.35 * np.abs(np.sin(7.0 * u)) + 0.2 * np.cos(3.0 * u)


SHAPES = {"box": None, "cone": _cone, "animal": _animal, "debris": _debris}


def geometry(
    plan: SegmentPlan,
    layout: Layout,
    drive_t_s: float,
    distance_m: float,
    height: int,
    width: int,
) -> Geometry:
    """The frame's mask, depth and objects (no light, weather or sensor: `render` adds them)."""
    H, W = height, width
    f = 0.9 * W
    horizon = 0.42 * H + 1.5 * np.sin(drive_t_s * 0.7)  # a little pitch as the car moves
    rows = np.arange(H, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(W, dtype=np.float64)[None, :] + 0.5
    x_off = cols - W / 2.0

    mask = np.full((H, W), SKY, dtype=np.uint8)
    depth = np.full((H, W), 1e4, dtype=np.float64)

    # Ground: distance per row, lateral position per pixel.
    below = rows > horizon + 0.5
    ground_d = np.where(below, f * CAMERA_HEIGHT_M / np.maximum(rows - horizon, 1e-3), np.inf)
    lateral = x_off * ground_d / f
    ground = np.broadcast_to(below, (H, W))
    on_road = ground & (np.abs(lateral) <= layout.road_half_width_m)
    on_side = ground & ~on_road & (np.abs(lateral) <= layout.facade_m)
    mask[on_side] = SIDEWALK if plan.road_type == "urban" else VEGETATION
    mask[on_road] = ROAD
    depth = np.where(ground, np.broadcast_to(ground_d, (H, W)), depth)

    # Facades: a vertical plane at +-facade_m; each column sees it at one distance.
    col_d = f * layout.facade_m / np.maximum(np.abs(x_off), 1e-3)  # (1, W)
    along = distance_m + col_d
    block = np.floor(along / layout.block_m)
    side_salt = np.where(x_off < 0, 1, 2)
    is_tree = _hash01(block, 7 + side_salt) < (0.25 if plan.road_type == "urban" else 0.85)
    facade_h = np.where(is_tree, 4.0 + 6.0 * _hash01(block, 11), 6.0 + 22.0 * _hash01(block, 13))
    top_row = horizon - f * (facade_h - CAMERA_HEIGHT_M) / col_d
    foot_row = horizon + f * CAMERA_HEIGHT_M / col_d
    on_facade = (rows >= top_row) & (rows < foot_row) & (col_d < 400) & (np.abs(x_off) > 0.5)
    facade_class = np.where(is_tree, VEGETATION, BUILDING)
    closer = on_facade & (np.broadcast_to(col_d, (H, W)) < depth)
    mask = np.where(closer, np.broadcast_to(facade_class, (H, W)), mask).astype(np.uint8)
    depth = np.where(closer, np.broadcast_to(col_d, (H, W)), depth)

    # Objects, far to near, each its outline inside its box.
    objects = scene_objects(layout, drive_t_s, distance_m)
    obj_uv = np.full((2, H, W), np.nan)
    for o in sorted(objects, key=lambda o: -o.distance_m):
        d = o.distance_m
        c0 = W / 2 + f * (o.lateral_m - o.width_m / 2) / d
        c1 = W / 2 + f * (o.lateral_m + o.width_m / 2) / d
        r1 = horizon + f * CAMERA_HEIGHT_M / d
        r0 = r1 - f * o.height_m / d
        if c1 < 0 or c0 > W or r0 > H or r1 < 0:
            continue
        u = np.broadcast_to((cols - c0) / max(c1 - c0, 1e-6), (H, W))
        v = np.broadcast_to((r1 - rows) / max(r1 - r0, 1e-6), (H, W))
        inside = (u >= 0) & (u < 1) & (v > 0) & (v <= 1)
        outline = SHAPES[o.shape]
        if outline is not None:
            inside &= outline(u, v)
        mask[inside] = o.cls
        depth[inside] = d
        obj_uv[0][inside], obj_uv[1][inside] = u[inside], v[inside]
    return Geometry(mask, depth, obj_uv, objects, float(horizon), f)


def render_mask(
    plan: SegmentPlan, layout: Layout, drive_t_s: float, distance_m: float, height: int, width: int
) -> np.ndarray:
    """The frame's semantic mask alone (what the oracle labels; no shading)."""
    return geometry(plan, layout, drive_t_s, distance_m, height, width).mask


def render(
    plan: SegmentPlan,
    layout: Layout,
    frame_index: int,
    drive_t_s: float,
    distance_m: float,
    sun_elevation_deg: float,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 HxWx3, mask uint8 HxW) of one frame."""
    g = geometry(plan, layout, drive_t_s, distance_m, height, width)
    rgb = _shade(plan, layout, g, frame_index, sun_elevation_deg, distance_m)
    return rgb, g.mask


def scene_objects(layout: Layout, t: float, s: float) -> list[SceneObject]:
    """Every object in view at drive time t (s) and distance driven s (m)."""
    objects = []
    for lane, d0, v in layout.cars:
        # Oncoming lanes (negative offset) move towards us; distance wraps within the visible range.
        rel = d0 + (v * t - s) if lane > 0 else d0 - (v * t + s)
        d = 4.0 + np.mod(rel, 140.0)
        objects.append(SceneObject(float(d), float(lane), 1.8, 1.5, CAR))
    for side, pos, kind in layout.walkers:
        walk = 1.2 * t if kind == 0 else 4.0 * t
        d = np.mod(pos + walk - s, 200.0)
        if 3.0 < d < 60.0:
            if kind == 0:
                lat = float(side * (layout.road_half_width_m + 1.2))
                objects.append(SceneObject(float(d), lat, 0.5, 1.75, PEDESTRIAN))
            else:
                lat = float(side * (layout.road_half_width_m - 0.6))
                objects.append(SceneObject(float(d), lat, 0.6, 1.7, CYCLIST))
    # The long tail: things that stay where they are in the world (s grows past them).
    for pos, phase in layout.crossers:
        d = pos - s
        if 3.0 < d < 80.0:  # walks across the road and back, 1.3 m/s
            span = layout.road_half_width_m + 1.5
            lat = span * np.sin(1.3 * t / span + phase)
            objects.append(SceneObject(float(d), float(lat), 0.5, 1.75, PEDESTRIAN))
    period, shown = LEAD_WINDOW_S
    if layout.lead_cyclist_gap_m > 0 and np.mod(t, period) < shown:
        d = layout.lead_cyclist_gap_m + 1.5 * np.sin(0.3 * t)
        objects.append(SceneObject(float(d), 0.9, 0.6, 1.7, CYCLIST))
    for cls, pos, lat, phase in layout.hazards:
        d = pos - s
        if not 3.0 < d < 90.0:
            continue
        cls = int(cls)
        if cls == ANIMAL:  # a deer or a cow wandering across, 0.4 m/s
            lat = lat + 1.5 * np.sin(0.25 * t + phase)
            objects.append(SceneObject(float(d), float(lat), 2.0, 1.6, ANIMAL, "animal"))
        elif cls == DEBRIS:
            objects.append(SceneObject(float(d), float(lat), 2.2, 0.8, DEBRIS, "debris"))
        elif cls == EMERGENCY:
            objects.append(SceneObject(float(d), float(lat), 2.5, 2.9, EMERGENCY))
        else:  # a road-works zone: a barrier board, then a line of cones tapering into the lane
            objects.append(SceneObject(float(d), float(lat), 2.4, 1.3, CONSTRUCTION))
            for k in range(1, 6):
                dk = d + 4.0 * k
                cone_lat = lat + 0.35 * k * np.sign(lat or 1.0)
                objects.append(
                    SceneObject(float(dk), float(cone_lat), 0.6, 0.9, CONSTRUCTION, "cone")
                )
    return objects


def _shade(
    plan: SegmentPlan,
    layout: Layout,
    g: Geometry,
    frame_index: int,
    sun_elev: float,
    distance_m: float,
) -> np.ndarray:
    mask, depth, horizon, f = g.mask, g.depth, g.horizon, g.focal_px
    H, W = mask.shape
    rows = np.arange(H, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(W, dtype=np.float64)[None, :] + 0.5
    rng = np.random.default_rng(stable_seed(plan.scene_seed, "noise", frame_index))
    colors = BASE_COLORS + layout.palette_jitter
    img = colors[mask]
    # Texture that moves with the world: windows on buildings, dashes on the road.
    stripes = (np.floor((distance_m + depth) / 1.5) % 2).astype(np.float32)
    img[mask == BUILDING] *= (0.85 + 0.2 * stripes[mask == BUILDING])[:, None]
    lane_mark = (
        (mask == ROAD)
        & (np.abs(cols - W / 2) * depth / f < 0.12)
        & ((np.floor((distance_m + depth) / 3.0) % 2) == 0)
    )
    img[lane_mark] = 235.0
    sky = mask == SKY
    gradient = np.clip((horizon - rows) / max(horizon, 1.0), 0, 1)
    img[sky] *= np.broadcast_to(0.8 + 0.3 * gradient, (H, W))[sky][:, None]
    _hazard_paint(img, mask, g.obj_uv, frame_index)

    # Light from the sun's elevation: 1.0 in full day, ~0.1 at night.
    light = float(np.clip((sun_elev + 8.0) / 18.0, 0.0, 1.0)) * 0.9 + 0.1
    if -6.0 <= sun_elev < 6.0:  # twilight: warm, low sun
        img[sky] = img[sky] * 0.6 + np.array([250, 140, 80], np.float32) * 0.4
        img *= np.array([1.05, 0.92, 0.8], np.float32)
    img *= light
    if sun_elev < 6.0:
        _add_lights(img, mask, depth, rows, cols, horizon, g.objects, plan, layout, distance_m, f)
    _beacons(img, g, frame_index, light)

    weather = plan.weather
    if weather == "rain":
        img *= 0.72
        img[mask == ROAD] += 25.0 * light  # wet sheen
        _streaks(img, rng, count=W // 3, length=H // 6, value=170.0 * max(light, 0.4))
    elif weather == "snow":
        ground = (mask == ROAD) | (mask == SIDEWALK) | (mask == VEGETATION)
        snowy = ground & (rng.random((H, W)) < 0.55)
        img[snowy] = img[snowy] * 0.3 + 225.0 * max(light, 0.3)
        flakes = rng.random((H, W)) < 0.03
        img[flakes] = 245.0 * max(light, 0.5)
    if weather == "fog":
        visibility_m = 35.0
        veil = 1.0 - np.exp(-depth / visibility_m)
        fog_color = 190.0 * max(light, 0.25)
        img = img * (1 - veil[..., None]) + fog_color * veil[..., None]
    elif weather in ("rain", "snow"):
        veil = 1.0 - np.exp(-depth / 150.0)
        img = img * (1 - veil[..., None]) + 150.0 * light * veil[..., None]

    img = _sensor(img, layout, sun_elev, horizon)
    img += rng.normal(0.0, 3.0, img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _hazard_paint(img: np.ndarray, mask: np.ndarray, uv: np.ndarray, frame_index: int) -> None:
    """Each hazard's look beyond its base colour, from where a pixel lies inside the object."""
    u, v = uv
    work = mask == CONSTRUCTION  # white bands: diagonal on the barrier, a ring on each cone
    white = work & (((np.floor((u + v) * 4.0) % 2) == 0) | ((v > 0.45) & (v < 0.62)))
    img[white] = 245.0
    ev = mask == EMERGENCY  # a blue checker band (Battenburg), dark windows, the light bar
    checker = (np.floor(u * 8.0) + np.floor((v - 0.3) * 16.0)) % 2 == 0
    img[ev & (v > 0.3) & (v < 0.42) & checker] = (20.0, 60.0, 190.0)
    img[ev & (v > 0.62) & (v < 0.8) & (np.abs(u - 0.5) < 0.4)] = (40.0, 50.0, 60.0)
    on = frame_index % 4 < 2  # flashing: red and blue swap sides every 0.2 s at 10 Hz
    left, right = (255.0, 30.0, 30.0), (40.0, 70.0, 255.0)
    bar = ev & (v > 0.88)
    img[bar & (u < 0.5)] = left if on else right
    img[bar & (u >= 0.5)] = right if on else left
    animal = mask == ANIMAL  # darker legs and a pale belly
    img[animal & (v < 0.45)] *= 0.6
    img[animal & (v > 0.45) & (v < 0.55)] = img[animal & (v > 0.45) & (v < 0.55)] * 0.5 + 100.0
    debris = mask == DEBRIS  # mottled: planks and a tyre's black
    img[debris & ((np.floor(u * 9.0) % 3) == 0)] *= 0.4


def _beacons(img: np.ndarray, g: Geometry, frame_index: int, light: float) -> None:
    """Flashing light bars glow (most at night): a halo around each emergency vehicle's bar."""
    H, W = g.mask.shape
    rows = np.arange(H, dtype=np.float64)[:, None]
    cols = np.arange(W, dtype=np.float64)[None, :]
    for o in g.objects:
        if o.cls != EMERGENCY:
            continue
        r = g.horizon - g.focal_px * (o.height_m - CAMERA_HEIGHT_M) / o.distance_m
        c = W / 2 + g.focal_px * o.lateral_m / o.distance_m
        radius = 2.0 + 40.0 / o.distance_m
        halo = np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * radius**2))
        tint = (1.0, 0.2, 0.2) if frame_index % 4 < 2 else (0.25, 0.35, 1.0)
        img += (halo * 160.0 * (1.2 - light))[..., None] * np.array(tint, np.float32)


def _sensor(img: np.ndarray, layout: Layout, sun_elev: float, horizon: float) -> np.ndarray:
    """The drive's rare sensor conditions: glare from a low sun, camera shake, a dirty lens."""
    H, W, _ = img.shape
    rows = np.arange(H, dtype=np.float64)[:, None]
    cols = np.arange(W, dtype=np.float64)[None, :]
    if layout.glare_col >= 0 and -1.0 <= sun_elev <= 12.0:
        # The sun just above the horizon: a bloom that washes out what is around it, and a
        # streak across the frame (lens flare).
        r = horizon - (sun_elev + 1.0) * H / 40.0
        c = layout.glare_col * W
        strength = 1.0 - abs(sun_elev - 3.0) / 12.0
        bloom = np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * (0.3 * H) ** 2))
        streak = np.exp(-((rows - r) ** 2) / (2 * 2.0**2)) * 0.5
        veil = np.clip(strength * (bloom + streak), 0.0, 0.95)[..., None]
        img = img * (1 - veil) + np.array([255.0, 245.0, 220.0], np.float32) * veil
    if layout.shake != (0.0, 0.0):  # a 7-pixel smear along the shake's direction
        dr, dc = layout.shake
        acc = np.zeros_like(img)
        for k in range(-3, 4):
            acc += np.roll(img, (int(round(k * dr)), int(round(k * dc))), axis=(0, 1))
        img = acc / 7.0
    for row_frac, col_frac, radius_frac, opacity in layout.lens_dirt:
        d2 = (rows - row_frac * H) ** 2 + (cols - col_frac * W) ** 2
        blob = opacity * np.exp(-d2 / (2 * (radius_frac * H) ** 2))[..., None]
        img = img * (1 - blob) + np.array([70.0, 60.0, 45.0], np.float32) * blob
    return img


def _add_lights(
    img, mask, depth, rows, cols, horizon, objects, plan, layout, distance_m, f
) -> None:
    H, W = mask.shape
    # Our own headlights: a cone on the road ahead.
    cone = (mask == ROAD) & (depth < 40.0)
    img[cone] += (60.0 * (1 - depth[cone] / 40.0))[:, None]
    for o in objects:
        if o.cls != CAR:
            continue
        d, lat = o.distance_m, o.lateral_m
        lamp = np.array(
            [255, 250, 210] if lat < 0 else [255, 40, 30], np.float32
        )  # oncoming vs ahead
        r = horizon + f * (CAMERA_HEIGHT_M - 0.6) / d
        for side in (-0.7, 0.7):
            c = W / 2 + f * (lat + side) / d
            radius = max(0.6, 2.5 * 8.0 / d)
            spot = (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
            img[spot] = lamp
    if plan.road_type == "urban":  # street lamps every 25 m along both sides
        spacing_m = 25.0
        for k in range(1, 6):
            d = spacing_m * k - np.mod(distance_m, spacing_m)
            for side in (-1, 1):
                c = W / 2 + f * side * layout.facade_m / d
                r = horizon - f * (5.0 - CAMERA_HEIGHT_M) / d
                halo = np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * (48.0 / d) ** 2))
                img += (halo * 120.0)[..., None] * np.array([1.0, 0.9, 0.6], np.float32)


def _streaks(
    img: np.ndarray, rng: np.random.Generator, count: int, length: int, value: float
) -> None:
    """Rain: short slanted bright streaks."""
    H, W, _ = img.shape
    r0 = rng.integers(0, H, count)
    c0 = rng.integers(0, W, count)
    for k in range(max(length, 2)):
        r = r0 + k
        c = c0 + k // 3
        ok = (r < H) & (c < W)
        img[r[ok], c[ok]] = img[r[ok], c[ok]] * 0.5 + value * 0.5
