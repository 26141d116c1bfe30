"""Core pieces: config parsing, exit codes, atomic writes, metrics exposition."""

from __future__ import annotations

import dataclasses

import pytest

from avfleet.core import config, storage
from avfleet.core.errors import ConfigError, ExitCode, RecordingError, StorageError, exit_code_for
from avfleet.core.metrics import JobMetrics
from avfleet.index.job import IndexConfig


def test_config_round_trip_and_unknown_field():
    cfg = IndexConfig(recordings_uri="/r", date="2026-11-20", out_uri="/o")
    again = config.from_dict(IndexConfig, config.to_dict(cfg))
    assert again == cfg
    data = config.to_dict(cfg)
    data["scan"]["limits"]["max_record_byts"] = 1
    with pytest.raises(ConfigError, match="scan.limits.max_record_byts"):
        config.from_dict(IndexConfig, data)


def test_config_rejects_bad_date_and_is_frozen():
    with pytest.raises(ValueError, match="IndexConfig.date"):
        IndexConfig(recordings_uri="/r", date="20-11-2026", out_uri="/o")
    cfg = IndexConfig(recordings_uri="/r", date="2026-11-20", out_uri="/o")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.date = "2026-11-21"  # type: ignore[misc]


def test_exit_codes_decide_retries():
    assert exit_code_for(StorageError("s3 503")) == ExitCode.TRANSIENT == 75
    assert exit_code_for(RecordingError("f.mcap", 10, "bad")) == ExitCode.BAD_INPUT
    assert exit_code_for(ConfigError("date", "bad")) == ExitCode.BAD_CONFIG
    assert exit_code_for(KeyError("bug")) == ExitCode.INTERNAL


def test_atomic_write_replaces_whole_file(tmp_path):
    uri = str(tmp_path / "a" / "b.json")
    storage.atomic_write_text(uri, "one")
    storage.atomic_write_text(uri, "two")
    assert open(uri).read() == "two"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]  # no temp files left


def test_missing_input_is_not_found(tmp_path):
    from avfleet.core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        storage.read_bytes(str(tmp_path / "nope"))


def test_metrics_exposition_has_labels_and_values():
    m = JobMetrics("index", {"date": "2026-11-20"}, run_id="run-1")
    m.set("files", 3, "files", {"status": "indexed"})
    m.set("files", 1, "files", {"status": "quarantined"})
    text = m.exposition().decode()
    assert 'avfleet_index_files{status="indexed"} 3.0' in text
    assert 'avfleet_index_files{status="quarantined"} 1.0' in text
    assert 'avfleet_index_run_info{run_id="run-1"} 1.0' in text


def test_object_store_errors_map_to_kinds():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from avfleet.core.errors import NotFoundError, PermanentError

    def raising(error):
        with storage.translate_errors("s3://b/k"):
            raise error

    with pytest.raises(StorageError):
        raising(ClientError({"Error": {"Code": "SlowDown"}}, "GetObject"))
    with pytest.raises(StorageError):
        raising(EndpointConnectionError(endpoint_url="https://x"))
    with pytest.raises(NotFoundError):
        raising(ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"))
    with pytest.raises(PermanentError):
        raising(ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"))


def test_swap_text_lets_one_of_two_racing_writers_win_locally(tmp_path):
    uri = str(tmp_path / "registry" / "promoted.json")
    storage.swap_text(uri, None, "v1")  # created: it was absent
    with pytest.raises(storage.Conflict):
        storage.swap_text(uri, None, "v1-again")  # someone else created it first
    storage.swap_text(uri, "v1", "v2")  # both read v1 ...
    with pytest.raises(storage.Conflict):
        storage.swap_text(uri, "v1", "v2-other")  # ... the second loses
    assert storage.read_bytes(uri) == b"v2"
