"""The index's identity of a frame: copies of a recording never repeat frame ids, and a frame whose
bytes changed after recording is caught on fetch, before a dataset or a queue takes it."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from avfleet.dataset.build import DatasetConfig, build_dataset, read_manifest
from avfleet.dataset.fetch import fetch_frames
from avfleet.dataset.labels import OracleLabels
from avfleet.index.job import IndexConfig, SparkEngine, run_index
from avfleet.index.scan import ScanConfig, scan_recording
from avfleet.index.table import IndexTable
from tests.integration.conftest import DATE

pytestmark = pytest.mark.integration
DATE2 = "2026-11-21"


def change_a_frame(path: pathlib.Path, nth: int = 3) -> int:
    """Flip bytes inside the nth camera JPEG's entropy-coded data (it still parses); its offset."""
    frames, _ = scan_recording(str(path), ScanConfig())
    row = frames.iloc[nth]
    start, length = int(row.record_offset), int(row.record_length)
    data = bytearray(path.read_bytes())
    middle = start + length // 2
    data[middle : middle + 8] = bytes(b ^ 0x5A for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))
    return start


@pytest.fixture(scope="module")
def fleet(clean_fleet, tmp_path_factory):
    """The small fleet plus: A copied under a second name, a copy of B with one frame changed,
    one frame of C changed in place, and A copied again into the next day's folder."""
    root = tmp_path_factory.mktemp("fleet-identity") / "fleet"
    shutil.copytree(clean_fleet, root)
    day = root / f"raw/date={DATE}"
    originals = sorted(day.glob("*/*.mcap"))
    a, b, c = originals[0], originals[1], originals[2]
    copy_a = day / "vehicle=uploads" / "reupload-0001.mcap"
    copy_a.parent.mkdir()
    shutil.copy(a, copy_a)
    copy_b = b.with_name("zz-" + b.name)
    shutil.copy(b, copy_b)
    change_a_frame(copy_b)
    changed_offset = change_a_frame(c)
    next_day = root / f"raw/date={DATE2}/vehicle=uploads"
    next_day.mkdir(parents=True)
    shutil.copy(a, next_day / "late-copy.mcap")
    return {
        "root": str(root),
        "originals": originals,
        "a": str(a),
        "b": str(b),
        "c": str(c),
        "copy_a": str(copy_a),
        "copy_b": str(copy_b),
        "changed_offset": changed_offset,
    }


@pytest.fixture(scope="module")
def indexed(spark, fleet, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("index-identity"))
    reports = {
        d: run_index(
            IndexConfig(recordings_uri=fleet["root"], date=d, out_uri=out), SparkEngine(spark)
        )
        for d in (DATE, DATE2)
    }
    return out, reports


def test_copies_are_quarantined_as_duplicates_and_frame_ids_stay_unique(fleet, indexed):
    out, reports = indexed
    report = reports[DATE]
    inputs = len(fleet["originals"]) + 2
    assert report.num_files == inputs == report.num_indexed + report.num_quarantined
    reasons = {q["recording_uri"]: q["reason"] for q in report.quarantined}
    frames = IndexTable(out).read("frames", [DATE])
    kept = set(frames["recording_uri"])
    for first, second in ((fleet["a"], fleet["copy_a"]), (fleet["b"], fleet["copy_b"])):
        # One of the pair is indexed (the first by URI), the other names it.
        (holder,) = {first, second} & kept
        (other,) = {first, second} - {holder}
        assert reasons[other].startswith(f"duplicate of {holder}")
    assert len(reasons) == 2 and frames["frame_id"].is_unique
    assert report.num_frames == len(frames)
    # Across dates: the next day's copy of A is a duplicate of the file indexed the day before.
    late = reports[DATE2]
    assert late.num_files == 1 and late.num_indexed == 0 and late.num_quarantined == 1
    (holder,) = {fleet["a"], fleet["copy_a"]} & kept
    assert late.quarantined[0]["reason"].startswith(f"duplicate of {holder}")
    both = IndexTable(out).read("frames")
    assert both["frame_id"].is_unique


def test_a_changed_frame_is_caught_on_fetch_and_the_rest_proceed(fleet, indexed, tmp_path):
    out, _ = indexed
    frames = IndexTable(out).read("frames", [DATE])
    of_c = frames[frames["recording_uri"] == fleet["c"]]
    assert of_c["payload_sha256"].notna().all()
    rejected: list[dict] = []
    images, _ = fetch_frames(of_c, ScanConfig().storage, rejected=rejected)
    assert len(images) == len(of_c) - 1
    assert rejected == [
        {
            "frame_id": of_c.sort_values("log_time_ns").iloc[3]["frame_id"],
            "recording_uri": fleet["c"],
            "offset": fleet["changed_offset"],
            "reason": "frame payload changed since recording (sha256 differs from its digest)",
        }
    ]
    # A dataset of the recording: every frame but the changed one, which the manifest names.
    selection = tmp_path / "selection.json"
    of_c[["frame_id"]].to_json(selection, orient="records")
    pick = tmp_path / "selection.parquet"
    of_c[["frame_id"]].to_parquet(pick)
    version = build_dataset(
        DatasetConfig(
            index_uri=out, selection=str(pick), out_uri=str(tmp_path / "ds"), engine="loop"
        ),
        OracleLabels(fleet["root"]),
    )
    manifest = read_manifest(version.uri)
    assert manifest["num_frames"] == len(of_c) - 1
    assert [r["frame_id"] for r in manifest["rejected_frames"]] == [rejected[0]["frame_id"]]
    assert rejected[0]["frame_id"] not in manifest["frame_ids"]
    assert json.dumps(manifest["rejected_frames"][0]["reason"]).count("changed since recording")
