"""Small fleets for tests: short segments so generation takes seconds."""

from __future__ import annotations

import functools

from avfleet.fleet.generate import recording_bytes
from avfleet.fleet.world import FleetSpec, SegmentPlan, plan_fleet

TINY = FleetSpec(seed=7, vehicles=1, minutes_per_day=0.25, segment_s=10.0)


@functools.lru_cache(maxsize=4)
def tiny_recording(spec: FleetSpec = TINY) -> tuple[SegmentPlan, bytes]:
    plan = plan_fleet(spec)[0]
    return plan, recording_bytes(spec, plan)
