"""Training throughput on this machine, each comparison in one run.

1. samples/s of 2-process DDP (torchrun, gloo) vs 1 process, same per-rank batch and recipe;
2. Petastorm reader throughput (read + JPEG/PNG decode, frames/s) vs the trainer's consumption (samples/s).
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import RESULTS, save  # noqa: E402
from _train_common import datasets, torchrun  # noqa: E402

from avfleet.train.data import ShardedDataset, collate  # noqa: E402

RECIPE = ["--width", "1.0", "--epochs", "2", "--batch-size", "16", "--checkpoint-every", "1000"]


def reader_fps(dataset: str) -> dict[str, float]:
    data = ShardedDataset(dataset, rank=0, world_size=1, batch_size=16, seed=0)
    started = time.perf_counter()
    rows = data._load_shard()
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, len(rows), 16):
        collate(rows[i : i + 16])
    decode_s = time.perf_counter() - started
    return {
        "frames": len(rows),
        "petastorm_read_fps": len(rows) / read_s,
        "decode_fps": len(rows) / decode_s,
        "read_and_decode_fps": len(rows) / (read_s + decode_s),
    }


def main() -> None:
    train, _ = datasets()
    runs = RESULTS / "runs"
    results = {}
    for nproc in (1, 2):
        out = runs / f"throughput-{nproc}proc"
        shutil.rmtree(out, ignore_errors=True)
        results[nproc] = torchrun(train, str(out), *RECIPE, nproc=nproc)
    reader = reader_fps(train)
    sps = {n: r["samples_per_s"] for n, r in results.items()}
    save(
        "train_throughput",
        {
            "samples_per_s": {"1_process": sps[1], "2_process_ddp": sps[2]},
            "ddp_speedup": sps[2] / sps[1],
            "reader": reader,
            "reader_over_consumption_2proc": reader["read_and_decode_fps"] / sps[2],
        },
    )


if __name__ == "__main__":
    main()
