"""Rounds of the loop on one machine: publish -> serve -> mine -> label -> grow the dataset -> retrain.

What `avfleet demo` runs after its first training, and what the selection
benchmark runs per strategy. Each round:

1. publishes the last ensemble's scoring graph as a new repository version;
2. serves it on a real local Triton server (`avfleet serve`) and mines the
   index date through it (or scores in process, `triton=False`);
3. answers the labeling queue with the oracle (`avfleet label --oracle`);
4. extends the previous dataset version with the labeled picks (`--base`);
5. with `pseudo`, pseudo-labels confident frames of under-represented domains
   with the mining model (`avfleet pseudo-label`) and adds them to a training
   version of their own (the labeled chain stays human/oracle only);
6. retrains the ensemble on it under torchrun and evaluates it on the held-out set.

Every round also says what it found, as the oracle sees it: the share of its candidates
and of its picks that show a hazard (taxonomy.hazards_in), and the ensemble's IoU per class,
the hazards' measured over the held-out set together with its hazard-rich slice
(`hazard_heldout_uri`), so a rare class has pixels enough to score.

With `scorer_members` set, a separate net of that many members is trained
beside the ensemble on the same data and mines instead of it (the
single-model entropy ablation); the ensemble is what every arm evaluates.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

from avfleet import resources, taxonomy
from avfleet.core.metrics import MetricsConfig
from avfleet.dataset.build import DatasetConfig, build_dataset
from avfleet.dataset.labels import PseudoLabels, ToolLabels
from avfleet.fleet.oracle import OracleLabeler
from avfleet.mining.entry import label_queue
from avfleet.mining.job import InProcessScorer, MineConfig, MineReport, run_mine
from avfleet.mining.pseudo import PseudoConfig, pseudo_label, read_scores, write_pseudo_labels
from avfleet.mining.select import SelectionConfig
from avfleet.serve.local import local_triton
from avfleet.serve.publish import publish_model
from avfleet.serve.repository import load_version


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
    hazard_heldout_uri: str = ""
    """Held-out frames that show hazards, scored with heldout_uri for the hazard IoU ('' = the
    held-out set alone)."""
    first_scorer_run: str = ""
    """With scorer_members: the round-0 scorer's run folder (trained on the same dataset)."""
    rounds: int = 2
    selection: SelectionConfig = SelectionConfig(budget=240)
    members: int = 4
    dpe_strength: float = 0.02
    """The DPE regulariser's weight (members > 1), as the train workflow's default."""
    scorer_members: int = 0
    """0: the ensemble mines; N: a separate N-member net mines (trained beside it)."""
    pseudo: PseudoConfig | None = None
    """Pseudo-label under-represented domains each round (None: human/oracle labels only)."""
    pseudo_label_weight: float = 0.5
    """Their loss weight in training."""
    epochs: int = 3
    steps: int = 0
    """Train every round for exactly this many steps (equal compute per round); 0: `epochs`."""
    warm_start: bool = False
    """Each round fine-tunes the last round's ensemble on the grown set (a production loop's
    habit, and less noise from round to round) instead of training from scratch."""
    class_weights: str = "enet"
    """Per-class loss weights of every training (TrainConfig.class_weights)."""
    lr: float = 0.05
    """Peak learning rate of every training (TrainConfig.lr)."""
    batch_size: int = 8
    """Frames per rank per step: the trainer's and the train workflow's default, so that a
    round retrains with round 0's recipe (16 here once gave round 1 fewer steps on more data
    than round 0 had, and a lower mIoU)."""
    seed: int = 0
    triton: bool = True
    """Mine through a local Triton server; False scores in process."""
    model_name: str = "dpe"
    pushgateway: str = ""
    """Where mining and training push their metrics ('' = nowhere)."""
    triton_metrics_port: int = 0
    """Port of the local Triton's metrics endpoint (0: any free port)."""


