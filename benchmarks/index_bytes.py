"""Bytes read / bytes stored by the index's metadata-only scan, against a full read of the same files.

Goal: at most 2% when camera payloads dominate the files. Two frame sizes: the
demo's 64x128 and 96x192 (bigger payloads, same signals). Each is measured in
both recording formats (1: schemaless JPEG and JSON GPS; 2: Foxglove's
CompressedImage and LocationFix) and at both zstd levels of the signal chunks
(3, what format 1 was written with; 19, today's), so what the well-known
schemas cost the index shows as ratios against the layout before them, measured
in the same run.
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import cached_fleet, save  # noqa: E402

from avfleet.core.storage import ByteSource  # noqa: E402
from avfleet.fleet.generate import SIGNAL_ZSTD_LEVEL  # noqa: E402
from avfleet.fleet.world import FleetSpec  # noqa: E402
from avfleet.index.scan import ScanConfig, scan_recording  # noqa: E402
from avfleet.recording.reader import iter_records  # noqa: E402


def measure(spec: FleetSpec, arm: str, **layout_options: int) -> dict:
    root = cached_fleet(spec, **layout_options)
    files = sorted(pathlib.Path(root, f"raw/date={spec.start_date}").glob("*/*.mcap"))
    stored = sum(f.stat().st_size for f in files)
    scan_read = full_read = 0
    scan_s = full_s = 0.0
    frames = 0
    for f in files:
        t = time.perf_counter()
        df, n = scan_recording(str(f), ScanConfig())
        scan_s += time.perf_counter() - t
        scan_read += n
        frames += len(df)
        t = time.perf_counter()
        with ByteSource(str(f)) as source:
            for _ in iter_records(source):
                pass
            full_read += source.bytes_read
        full_s += time.perf_counter() - t
    return {
        "frame_size": f"{spec.height}x{spec.width}",
        "arm": arm,
        **layout_options,
        "files": len(files),
        "frames": frames,
        "bytes_stored": stored,
        "metadata_scan_bytes_read": scan_read,
        "full_read_bytes_read": full_read,
        "metadata_scan_read_fraction": scan_read / stored,
        "full_read_fraction": full_read / stored,
        "bytes_ratio_scan_vs_full": scan_read / full_read,
        "metadata_scan_s": scan_s,
        "full_read_s": full_s,
        "speedup_scan_vs_full": full_s / scan_s,
    }


ARMS = {
    # The layout before Foxglove's schemas, as it was written (message for message).
    "format 1, zstd 3": {"format_version": 1, "signal_zstd_level": 3},
    "format 1, zstd 19": {"format_version": 1, "signal_zstd_level": SIGNAL_ZSTD_LEVEL},
    # What `fleet generate` writes now.
    "format 2, zstd 19": {"format_version": 2, "signal_zstd_level": SIGNAL_ZSTD_LEVEL},
}


def main() -> None:
    specs = [
        FleetSpec(seed=31, vehicles=4, minutes_per_day=3.0),
        FleetSpec(seed=31, vehicles=4, minutes_per_day=3.0, height=96, width=192),
    ]
    runs = [measure(spec, arm, **options) for spec in specs for arm, options in ARMS.items()]
    by_size: dict[str, dict[str, dict]] = {}
    for run in runs:
        by_size.setdefault(run["frame_size"], {})[run["arm"]] = run
    baseline = "format 1, zstd 3"
    versus_before = {
        size: {
            arm: {
                "scan_bytes_read_ratio": r["metadata_scan_bytes_read"]
                / arms[baseline]["metadata_scan_bytes_read"],
                "bytes_stored_ratio": r["bytes_stored"] / arms[baseline]["bytes_stored"],
            }
            for arm, r in arms.items()
            if arm != baseline
        }
        for size, arms in by_size.items()
    }
    save(
        "index_bytes",
        {
            "goal": "metadata_scan_read_fraction <= 0.02; format 2 reads <= 1.02x the layout before it",
            "runs": runs,
            "versus_format_1_zstd_3": versus_before,
        },
    )


if __name__ == "__main__":
    main()
