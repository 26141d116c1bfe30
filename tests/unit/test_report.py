"""The demo report from a run folder's files: summary.json's numbers, the story, a self-contained page."""

from __future__ import annotations

import json
import pathlib

import pytest

from avfleet.core.errors import PermanentError
from avfleet.report import build_summary, is_rare, story, write_report

DOMAINS = ("day/clear/urban", "night/clear/urban", "day/snow/freeway")


def per_domain(day: float, night: float, snow: float) -> dict[str, float]:
    return dict(zip(DOMAINS, (day, night, snow), strict=True))


def rounds_doc(strategy: str, mious: list[tuple[float, float, float]], picks: list[dict]) -> dict:
    return {
        "selection": {"strategy": strategy, "budget": 10},
        "epochs": 3,
        "steps": 0,
        "warm_start": True,
        "dpe_strength": 0.02,
        "first_run": "",
        "rounds": [
            {
                "round": i + 1,
                "model_ref": f"dpe:{i + 1}",
                "miou": sum(m) / 3,
                "miou_per_domain": per_domain(*m),
                "dataset_frames": 20 + 10 * (i + 1),
                "mining": {
                    "selected_per_domain": p,
                    "fleet_share_per_domain": {DOMAINS[0]: 0.9, DOMAINS[1]: 0.06, DOMAINS[2]: 0.04},
                },
                "pseudo_per_domain": {},
            }
            for i, (m, p) in enumerate(zip(mious, picks, strict=True))
        ],
    }


def write(path: pathlib.Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.fixture()
def run(tmp_path) -> pathlib.Path:
    write(
        tmp_path / "runs/round-0/ensemble/model/evaluation.json",
        {"miou": 0.3, "miou_per_domain": per_domain(0.5, 0.2, 0.2)},
    )
    mined = [{DOMAINS[0]: 4, DOMAINS[1]: 3, DOMAINS[2]: 3}] * 2
    random = [{DOMAINS[0]: 9, DOMAINS[1]: 1}] * 2
    write(
        tmp_path / "loop/rounds.json",
        rounds_doc("uncertainty", [(0.5, 0.3, 0.3), (0.6, 0.4, 0.4)], mined),
    )
    write(
        tmp_path / "loop-random/rounds.json",
        rounds_doc("random", [(0.5, 0.2, 0.3), (0.55, 0.3, 0.3)], random),
    )
    pareto = {
        "candidates": [
            {
                "name": "a",
                "target_ms": 1.0,
                "p50_ms": 0.9,
                "p99_ms": 1.1,
                "miou": 0.4,
                "parameters": 1000,
            },
            {
                "name": "b",
                "target_ms": 2.0,
                "p50_ms": 2.1,
                "p99_ms": 2.3,
                "miou": 0.3,
                "parameters": 900,
            },
        ],
        "front": ["a"],
    }
    write(tmp_path / "nas/r1/pareto/pareto.json", pareto)
    return tmp_path


def test_summary_pairs_each_round_with_the_random_arm_and_reads_the_search(run):
    summary = build_summary(run)
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["miou_random"] == rounds[0]["miou"] == 0.3  # one shared start
    assert rounds[2]["miou"] == pytest.approx(1.4 / 3)
    assert rounds[2]["miou_random"] == pytest.approx(1.15 / 3)
    assert rounds[2]["miou_rare"] == pytest.approx(0.4) and rounds[2]["miou_random_rare"] == 0.3
    assert rounds[1]["miou_by_time_of_day"] == {"day": 0.4, "night": 0.3}
    assert rounds[1]["picks_by_domain"][DOMAINS[1]] == 3
    points = {p["name"]: p for p in summary["search"]["points"]}
    assert points["a"]["on_front"] and not points["b"]["on_front"]
    assert "compression" not in summary and "promoted" not in summary


def test_the_story_says_what_the_picks_were_and_where_miou_moved(run):
    lines = story(build_summary(run))
    assert "10% rare" in lines[0]  # the fleet: 6% night + 4% snow
    assert "60% rare" in lines[1] and "30.0 -> 36.7" in lines[1] and "random" in lines[1]
    assert "fine-tunes the last round's ensemble" in lines[3]
    assert "mined +16.7" in lines[4] and "+8.3 overall" in lines[4]
    assert is_rare("night/clear/urban") and not is_rare("day/clear/freeway")


def test_the_page_embeds_its_images_and_a_bare_folder_is_refused(run, tmp_path_factory):
    (run / "nas/r1/pareto/pareto.png").write_bytes(
        (run / "nas/r1/pareto/pareto.json").read_bytes()  # any bytes: embedded, not parsed
    )
    page, summary = write_report(str(run))
    html = page.read_text()
    assert html.count("<img ") == 3  # rounds, mix, the search's front
    assert "http://" not in html and "https://" not in html
    assert json.loads((run / "report/summary.json").read_text())["rounds"] == summary["rounds"]
    with pytest.raises(PermanentError, match="not a demo run"):
        build_summary(tmp_path_factory.mktemp("empty"))


def test_summary_carries_each_rounds_hazards_for_both_arms(run):
    """summary.json's rounds: hazard IoU and the hazard share of the picks, mined and random,
    beside the share in the round's candidates; the story and the page say them."""
    mined = json.loads((run / "loop/rounds.json").read_text())
    random = json.loads((run / "loop-random/rounds.json").read_text())
    mined["start"] = {"hazard_iou": 0.05, "iou_per_class": {"road": 0.9, "animal": 0.05}}
    for doc, iou, share in ((mined, (0.2, 0.3), (0.3, 0.25)), (random, (0.1, 0.12), (0.05, 0.1))):
        for r, i, s in zip(doc["rounds"], iou, share, strict=True):
            r.update(hazard_iou=i, hazard_pick_share=s, hazard_pool_share=0.05)
    write(run / "loop/rounds.json", mined)
    write(run / "loop-random/rounds.json", random)
    rounds = build_summary(run)["rounds"]
    assert rounds[0]["hazard_iou"] == rounds[0]["hazard_iou_random"] == 0.05
    assert [r["hazard_iou"] for r in rounds[1:]] == [0.2, 0.3]
    assert [r["hazard_iou_random"] for r in rounds[1:]] == [0.1, 0.12]
    assert [r["hazard_pick_share"] for r in rounds[1:]] == [0.3, 0.25]
    assert [r["hazard_pick_share_random"] for r in rounds[1:]] == [0.05, 0.1]
    assert [r["hazard_pool_share"] for r in rounds[1:]] == [0.05, 0.05]
    lines = story(build_summary(run))
    hazard = [line for line in lines if line.startswith("Round 1 hazards")]
    assert hazard and "30% of the mined picks" in hazard[0] and "6.0x the base rate" in hazard[0]
    assert "random picks 5%" in hazard[0] and "5.0 -> 20.0 (random 10.0)" in hazard[0]
    page, _ = write_report(str(run))
    assert "The long tail: hazards" in page.read_text()