@dataclasses.dataclass(frozen=True)
class RoundResult:
    round: int
    model_ref: str
    dataset_uri: str
    """The labeled chain's version (human/oracle labels): what mining skips next round."""
    dataset_frames: int
    run: str
    miou: float
    miou_per_domain: dict[str, float]
    mining: MineReport
    pseudo_per_domain: dict[str, int] = dataclasses.field(default_factory=dict)
    """Frames pseudo-labeled this round, per domain (in the training set, not the chain)."""
    training_uri: str = ""
    """What the round's ensemble trained on: dataset_uri, plus the pseudo-labels if any."""
    mined_with: str = ""
    """The run folder of the model that mined this round (the previous round's)."""
    iou_per_class: dict[str, float] = dataclasses.field(default_factory=dict)
    """The ensemble's held-out IoU per class (the hazards' over the hazard slice too)."""
    hazard_iou: float | None = None
    """Mean IoU over the hazard classes (taxonomy.hazard_iou)."""
    hazard_pick_share: float | None = None
    """Share of this round's picks that show a hazard."""
    hazard_pool_share: float | None = None
    """Share of this round's candidates (what it could pick from) that show a hazard."""
    picks_per_hazard: dict[str, int] = dataclasses.field(default_factory=dict)
    """Picks showing each hazard class (a frame may show two)."""


def scored_model(model_dir: str, config: RoundsConfig) -> dict:
    """mIoU, per domain and per class (hazards over the hazard slice too), and hazard IoU."""
    from avfleet.train.evaluate import evaluate_with_slice
    from avfleet.train.loop import load_model

    evaluation = evaluate_with_slice(
        load_model(model_dir), config.heldout_uri, config.hazard_heldout_uri or None
    )
    return {
        "miou": evaluation.miou,
        "miou_per_domain": evaluation.miou_per_domain,
        "iou_per_class": evaluation.iou_per_class,
        "hazard_iou": taxonomy.hazard_iou(evaluation.iou_per_class),
    }


def hazard_shares(mining_uri: str, oracle: OracleLabeler) -> dict:
    """What a mining run could pick and what it picked, as the oracle sees the hazards."""
    scores, picks = read_scores(mining_uri)
    pool = oracle.hazard_frames(scores)
    per_class: dict[str, int] = {}
    shows = []
    for rec, i in zip(picks["recording_id"], picks["frame_index"], strict=True):
        names = oracle.hazards(str(rec), int(i))
        shows.append(bool(names))
        for n in names:
            per_class[n] = per_class.get(n, 0) + 1
    return {
        "hazard_pick_share": sum(shows) / max(len(shows), 1),
        "hazard_pool_share": sum(pool) / max(len(pool), 1),
        "picks_per_hazard": dict(sorted(per_class.items())),
    }


