"""The recording layout avfleet writes and the index relies on.

A recording is one MCAP file per drive segment:

    raw/date=YYYY-MM-DD/vehicle=V/<recording_id>.mcap

Channels (topics), in format 2 (FORMAT_VERSION; recordings say which format
they are in their metadata record, and format-1 files still read):

* CAMERA_TOPIC: one `foxglove.CompressedImage` (protobuf, format "jpeg") per
  frame, in *uncompressed* chunks of camera messages only, so a frame's JPEG
  sits at a fixed file range and one ranged read fetches it. (Format 1: a
  schemaless channel of message encoding "jpeg" whose messages were the JPEG.)
* GPS_TOPIC: `foxglove.LocationFix` (protobuf) with latitude, longitude,
  heading and ENU velocity (format 1: JSON {lat_deg, lon_deg, speed_mps}).
* CAN_TOPIC: JSON described by CAN_SCHEMA (a JSON Schema with every field
  documented; Foxglove plots its fields by name).
* DIGEST_TOPIC: per camera frame, at the frame's log time, the sha256 of its
  JPEG as recorded, and how many bytes of the camera message come before and
  after the JPEG (DIGEST_SCHEMA). The index reads it with the signals, so it learns each
  JPEG's exact file range without reading a camera byte, and every fetch
  checks the bytes it gets against the digest, so a frame changed after
  recording never reaches a dataset, a queue or a labeler.
* GPS, CAN and digests are small messages in their own zstd chunks, so the
  index reads every signal without touching a camera byte.
* Metadata record RECORDING_METADATA: recording_id, vehicle,
  software_version, camera_topic, format_version.

Ground truth (masks, true conditions) is never stored in a recording.
"""

from __future__ import annotations

CAMERA_TOPIC = "/camera/front/image_jpeg"
GPS_TOPIC = "/gps/fix"
DIGEST_TOPIC = "/avfleet/frame_digest"
CAN_TOPIC = "/vehicle/can"
RECORDING_METADATA = "recording"
PROFILE = "avfleet"

FORMAT_VERSION = 2
"""The recording format `fleet generate` writes (1: schemaless JPEG camera and JSON GPS)."""
FORMATS = (1, 2)

SIGNAL_ENCODING = "json"

LEGACY_GPS_SCHEMA = {
    "title": "avfleet.GpsFix",
    "description": "Format 1 only: format 2 writes foxglove.LocationFix.",
    "type": "object",
    "properties": {
        "lat_deg": {"type": "number"},
        "lon_deg": {"type": "number"},
        "speed_mps": {"type": "number"},
    },
    "required": ["lat_deg", "lon_deg", "speed_mps"],
}

CAN_SCHEMA = {
    "title": "avfleet.VehicleCan",
    "description": "Vehicle bus signals the index derives weather and road type from.",
    "type": "object",
    "properties": {
        "speed_mps": {"type": "number", "description": "Wheel speed, m/s."},
        "wiper_level": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2,
            "description": "Wiper stage: 0 off, 1 interval or low, 2 high.",
        },
        "headlights": {"type": "boolean", "description": "Low beams on."},
        "fog_lights": {"type": "boolean", "description": "Fog lights on."},
        "ambient_temp_c": {
            "type": "number",
            "description": "Outside air temperature, degrees Celsius.",
        },
    },
    "required": ["speed_mps", "wiper_level", "headlights", "fog_lights", "ambient_temp_c"],
}


DIGEST_SCHEMA = {
    "title": "avfleet.FrameDigest",
    "description": "What the camera frame at the same log time holds, written as it was recorded.",
    "type": "object",
    "properties": {
        "sha256": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "sha256 of the JPEG bytes.",
        },
        "data_offset": {
            "type": "integer",
            "minimum": 0,
            "description": "Bytes of the camera message before its JPEG (format 2).",
        },
        "data_suffix": {
            "type": "integer",
            "minimum": 0,
            "description": "Bytes of the camera message after its JPEG (format 2).",
        },
    },
    "required": ["sha256"],
}


def recording_relpath(date: str, vehicle: str, recording_id: str) -> str:
    return f"raw/date={date}/vehicle={vehicle}/{recording_id}.mcap"


def date_prefix(date: str) -> str:
    return f"raw/date={date}"
