"""Rounds of the loop on one machine: publish -> serve -> mine -> label -> grow the dataset -> retrain.

What `avfleet demo` runs after its first training, and what the selection
benchmark runs per strategy. Each round:

1. publishes the last ensemble's scoring graph as a new repository version;
2. serves it on a real local Triton server (`avfleet serve`) and mines the
   index date through it (or scores in process, `triton=False`);
3. answers the labeling queue with the oracle (`avfleet label --oracle`);
4. extends the previous dataset version with the labeled picks (`--base`);
5. retrains the ensemble on it under torchrun and evaluates it on the held-out set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import ToolLabels
from avfleet.mining.entry import label_queue
from avfleet.mining.job import InProcessScorer, MineConfig, MineReport, run_mine
from avfleet.mining.select import SelectionConfig
from avfleet.serve.local import local_triton
from avfleet.serve.publish import publish_model
from avfleet.serve.repository import load_version

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RoundsConfig:
    root: str
    """Work folder: repo/, mining/, labels/, datasets/, runs/."""
    fleet_uri: str
    index_uri: str
    date: str
    heldout_uri: str
    first_run: str
    """The round-0 ensemble's run folder (its model/ and config.json with the dataset)."""
    rounds: int = 2
    selection: SelectionConfig = SelectionConfig(budget=240)
    members: int = 4
    dpe_strength: float = 0.02
    """The DPE regulariser's weight (members > 1), as the train workflow's default."""
    epochs: int = 3
    batch_size: int = 16
    seed: int = 0
    triton: bool = True
    """Mine through a local Triton server; False scores in process."""
    model_name: str = "dpe"


@dataclasses.dataclass(frozen=True)
class RoundResult:
    round: int
    model_ref: str
    dataset_uri: str
    dataset_frames: int
    run: str
    miou: float
    miou_per_domain: dict[str, float]
    mining: MineReport


def train_ensemble(dataset_uri: str, run: str, config: RoundsConfig) -> None:
    """The ensemble's training job under real torchrun (2 CPU processes)."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(REPO_ROOT / "jobs" / "train.py")]
    cmd += ["--dataset", dataset_uri, "--out", run, "--members", str(config.members)]
    cmd += ["--epochs", str(config.epochs), "--batch-size", str(config.batch_size)]
    cmd += ["--seed", str(config.seed), "--checkpoint-every", "100"]
    if config.members > 1:
        cmd += ["--dpe-strength", str(config.dpe_strength)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_rounds(config: RoundsConfig, on_round=None) -> list[RoundResult]:  # noqa: ANN001
    from avfleet.train.evaluate import evaluate
    from avfleet.train.loop import load_model

    root = pathlib.Path(config.root)
    repo = str(root / "repo")
    run = config.first_run
    dataset = json.loads((pathlib.Path(run) / "config.json").read_text())["dataset_uri"]
    results = []
    for r in range(1, config.rounds + 1):
        ref = publish_model(f"{run}/model", repo, config.model_name)
        out = str(root / "mining" / f"round-{r}")
        mine_config = MineConfig(
            index_uri=config.index_uri,
            date=config.date,
            model=ref,
            out_uri=out,
            selection=config.selection,
            labeled_uri=dataset,
        )
        if config.triton:
            with local_triton(repo, ref) as scorer:
                report = run_mine(mine_config, scorer)
        else:
            report = run_mine(mine_config, InProcessScorer(load_version(repo, ref).onnx))
        labels = str(root / "labels" / f"round-{r}.parquet")
        label_queue(f"{out}/queue.json", config.fleet_uri, labels)
        grown = build_dataset(
            DatasetConfig(
                index_uri=config.index_uri,
                selection=f"{out}/selection.parquet",
                out_uri=str(root / "datasets"),
                base_uri=dataset,
            ),
            ToolLabels(labels),
            show_progress=False,
        )
        dataset, run = grown.uri, str(root / "runs" / f"round-{r}" / "ensemble")
        train_ensemble(dataset, run, config)
        evaluation = evaluate(load_model(f"{run}/model"), config.heldout_uri)
        result = RoundResult(
            r,
            ref,
            dataset,
            grown.num_frames,
            run,
            evaluation.miou,
            evaluation.miou_per_domain,
            report,
        )
        results.append(result)
        if on_round:
            on_round(result)
    return results
