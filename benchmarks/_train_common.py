"""Shared by the training benchmarks: cached fleet -> index -> train/held-out datasets, torchrun runs."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from _common import RESULTS, SMOKE, cached_fleet

from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import OracleLabels
from avfleet.fleet.generate import generate_heldout
from avfleet.fleet.world import FleetSpec
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from avfleet.index.table import IndexTable

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN_SPEC = FleetSpec(seed=51, vehicles=8, minutes_per_day=4.0)
HELDOUT_SPEC = FleetSpec(seed=52, segment_s=10.0)


def _indexed(fleet: str, date: str) -> str:
    index = fleet + "-index"
    if not IndexTable(index).dates():
        run_index(IndexConfig(recordings_uri=fleet, date=date, out_uri=index), LoopEngine())
    return index


def _dataset(fleet: str, date: str, frames: int, seed: int) -> str:
    config = DatasetConfig(
        index_uri=_indexed(fleet, date),
        selection=f"random:{frames}",
        out_uri=str(RESULTS / "cache" / "datasets"),
        seed=seed,
    )
    return build_dataset(config, OracleLabels(fleet)).uri


def datasets(train_frames: int = 1500, heldout_frames: int = 720) -> tuple[str, str]:
    """(train dataset, held-out dataset) URIs, built once and cached."""
    if SMOKE:
        train_frames, heldout_frames = min(train_frames, 48), min(heldout_frames, 32)
    fleet = cached_fleet(TRAIN_SPEC)
    heldout = str(RESULTS / "cache" / "heldout-52")
    if not (pathlib.Path(heldout) / ".complete").exists():
        generate_heldout(HELDOUT_SPEC, heldout, segments_per_domain=1, show_progress=True)
        (pathlib.Path(heldout) / ".complete").write_text("ok\n")
    train = _dataset(fleet, TRAIN_SPEC.start_date, train_frames, seed=1)
    test = _dataset(heldout, HELDOUT_SPEC.start_date, heldout_frames, seed=2)
    return train, test


def torchrun(dataset: str, out: str, *args: str, nproc: int = 2) -> dict:
    """Train with real torchrun; returns result.json (skips if the run already finished).

    In smoke mode every phase trains one epoch."""
    if SMOKE:
        args = tuple(
            "1" if i and args[i - 1] in ("--epochs", "--finetune-epochs") else a
            for i, a in enumerate(args)
        )
    result = pathlib.Path(out) / "result.json"
    if not result.exists():
        torchrun_bin = os.path.join(os.path.dirname(sys.executable), "torchrun")
        cmd = [
            torchrun_bin,
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(REPO / "jobs" / "train.py"),
            "--dataset",
            dataset,
            "--out",
            out,
            *args,
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(result.read_text())


ENSEMBLE_RECIPE = ["--members", "4", "--width", "1.0", "--epochs", "8", "--batch-size", "16"]
ENSEMBLE_RECIPE += ["--checkpoint-every", "200"]


def plain_ensemble(train: str) -> str:
    """The 4-member ensemble without the DPE term (dpe_mi's baseline, mining_serving's model)."""
    run = str(RESULTS / "runs" / "ensemble-plain")
    torchrun(train, run, *ENSEMBLE_RECIPE)
    return run


def measured_rows(models: dict, table, test: str) -> dict:  # noqa: ANN001
    """(name, seed) -> {arm, seed, parameters, measured_ms, predicted_ms, miou, arch} for every
    model: exported to ONNX and timed in one interleaved loop here (ONNX Runtime, one thread,
    batch 1, best p50 of rounds), predicted by the bench's table, scored on the held-out set."""
    import numpy as np
    from _common import best_p50_ms

    from avfleet.bench.engines import ort_runner
    from avfleet.train.evaluate import evaluate
    from avfleet.train.export import INPUT_HW, export_onnx
    from avfleet.train.models import num_parameters

    runners = {k: ort_runner(export_onnx(m, *INPUT_HW)) for k, m in models.items()}
    frame = np.random.default_rng(0).random((1, 3, *INPUT_HW), dtype=np.float32)
    latency = best_p50_ms(
        runners, frame, warmup=20, runs=30 if SMOKE else 300, rounds=2 if SMOKE else 3
    )
    return {
        (name, seed): {
            "arm": name,
            "seed": seed,
            "parameters": num_parameters(model),
            "measured_ms": latency[(name, seed)],
            "predicted_ms": table.predict(model.arch).total_ms,
            "miou": evaluate(model, test).miou,
            "arch": model.arch,
        }
        for (name, seed), model in models.items()
    }
