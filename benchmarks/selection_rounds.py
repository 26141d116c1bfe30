"""Selection strategies at an equal labeling budget, over rounds: DPE mutual information vs
random vs single-model entropy, per-domain and overall held-out mIoU.

The pool is one day of a 24-vehicle fleet (POOL_SPEC: 96 one-minute recordings, of
which 5 at night, 6 at twilight, 30 in rain, fog or snow: about the design rates). All
arms start from the same random labeled set (INITIAL frames of the pool) and add BUDGET
frames per round, mined from the same index date (temporal de-dup, quotas
and k-center diversity for the two uncertainty strategies; uniform for random), labeled
by the oracle, for ROUNDS rounds. The DPE and random arms train the same 4-member DPE
ensemble recipe on their data (random selection ignores the model); the entropy arm
trains a single net and ranks by its predictive entropy. Mining runs through a real
local Triton server. Goal: DPE at least 5 mIoU points above random.

    python benchmarks/selection_rounds.py [ROUNDS [BUDGET]]
"""

from __future__ import annotations

import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import RESULTS, SMOKE, cached_fleet, save  # noqa: E402
from _train_common import _indexed, datasets  # noqa: E402

from avfleet.dataset.build import DatasetConfig, build_dataset  # noqa: E402
from avfleet.dataset.labels import OracleLabels  # noqa: E402
from avfleet.fleet.world import FleetSpec  # noqa: E402
from avfleet.mining.rounds import RoundsConfig, run_rounds, train_ensemble  # noqa: E402
from avfleet.mining.select import SelectionConfig  # noqa: E402
from avfleet.train.evaluate import evaluate, mean_by_time_of_day  # noqa: E402
from avfleet.train.loop import load_model  # noqa: E402

ROUNDS = 1 if SMOKE else int(sys.argv[1]) if len(sys.argv) > 1 else 2
BUDGET = 8 if SMOKE else int(sys.argv[2]) if len(sys.argv) > 2 else 150
INITIAL, EPOCHS = (64, 1) if SMOKE else (300, 6)
POOL_SPEC = FleetSpec(seed=55, vehicles=24, minutes_per_day=4.0)
ARMS = {
    "dpe_mutual_information": {
        "members": 4,
        "score": "mutual_information",
        "strategy": "uncertainty",
    },
    "random": {"members": 4, "score": "mutual_information", "strategy": "random"},
    "single_model_entropy": {
        "members": 1,
        "score": "predictive_entropy",
        "strategy": "uncertainty",
    },
}


def by_time_of_day(per_domain: dict[str, float]) -> dict[str, float]:
    return {k: 100 * v for k, v in mean_by_time_of_day(per_domain).items()}


def main() -> None:
    _, heldout = datasets()
    fleet = cached_fleet(POOL_SPEC)
    index = _indexed(fleet, POOL_SPEC.start_date)
    work = RESULTS / "runs" / f"selection-{ROUNDS}x{BUDGET}"
    shutil.rmtree(work, ignore_errors=True)
    initial = build_dataset(
        DatasetConfig(
            index_uri=index, selection=f"random:{INITIAL}", out_uri=str(work / "datasets"), seed=3
        ),
        OracleLabels(fleet),
    ).uri
    first_runs: dict[int, str] = {}
    out = {}
    for arm, spec in ARMS.items():
        base = RoundsConfig(
            root=str(work / arm),
            fleet_uri=fleet,
            index_uri=index,
            date=POOL_SPEC.start_date,
            heldout_uri=heldout,
            first_run="",
            rounds=ROUNDS,
            selection=SelectionConfig(
                budget=BUDGET, score=spec["score"], strategy=spec["strategy"]
            ),
            members=spec["members"],
            epochs=EPOCHS,
        )
        if spec["members"] not in first_runs:  # round 0: the same data, one training per model kind
            run = str(work / f"round-0-members-{spec['members']}")
            train_ensemble(initial, run, base)
            first_runs[spec["members"]] = run
        first = first_runs[spec["members"]]
        start = evaluate(load_model(f"{first}/model"), heldout)
        results = run_rounds(RoundsConfig(**{**base.__dict__, "first_run": first}))
        out[arm] = {
            "miou_per_round": [100 * start.miou] + [100 * r.miou for r in results],
            "miou_by_time_of_day_per_round": [by_time_of_day(start.miou_per_domain)]
            + [by_time_of_day(r.miou_per_domain) for r in results],
            "final_miou_per_domain": {k: 100 * v for k, v in results[-1].miou_per_domain.items()},
            "picked_per_domain": [r.mining.selected_per_domain for r in results],
            "frames_per_s_scored": [r.mining.frames_per_s for r in results],
        }
    fleet_share = results[-1].mining.fleet_share_per_domain
    final = {arm: v["miou_per_round"][-1] for arm, v in out.items()}
    save(
        f"selection_rounds-{ROUNDS}x{BUDGET}",
        {
            "rounds": ROUNDS,
            "budget_per_round": BUDGET,
            "initial_frames": INITIAL,
            "epochs": EPOCHS,
            "final_miou": final,
            "dpe_minus_random_points": final["dpe_mutual_information"] - final["random"],
            "fleet_share_per_domain": fleet_share,
            **out,
            "goal": "DPE at least 5 mIoU points above random",
        },
    )


if __name__ == "__main__":
    main()
