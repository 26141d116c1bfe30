"""Bytes read / bytes stored by the index's metadata-only scan, against a full read of the same files.

Goal: at most 2% when camera payloads dominate the files. Two frame sizes: the
demo's 64x128 and 96x192 (bigger payloads, same signals).
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import cached_fleet, save  # noqa: E402

from avfleet.core.storage import ByteSource  # noqa: E402
from avfleet.fleet.world import FleetSpec  # noqa: E402
from avfleet.index.scan import ScanConfig, scan_recording  # noqa: E402
from avfleet.recording.reader import iter_records  # noqa: E402


def measure(spec: FleetSpec) -> dict:
    root = cached_fleet(spec)
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


def main() -> None:
    runs = [
        measure(FleetSpec(seed=31, vehicles=4, minutes_per_day=3.0)),
        measure(FleetSpec(seed=31, vehicles=4, minutes_per_day=3.0, height=96, width=192)),
    ]
    save("index_bytes", {"goal": "metadata_scan_read_fraction <= 0.02", "runs": runs})


if __name__ == "__main__":
    main()
