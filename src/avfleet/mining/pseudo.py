"""Pseudo-labels for under-represented domains: the ensemble labels what it is sure of.

Seed 000's domain adaptation ("Ours + Pseudo-GT"): a network gains on a new
domain from its own confident predictions on unlabeled frames of that domain.
Here, after a round's human (or oracle) labels are in:

1. under-represented domains: the labeled set's mean count per domain (over
   the domains the mined date holds) is the target; a domain below it is
   short by the difference;
2. confident frames: a short domain's candidates (scored by the mining run,
   never labeled, not picked this round) whose mutual information is at most
   the `confidence_quantile` of that domain's candidates', least uncertain
   first (within the domain: a rare domain is more uncertain throughout, and
   a threshold over all candidates would pass none of it);
3. the label: the ensemble mean's argmax per pixel, and IGNORE wherever a
   member's argmax differs from it (members disagree); a frame with less than
   `min_labeled_fraction` of its pixels labeled is passed over.

The result is a table like a labeling tool's export (frame_id, mask_png) plus
why each frame was taken; `dataset build --pseudo-labels` adds it to a
human-labeled version as the third label source (avfleet.dataset.labels).
It is never the base of the next round: each round labels afresh with its
newest ensemble, and a frame picked for people later gets their label.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.core.storage import read_parquet, write_parquet
from avfleet.dataset.build import read_manifest
from avfleet.dataset.fetch import fetch_frames
from avfleet.dataset.labels import IGNORE, encode_mask_png
from avfleet.index.table import IndexTable
from avfleet.mining.job import decode_jpeg
from avfleet.mining.select import domain_of


@dataclasses.dataclass(frozen=True, kw_only=True)
class PseudoConfig:
    confidence_quantile: float = 0.5
    """A frame is confident when its mutual information is at most this quantile of its
    domain's candidates' (0.5: the less uncertain half)."""
    min_labeled_fraction: float = 0.6
    """Frames whose members agree on fewer pixels than this are not pseudo-labeled."""
    max_frames: int = 0
    """At most this many pseudo-labels per round; 0: as many as the domains are short."""
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence_quantile <= 1.0:
            raise ConfigError(
                "confidence_quantile", f"must be in (0, 1], got {self.confidence_quantile}"
            )
        if not 0.0 <= self.min_labeled_fraction <= 1.0:
            raise ConfigError(
                "min_labeled_fraction", f"must be in [0, 1], got {self.min_labeled_fraction}"
            )
        if self.max_frames < 0 or self.batch_size <= 0:
            raise ConfigError("max_frames", "max_frames >= 0 and batch_size > 0")


def shortfall(labeled: dict[str, int], domains: list[str]) -> dict[str, int]:
    """Domain -> frames short of the mean labeled count per domain (over `domains`), if short."""
    if not domains:
        return {}
    target = math.ceil(sum(labeled.get(d, 0) for d in domains) / len(domains))
    return {d: target - labeled.get(d, 0) for d in sorted(domains) if labeled.get(d, 0) < target}


def consensus_masks(probs_NEKHW) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(masks N x H x W uint8 with IGNORE where members disagree, labeled fraction per frame)."""
    consensus = probs_NEKHW.mean(1).argmax(1)
    agree = (probs_NEKHW.argmax(2) == consensus.unsqueeze(1)).all(1)
    masks = consensus.masked_fill(~agree, IGNORE).numpy().astype(np.uint8)
    return masks, agree.float().mean((1, 2)).numpy()


def read_scores(mining_uri: str, storage_config: storage.StorageConfig | None = None):  # noqa: ANN201
    """A finished mining run's per-candidate scores (every shard) and its selection."""
    if not storage.exists(storage.join(mining_uri, "summary.json"), storage_config):
        raise PermanentError(f"{mining_uri}: not a finished mining run (no summary.json)")
    fs = storage.filesystem(mining_uri, storage_config)
    pattern = storage.strip_protocol(storage.join(mining_uri, "scores", "shard-*.parquet"))
    names = sorted(path.rsplit("/", 1)[-1] for path in fs.glob(pattern))
    scores = pd.concat(
        [read_parquet(storage.join(mining_uri, "scores", n), storage_config) for n in names],
        ignore_index=True,
    )
    selection = read_parquet(storage.join(mining_uri, "selection.parquet"), storage_config)
    return scores, selection


