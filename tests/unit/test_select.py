"""Selection: temporal de-duplication, domain quotas, uncertainty x diversity, reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from avfleet.core.errors import ConfigError
from avfleet.mining.select import (
    SelectionConfig,
    k_center_greedy,
    quotas,
    select,
    temporal_dedup,
)


def fleet_scores(seed: int = 0) -> pd.DataFrame:
    """40 recordings at 10 fps for 30 s; 2 night recordings (5%), the rest day; night is uncertain."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(40):
        night = r < 2
        for i in range(300):
            rows.append(
                {
                    "frame_id": f"rec{r:02d}-{i:04d}",
                    "recording_id": f"rec{r:02d}",
                    "log_time_ns": i * 100_000_000,
                    "time_of_day": "night" if night else "day",
                    "weather": "clear",
                    "road_type": "urban" if r % 2 else "freeway",
                    "mutual_information": rng.gamma(2.0, 0.02 if night else 0.005),
                    "predictive_entropy": rng.gamma(2.0, 0.1),
                    "variation_ratio": rng.uniform(0, 0.3),
                    "class_probability": list(rng.dirichlet(np.ones(8))),
                }
            )
    return pd.DataFrame(rows)


def test_quotas_by_hand():
    counts = {"a": 900, "b": 100, "c": 2}
    assert quotas(counts, 30, alpha=1.0) == {"a": 27, "b": 3, "c": 0}
    # alpha 0.5: weights 30, 10, 1.41 -> 21.7, 7.2, 1.0
    assert quotas(counts, 30, alpha=0.5) == {"a": 22, "b": 7, "c": 1}
    assert quotas(counts, 30, alpha=0.0) == {"a": 14, "b": 14, "c": 2}  # c full: the rest flows on
    assert quotas({"a": 3, "b": 1}, 10, alpha=0.5) == {"a": 3, "b": 1}  # never above what exists


def test_temporal_dedup_keeps_one_frame_per_window():
    frames = fleet_scores().head(300)  # one recording, 10 fps
    kept = temporal_dedup(frames, 2.0)
    assert len(kept) == 15
    assert np.all(np.diff(kept["log_time_ns"]) >= 2_000_000_000)


def test_k_center_greedy_spreads_out():
    points = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 5.0], [5.1, 0.0]])
    picked = [i for i, _ in k_center_greedy(points, 3)]
    assert picked == [0, 4, 3]  # farthest first (5.1), then the one far from both


def test_selection_favours_rare_domains_keeps_window_and_explains_every_pick():
    scores = fleet_scores()
    config = SelectionConfig(budget=60, window_s=2.0)
    picked = select(scores, config)
    assert len(picked) == 60 and picked["frame_id"].is_unique
    night_share_fleet = (scores["time_of_day"] == "night").mean()
    night_share_picked = (picked["time_of_day"] == "night").mean()
    assert night_share_picked > 2 * night_share_fleet
    for _, group in picked.groupby("recording_id"):
        times = np.sort(group["log_time_ns"].to_numpy())
        assert np.all(np.diff(times) >= 2_000_000_000)
    assert picked["reason"].str.contains("mutual_information").all()
    assert picked["reason"].str.contains("quota").all()


def test_random_baseline_and_bad_config():
    scores = fleet_scores()
    picked = select(scores, SelectionConfig(budget=50, strategy="random", seed=4))
    assert len(picked) == 50 and picked["frame_id"].is_unique
    again = select(scores, SelectionConfig(budget=50, strategy="random", seed=4))
    assert list(again["frame_id"]) == list(picked["frame_id"])
    with pytest.raises(ConfigError, match="strategy"):
        SelectionConfig(budget=5, strategy="best")
    with pytest.raises(ConfigError, match="budget"):
        SelectionConfig(budget=0)


def test_stratified_keeps_the_quotas_and_ignores_the_scores():
    scores = fleet_scores()
    ranked = select(scores, SelectionConfig(budget=60))
    strat = select(scores, SelectionConfig(budget=60, strategy="stratified", seed=2))
    assert strat["domain"].value_counts().to_dict() == ranked["domain"].value_counts().to_dict()
    again = select(scores, SelectionConfig(budget=60, strategy="stratified", seed=2))
    assert list(again["frame_id"]) == list(strat["frame_id"])
    other = select(scores, SelectionConfig(budget=60, strategy="stratified", seed=3))
    assert list(other["frame_id"]) != list(strat["frame_id"])
    day = scores[scores["time_of_day"] == "day"]["mutual_information"]
    picked_day = strat[strat["time_of_day"] == "day"]["mutual_information"]
    assert picked_day.mean() < day.quantile(0.8)  # not the most uncertain: random inside
    assert strat["reason"].str.contains("stratified").all()
    for _, group in strat.groupby("recording_id"):
        assert np.all(np.diff(np.sort(group["log_time_ns"].to_numpy())) >= 2_000_000_000)


def test_without_diversity_each_domain_takes_its_most_uncertain_frames():
    scores = fleet_scores()
    picked = select(scores, SelectionConfig(budget=40, window_s=0.0, diversity=False))
    for domain, group in picked.groupby("domain"):
        pool = scores.assign(domain=lambda d: d["time_of_day"] + "/clear/" + d["road_type"])
        top = pool[pool["domain"] == domain].nlargest(len(group), "mutual_information")
        assert set(group["frame_id"]) == set(top["frame_id"])
    with pytest.raises(ConfigError, match="pool_factor"):
        SelectionConfig(budget=5, pool_factor=0)
