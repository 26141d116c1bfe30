"""Dataset builds from a real index: ranged fetches, labels from oracle or tool, versions, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from avfleet.core.errors import ConfigError, PermanentError
from avfleet.dataset.build import DatasetConfig, build_dataset, check_dataset, read_manifest
from avfleet.dataset.labels import OracleLabels, ToolLabels, decode_mask_png, encode_mask_png
from avfleet.fleet.oracle import OracleLabeler
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from avfleet.index.table import IndexTable
from tests.integration.conftest import DATE


@pytest.fixture(scope="module")
def index_uri(clean_fleet, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ds-index"))
    run_index(IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=out), LoopEngine())
    return out


def test_random_build_is_versioned_labeled_and_traceable(index_uri, clean_fleet, tmp_path):
    config = DatasetConfig(
        index_uri=index_uri, selection="random:40", out_uri=str(tmp_path), seed=3
    )
    version = build_dataset(config, OracleLabels(clean_fleet))
    assert version.num_frames == 40 and not version.reused
    manifest = check_dataset(version.uri)
    rows = pq.read_table(f"{version.uri}/data/part-00000.parquet").to_pandas()
    oracle = OracleLabeler.from_uri(clean_fleet)
    for row in rows.head(5).itertuples():
        assert np.array_equal(
            decode_mask_png(row.mask_png), oracle.label(row.recording_id, row.frame_index).mask
        )
        assert row.image_jpeg[:2] == b"\xff\xd8"
    assert sorted(manifest["frame_ids"]) == sorted(rows["frame_id"])
    assert set(manifest["recordings"]) == set(rows["recording_uri"])
    again = build_dataset(config, OracleLabels(clean_fleet))
    assert again.reused and again.version == version.version


def test_selection_naming_an_unknown_frame_is_a_clear_error(index_uri, tmp_path):
    frames = IndexTable(index_uri).read("frames", [DATE])
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps([frames["frame_id"].iloc[0], "no-such-frame"]))
    with pytest.raises(PermanentError, match="not in the index.*no-such-frame"):
        build_dataset(
            DatasetConfig(
                index_uri=index_uri, selection=str(selection), out_uri=str(tmp_path / "ds")
            ),
            None,
        )  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="random:N"):
        build_dataset(
            DatasetConfig(
                index_uri=index_uri, selection="random:lots", out_uri=str(tmp_path / "ds")
            ),
            None,
        )  # type: ignore[arg-type]


def test_manifest_naming_a_missing_frame_fails(index_uri, clean_fleet, tmp_path):
    version = build_dataset(
        DatasetConfig(index_uri=index_uri, selection="random:10", out_uri=str(tmp_path)),
        OracleLabels(clean_fleet),
    )
    manifest = read_manifest(version.uri)
    manifest["frame_ids"].append("f-that-was-never-fetched")
    (tmp_path / version.version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PermanentError, match="missing from the data.*f-that-was-never-fetched"):
        check_dataset(version.uri)


def test_labels_from_a_labeling_tool(index_uri, tmp_path):
    frames = IndexTable(index_uri).read("frames", [DATE]).head(6)
    selection = tmp_path / "sel.parquet"
    pq.write_table(pa.table({"frame_id": frames["frame_id"]}), selection)
    masks = {
        f: encode_mask_png(np.full((64, 128), i % 8, np.uint8))
        for i, f in enumerate(frames["frame_id"])
    }
    export = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"frame_id": list(masks), "mask_png": list(masks.values())}), export)
    version = build_dataset(
        DatasetConfig(index_uri=index_uri, selection=str(selection), out_uri=str(tmp_path / "ds")),
        ToolLabels(str(export)),
    )
    assert version.label_version.startswith("tool-") and version.num_frames == 6
    partial = tmp_path / "partial.parquet"
    pq.write_table(
        pa.table({"frame_id": list(masks)[:3], "mask_png": list(masks.values())[:3]}), partial
    )
    with pytest.raises(PermanentError, match="no label for 3 selected frame"):
        build_dataset(
            DatasetConfig(
                index_uri=index_uri, selection=str(selection), out_uri=str(tmp_path / "ds2")
            ),
            ToolLabels(str(partial)),
        )


def nothing_staged(out) -> bool:
    staging = out / "_staging"
    return not staging.exists() or not any(staging.iterdir())


def test_spark_build_is_the_same_version_as_the_loop(index_uri, clean_fleet, spark, tmp_path):
    from avfleet.dataset.build import LoopEngine as DatasetLoop
    from avfleet.dataset.spark import SparkEngine

    config = DatasetConfig(
        index_uri=index_uri, selection="random:60", out_uri=str(tmp_path), seed=5
    )
    looped = build_dataset(config, OracleLabels(clean_fleet), engine=DatasetLoop(False))
    spark_config = DatasetConfig(
        index_uri=index_uri, selection="random:60", out_uri=str(tmp_path / "spark"), seed=5
    )
    sparked = build_dataset(
        spark_config, OracleLabels(clean_fleet), engine=SparkEngine(spark, num_partitions=3)
    )
    assert sparked.version == looped.version and not sparked.reused
    manifest = check_dataset(sparked.uri)
    assert len(manifest["data_files"]) > 1  # one part per task that had recordings
    a = pq.read_table(f"{looped.uri}/data").to_pandas().sort_values("frame_id")
    b = pq.read_table(f"{sparked.uri}/data").to_pandas().sort_values("frame_id")
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))
    assert manifest["bytes_fetched"] == read_manifest(looped.uri)["bytes_fetched"]
    assert nothing_staged(tmp_path / "spark")


def test_a_crashed_build_leaves_no_version_and_the_rerun_completes(
    index_uri, clean_fleet, tmp_path
):
    class Crashing:
        label_version = OracleLabels(clean_fleet).label_version

        def labels(self, frames):
            raise RuntimeError("labeler died")

    config = DatasetConfig(index_uri=index_uri, selection="random:12", out_uri=str(tmp_path))
    with pytest.raises(RuntimeError, match="labeler died"):
        build_dataset(config, Crashing())
    assert not [p for p in tmp_path.rglob("manifest.json")]
    assert nothing_staged(tmp_path)
    version = build_dataset(config, OracleLabels(clean_fleet))
    assert check_dataset(version.uri)["num_frames"] == 12


def test_extending_a_version_keeps_its_labels_and_adds_the_new_frames(
    index_uri, clean_fleet, tmp_path
):
    base = build_dataset(
        DatasetConfig(index_uri=index_uri, selection="random:10", out_uri=str(tmp_path), seed=7),
        OracleLabels(clean_fleet),
    )
    frames = IndexTable(index_uri).read("frames", [DATE])
    new = [f for f in frames["frame_id"] if f not in set(read_manifest(base.uri)["frame_ids"])][:5]
    picks = tmp_path / "picks.json"
    picks.write_text(json.dumps(new + read_manifest(base.uri)["frame_ids"][:2]))  # 2 already in
    masks = {f: encode_mask_png(np.full((64, 128), 3, np.uint8)) for f in new}
    export = tmp_path / "export.parquet"
    pq.write_table(pa.table({"frame_id": list(masks), "mask_png": list(masks.values())}), export)
    config = DatasetConfig(
        index_uri=index_uri, selection=str(picks), out_uri=str(tmp_path), base_uri=base.uri
    )
    grown = build_dataset(config, ToolLabels(str(export)))
    manifest = check_dataset(grown.uri)
    assert grown.num_frames == 15 and grown.label_version.startswith("mixed-")
    assert set(manifest["frame_ids"]) == set(read_manifest(base.uri)["frame_ids"]) | set(new)
    rows = pq.read_table(f"{grown.uri}/data").to_pandas().set_index("frame_id")
    old = pq.read_table(f"{base.uri}/data").to_pandas().set_index("frame_id")
    assert (rows.loc[old.index, "mask_png"] == old["mask_png"]).all()  # labels as they were
    assert all(decode_mask_png(rows.loc[f, "mask_png"]).max() == 3 for f in new)
    assert build_dataset(config, ToolLabels(str(export))).reused


def test_pseudo_labels_are_a_third_source_and_never_score_a_model(index_uri, clean_fleet, tmp_path):
    from avfleet.dataset.labels import IGNORE, PseudoLabels
    from avfleet.train.data import ShardedDataset, read_rows

    base = build_dataset(
        DatasetConfig(index_uri=index_uri, selection="random:40", out_uri=str(tmp_path), seed=5),
        OracleLabels(clean_fleet),
    )
    frames = IndexTable(index_uri).read("frames", [DATE])
    labeled = set(read_manifest(base.uri)["frame_ids"])
    new = [f for f in frames["frame_id"] if f not in labeled][:24]
    mask = np.full((64, 128), 2, np.uint8)
    mask[:, :16] = IGNORE
    export = tmp_path / "pseudo.parquet"
    pq.write_table(
        pa.table({"frame_id": new, "mask_png": [encode_mask_png(mask)] * len(new)}), export
    )
    config = DatasetConfig(
        index_uri=index_uri, selection=str(export), out_uri=str(tmp_path), base_uri=base.uri
    )
    grown = build_dataset(config, PseudoLabels(str(export)))
    manifest = check_dataset(grown.uri)
    assert manifest["frames_per_source"] == {"oracle": 40, "pseudo": 24}
    assert manifest["label_versions"]["pseudo"][0].startswith("pseudo-")
    assert manifest["label_versions"]["oracle"] == [read_manifest(base.uri)["label_version"]]
    rows = pq.read_table(f"{grown.uri}/data").to_pandas().set_index("frame_id")
    assert set(rows.loc[new, "label_source"]) == {"pseudo"}
    assert set(rows.loc[sorted(labeled), "label_source"]) == {"oracle"}  # the base's, inferred
    data = ShardedDataset(grown.uri, rank=0, world_size=1, batch_size=64, seed=0)
    batch = next(data.epoch(0))
    assert sorted(batch.sources) == sorted(["oracle"] * 40 + ["pseudo"] * 24)
    with pytest.raises(PermanentError, match="24 frame.*pseudo-labels.*held-out"):
        read_rows(grown.uri)
    assert len(read_rows(base.uri)) == 40  # a human/oracle set still evaluates


def test_a_label_studio_export_builds_a_dataset_that_remembers_who_labeled(
    index_uri, clean_fleet, tmp_path
):
    """The queue's frames labeled in Label Studio (brush masks, the oracle's masks standing in
    for a person's), its JSON export built into a version through `avfleet dataset build
    --labels labelstudio:URI`: masks exact, source human, each frame's annotation id and
    annotator in the manifest, and kept when the next round extends the version."""
    import subprocess
    import sys

    from avfleet.dataset.labelstudio import mask_results

    frames = IndexTable(index_uri).read("frames", [DATE]).head(4)
    oracle = OracleLabeler.from_uri(clean_fleet)
    truth = {
        r.frame_id: oracle.label(r.recording_id, int(r.frame_index)).mask
        for r in frames.itertuples()
    }
    export = [
        {
            "id": 100 + i,
            "data": {"image": f"s3://q/{f}.jpg", "frame_id": f},
            "annotations": [
                {
                    "id": 500 + i,
                    "completed_by": {"id": 2, "email": f"labeler{i % 2}@fleet.example"},
                    "was_cancelled": False,
                    "result": mask_results(mask),
                }
            ],
        }
        for i, (f, mask) in enumerate(truth.items())
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    picks = tmp_path / "picks.json"
    picks.write_text(json.dumps(list(truth)))
    out = tmp_path / "ds"
    done = subprocess.run(
        [sys.executable, "-m", "avfleet", "dataset", "build", "--index", index_uri,
         "--frames", str(picks), "--labels", f"labelstudio:{path}", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    uri = next(p for p in out.iterdir() if p.name.startswith("ds-"))
    manifest = check_dataset(str(uri))
    assert manifest["frames_per_source"] == {"human": 4}
    assert manifest["label_versions"]["human"][0].startswith("labelstudio-")
    assert manifest["label_provenance"] == {
        f: {
            "annotation_id": 500 + i,
            "annotator": f"labeler{i % 2}@fleet.example",
            "task_id": 100 + i,
        }
        for i, f in enumerate(truth)
    }
    rows = pq.read_table(f"{uri}/data").to_pandas().set_index("frame_id")
    for f, mask in truth.items():
        assert np.array_equal(decode_mask_png(rows.loc[f, "mask_png"]), mask)
    # The next round extends it: the first labels' provenance stays in the new version.
    more = IndexTable(index_uri).read("frames", [DATE]).iloc[10:12]
    more_picks = tmp_path / "more.json"
    more_picks.write_text(json.dumps(list(more["frame_id"])))
    grown = build_dataset(
        DatasetConfig(
            index_uri=index_uri, selection=str(more_picks), out_uri=str(out), base_uri=str(uri)
        ),
        OracleLabels(clean_fleet),
    )
    assert read_manifest(grown.uri)["label_provenance"] == manifest["label_provenance"]


def test_an_epoch_streams_every_rank_the_same_batches_each_time(index_uri, clean_fleet, tmp_path):
    from avfleet.train import data as train_data

    version = build_dataset(
        DatasetConfig(index_uri=index_uri, selection="random:96", out_uri=str(tmp_path), seed=5),
        OracleLabels(clean_fleet),
    )

    def ids(rank, epoch, skip=0):
        shard = train_data.ShardedDataset(
            version.uri, rank=rank, world_size=2, batch_size=8, seed=1
        )
        return shard, [b.frame_ids for b in shard.epoch(epoch, skip_steps=skip)]

    shard0, first = ids(0, 0)
    _, again = ids(0, 0)
    assert first == again  # the same (seed, epoch, rank): the same batches
    assert len(first) == shard0.steps_per_epoch
    assert ids(0, 1)[1] != first  # another epoch, another order
    assert ids(0, 0, skip=2)[1] == first[2:]  # a resumed epoch continues where it stopped
    _, other_rank = ids(1, 0)
    seen = [f for batch in first for f in batch]
    assert len(set(seen)) == len(seen)
    assert not set(seen) & {f for batch in other_rank for f in batch}  # ranks share no frame
    # The order mixes row groups: not the order the files hold.
    assert seen != sorted(seen) and seen != [r[0] for r in shard0._load_shard()][: len(seen)]


def test_the_shuffle_buffer_holds_at_most_its_capacity():
    from avfleet.train.data import _shuffled

    held = []

    def rows():
        for i in range(1000):
            held.append(i)
            yield (i,)

    out = []
    for row in _shuffled(rows(), np.random.default_rng(0), 16):
        out.append(row[0])
        assert len(held) - len(out) <= 16
    assert sorted(out) == list(range(1000)) and out != list(range(1000))


def test_petastorm_reads_a_version_with_its_unischema(index_uri, clean_fleet, tmp_path):
    """A Petastorm user's make_reader decodes images and masks through the declared codecs,
    pixel for pixel what avfleet's own decode gives."""
    from petastorm import make_reader

    from avfleet.dataset.unischema import petastorm_url
    from avfleet.train.data import decode

    version = build_dataset(
        DatasetConfig(index_uri=index_uri, selection="random:12", out_uri=str(tmp_path), seed=8),
        OracleLabels(clean_fleet),
    )
    stored = {
        r.frame_id: r
        for r in pq.read_table(f"{version.uri}/data/part-00000.parquet").to_pandas().itertuples()
    }
    oracle = OracleLabeler.from_uri(clean_fleet)
    seen = 0
    with make_reader(petastorm_url(f"{version.uri}/data"), workers_count=1, num_epochs=1) as reader:
        assert reader.schema.image_jpeg.codec.image_codec == "jpeg"
        assert reader.schema.mask_png.codec.image_codec == "png"
        for row in reader:
            raw = stored[row.frame_id]
            image, mask = decode(raw.image_jpeg, raw.mask_png)
            assert row.image_jpeg.shape == image.shape and np.array_equal(row.image_jpeg, image)
            assert np.array_equal(row.mask_png, mask)
            assert np.array_equal(
                row.mask_png, oracle.label(raw.recording_id, raw.frame_index).mask
            )
            assert row.weather == raw.weather
            seen += 1
    assert seen == 12
