"""Training throughput on this machine, each comparison in one run.

1. samples/s of 2-process DDP (torchrun, gloo) vs 1 process, same per-rank batch and recipe;
2. Petastorm reader throughput (read + JPEG/PNG decode, frames/s) vs the trainer's consumption (samples/s);
3. the reader at 1x, 4x and 16x the dataset's size: frames/s and peak memory of an epoch streamed
   (train.data, today) against the same epoch read whole into memory first (the reader before it),
   each arm and size in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import RESULTS, in_fresh_process, proc_memory_bytes, save  # noqa: E402
from _train_common import datasets, torchrun  # noqa: E402

from avfleet.dataset.build import ROWS_PER_ROW_GROUP, read_manifest  # noqa: E402
from avfleet.train.data import ShardedDataset, collate  # noqa: E402

SCALES = (1, 4, 16)
BATCH = 16

RECIPE = ["--width", "1.0", "--epochs", "2", "--batch-size", "16", "--checkpoint-every", "1000"]


def scaled(dataset: str, factor: int) -> str:
    """A copy of `dataset` with every frame `factor` times (ids suffixed), same row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if factor == 1:
        return dataset
    out = pathlib.Path(RESULTS, "cache", f"{pathlib.Path(dataset).name}-x{factor}")
    if (out / "manifest.json").exists():
        return str(out)
    manifest = read_manifest(dataset)
    files, ids = [], []
    for rel in manifest["data_files"]:
        table = pq.read_table(pathlib.Path(dataset, rel))
        for copy in range(factor):
            frame_ids = [f"{f}-{copy}" for f in table["frame_id"].to_pylist()]
            ids += frame_ids
            name = rel.replace(".parquet", f"-{copy}.parquet")
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                table.set_column(
                    table.schema.get_field_index("frame_id"), "frame_id", pa.array(frame_ids)
                ),
                out / name,
                row_group_size=ROWS_PER_ROW_GROUP,
            )
            files.append(name)
    (out / "manifest.json").write_text(
        json.dumps({**manifest, "data_files": files, "frame_ids": ids})
    )
    return str(out)


def epoch_in_process(dataset: str, arm: str) -> dict:
    """One epoch of `arm` ("streamed" or "in_memory"): frames/s with decode, and peak RSS.

    The peak is the epoch's own: the kernel's high-water mark is reset after the imports
    and the dataset check (writing 5 to /proc/self/clear_refs), which would otherwise
    hide it under torch's import."""
    data = ShardedDataset(dataset, rank=0, world_size=1, batch_size=BATCH, seed=0)
    pathlib.Path("/proc/self/clear_refs").write_text("5")
    rss_before = proc_memory_bytes("VmRSS")
    started = time.perf_counter()
    frames = 0
    if arm == "streamed":
        for batch in data.epoch(0):
            frames += len(batch.frame_ids)
    else:  # the reader before streaming: the whole shard in memory, then a permutation
        import numpy as np

        rows = data._load_shard()
        order = np.random.default_rng([0, 0, 0]).permutation(len(rows))
        for step in range(data.steps_per_epoch):
            frames += len(
                collate([rows[i] for i in order[step * BATCH : (step + 1) * BATCH]]).frame_ids
            )
    seconds = time.perf_counter() - started
    peak = proc_memory_bytes("VmHWM")
    return {
        "frames": frames,
        "frames_per_s": frames / seconds,
        "rss_at_start_bytes": rss_before,
        "peak_rss_bytes": peak,
        "peak_rss_over_start_bytes": peak - rss_before,
    }


def reader_scaling(dataset: str) -> dict:
    stored = {}
    runs = []
    for factor in SCALES:
        uri = scaled(dataset, factor)
        stored[factor] = sum(f.stat().st_size for f in pathlib.Path(uri, "data").rglob("*.parquet"))
        for arm in ("in_memory", "streamed"):
            result = in_fresh_process(__file__, "--epoch", uri, arm)
            runs.append({"scale": factor, "arm": arm, "dataset_bytes": stored[factor], **result})
    by = {(r["scale"], r["arm"]): r for r in runs}
    top = SCALES[-1]
    return {
        "runs": runs,
        # How much more memory an epoch needs at 16x the data than at 1x, per arm (flat: ~0).
        "peak_growth_1x_to_16x_bytes": {
            arm: by[(top, arm)]["peak_rss_over_start_bytes"]
            - by[(1, arm)]["peak_rss_over_start_bytes"]
            for arm in ("in_memory", "streamed")
        },
        "dataset_growth_1x_to_16x_bytes": stored[top] - stored[1],
        "streamed_over_in_memory_fps": {
            f"{f}x": by[(f, "streamed")]["frames_per_s"] / by[(f, "in_memory")]["frames_per_s"]
            for f in SCALES
        },
    }


def main() -> None:
    train, _ = datasets()
    runs = RESULTS / "runs"
    results = {}
    for nproc in (1, 2):
        out = runs / f"throughput-{nproc}proc"
        shutil.rmtree(out, ignore_errors=True)
        results[nproc] = torchrun(train, str(out), *RECIPE, nproc=nproc)
    scaling = reader_scaling(train)
    reader = next(r for r in scaling["runs"] if r["scale"] == 1 and r["arm"] == "streamed")
    sps = {n: r["samples_per_s"] for n, r in results.items()}
    save(
        "train_throughput",
        {
            "samples_per_s": {"1_process": sps[1], "2_process_ddp": sps[2]},
            "ddp_speedup": sps[2] / sps[1],
            "reader": reader,
            "reader_over_consumption_2proc": reader["frames_per_s"] / sps[2],
            "reader_scaling": scaling,
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--epoch"]:
        print(json.dumps(epoch_in_process(sys.argv[2], sys.argv[3])))
    else:
        main()