def pseudo_label(
    mining_uri: str,
    labeled_uri: str,
    model,  # noqa: ANN001  a stacked ensemble (avfleet.train.loop.load_model)
    index_uri: str,
    config: PseudoConfig = PseudoConfig(),
    storage_config: storage.StorageConfig | None = None,
) -> pd.DataFrame:
    """Pseudo-labels for one round: frame_id, mask_png, domain, mutual_information,
    labeled_fraction, reason; in the order they were taken (most confident first per domain)."""
    import torch

    if getattr(model, "members", 1) < 2:
        raise ConfigError(
            "model",
            "pseudo-labels need an ensemble (members >= 2): they ignore "
            "the pixels its members disagree on",
        )
    scores, selection = read_scores(mining_uri, storage_config)
    labeled = read_manifest(labeled_uri, storage_config)
    scores = scores[
        ~scores["frame_id"].isin(selection["frame_id"])
        & ~scores["frame_id"].isin(labeled["frame_ids"])
    ].assign(domain=lambda d: domain_of(d))
    short = shortfall(labeled["frames_per_domain"], sorted(set(domain_of(scores))))
    wanted: list[pd.DataFrame] = []
    for domain, n in short.items():
        pool = scores[scores["domain"] == domain]
        threshold = float(pool["mutual_information"].quantile(config.confidence_quantile))
        pool = pool[pool["mutual_information"] <= threshold]
        wanted.append(
            pool.sort_values(["mutual_information", "frame_id"]).assign(
                short=n, threshold=threshold
            )
        )
    columns = ["frame_id", "mask_png", "domain", "mutual_information", "labeled_fraction", "reason"]
    if not wanted:
        return pd.DataFrame(columns=columns)
    candidates = pd.concat(wanted, ignore_index=True)
    dates = sorted(candidates["date"].astype(str).unique())
    index_rows = IndexTable(index_uri, storage_config).read("frames", dates)
    index_rows = index_rows[index_rows["frame_id"].isin(candidates["frame_id"])]
    rejected: list[dict] = []  # bytes changed since recording: never pseudo-labelled
    images, _ = fetch_frames(
        index_rows, storage_config or storage.StorageConfig(), rejected=rejected
    )
    candidates = candidates[candidates["frame_id"].isin(images)].reset_index(drop=True)
    rows, taken = [], dict.fromkeys(short, 0)
    model.eval()
    for start in range(0, len(candidates), config.batch_size):
        batch = candidates.iloc[start : start + config.batch_size]
        batch = batch[[taken[d] < short[d] for d in batch["domain"]]]
        if batch.empty:
            continue
        frames = np.stack([decode_jpeg(images[f]) for f in batch["frame_id"]])
        with torch.no_grad():
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
            masks, fraction = consensus_masks(model(x).softmax(2))
        for row, mask, frac in zip(batch.itertuples(), masks, fraction, strict=True):
            if taken[row.domain] >= short[row.domain] or frac < config.min_labeled_fraction:
                continue
            if config.max_frames and len(rows) >= config.max_frames:
                break
            taken[row.domain] += 1
            rows.append(
                {
                    "frame_id": row.frame_id,
                    "mask_png": encode_mask_png(mask),
                    "domain": row.domain,
                    "mutual_information": float(row.mutual_information),
                    "labeled_fraction": float(frac),
                    "reason": (
                        f"{row.domain}: {row.short} short of the mean labeled per domain; "
                        f"mutual information {row.mutual_information:.4g} <= {row.threshold:.4g} "
                        f"(the domain's q{config.confidence_quantile:g}); members agree on "
                        f"{frac:.0%} of pixels"
                    ),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def write_pseudo_labels(
    table: pd.DataFrame, out_uri: str, storage_config: storage.StorageConfig | None = None
) -> None:
    if table.empty:
        raise PermanentError("no frame qualified for a pseudo-label; nothing written")
    write_parquet(table, out_uri, storage_config)
