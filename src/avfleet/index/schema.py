"""Explicit schemas of the index's tables (Arrow) and of the Spark scan result."""

from __future__ import annotations

import pyarrow as pa

FRAMES = pa.schema(
    [
        ("frame_id", pa.string()),
        ("date", pa.string()),
        ("vehicle", pa.string()),
        ("recording_id", pa.string()),
        ("recording_uri", pa.string()),
        ("software_version", pa.string()),
        ("frame_index", pa.int32()),
        ("log_time_ns", pa.int64()),
        ("camera_topic", pa.string()),
        ("channel_id", pa.int32()),
        # Where the frame sits: its chunk, the message's offset inside the inflated chunk, and for
        # uncompressed chunks the absolute byte range of the message record (one ranged read).
        ("chunk_offset", pa.int64()),
        ("chunk_length", pa.int64()),
        ("chunk_compression", pa.string()),
        ("message_offset", pa.int64()),
        ("record_offset", pa.int64()),
        ("record_length", pa.int64()),
        ("lat_deg", pa.float64()),
        ("lon_deg", pa.float64()),
        ("gps_speed_mps", pa.float64()),
        ("can_speed_mps", pa.float64()),
        ("wiper_level", pa.int32()),
        ("headlights", pa.bool_()),
        ("fog_lights", pa.bool_()),
        ("ambient_temp_c", pa.float64()),
        ("sun_elevation_deg", pa.float64()),
        ("time_of_day", pa.string()),
        ("weather", pa.string()),
        ("road_type", pa.string()),
        # sha256 of the JPEG as recorded (the recording's DIGEST_TOPIC); null when it has none.
        ("payload_sha256", pa.string()),
        # The camera channel's schema: "foxglove.CompressedImage", or "" for format 1's raw JPEG.
        ("camera_schema", pa.string()),
        # The JPEG's own absolute byte range in the file (inside the message record above);
        # null where the index cannot know it without reading the frame (compressed chunks).
        ("payload_offset", pa.int64()),
        ("payload_length", pa.int64()),
    ]
)

# One row per input file: how it went. The quarantine table is the rows with status "quarantined".
FILES = pa.schema(
    [
        ("recording_uri", pa.string()),
        ("recording_id", pa.string()),  # what the file carries (its metadata); null if unread
        ("date", pa.string()),
        ("status", pa.string()),  # "indexed" | "quarantined"
        ("reason", pa.string()),
        ("error_offset", pa.int64()),
        ("num_frames", pa.int64()),
        ("bytes_stored", pa.int64()),
        ("bytes_read", pa.int64()),
        ("part_uri", pa.string()),
        ("domain_counts", pa.string()),  # JSON {"time_of_day/weather/road_type": frames}
        ("peak_rss_bytes", pa.int64()),
        ("scan_seconds", pa.float64()),
    ]
)

STATUS_INDEXED = "indexed"
STATUS_QUARANTINED = "quarantined"
