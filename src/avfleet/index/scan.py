"""Metadata-only scan of one recording into frame rows with domain tags.

Reads the footer and summary, the recording metadata, the message indexes of
camera chunks and the (small, compressed) signal chunks; never a camera
payload. Recordings of both formats (layout.FORMATS) read: messages are decoded
by their channel's schema and encoding (recording.messages). A file that cannot
be read this way raises `RecordingError`, which the caller turns into a
quarantine row with the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re

import numpy as np
import pandas as pd

from avfleet import domains
from avfleet.core.errors import RecordingError
from avfleet.core.storage import ByteSource, StorageConfig
from avfleet.recording import layout, messages
from avfleet.recording import reader as rd
from avfleet.recording.limits import ReaderLimits


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScanConfig:
    limits: ReaderLimits = dataclasses.field(default_factory=ReaderLimits)
    """Caps on what one recording may make the reader allocate."""
    camera_topic: str = layout.CAMERA_TOPIC
    """Topic whose messages become frames."""
    gps_topic: str = layout.GPS_TOPIC
    """Topic of GPS fixes (lat_deg, lon_deg, speed_mps)."""
    can_topic: str = layout.CAN_TOPIC
    """Topic of vehicle CAN signals (speed, wipers, lights, temperature)."""
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    """How to reach the recordings."""


_VEHICLE_RE = re.compile(r"/vehicle=([^/]+)/")
_DATE_RE = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


def frame_id(recording_id: str, topic: str, log_time_ns: int) -> str:
    """Stable across reruns and re-uploads: depends on what the frame is, not where it is stored."""
    return hashlib.sha1(f"{recording_id}|{topic}|{log_time_ns}".encode()).hexdigest()[:20]


@dataclasses.dataclass
class _Signals:
    times_ns: list[int] = dataclasses.field(default_factory=list)
    values: list[dict] = dataclasses.field(default_factory=list)

    def frame(self, columns: tuple[str, ...]) -> pd.DataFrame:
        order = np.argsort(np.asarray(self.times_ns, dtype=np.int64), kind="stable")
        df = pd.DataFrame([self.values[i] for i in order], columns=list(columns))
        df.insert(0, "t_ns", np.asarray(self.times_ns, dtype=np.int64)[order])
        return df


def scan_recording(uri: str, config: ScanConfig) -> tuple[pd.DataFrame, int]:
    """(frame rows, bytes read) of one recording, or `RecordingError`."""
    with ByteSource(uri, config.storage) as source:
        frames = _scan(source, uri, config)
        return frames, source.bytes_read


def _scan(source: ByteSource, uri: str, config: ScanConfig) -> pd.DataFrame:
    limits = config.limits
    summary = rd.read_summary(source, limits)
    meta = rd.read_metadata(source, summary, layout.RECORDING_METADATA, limits) or {}
    recording_id = meta.get("recording_id") or posixpath.basename(uri).removesuffix(".mcap")
    vehicle_match = _VEHICLE_RE.search(uri)
    vehicle = meta.get("vehicle") or (vehicle_match.group(1) if vehicle_match else "unknown")
    date_match = _DATE_RE.search(uri)
    camera_ids = set(summary.channel_ids(config.camera_topic))
    if not camera_ids:
        raise RecordingError(uri, None, f"no channel on camera topic {config.camera_topic!r}")
    camera_schema = _camera_schema(uri, summary, camera_ids)
    gps_ids = set(summary.channel_ids(config.gps_topic))
    gps_kinds = {  # (schema name, message encoding) of each GPS channel, for its decoder
        cid: (
            getattr(summary.schemas.get(summary.channels[cid].schema_id), "name", ""),
            summary.channels[cid].message_encoding,
        )
        for cid in gps_ids
    }
    can_ids = set(summary.channel_ids(config.can_topic))
    digest_ids = set(summary.channel_ids(layout.DIGEST_TOPIC))
    signal_ids = gps_ids | can_ids | digest_ids

    gps, can = _Signals(), _Signals()
    digests: dict[int, tuple[str, int | None, int | None]] = {}
    frames: list[tuple] = []
    for index in summary.chunk_indexes:
        channels_here = set(index.message_index_offsets)
        records = None
        if channels_here & signal_ids:
            records = rd.read_chunk(source, index, limits)
            for message in rd.iter_chunk_messages(uri, index.chunk_start_offset, records, limits):
                at = index.chunk_start_offset
                if message.channel_id in digest_ids:
                    digests[message.log_time] = messages.decode_digest(uri, at, message.data)
                elif message.channel_id in gps_ids:
                    schema_name, encoding = gps_kinds[message.channel_id]
                    gps.times_ns.append(message.log_time)
                    gps.values.append(
                        messages.decode_gps(uri, at, schema_name, encoding, message.data)
                    )
                elif message.channel_id in can_ids:
                    can.times_ns.append(message.log_time)
                    can.values.append(messages.decode_json_object(uri, at, message.data, "CAN"))
        if channels_here & camera_ids:
            entries = rd.read_message_indexes(source, index, limits)
            all_offsets = sorted(off for recs in entries.values() for _, off in recs)
            ends = dict(zip(all_offsets, all_offsets[1:] + [index.uncompressed_size], strict=True))
            base = rd.chunk_records_offset(index) if index.compression == "" else None
            for channel_id in sorted(channels_here & camera_ids):
                for log_time, offset in entries.get(channel_id, []):
                    frames.append(
                        (
                            channel_id,
                            log_time,
                            index.chunk_start_offset,
                            index.chunk_length,
                            index.compression,
                            offset,
                            None if base is None else base + offset,
                            None if base is None else ends[offset] - offset,
                        )
                    )
    columns = [
        "channel_id",
        "log_time_ns",
        "chunk_offset",
        "chunk_length",
        "chunk_compression",
        "message_offset",
        "record_offset",
        "record_length",
    ]
    df = (
        pd.DataFrame(frames, columns=columns)
        .sort_values(["log_time_ns", "channel_id"], kind="stable")
        .reset_index(drop=True)
    )
    df["record_offset"] = df["record_offset"].astype("Int64")
    df["record_length"] = df["record_length"].astype("Int64")
    df["frame_index"] = np.arange(len(df), dtype=np.int32)
    df["recording_id"] = recording_id
    df["recording_uri"] = uri
    df["vehicle"] = vehicle
    df["date"] = date_match.group(1) if date_match else _utc_date(df["log_time_ns"])
    df["software_version"] = meta.get("software_version", "")
    df["camera_topic"] = config.camera_topic
    df["frame_id"] = [
        frame_id(recording_id, config.camera_topic, int(t)) for t in df["log_time_ns"]
    ]
    repeated = df["frame_id"].duplicated()
    if repeated.any():
        t = int(df.loc[repeated, "log_time_ns"].iloc[0])
        raise RecordingError(
            uri, None, f"two camera messages share log time {t} ns: their frame ids would repeat"
        )
    df["camera_schema"] = camera_schema
    _payload_ranges(df, digests, camera_schema, uri)
    return tag_frames(
        df,
        gps.frame(("lat_deg", "lon_deg", "speed_mps")),
        can.frame(("speed_mps", "wiper_level", "headlights", "fog_lights", "ambient_temp_c")),
    )


def _utc_date(log_time_ns: pd.Series) -> str:
    """The UTC date of the first frame, for recordings stored outside a date= folder."""
    return (
        pd.to_datetime(log_time_ns.min(), unit="ns").strftime("%Y-%m-%d")
        if len(log_time_ns)
        else ""
    )


def _camera_schema(uri: str, summary: rd.RecordingSummary, camera_ids: set[int]) -> str:
    """The camera channels' schema name: foxglove.CompressedImage, or "" for format 1's raw JPEG."""
    kinds = set()
    for channel_id in camera_ids:
        channel = summary.channels[channel_id]
        schema = summary.schemas.get(channel.schema_id)
        if channel.message_encoding == messages.PROTOBUF and schema is not None:
            kinds.add(schema.name)
        elif channel.message_encoding == messages.LEGACY_JPEG and channel.schema_id == 0:
            kinds.add("")
        else:
            kinds.add(f"{schema.name if schema else ''} in {channel.message_encoding}")
    if len(kinds) != 1 or not kinds <= {messages.COMPRESSED_IMAGE, ""}:
        raise RecordingError(
            uri,
            None,
            f"camera channels carry {sorted(kinds)}: avfleet reads foxglove.CompressedImage "
            "(protobuf) or schemaless JPEG",
        )
    return kinds.pop()


def _payload_ranges(df: pd.DataFrame, digests: dict, camera_schema: str, uri: str) -> None:
    """payload_sha256 from the digests, and each JPEG's absolute file range where it is known.

    Known for frames in uncompressed chunks: a format-1 message is the JPEG; a
    format-2 CompressedImage holds it between the prefix and suffix its digest
    records.
    """
    sha, start, length = [], [], []
    for t, record_offset, record_length in zip(
        df["log_time_ns"], df["record_offset"], df["record_length"], strict=True
    ):
        digest, before, after = digests.get(int(t), (None, None, None))
        sha.append(digest)
        if camera_schema == "":
            before, after = 0, 0
        if pd.isna(record_offset) or before is None:
            start.append(None)
            length.append(None)
            continue
        jpeg_length = int(record_length) - rd.MESSAGE_PREFIX_BYTES - before - after
        if jpeg_length <= 0:
            raise RecordingError(
                uri, int(record_offset), "frame digest places the JPEG outside its camera message"
            )
        start.append(int(record_offset) + rd.MESSAGE_PREFIX_BYTES + before)
        length.append(jpeg_length)
    df["payload_sha256"] = sha
    df["payload_offset"] = pd.array(start, dtype="Int64")
    df["payload_length"] = pd.array(length, dtype="Int64")


def _asof(frame_t_ns: np.ndarray, signal_t_ns: np.ndarray) -> np.ndarray:
    """Index of the latest signal at or before each frame (the first one for frames before it)."""
    return np.clip(
        np.searchsorted(signal_t_ns, frame_t_ns, side="right") - 1, 0, max(len(signal_t_ns) - 1, 0)
    )


def tag_frames(frames: pd.DataFrame, gps: pd.DataFrame, can: pd.DataFrame) -> pd.DataFrame:
    """Join GPS and CAN onto frames (as of the frame's time) and derive the domain tags."""
    t = frames["log_time_ns"].to_numpy(np.int64)
    if len(gps):
        i = _asof(t, gps["t_ns"].to_numpy(np.int64))
        frames["lat_deg"] = gps["lat_deg"].to_numpy(float)[i]
        frames["lon_deg"] = gps["lon_deg"].to_numpy(float)[i]
        frames["gps_speed_mps"] = gps["speed_mps"].to_numpy(float)[i]
        elevation = domains.sun_elevation_deg(
            t / 1e9, frames["lat_deg"].to_numpy(), frames["lon_deg"].to_numpy()
        )
        frames["sun_elevation_deg"] = elevation
        frames["time_of_day"] = domains.time_of_day(elevation)
    else:
        for col in ("lat_deg", "lon_deg", "gps_speed_mps", "sun_elevation_deg"):
            frames[col] = np.nan
        frames["time_of_day"] = "unknown"
    if len(can):
        can_t = can["t_ns"].to_numpy(np.int64)
        i = _asof(t, can_t)
        speed = pd.Series(can["speed_mps"].to_numpy(float), index=pd.to_datetime(can_t, unit="ns"))
        median_speed = speed.rolling(f"{int(domains.ROAD_SPEED_WINDOW_S)}s").median().to_numpy()
        frames["can_speed_mps"] = can["speed_mps"].to_numpy(float)[i]
        frames["wiper_level"] = can["wiper_level"].to_numpy(np.int32)[i]
        frames["headlights"] = can["headlights"].to_numpy(bool)[i]
        frames["fog_lights"] = can["fog_lights"].to_numpy(bool)[i]
        frames["ambient_temp_c"] = can["ambient_temp_c"].to_numpy(float)[i]
        frames["weather"] = domains.weather_from_signals(
            frames["wiper_level"], frames["fog_lights"], frames["ambient_temp_c"]
        )
        frames["road_type"] = domains.road_type_from_speed(median_speed[i])
    else:
        frames["can_speed_mps"] = np.nan
        frames["wiper_level"] = pd.array([None] * len(frames), dtype="Int32")
        frames["headlights"] = pd.array([None] * len(frames), dtype="boolean")
        frames["fog_lights"] = pd.array([None] * len(frames), dtype="boolean")
        frames["ambient_temp_c"] = np.nan
        frames["weather"] = "unknown"
        frames["road_type"] = "unknown"
    return frames
