"""Selection: per-frame scores -> K frames to label, each with the reason it was picked.

Three forces (ALGORITHMS.md, Mining):

* temporal de-duplication: consecutive video frames are near duplicates, so a
  recording keeps at most one candidate per `window_s` seconds, and no two
  selected frames of one recording lie within `window_s` of each other;
* per-domain quotas (time of day x weather x road type): the budget is split
  in proportion to share^alpha of each domain's candidates (alpha = 1: as the
  fleet is; alpha = 0: equal; the default 0.5 tilts towards rare conditions),
  by largest remainder, capped by what a domain has;
* uncertainty x diversity inside a domain: the `pool_factor` x quota most
  uncertain candidates, then k-center greedy on their class-probability
  embeddings, starting from the most uncertain one, so the picks are
  uncertain and unlike each other.

Strategies, for the ablations that say which force does the work:
"uncertainty" all three; "stratified" the same de-dup and quotas with a seeded
random order inside each domain (scores ignored: the baseline that isolates the
quotas); "random" de-dup only, uniform over the candidates. `diversity=False`
keeps the quotas and the ranking but takes each domain's top candidates in
score order (no k-center).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from avfleet.core.errors import ConfigError

DOMAIN_COLUMNS = ["time_of_day", "weather", "road_type"]
STRATEGIES = ("uncertainty", "stratified", "random")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    budget: int
    """K: frames to select."""
    score: str = "mutual_information"
    """Which score ranks frames: mutual_information, predictive_entropy or variation_ratio."""
    strategy: str = "uncertainty"
    """uncertainty (scores, quotas, diversity), stratified (quotas, random inside a domain) or
    random (uniform over the candidates). Measured (docs/selection.md): on the fleet before its
    long tail none beat another beyond the seed noise; on the long-tail world the default picks
    frames that show a hazard at 1.6x their base rate, twice random's share (the demo, one
    seed); the ablation over seeds is still to run. Uncertainty is the default because the
    talks prescribe it, not because it was shown to win here."""
    window_s: float = 2.0
    """Temporal de-duplication window, seconds."""
    alpha: float = 0.5
    """Quota exponent: quota_d proportional to share_d ** alpha."""
    pool_factor: int = 4
    """k-center runs over the pool_factor x quota most uncertain candidates of a domain."""
    diversity: bool = True
    """k-center inside a domain's pool; False takes the pool in score order."""
    seed: int = 0
    """Seed of random choices (stratified and random strategies, ties)."""

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise ConfigError("budget", f"must be positive, got {self.budget}")
        if self.strategy not in STRATEGIES:
            raise ConfigError("strategy", f"{self.strategy!r}: expected one of {STRATEGIES}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("alpha", f"must be in [0, 1], got {self.alpha}")
        if self.window_s < 0:
            raise ConfigError("window_s", f"must be >= 0, got {self.window_s}")
        if self.pool_factor < 1:
            raise ConfigError("pool_factor", f"must be >= 1, got {self.pool_factor}")


def temporal_dedup(frames: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """Per recording, the first frame, then each next frame at least window_s after the last kept."""
    if frames.empty or window_s <= 0:
        return frames
    window_ns = int(window_s * 1e9)
    keep = np.zeros(len(frames), dtype=bool)
    ordered = frames.reset_index(drop=True).sort_values(["recording_id", "log_time_ns"])
    last_rec, last_t = None, 0
    for i, rec, t in zip(
        ordered.index, ordered["recording_id"], ordered["log_time_ns"], strict=True
    ):
        if rec != last_rec or t - last_t >= window_ns:
            keep[i] = True
            last_rec, last_t = rec, t
    return frames.reset_index(drop=True)[keep].reset_index(drop=True)


def domain_of(frames: pd.DataFrame) -> pd.Series:
    return frames[DOMAIN_COLUMNS].astype(str).agg("/".join, axis=1)


def quotas(counts: dict[str, int], budget: int, alpha: float) -> dict[str, int]:
    """Budget split over domains by count ** alpha (largest remainder), never above a domain's count.

    Water-filling: what a full domain cannot take goes to the others, in the same proportions.
    """
    quota = dict.fromkeys(counts, 0)
    remaining = min(budget, sum(counts.values()))
    while remaining > 0:
        open_domains = [d for d in sorted(counts) if quota[d] < counts[d]]
        weights = {d: float(counts[d]) ** alpha for d in open_domains}
        total = sum(weights.values())
        ideal = {d: remaining * weights[d] / total for d in open_domains}
        for d in open_domains:
            add = min(int(ideal[d]), counts[d] - quota[d])
            quota[d] += add
            remaining -= add
        for d in sorted(open_domains, key=lambda d: (int(ideal[d]) - ideal[d], d)):
            if remaining > 0 and quota[d] < counts[d]:
                quota[d] += 1
                remaining -= 1
    return quota


def k_center_greedy(embeddings: np.ndarray, k: int) -> list[tuple[int, float]]:
    """k indices, starting at 0 (the most uncertain), each next the farthest from those picked."""
    picked = [(0, float("inf"))]
    distance = np.linalg.norm(embeddings - embeddings[0], axis=1)
    while len(picked) < min(k, len(embeddings)):
        i = int(distance.argmax())
        picked.append((i, float(distance[i])))
        distance = np.minimum(distance, np.linalg.norm(embeddings - embeddings[i], axis=1))
    return picked


def _too_close(row: pd.Series, chosen: dict[str, list[int]], window_ns: int) -> bool:
    return any(abs(int(row.log_time_ns) - t) < window_ns for t in chosen.get(row.recording_id, []))


def select(scores: pd.DataFrame, config: SelectionConfig) -> pd.DataFrame:
    """The selection: scores' rows plus rank, domain, quota and reason, in pick order."""
    frames = temporal_dedup(scores, config.window_s)
    frames = frames.assign(domain=domain_of(frames))
    if config.strategy == "random":
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(frames))[: config.budget]
        out = frames.iloc[order].assign(
            quota=0, reason=f"random pick (baseline), seed {config.seed}"
        )
        return out.reset_index(drop=True).assign(rank=lambda d: np.arange(len(d)))
    counts = frames["domain"].value_counts().to_dict()
    quota = quotas(counts, config.budget, config.alpha)
    total = len(frames)
    window_ns = int(config.window_s * 1e9)
    rng = np.random.default_rng(config.seed)
    chosen: dict[str, list[int]] = {}
    picks = []
    for domain in sorted(quota, key=lambda d: (counts[d], d)):  # rare domains first
        if quota[domain] == 0:
            continue
        candidates = frames[frames["domain"] == domain].sort_values("frame_id")
        if config.strategy == "stratified":
            candidates = candidates.iloc[rng.permutation(len(candidates))].reset_index(drop=True)
            order = [(i, float("nan")) for i in range(len(candidates))]
            why = f"random inside the domain (stratified baseline), seed {config.seed}"
        else:
            candidates = candidates.sort_values(
                [config.score, "frame_id"], ascending=[False, True]
            ).reset_index(drop=True)
            pool = candidates.head(config.pool_factor * quota[domain])
            if config.diversity:
                embeddings = np.stack(
                    [np.asarray(e, dtype=np.float64) for e in pool["class_probability"]]
                )
                order = k_center_greedy(embeddings, len(pool))
            else:
                order = [(i, float("nan")) for i in range(len(candidates))]
            why = ""
        taken = 0
        for i, spread in order:
            if taken == quota[domain]:
                break
            row = candidates.iloc[i]
            if _too_close(row, chosen, window_ns):
                continue
            chosen.setdefault(row.recording_id, []).append(int(row.log_time_ns))
            taken += 1
            share = counts[domain] / total
            reason = f"{domain}: {share:.1%} of candidates, quota {quota[domain]}; " + (
                why
                or f"{config.score} {row[config.score]:.4g} is #{i + 1} of {len(candidates)}"
                + (f"; k-center distance {spread:.3f}" if np.isfinite(spread) else "")
            )
            picks.append({**row.to_dict(), "quota": quota[domain], "reason": reason})
    out = pd.DataFrame(picks)
    return out.assign(rank=np.arange(len(out)))
