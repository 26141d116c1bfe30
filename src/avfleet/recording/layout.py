"""The recording layout avfleet writes and the index relies on.

A recording is one MCAP file per drive segment:

    raw/date=YYYY-MM-DD/vehicle=V/<recording_id>.mcap

Channels (topics) and their encodings:

* CAMERA_TOPIC: one JPEG per message (message_encoding "jpeg"), in
  *uncompressed* chunks of camera messages only, so a frame's bytes sit at a
  fixed file range and one ranged read fetches it.
* GPS_TOPIC, CAN_TOPIC: small JSON messages in their own zstd chunks, so the
  index reads every signal without touching a camera byte.
* DIGEST_TOPIC: per camera frame, at the frame's log time, the sha256 of its
  JPEG as recorded ({"sha256": hex}), in the signal chunks: the index reads it
  with the signals, and every fetch checks the bytes it gets against it, so a
  frame changed after recording never reaches a dataset, a queue or a labeler.
* Metadata record RECORDING_METADATA: recording_id, vehicle, software_version.

Ground truth (masks, true conditions) is never stored in a recording.
"""

from __future__ import annotations

CAMERA_TOPIC = "/camera/front/image_jpeg"
GPS_TOPIC = "/gps/fix"
DIGEST_TOPIC = "/avfleet/frame_digest"
CAN_TOPIC = "/vehicle/can"
RECORDING_METADATA = "recording"
PROFILE = "avfleet"

CAMERA_ENCODING = "jpeg"
SIGNAL_ENCODING = "json"

GPS_SCHEMA = {
    "type": "object",
    "properties": {
        "lat_deg": {"type": "number"},
        "lon_deg": {"type": "number"},
        "speed_mps": {"type": "number"},
    },
    "required": ["lat_deg", "lon_deg", "speed_mps"],
}

CAN_SCHEMA = {
    "type": "object",
    "properties": {
        "speed_mps": {"type": "number"},
        "wiper_level": {"type": "integer", "minimum": 0, "maximum": 2},
        "headlights": {"type": "boolean"},
        "fog_lights": {"type": "boolean"},
        "ambient_temp_c": {"type": "number"},
    },
    "required": ["speed_mps", "wiper_level", "headlights", "fog_lights", "ambient_temp_c"],
}


DIGEST_SCHEMA = {
    "type": "object",
    "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    "required": ["sha256"],
}


def recording_relpath(date: str, vehicle: str, recording_id: str) -> str:
    return f"raw/date={date}/vehicle={vehicle}/{recording_id}.mcap"


def date_prefix(date: str) -> str:
    return f"raw/date={date}"
