"""The index job reading recordings from S3 (moto's server) through s3fs, on real Spark."""

from __future__ import annotations

import pathlib

import pytest

from avfleet.core import storage
from avfleet.core.storage import StorageConfig
from avfleet.index.job import IndexConfig, SparkEngine, run_index
from avfleet.index.scan import ScanConfig
from avfleet.index.table import IndexTable
from tests.integration.conftest import DATE, free_port


@pytest.fixture(scope="module")
def s3_endpoint(spark):  # spark first: its workers must inherit the S3 credentials
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_index_reads_recordings_from_s3(spark, s3_endpoint, clean_fleet, tmp_path):
    st = StorageConfig(s3_endpoint_url=s3_endpoint, s3_region="eu-west-1")
    fs = storage.filesystem("s3://fleet", st)
    fs.mkdir("fleet-bucket", region_name="eu-west-1")
    local_files = sorted(pathlib.Path(clean_fleet, f"raw/date={DATE}").glob("*/*.mcap"))
    for path in local_files:
        fs.put_file(str(path), f"fleet-bucket/fleet/{path.relative_to(clean_fleet)}")

    s3_config = IndexConfig(
        recordings_uri="s3://fleet-bucket/fleet",
        date=DATE,
        out_uri="s3://fleet-bucket/index",
        scan=ScanConfig(storage=st),
    )
    report = run_index(s3_config, SparkEngine(spark))
    assert report.num_files == len(local_files) and report.num_quarantined == 0
    # Signals plus each frame's recorded sha256 (~35 incompressible bytes per frame: ~1% of
    # these 3 KB test frames, ~0.03% of a real 100 KB+ camera frame); never a camera byte.
    assert report.read_fraction < 0.03

    local = IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=str(tmp_path / "index"))
    run_index(local, SparkEngine(spark))
    from_s3 = IndexTable("s3://fleet-bucket/index", st).read("frames", [DATE])
    from_disk = IndexTable(local.out_uri).read("frames", [DATE])
    assert from_s3["recording_uri"].str.startswith("s3://fleet-bucket/fleet/raw/").all()
    columns = [c for c in from_disk.columns if c != "recording_uri"]
    assert from_s3[columns].equals(from_disk[columns])
    # The commit and the parts live in the bucket, written without renames.
    assert fs.exists(f"fleet-bucket/index/_commits/date={DATE}.json")


def test_swap_text_is_a_conditional_put_on_s3(s3_endpoint):
    """The registry pointer's compare-and-swap on S3: If-None-Match / If-Match, 412 -> Conflict."""
    st = StorageConfig(s3_endpoint_url=s3_endpoint, s3_region="eu-west-1")
    storage.filesystem("s3://registry-bucket", st).mkdir("registry-bucket", region_name="eu-west-1")
    uri = "s3://registry-bucket/registry/promoted.json"
    storage.swap_text(uri, None, "v1", st)
    with pytest.raises(storage.Conflict):
        storage.swap_text(uri, None, "v1-again", st)  # another promotion created it first
    storage.swap_text(uri, "v1", "v2", st)  # two writers both read v1 ...
    with pytest.raises(storage.Conflict):
        storage.swap_text(uri, "v1", "v2-other", st)  # ... the second loses
    assert storage.read_bytes(uri, st) == b"v2"


def test_training_reads_a_dataset_from_s3_through_its_endpoint(s3_endpoint, clean_fleet, tmp_path):
    """Petastorm gets the S3 endpoint too: a dataset version copied to the bucket reads the
    same rows as on disk. Before, training could not read from S3 at all: Petastorm 0.12 gave
    pyarrow 14 an fsspec filesystem it refused (avfleet.dataset.unischema.petastorm_filesystem)."""
    from avfleet.dataset.build import DatasetConfig, build_dataset
    from avfleet.dataset.labels import OracleLabels
    from avfleet.index.job import LoopEngine
    from avfleet.train.data import ShardedDataset

    index = str(tmp_path / "index")
    run_index(IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=index), LoopEngine())
    version = build_dataset(
        DatasetConfig(index_uri=index, selection="random:96", out_uri=str(tmp_path / "ds")),
        OracleLabels(clean_fleet),
    )
    st = StorageConfig(s3_endpoint_url=s3_endpoint, s3_region="eu-west-1")
    fs = storage.filesystem("s3://datasets", st)
    fs.mkdir("datasets-bucket", region_name="eu-west-1")
    fs.put(version.uri, f"datasets-bucket/{version.version}", recursive=True)
    remote = f"s3://datasets-bucket/{version.version}"
    for rank in (0, 1):
        on_s3 = ShardedDataset(
            remote, rank=rank, world_size=2, batch_size=4, seed=0, storage_config=st
        )
        on_disk = ShardedDataset(version.uri, rank=rank, world_size=2, batch_size=4, seed=0)
        assert on_s3.steps_per_epoch == on_disk.steps_per_epoch
        assert on_s3._load_shard() == on_disk._load_shard()


def test_fleet_generate_writes_to_s3_from_forked_workers(s3_endpoint):
    """The parent writes the world file through s3fs before forking its workers; each worker
    must make its own filesystem (s3fs refused the inherited one: "not fork-safe")."""
    from avfleet.fleet.generate import generate_fleet
    from avfleet.fleet.world import FleetSpec

    st = StorageConfig(s3_endpoint_url=s3_endpoint, s3_region="eu-west-1")
    storage.filesystem("s3://generated", st).mkdir("generated", region_name="eu-west-1")
    spec = FleetSpec(seed=3, vehicles=2, minutes_per_day=0.5, segment_s=15.0, start_date=DATE)
    uris = generate_fleet(spec, "s3://generated/fleet", workers=2, storage_config=st)
    assert len(uris) == 4 and all(storage.exists(u, st) for u in uris)
