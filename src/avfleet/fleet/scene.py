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
    return Layout(
        road_half_width_m=7.0 if freeway else 3.5,
        sidewalk_m=2.5 if not freeway else 4.0,
        facade_m=(7.0 if freeway else 3.5)
        + (2.5 if not freeway else 4.0)
        + float(rng.uniform(0.5, 3.0)),
        block_m=float(rng.uniform(8, 18)),
        speed_phase=float(rng.uniform(0, 2 * np.pi)),
        palette_jitter=rng.uniform(-18, 18, (NUM_CLASSES, 3)).astype(np.float32),
        cars=cars,
        walkers=walkers,
    )


def ego_speed_mps(plan: SegmentPlan, layout: Layout, drive_t_s: np.ndarray) -> np.ndarray:
    """Speed over drive time: freeways cruise, city traffic stops and goes."""
    if plan.road_type == "freeway":
        return 28.0 + 3.0 * np.sin(2 * np.pi * drive_t_s / 90.0 + layout.speed_phase)
    return np.maximum(0.0, 6.0 + 8.0 * np.sin(2 * np.pi * drive_t_s / 53.0 + layout.speed_phase))


def ego_distance_m(plan: SegmentPlan, layout: Layout, drive_t_s: np.ndarray) -> np.ndarray:
    """Distance driven since the drive began (trapezoidal integral of the speed)."""
    step = 0.05
    grid = np.arange(0.0, float(np.max(drive_t_s)) + 2 * step, step)
    v = ego_speed_mps(plan, layout, grid)
    s = np.concatenate([[0.0], np.cumsum((v[1:] + v[:-1]) * 0.5 * step)])
    return np.interp(drive_t_s, grid, s)


def _hash01(values: np.ndarray, salt: int) -> np.ndarray:
    x = (values.astype(np.int64) * 2654435761 + salt * 97531) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 2246822519) & 0xFFFFFFFF
    x ^= x >> 13
    return (x & 0xFFFF) / 65535.0


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

    # Objects, far to near.
    boxes = _object_boxes(layout, drive_t_s, distance_m)
    for d, lat, w_m, h_m, cls in sorted(boxes, key=lambda b: -b[0]):
        c0, c1 = W / 2 + f * (lat - w_m / 2) / d, W / 2 + f * (lat + w_m / 2) / d
        r1 = horizon + f * CAMERA_HEIGHT_M / d
        r0 = r1 - f * h_m / d
        inside = (cols >= c0) & (cols < c1) & (rows >= r0) & (rows < r1)
        mask[inside] = cls
        depth[inside] = d

    rgb = _shade(
        plan,
        layout,
        mask,
        depth,
        rows,
        cols,
        horizon,
        boxes,
        frame_index,
        sun_elevation_deg,
        distance_m,
        f,
    )
    return rgb, mask


def _object_boxes(
    layout: Layout, t: float, s: float
) -> list[tuple[float, float, float, float, int]]:
    boxes = []
    for lane, d0, v in layout.cars:
        # Oncoming lanes (negative offset) move towards us; distance wraps within the visible range.
        rel = d0 + (v * t - s) if lane > 0 else d0 - (v * t + s)
        d = 4.0 + np.mod(rel, 140.0)
        boxes.append((float(d), float(lane), 1.8, 1.5, CAR))
    for side, pos, kind in layout.walkers:
        walk = 1.2 * t if kind == 0 else 4.0 * t
        d = np.mod(pos + walk - s, 200.0)
        if 3.0 < d < 60.0:
            if kind == 0:
                boxes.append(
                    (
                        float(d),
                        float(side * (layout.road_half_width_m + 1.2)),
                        0.5,
                        1.75,
                        PEDESTRIAN,
                    )
                )
            else:
                boxes.append(
                    (float(d), float(side * (layout.road_half_width_m - 0.6)), 0.6, 1.7, CYCLIST)
                )
    return boxes


def _shade(
    plan, layout, mask, depth, rows, cols, horizon, boxes, frame_index, sun_elev, distance_m, f
) -> np.ndarray:
    H, W = mask.shape
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

    # Light from the sun's elevation: 1.0 in full day, ~0.1 at night.
    light = float(np.clip((sun_elev + 8.0) / 18.0, 0.0, 1.0)) * 0.9 + 0.1
    if -6.0 <= sun_elev < 6.0:  # twilight: warm, low sun
        img[sky] = img[sky] * 0.6 + np.array([250, 140, 80], np.float32) * 0.4
        img *= np.array([1.05, 0.92, 0.8], np.float32)
    img *= light
    if sun_elev < 6.0:
        _add_lights(img, mask, depth, rows, cols, horizon, boxes, plan, layout, distance_m, f)

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

    img += rng.normal(0.0, 3.0, img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def _add_lights(img, mask, depth, rows, cols, horizon, boxes, plan, layout, distance_m, f) -> None:
    H, W = mask.shape
    # Our own headlights: a cone on the road ahead.
    cone = (mask == ROAD) & (depth < 40.0)
    img[cone] += (60.0 * (1 - depth[cone] / 40.0))[:, None]
    for d, lat, _w_m, _h_m, cls in boxes:
        if cls != CAR:
            continue
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