def train_ensemble(
    dataset_uri: str, run: str, config: RoundsConfig, members: int | None = None, last: str = ""
) -> None:
    """The ensemble's training job under real torchrun (2 CPU processes); with
    `config.warm_start`, it starts from the model of the run folder `last`."""
    members = members or config.members
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(resources.jobs_dir() / "train.py")]
    cmd += ["--dataset", dataset_uri, "--out", run, "--members", str(members)]
    cmd += ["--epochs", str(config.epochs), "--steps", str(config.steps)]
    cmd += ["--batch-size", str(config.batch_size), "--class-weights", config.class_weights]
    cmd += ["--lr", str(config.lr)]
    cmd += ["--seed", str(config.seed), "--checkpoint-every", "100"]
    cmd += ["--pseudo-label-weight", str(config.pseudo_label_weight)]
    cmd += ["--pushgateway", config.pushgateway]
    if config.warm_start and last:
        cmd += ["--init", f"{last}/model"]
    if members > 1:
        cmd += ["--dpe-strength", str(config.dpe_strength)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_rounds(config: RoundsConfig, on_round=None) -> list[RoundResult]:  # noqa: ANN001
    root = pathlib.Path(config.root)
    repo = str(root / "repo")
    run = config.first_run
    scorer_run = config.first_scorer_run or run
    if config.scorer_members and not config.first_scorer_run:
        raise ValueError("scorer_members needs first_scorer_run (round 0's scorer)")
    dataset = json.loads((pathlib.Path(run) / "config.json").read_text())["dataset_uri"]
    if config.pseudo:  # round 0 may have trained on pseudo-labels: the chain is its base
        dataset = _labeled_chain(dataset)
    oracle = OracleLabeler.from_uri(config.fleet_uri)
    start = scored_model(f"{run}/model", config)
    results = []
    _write_results(root, config, results, start)
    for r in range(1, config.rounds + 1):
        mined_with = scorer_run
        ref = publish_model(f"{scorer_run}/model", repo, config.model_name)
        out = str(root / "mining" / f"round-{r}")
        mine_config = MineConfig(
            index_uri=config.index_uri,
            date=config.date,
            model=ref,
            out_uri=out,
            selection=config.selection,
            labeled_uri=dataset,
            metrics=MetricsConfig(pushgateway_url=config.pushgateway or None),
            pre_annotate_with=f"{scorer_run}/model",  # the queue's tasks start from its masks
        )
        if config.triton:
            with local_triton(repo, ref, metrics_port=config.triton_metrics_port) as scorer:
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
        dataset, training = grown.uri, grown.uri
        pseudo_counts: dict[str, int] = {}
        if config.pseudo:
            training, pseudo_counts = add_pseudo_labels(config, root, r, out, dataset, run)
        last, run = run, str(root / "runs" / f"round-{r}" / "ensemble")
        train_ensemble(training, run, config, last=last)
        if config.scorer_members:
            last_scorer = scorer_run
            scorer_run = str(root / "runs" / f"round-{r}" / "scorer")
            train_ensemble(
                training, scorer_run, config, members=config.scorer_members, last=last_scorer
            )
        else:
            scorer_run = run
        scored = scored_model(f"{run}/model", config)
        result = RoundResult(
            round=r,
            model_ref=ref,
            dataset_uri=dataset,
            dataset_frames=grown.num_frames,
            run=run,
            miou=scored["miou"],
            miou_per_domain=scored["miou_per_domain"],
            mining=report,
            pseudo_per_domain=pseudo_counts,
            training_uri=training,
            mined_with=mined_with,
            iou_per_class=scored["iou_per_class"],
            hazard_iou=scored["hazard_iou"],
            **hazard_shares(out, oracle),
        )
        results.append(result)
        _write_results(root, config, results, start)
        if on_round:
            on_round(result)
    return results


ROUNDS_FILE = "rounds.json"
"""<root>/rounds.json: the selection and every finished round, rewritten after each (the report
reads it)."""


def _write_results(
    root: pathlib.Path, config: RoundsConfig, results: list[RoundResult], start: dict
) -> None:
    from avfleet.core import storage

    doc = {
        "start": start,
        "selection": dataclasses.asdict(config.selection),
        "members": config.members,
        "dpe_strength": config.dpe_strength,
        "epochs": config.epochs,
        "steps": config.steps,
        "warm_start": config.warm_start,
        "pseudo": dataclasses.asdict(config.pseudo) if config.pseudo else None,
        "first_run": config.first_run,
        "rounds": [dataclasses.asdict(r) for r in results],
    }
    storage.atomic_write_text(str(root / ROUNDS_FILE), json.dumps(doc, indent=2))


def read_results(root: str) -> dict:
    """A rounds folder's rounds.json (see ROUNDS_FILE)."""
    return json.loads((pathlib.Path(root) / ROUNDS_FILE).read_text())


def _labeled_chain(dataset_uri: str) -> str:
    """The version without pseudo-labels under `dataset_uri` (itself, or its base)."""
    from avfleet.dataset.build import read_manifest

    manifest = read_manifest(dataset_uri)
    if manifest.get("frames_per_source", {}).get("pseudo") and manifest.get("base"):
        return _labeled_chain(manifest["base"])
    return dataset_uri


def add_pseudo_labels(
    config: RoundsConfig, root: pathlib.Path, r: int, mining: str, labeled: str, model_run: str
) -> tuple[str, dict[str, int]]:
    """Pseudo-label with the model that mined this round; (training version, count per domain).

    Nothing qualifying leaves the labeled version as the training set."""
    from avfleet.train.loop import load_model

    assert config.pseudo is not None
    table = pseudo_label(
        mining, labeled, load_model(f"{model_run}/model"), config.index_uri, config.pseudo
    )
    if table.empty:
        return labeled, {}
    uri = str(root / "pseudo" / f"round-{r}.parquet")
    write_pseudo_labels(table, uri)
    version = build_dataset(
        DatasetConfig(
            index_uri=config.index_uri,
            selection=uri,
            out_uri=str(root / "datasets"),
            base_uri=labeled,
        ),
        PseudoLabels(uri),
        show_progress=False,
    )
    return version.uri, {k: int(v) for k, v in table["domain"].value_counts().sort_index().items()}
