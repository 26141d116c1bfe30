"""Checks on a committed date: every input is accounted for exactly once."""

from __future__ import annotations

from avfleet.core.errors import PermanentError
from avfleet.core.storage import StorageConfig
from avfleet.index import schema
from avfleet.index.table import IndexTable


def verify_date(
    index_uri: str,
    date: str,
    expect_files: int | None = None,
    storage_config: StorageConfig | None = None,
) -> dict[str, int]:
    """Counts of the committed run; raises PermanentError when the books do not balance."""
    table = IndexTable(index_uri, storage_config)
    files = table.read("files", [date])
    frames = table.read("frames", [date])
    quarantine = table.read("quarantine", [date])
    problems = []
    if files["recording_uri"].duplicated().any():
        problems.append("an input appears twice in the files table")
    indexed = int((files["status"] == schema.STATUS_INDEXED).sum())
    quarantined = int((files["status"] == schema.STATUS_QUARANTINED).sum())
    if indexed + quarantined != len(files):
        problems.append("a files row is neither indexed nor quarantined")
    if set(quarantine["recording_uri"]) != set(
        files.loc[files["status"] == schema.STATUS_QUARANTINED, "recording_uri"]
    ):
        problems.append("quarantine table disagrees with the files table")
    if frames["frame_id"].duplicated().any():
        problems.append(f"{int(frames['frame_id'].duplicated().sum())} duplicate frame ids")
    if int(files["num_frames"].sum()) != len(frames):
        problems.append(
            f"files table counts {int(files['num_frames'].sum())} frames, frames table has {len(frames)}"
        )
    if set(frames["recording_uri"]) & set(quarantine["recording_uri"]):
        problems.append("a quarantined recording has indexed frames")
    if expect_files is not None and len(files) != expect_files:
        problems.append(f"expected {expect_files} inputs, the run accounted for {len(files)}")
    if problems:
        raise PermanentError(f"index {index_uri} date {date}: " + "; ".join(problems))
    return {
        "files": len(files),
        "indexed": indexed,
        "quarantined": quarantined,
        "frames": len(frames),
    }
