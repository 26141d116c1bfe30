"""Training's cost as processes and the dataset grow, in one run.

Every run trains the same net (width 1.0, batch 16 per rank) for the same number of optimizer
steps with real torchrun (gloo on this machine's 2 cores), each in a fresh process so that its
peak memory is its own:

1. processes: 1 and 2 on the same dataset: samples/s (more processes share 2 cores here, so
   the speed-up is the machine's, not the design's; see docs/scaling.md);
2. dataset size: 2 processes on the training set at 1x, 4x and 16x its size
   (`train_throughput.scaled`: every frame repeated, same row groups): samples/s and the
   largest rank's peak memory should both be flat, since a rank streams its shard;
3. the reader alone at 1x, 4x and 16x: frames/s and the peak memory of an epoch streamed
   (`train_throughput.epoch_in_process`).

Fitted exponents (benchmarks/_growth.py): samples/s and memory k near 0 in the dataset's size.
"""

from __future__ import annotations

import json
import pathlib
import resource
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import train_throughput  # noqa: E402
from _common import RESULTS, SMOKE, in_fresh_process, save  # noqa: E402
from _growth import exponent, plot, replot  # noqa: E402
from _train_common import datasets, torchrun  # noqa: E402

from avfleet.dataset.build import read_manifest  # noqa: E402

SCALES = (1, 2) if SMOKE else (1, 4, 16)
STEPS = 4 if SMOKE else 200
RECIPE = ["--width", "1.0", "--batch-size", "16", "--checkpoint-every", "100000"]


def run_in_process(dataset: str, nproc: int, steps: int) -> dict:
    """One torchrun of RECIPE for `steps` steps: samples/s, wall seconds, and the largest
    process's peak RSS (torchrun waits for its ranks, so their peaks reach this process's
    RUSAGE_CHILDREN)."""
    out = RESULTS / "runs" / f"growth-{pathlib.Path(dataset).name}-{nproc}proc"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = torchrun(dataset, str(out), *RECIPE, "--steps", str(steps), nproc=nproc)
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return {
        "processes": nproc,
        "frames": len(read_manifest(dataset)["frame_ids"]),
        "steps": result["steps"],
        "samples_per_s": result["samples_per_s"],
        "wall_seconds": seconds,
        "peak_rank_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def main() -> None:
    train, _ = datasets()
    uris = {factor: train_throughput.scaled(train, factor) for factor in SCALES}
    by_processes = [in_fresh_process(__file__, "--run", train, str(n), str(STEPS)) for n in (1, 2)]
    for r in by_processes:
        print(f"{r['processes']} process(es): {r['samples_per_s']:.0f} samples/s", flush=True)
    by_size = [by_processes[1]] + [
        in_fresh_process(__file__, "--run", uris[f], "2", str(STEPS)) for f in SCALES[1:]
    ]
    for r in by_size:
        print(f"{r['frames']:>6} frames: {r['samples_per_s']:.0f} samples/s", flush=True)
    reader = [
        in_fresh_process(train_throughput.__file__, "--epoch", uris[f], "streamed") for f in SCALES
    ]
    frames = [r["frames"] for r in by_size]
    reader_frames = [r["frames"] for r in reader]
    fits = {
        "samples_per_s_vs_frames": exponent(frames, [r["samples_per_s"] for r in by_size]),
        "peak_rank_rss_vs_frames": exponent(frames, [r["peak_rank_rss_bytes"] for r in by_size]),
        "reader_peak_vs_frames": exponent(
            reader_frames, [r["peak_rss_over_start_bytes"] for r in reader]
        ),
        "reader_frames_per_s_vs_frames": exponent(
            reader_frames, [r["frames_per_s"] for r in reader]
        ),
    }
    save(
        "train_growth",
        {
            "goal": "samples/s and memory flat (k near 0) in the dataset's size",
            "recipe": [*RECIPE, "--steps", str(STEPS)],
            "by_processes": by_processes,
            "ddp_speedup": by_processes[1]["samples_per_s"] / by_processes[0]["samples_per_s"],
            "by_size": by_size,
            "reader": reader,
            "exponents": fits,
        },
    )
    figure({"by_size": by_size, "reader": reader})


def figure(result: dict) -> None:
    by_size, reader = result["by_size"], result["reader"]
    frames = [r["frames"] for r in by_size]
    reader_frames = [r["frames"] for r in reader]
    plot(
        "train_growth",
        f"training: {by_size[0]['steps']} steps of batch 16 per rank vs dataset frames",
        "frames in the dataset",
        {
            "samples/s (2 ranks)": (frames, [r["samples_per_s"] for r in by_size]),
            "largest rank's peak MiB": (
                frames,
                [r["peak_rank_rss_bytes"] / 2**20 for r in by_size],
            ),
            "reader epoch: peak over start MiB": (
                reader_frames,
                [r["peak_rss_over_start_bytes"] / 2**20 for r in reader],
            ),
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        print(json.dumps(run_in_process(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif not replot("train_growth", figure):
        main()
