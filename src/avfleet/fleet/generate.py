"""`avfleet fleet generate`: write the synthetic fleet as MCAP recordings.

    <out>/fleet.json                                 the spec (the world the oracle knows)
    <out>/raw/date=YYYY-MM-DD/vehicle=V/<id>.mcap     one file per drive segment

Every file is written atomically, and generation is idempotent: a file that
already exists with the same name is left alone, so a rerun completes a
half-finished fleet without rewriting it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from avfleet.core import storage
from avfleet.core.progress import progress
from avfleet.fleet import drive, scene
from avfleet.fleet.world import FleetSpec, SegmentPlan, plan_fleet, plan_heldout
from avfleet.recording import layout, messages
from avfleet.recording.writer import ChunkedWriter

log = logging.getLogger(__name__)

CAMERA_CHUNK_BYTES = 256 * 1024
SIGNAL_CHUNK_BYTES = 1024 * 1024
# Every index scan reads the signal chunks whole, and they are ~2% of a file: zstd's level 19
# makes them ~7% smaller than its default 3 for ~50 ms more per recording written
# (benchmarks/index_bytes.py measures both).
SIGNAL_ZSTD_LEVEL = 19
FLEET_SPEC_FILE = "fleet.json"


def encode_jpeg(rgb, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def recording_bytes(
    spec: FleetSpec,
    plan: SegmentPlan,
    writer_cls: type[ChunkedWriter] = ChunkedWriter,
    *,
    format_version: int = layout.FORMAT_VERSION,
    signal_zstd_level: int = SIGNAL_ZSTD_LEVEL,
) -> bytes:
    """One segment as MCAP bytes (camera in raw chunks, signals in zstd chunks).

    `format_version` 1 writes the layout avfleet used before Foxglove's schemas
    (schemaless JPEG camera, JSON GPS), kept so tests and benchmarks can show
    that old recordings still index and fetch (written before it, at the signal
    chunks' zstd level 3).
    """
    if format_version not in layout.FORMATS:
        raise ValueError(f"unknown recording format {format_version}; known: {layout.FORMATS}")
    foxglove = format_version >= 2
    world = scene.drive_layout(plan)
    line = drive.timeline(spec, plan, world)
    out = io.BytesIO()
    writer = writer_cls(
        out,
        {"camera": ("", CAMERA_CHUNK_BYTES), "signals": ("zstd", SIGNAL_CHUNK_BYTES)},
        profile=layout.PROFILE,
        zstd_level=signal_zstd_level,
    )
    camera_info = {
        "format": "jpeg",
        "width": str(spec.width),
        "height": str(spec.height),
        "frame_rate_hz": str(spec.camera_hz),
    }
    if foxglove:
        camera = writer.register_channel(
            layout.CAMERA_TOPIC,
            messages.PROTOBUF,
            _protobuf_schema(writer, messages.camera_schema()),
            "camera",
            camera_info,
        )
        gps = writer.register_channel(
            layout.GPS_TOPIC,
            messages.PROTOBUF,
            _protobuf_schema(writer, messages.gps_schema()),
            "signals",
        )
    else:
        camera = writer.register_channel(
            layout.CAMERA_TOPIC, messages.LEGACY_JPEG, 0, "camera", camera_info
        )
        gps = writer.register_channel(
            layout.GPS_TOPIC,
            layout.SIGNAL_ENCODING,
            _json_schema(writer, "avfleet.GpsFix", layout.LEGACY_GPS_SCHEMA),
            "signals",
        )
    can = writer.register_channel(
        layout.CAN_TOPIC,
        layout.SIGNAL_ENCODING,
        _json_schema(writer, "avfleet.VehicleCan", layout.CAN_SCHEMA),
        "signals",
    )
    digest = writer.register_channel(
        layout.DIGEST_TOPIC,
        layout.SIGNAL_ENCODING,
        _json_schema(writer, "avfleet.FrameDigest", layout.DIGEST_SCHEMA),
        "signals",
    )
    metadata = {
        "recording_id": plan.recording_id,
        "vehicle": plan.vehicle,
        "software_version": plan.software_version,
        "camera_topic": layout.CAMERA_TOPIC,
    }
    if foxglove:
        metadata["format_version"] = str(format_version)
    writer.add_metadata(layout.RECORDING_METADATA, metadata)
    # Signals and frames interleave in time, as a logger writes them.
    events = [(t, 0, i) for i, t in enumerate(line.gps_times_s)] + [
        (t, 1, i) for i, t in enumerate(line.can_times_s)
    ]
    events += [(t, 2, i) for i, t in enumerate(line.frame_times_s)]
    for t, kind, i in sorted(events):
        log_time = int(round(t * 1e9))
        if kind == 0 and foxglove:
            fix = messages.encode_location_fix(
                log_time,
                float(line.gps["lat_deg"][i]),
                float(line.gps["lon_deg"][i]),
                float(line.gps["speed_mps"][i]),
                plan.heading_rad,
            )
            writer.add_message(gps, log_time, fix, sequence=i)
        elif kind == 0:
            msg = {k: round(float(v[i]), 7) for k, v in line.gps.items()}
            writer.add_message(
                gps, log_time, json.dumps(msg, separators=(",", ":")).encode(), sequence=i
            )
        elif kind == 1:
            msg = {
                "speed_mps": round(float(line.can["speed_mps"][i]), 3),
                "wiper_level": int(line.can["wiper_level"][i]),
                "headlights": bool(line.can["headlights"][i]),
                "fog_lights": bool(line.can["fog_lights"][i]),
                "ambient_temp_c": round(float(line.can["ambient_temp_c"][i]), 2),
            }
            writer.add_message(
                can, log_time, json.dumps(msg, separators=(",", ":")).encode(), sequence=i
            )
        else:
            rgb, _ = drive.render_frame(spec, plan, world, line, i)
            jpeg = encode_jpeg(rgb, spec.jpeg_quality)
            sha = hashlib.sha256(jpeg).hexdigest()
            if foxglove:
                image, before, after = messages.encode_image(jpeg, log_time)
                writer.add_message(camera, log_time, image, sequence=i)
                writer.add_message(
                    digest,
                    log_time,
                    messages.encode_digest(sha, before, after),
                    sequence=i,
                )
            else:
                writer.add_message(camera, log_time, jpeg, sequence=i)
                writer.add_message(
                    digest, log_time, json.dumps({"sha256": sha}).encode(), sequence=i
                )
    writer.finish()
    return out.getvalue()


def _json_schema(writer: ChunkedWriter, name: str, schema: dict) -> int:
    return writer.register_schema(name, "jsonschema", json.dumps(schema).encode())


def _protobuf_schema(writer: ChunkedWriter, schema: tuple[str, bytes]) -> int:
    return writer.register_schema(schema[0], messages.PROTOBUF, schema[1])


def _write_one(
    args: tuple[FleetSpec, SegmentPlan, str, storage.StorageConfig, dict],
) -> tuple[str, int]:
    spec, plan, out_uri, storage_config, layout_options = args
    uri = storage.join(
        out_uri, layout.recording_relpath(plan.date, plan.vehicle, plan.recording_id)
    )
    if storage.exists(uri, storage_config):
        return uri, 0
    data = recording_bytes(spec, plan, **layout_options)
    storage.atomic_write_bytes(uri, data, storage_config)
    return uri, len(data)


def write_recordings(
    spec: FleetSpec,
    plans: Iterable[SegmentPlan],
    out_uri: str,
    *,
    world: dict,
    workers: int = 2,
    storage_config: storage.StorageConfig | None = None,
    show_progress: bool | None = None,
    **layout_options: int,
) -> list[str]:
    """Write every planned segment, after the world file the oracle rebuilds the plan from.

    `layout_options` go to `recording_bytes` (format_version, signal_zstd_level).
    """
    plans = list(plans)
    storage_config = storage_config or storage.StorageConfig()
    world_doc = {"spec": json.loads(spec.to_json()), **world}
    storage.atomic_write_text(
        storage.join(out_uri, FLEET_SPEC_FILE),
        json.dumps(world_doc, indent=2, sort_keys=True),
        storage_config,
    )
    uris: list[str] = []
    jobs = [(spec, p, out_uri, storage_config, layout_options) for p in plans]
    with progress("rendering recordings", len(jobs), show_progress) as bar:
        if workers <= 1:
            results = map(_write_one, jobs)
            for uri, _ in results:
                uris.append(uri)
                bar.advance()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for uri, _ in pool.map(_write_one, jobs):
                    uris.append(uri)
                    bar.advance()
    return uris


def generate_fleet(spec: FleetSpec, out_uri: str, **kwargs) -> list[str]:
    return write_recordings(spec, plan_fleet(spec), out_uri, world={"kind": "fleet"}, **kwargs)


def generate_heldout(
    spec: FleetSpec, out_uri: str, segments_per_domain: int = 1, **kwargs
) -> list[str]:
    """The domain-balanced held-out set, in its own root: never mined, never trained on."""
    plans = plan_heldout(spec, segments_per_domain)
    return write_recordings(
        spec,
        plans,
        out_uri,
        world={"kind": "heldout", "segments_per_domain": segments_per_domain},
        **kwargs,
    )


def read_world(
    fleet_uri: str, storage_config: storage.StorageConfig | None = None
) -> tuple[FleetSpec, list[SegmentPlan]]:
    """The spec and the full plan of a generated fleet or held-out set."""
    doc = json.loads(storage.read_bytes(storage.join(fleet_uri, FLEET_SPEC_FILE), storage_config))
    spec = FleetSpec.from_json(json.dumps(doc["spec"]))
    if doc.get("kind") == "heldout":
        return spec, plan_heldout(spec, int(doc["segments_per_domain"]))
    return spec, plan_fleet(spec)
