"""The mining job's cost as a day's frames grow, in one run.

`run_mine` (de-duplicate in time, fetch and score every candidate, select, write the queue) on
one day of 1, 4 and 17 vehicles of the dataset_growth fleet (10 minutes each at 10 fps: 6,000
to 102,000 frames; smoke: 1 and 2 vehicles of a 1-minute fleet), with a 0.5 s de-dup window
(one candidate in five frames), a budget of 200, and the plain 4-member ensemble's scoring
graph in ONNX Runtime in the job's process (2 threads). Each size runs in a fresh process:
seconds, candidates scored per second, and the job's peak resident memory (the coordinator:
it reads the day's index rows, holds every candidate's scores, selects).

Scoring throughput against batch size and requests in flight, through Triton, is
benchmarks/triton_perf.py's. For the capacity plan (docs/capacity.md), the cost of decoding one
camera frame of the seed's size (2 MP, 1080 x 1920) with the job's own decoder is measured
too: a fleet frame upscaled with a little noise, JPEG quality 90 (its bytes are reported).

Fitted exponents (benchmarks/_growth.py): time k <= 1.05; the job's memory flat.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SMOKE,
    cached_fleet,
    in_fresh_process,
    proc_memory_bytes,
    save,
    scratch_dir,
)
from _growth import exponent, plot, replot  # noqa: E402
from _train_common import datasets, plain_ensemble  # noqa: E402
from dataset_growth import SPEC  # noqa: E402

VEHICLES = (1, 2) if SMOKE else (1, 4, 17)
WINDOW_S = 0.5
BUDGET = 20 if SMOKE else 200


def day_of(fleet: str, date: str, vehicles: int) -> str:
    """An indexed fleet root holding the first `vehicles` vehicles' recordings (hard links)."""
    from avfleet.index.job import IndexConfig, LoopEngine, run_index

    root = pathlib.Path(fleet).parent / f"{pathlib.Path(fleet).name}-v{vehicles}"
    index = root / "index"
    if not (root / ".complete").exists():
        days = sorted(pathlib.Path(fleet, f"raw/date={date}").iterdir())[:vehicles]
        for vehicle in days:
            for src in sorted(vehicle.glob("*.mcap")):
                dst = root / f"raw/date={date}" / vehicle.name / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    os.link(src, dst)
        run_index(
            IndexConfig(recordings_uri=str(root), date=date, out_uri=str(index)), LoopEngine()
        )
        (root / ".complete").write_text("ok\n")
    return str(index)


def mine_in_process(index: str, date: str, repo: str, ref: str, budget: int) -> dict:
    from avfleet.mining.job import InProcessScorer, MineConfig, run_mine
    from avfleet.mining.select import SelectionConfig
    from avfleet.serve.repository import load_version

    scorer = InProcessScorer(load_version(repo, ref).onnx, threads=2)
    with scratch_dir("avfleet-mining-growth-") as out:
        config = MineConfig(
            index_uri=index,
            date=date,
            model=ref,
            out_uri=out,
            selection=SelectionConfig(budget=budget, window_s=WINDOW_S),
        )
        started = time.perf_counter()
        report = run_mine(config, scorer, show_progress=False)
        seconds = time.perf_counter() - started
    return {
        "frames_indexed": report.frames_indexed,
        "candidates": report.candidates,
        "selected": report.selected,
        "seconds": seconds,
        "candidates_per_s": report.candidates / seconds,
        "scoring_frames_per_s": report.frames_per_s,
        "peak_bytes": proc_memory_bytes("VmHWM"),
    }


def decode_2mp(fleet_frame: bytes, repeats: int) -> dict:
    """Milliseconds to decode one 1080 x 1920 JPEG with `mining.job.decode_jpeg` (best of 3)."""
    import io

    import numpy as np
    from PIL import Image

    from avfleet.mining.job import decode_jpeg

    small = Image.open(io.BytesIO(fleet_frame)).convert("RGB").resize((1920, 1080), Image.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 4, (1080, 1920, 3))
    pixels = np.clip(np.asarray(small, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            decode_jpeg(data)
        best = min(best, (time.perf_counter() - started) / repeats)
    return {"width": 1920, "height": 1080, "jpeg_bytes": len(data), "decode_ms": 1000 * best}


def _a_fleet_frame(index: str, date: str) -> bytes:
    from avfleet.core.storage import StorageConfig
    from avfleet.dataset.fetch import fetch_frames
    from avfleet.index.table import IndexTable

    frames = IndexTable(index).read("frames", [date]).head(1)
    return next(iter(fetch_frames(frames, StorageConfig())[0].values()))


def main() -> None:
    from avfleet.serve.publish import publish_model

    train, _ = datasets()
    run = pathlib.Path(plain_ensemble(train))
    with scratch_dir("repo-") as repo:
        ref = publish_model(str(run / "model"), repo, "dpe")
        fleet = cached_fleet(SPEC)
        date = SPEC.start_date
        runs = []
        for vehicles in VEHICLES:
            index = day_of(fleet, date, vehicles)
            runs.append(in_fresh_process(__file__, "--mine", index, date, repo, ref, str(BUDGET)))
            r = runs[-1]
            print(
                f"{r['frames_indexed']:>7} frames, {r['candidates']} candidates: {r['seconds']:.1f} s"
            )
        decode = decode_2mp(_a_fleet_frame(index, date), 3 if SMOKE else 30)
        print(f"2 MP JPEG ({decode['jpeg_bytes']} bytes): {decode['decode_ms']:.1f} ms to decode")
        frames = [r["frames_indexed"] for r in runs]
        fits = {
            "seconds": exponent(frames, [r["seconds"] for r in runs]),
            "peak_bytes": exponent(frames, [r["peak_bytes"] for r in runs]),
        }
        save(
            "mining_growth",
            {
                "goal": "time k <= 1.05; the job's memory flat (k near 0)",
                "window_s": WINDOW_S,
                "budget": BUDGET,
                "runs": runs,
                "exponents": fits,
                "decode_2mp": decode,
            },
        )
        figure({"runs": runs})


def figure(result: dict) -> None:
    runs = result["runs"]
    frames = [r["frames_indexed"] for r in runs]
    plot(
        "mining_growth",
        f"mining job: cost vs frames in a day (window {WINDOW_S} s, budget {BUDGET})",
        "frames indexed that day",
        {
            "seconds": (frames, [r["seconds"] for r in runs]),
            "job peak MiB": (frames, [r["peak_bytes"] / 2**20 for r in runs]),
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--mine"]:
        print(json.dumps(mine_in_process(*sys.argv[2:6], int(sys.argv[6]))))
    elif not replot("mining_growth", figure):
        main()
