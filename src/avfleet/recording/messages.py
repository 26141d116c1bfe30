"""Encoding and decoding of the messages on avfleet's channels, in both recording formats.

Format 2 (written today) uses schemas any MCAP tool knows:

* camera: `foxglove.CompressedImage` (protobuf, format "jpeg"). Protobuf writes
  a bytes field as one contiguous run, so the JPEG still sits at a fixed file
  range; the writer records where, inside the message, in the frame's digest
  (`encode_digest`).
* GPS: `foxglove.LocationFix` (protobuf): latitude, longitude, and the ground
  velocity in East-North-Up with the heading, from which the index takes the
  speed.
* CAN and the frame digest: JSON with a documented JSON Schema (layout.py).

Format 1 (before it): the camera channel had no schema (message encoding
"jpeg", the message is the JPEG) and GPS was JSON. Its files stay readable:
decoding goes by each channel's schema and encoding, not by the version.

The protobuf classes come from Foxglove's own `foxglove-schemas-protobuf`
package, and the schema records carry their FileDescriptorSet as
`mcap-protobuf-support` builds it, so Foxglove and the `mcap` readers decode
the files without anything of avfleet's.
"""

from __future__ import annotations

import functools
import json
import math
import re

from avfleet.core.errors import RecordingError

COMPRESSED_IMAGE = "foxglove.CompressedImage"
LOCATION_FIX = "foxglove.LocationFix"
PROTOBUF = "protobuf"
JSON = "json"
LEGACY_JPEG = "jpeg"  # format 1: a schemaless camera channel whose messages are JPEG bytes

CAMERA_FRAME_ID = "camera_front"
GPS_FRAME_ID = "gps"

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _timestamp(log_time_ns: int):
    from google.protobuf.timestamp_pb2 import Timestamp

    return Timestamp(seconds=log_time_ns // 1_000_000_000, nanos=log_time_ns % 1_000_000_000)


def protobuf_schema(message_class) -> tuple[str, bytes]:  # noqa: ANN001 - a protobuf class
    """(schema name, FileDescriptorSet bytes) for an MCAP Schema record of encoding "protobuf"."""
    from mcap_protobuf.schema import build_file_descriptor_set

    return (
        message_class.DESCRIPTOR.full_name,
        build_file_descriptor_set(message_class).SerializeToString(),
    )


@functools.cache  # the same descriptors go into every recording
def camera_schema() -> tuple[str, bytes]:
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

    return protobuf_schema(CompressedImage)


@functools.cache
def gps_schema() -> tuple[str, bytes]:
    from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix

    return protobuf_schema(LocationFix)


def encode_image(jpeg: bytes, log_time_ns: int) -> tuple[bytes, int, int]:
    """(serialized CompressedImage, bytes before the JPEG inside it, bytes after it)."""
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

    data = CompressedImage(
        timestamp=_timestamp(log_time_ns), frame_id=CAMERA_FRAME_ID, data=jpeg, format="jpeg"
    ).SerializeToString()
    # The JPEG is one length-delimited field; nothing before it (timestamp, tag, length) can
    # hold a whole copy of it, so the first match is the field itself.
    offset = data.find(jpeg)
    if offset < 0:  # pragma: no cover - protobuf writes bytes fields verbatim
        raise AssertionError("CompressedImage does not hold its JPEG contiguously")
    return data, offset, len(data) - offset - len(jpeg)


def encode_location_fix(
    log_time_ns: int, lat_deg: float, lon_deg: float, speed_mps: float, heading_rad: float
) -> bytes:
    """A LocationFix with velocity in East-North-Up; heading is clockwise from north."""
    from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix
    from foxglove_schemas_protobuf.Vector3_pb2 import Vector3

    return LocationFix(
        timestamp=_timestamp(log_time_ns),
        frame_id=GPS_FRAME_ID,
        latitude=lat_deg,
        longitude=lon_deg,
        heading=heading_rad,
        velocity=Vector3(
            x=speed_mps * math.sin(heading_rad), y=speed_mps * math.cos(heading_rad), z=0.0
        ),
    ).SerializeToString()


def decode_image(uri: str, offset: int | None, schema_name: str, data: bytes) -> bytes:
    """The JPEG inside a camera message of either format."""
    if schema_name != COMPRESSED_IMAGE:
        return data
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from google.protobuf.message import DecodeError

    try:
        image = CompressedImage.FromString(data)
    except DecodeError as e:
        raise RecordingError(uri, offset, f"camera message is not a CompressedImage ({e})") from e
    if image.format.lower() not in ("jpeg", "jpg"):
        raise RecordingError(uri, offset, f"camera image format {image.format!r} is not jpeg")
    return image.data


def decode_gps(uri: str, offset: int, schema_name: str, encoding: str, data: bytes) -> dict:
    """{lat_deg, lon_deg, speed_mps} from a LocationFix (format 2) or a JSON fix (format 1)."""
    if encoding == PROTOBUF and schema_name == LOCATION_FIX:
        from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix
        from google.protobuf.message import DecodeError

        try:
            fix = LocationFix.FromString(data)
        except DecodeError as e:
            raise RecordingError(uri, offset, f"GPS message is not a LocationFix ({e})") from e
        speed = math.hypot(fix.velocity.x, fix.velocity.y) if fix.HasField("velocity") else math.nan
        return {"lat_deg": fix.latitude, "lon_deg": fix.longitude, "speed_mps": speed}
    if encoding == JSON:
        return decode_json_object(uri, offset, data, "GPS")
    raise RecordingError(
        uri, offset, f"GPS channel has schema {schema_name!r} in {encoding!r}: not a LocationFix"
    )


def decode_json_object(uri: str, offset: int, data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordingError(uri, offset, f"{what} message is not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise RecordingError(uri, offset, f"{what} message is not a JSON object")
    return value


def encode_digest(sha256_hex: str, data_offset: int, data_suffix: int) -> bytes:
    """The digest of a format-2 frame: its JPEG's sha256 and where the JPEG lies in its message.

    Where is said as the bytes before and after the JPEG, not its start and
    length: both barely change from frame to frame, so they cost the index
    next to nothing once the signal chunk is compressed; the length follows
    from the message's length, which the camera chunk's message index gives.
    """
    return json.dumps(
        {"sha256": sha256_hex, "data_offset": data_offset, "data_suffix": data_suffix},
        separators=(",", ":"),
    ).encode()


def decode_digest(uri: str, offset: int, data: bytes) -> tuple[str, int | None, int | None]:
    """(sha256, bytes before and after the JPEG in its camera message; None, None in format 1)."""
    value = decode_json_object(uri, offset, data, "frame digest")
    sha = value.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise RecordingError(uri, offset, "frame digest's sha256 is not 64 hex digits")
    where = value.get("data_offset"), value.get("data_suffix")
    if where == (None, None):
        return sha, None, None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in where):
        raise RecordingError(
            uri, offset, "frame digest's data_offset and data_suffix are not byte counts"
        )
    return sha, where[0], where[1]
