"""The oracle labeler: ground truth for any (recording, frame), regenerated on demand.

It stands in for human labelers: given the fleet's world file it rebuilds the
segment's hidden plan and re-renders the frame's semantic mask, and reports
the true conditions. Nothing it returns is stored in the recordings.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from avfleet import domains, taxonomy
from avfleet.core.errors import PermanentError
from avfleet.core.storage import StorageConfig
from avfleet.fleet import drive, scene
from avfleet.fleet.generate import read_world
from avfleet.fleet.world import FleetSpec, SegmentPlan


@dataclasses.dataclass(frozen=True)
class OracleLabel:
    recording_id: str
    frame_index: int
    mask: np.ndarray  # uint8 (H, W), values index scene.CLASSES
    time_of_day: str
    weather: str
    road_type: str


class OracleLabeler:
    def __init__(self, spec: FleetSpec, plans: list[SegmentPlan]) -> None:
        self.spec = spec
        self._plans = {p.recording_id: p for p in plans}

    @classmethod
    def from_uri(cls, fleet_uri: str, storage_config: StorageConfig | None = None) -> OracleLabeler:
        spec, plans = read_world(fleet_uri, storage_config)
        return cls(spec, plans)

    def plan(self, recording_id: str) -> SegmentPlan:
        try:
            return self._plans[recording_id]
        except KeyError:
            raise PermanentError(
                f"oracle: recording {recording_id!r} is not part of this fleet"
            ) from None

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one labeler per job; caches per-segment timelines
    def _segment(
        self, recording_id: str
    ) -> tuple[SegmentPlan, scene.Layout, drive.SegmentTimeline]:
        plan = self.plan(recording_id)
        world = scene.drive_layout(plan)
        return plan, world, drive.timeline(self.spec, plan, world)

    def label(self, recording_id: str, frame_index: int) -> OracleLabel:
        plan, world, line = self._segment(recording_id)
        if not 0 <= frame_index < len(line.frame_times_s):
            raise PermanentError(f"oracle: recording {recording_id!r} has no frame {frame_index}")
        mask = drive.frame_mask(self.spec, plan, world, line, frame_index)
        elevation = domains.sun_elevation_deg(
            line.frame_times_s[frame_index], plan.lat_deg, plan.lon_deg
        )
        return OracleLabel(
            recording_id=recording_id,
            frame_index=frame_index,
            mask=mask,
            time_of_day=str(domains.time_of_day(elevation)),
            weather=plan.weather,
            road_type=plan.road_type,
        )

    def hazards(self, recording_id: str, frame_index: int) -> list[str]:
        """The hazard classes the frame shows (taxonomy.hazards_in on its mask)."""
        return taxonomy.hazards_in(self.label(recording_id, frame_index).mask)

    def hazard_frames(self, frames) -> list[bool]:  # noqa: ANN001 - rows with recording_id, frame_index
        """Per row of a frame table: does the frame show a hazard?"""
        return [
            bool(self.hazards(str(rec), int(i)))
            for rec, i in zip(frames["recording_id"], frames["frame_index"], strict=True)
        ]
