"""Which force makes mining work: an ablation of the selection over rounds and seeds.

Every arm starts from the same random labeled set (per seed) and adds the same
number of oracle-labeled frames per round, mined from the same index date
(temporal de-dup for all), then trains the same ensemble recipe on what it
has and scores it on the domain-balanced held-out set:

  random               uniform over the candidates (no quotas, no model)
  stratified           the per-domain quotas, random inside each domain
  entropy              quotas + the most uncertain by predictive entropy of a single
                       net (trained beside the ensemble on the same data)
  ensemble_mi          quotas + mutual information of a plain 4-member ensemble
  dpe_mi               quotas + mutual information of the DPE ensemble
  dpe_mi_diversity     quotas + DPE mutual information + k-center (the default)
  dpe_mi_diversity_pseudo  the default plus pseudo-labels for under-represented domains
  dpe_mi@S             dpe_mi at DPE strength S (the strength sweep; 0 is ensemble_mi)

Every training (round 0, each round, the whole pool) runs the same EPOCHS from
scratch with the trainer's batch size, as the demo's rounds do: a bigger set
also gets more steps, the same for every arm at a round. (Equal steps instead,
`RoundsConfig.steps`, was tried: at the 48 steps this machine affords per
training the nets are compute-bound, and 100 labeled frames scored as well as
the whole pool of 960: the curves measured nothing.)
The evaluated model is the arm's own ensemble: the DPE recipe (strength 0.02)
except where the arm changes the strength; its round-0 mIoU on the same data
shows the strength's direct effect, so the sweep compares gains over round 0.
Also: the mIoU of the same recipe trained on the whole pool (every candidate
labeled), and per arm the labels it needs to reach it (interpolated between
rounds; more than the last round's if it never does), as a share of the pool.

The pool: one day of an 8-vehicle fleet (POOL_SPEC, seed 55: 32 one-minute
recordings, about the generator's design rates of night, twilight, rain, fog
and snow). Mining scores in process with ONNX Runtime (the served path is
benchmarks/mining_serving.py). Results are saved after every seed; a rerun
keeps every arm that finished all its rounds.

    python benchmarks/selection_rounds.py [--only ARM,ARM...] [SEEDS [ROUNDS [BUDGET]]]

--only runs just the named arms; every other arm is reported for the seeds where an earlier
run finished it (and left out where none did), so a long ablation can be run in parts.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import RESULTS, SMOKE, cached_fleet, save  # noqa: E402
from _train_common import _indexed, datasets  # noqa: E402

from avfleet.dataset.build import DatasetConfig, build_dataset  # noqa: E402
from avfleet.dataset.labels import OracleLabels  # noqa: E402
from avfleet.fleet.world import FleetSpec  # noqa: E402
from avfleet.index.table import IndexTable  # noqa: E402
from avfleet.mining.pseudo import PseudoConfig  # noqa: E402
from avfleet.mining.rounds import RoundsConfig, read_results, run_rounds, train_ensemble  # noqa: E402
from avfleet.mining.select import SelectionConfig, temporal_dedup  # noqa: E402
from avfleet.train.evaluate import evaluate, mean_by_time_of_day  # noqa: E402
from avfleet.train.loop import load_model  # noqa: E402

ONLY: set[str] | None = None
if "--only" in sys.argv:
    at = sys.argv.index("--only")
    ONLY = set(sys.argv[at + 1].split(","))
    del sys.argv[at : at + 2]
ARGS = [int(a) for a in sys.argv[1:]]
SEEDS = 1 if SMOKE else ARGS[0] if ARGS else 3
ROUNDS = 1 if SMOKE else ARGS[1] if len(ARGS) > 1 else 3
BUDGET = 8 if SMOKE else ARGS[2] if len(ARGS) > 2 else 100
INITIAL, EPOCHS = (48, 1) if SMOKE else (200, 3)
POOL_SPEC = FleetSpec(seed=55, vehicles=8, minutes_per_day=4.0)
DPE = 0.02
SWEEP = (1.0,)


@dataclasses.dataclass(frozen=True)
class Arm:
    strategy: str = "uncertainty"
    score: str = "mutual_information"
    diversity: bool = False
    dpe_strength: float = DPE
    scorer_members: int = 0
    pseudo: bool = False


ARMS = {
    "random": Arm(strategy="random"),
    "stratified": Arm(strategy="stratified"),
    "entropy": Arm(score="predictive_entropy", scorer_members=1),
    "ensemble_mi": Arm(dpe_strength=0.0),
    "dpe_mi": Arm(),
    "dpe_mi_diversity": Arm(diversity=True),
    "dpe_mi_diversity_pseudo": Arm(diversity=True, pseudo=True),
    **{f"dpe_mi@{s:g}": Arm(dpe_strength=s) for s in SWEEP},
}
if SMOKE:  # one arm of each mechanism
    ARMS = {k: ARMS[k] for k in ("stratified", "entropy", "dpe_mi_diversity_pseudo")}


def is_rare(domain: str) -> bool:
    """Rare: anything but day in clear weather (what the fleet mostly records)."""
    tod, weather, _ = domain.split("/")
    return not (tod == "day" and weather == "clear")


def groups(per_domain: dict[str, float]) -> dict[str, float]:
    """mIoU (%) by time of day, and over the rare and the common domains."""
    out = {k: 100 * v for k, v in mean_by_time_of_day(per_domain).items()}
    for name, test in (("rare", is_rare), ("common", lambda d: not is_rare(d))):
        values = [v for d, v in per_domain.items() if test(d)]
        out[name] = 100 * float(np.mean(values)) if values else float("nan")
    return out


def pool_frames(index: str) -> list[str]:
    """The pool: the date's candidates after temporal de-dup (all mining can ever pick)."""
    frames = IndexTable(index).read("frames", [POOL_SPEC.start_date])
    return sorted(temporal_dedup(frames, SelectionConfig(budget=1).window_s)["frame_id"])


def labeled_set(index: str, fleet: str, frame_ids: list[str], out: pathlib.Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    selection = out / f"{len(frame_ids)}-frames.json"
    selection.write_text(json.dumps(frame_ids))
    return build_dataset(
        DatasetConfig(index_uri=index, selection=str(selection), out_uri=str(out / "datasets")),
        OracleLabels(fleet),
        show_progress=False,
    ).uri


def trained(dataset: str, run: pathlib.Path, base: RoundsConfig, **kw) -> str:  # noqa: ANN003
    """A round-0 (or whole-pool) training, reused when its run folder is complete."""
    if not (run / "result.json").exists():
        train_ensemble(dataset, str(run), dataclasses.replace(base, **kw), kw.get("members"))
    return str(run)


def arm_result(root: pathlib.Path, start) -> dict:  # noqa: ANN001
    """One arm's curve from its rounds.json (what run_rounds wrote after every round)."""
    rounds = read_results(str(root))["rounds"]
    return {
        "labels": [INITIAL] + [r["dataset_frames"] for r in rounds],
        "miou": [100 * start.miou] + [100 * r["miou"] for r in rounds],
        "groups": [groups(start.miou_per_domain)] + [groups(r["miou_per_domain"]) for r in rounds],
        "picked_per_domain": [r["mining"]["selected_per_domain"] for r in rounds],
        "pseudo_per_domain": [r["pseudo_per_domain"] for r in rounds],
        "fleet_share_per_domain": rounds[-1]["mining"]["fleet_share_per_domain"],
    }


def finished(root: pathlib.Path) -> bool:
    """An arm that ran all its rounds (a rerun keeps it; a partial one starts over)."""
    try:
        return len(read_results(str(root))["rounds"]) == ROUNDS
    except (OSError, ValueError, KeyError):
        return False


def run_seed(seed: int, fleet: str, index: str, heldout: str, pool: list[str]) -> dict:
    work = RESULTS / "runs" / f"selection-{ROUNDS}x{BUDGET}" / f"seed-{seed}"
    rng = np.random.default_rng(seed)
    initial = labeled_set(
        index, fleet, sorted(rng.choice(pool, INITIAL, replace=False).tolist()), work / "initial"
    )
    whole = labeled_set(index, fleet, pool, work / "pool")
    base = RoundsConfig(
        root="",
        fleet_uri=fleet,
        index_uri=index,
        date=POOL_SPEC.start_date,
        heldout_uri=heldout,
        first_run="",
        rounds=ROUNDS,
        selection=SelectionConfig(budget=BUDGET),
        epochs=EPOCHS,
        seed=seed,
        triton=False,
    )
    started = time.time()
    full = evaluate(load_model(f"{trained(whole, work / 'pool-run', base)}/model"), heldout)
    out = {"full_pool": {"miou": 100 * full.miou, **groups(full.miou_per_domain)}, "arms": {}}
    print(f"seed {seed}: whole pool ({len(pool)} frames) mIoU {100 * full.miou:.1f}", flush=True)
    for name, arm in ARMS.items():
        if ONLY is not None and name not in ONLY and not finished(work / name):
            continue  # not run now, and no earlier run finished it for this seed
        first = trained(
            initial, work / f"round-0-dpe-{arm.dpe_strength:g}", base, dpe_strength=arm.dpe_strength
        )
        scorer = ""
        if arm.scorer_members:
            scorer = trained(
                initial,
                work / f"round-0-scorer-{arm.scorer_members}",
                base,
                members=arm.scorer_members,
            )
        config = dataclasses.replace(
            base,
            root=str(work / name),
            first_run=first,
            first_scorer_run=scorer,
            scorer_members=arm.scorer_members,
            dpe_strength=arm.dpe_strength,
            pseudo=PseudoConfig() if arm.pseudo else None,
            selection=SelectionConfig(
                budget=BUDGET,
                score=arm.score,
                strategy=arm.strategy,
                diversity=arm.diversity,
                seed=seed,
            ),
        )
        if not finished(work / name):
            shutil.rmtree(work / name, ignore_errors=True)
            run_rounds(config)
        out["arms"][name] = arm_result(work / name, evaluate(load_model(f"{first}/model"), heldout))
        print(
            f"seed {seed} {name}: mIoU "
            + " -> ".join(f"{m:.1f}" for m in out["arms"][name]["miou"])
            + f" ({time.time() - started:.0f} s)",
            flush=True,
        )
    return out


def labels_to_reach(labels: list[int], miou: list[float], target: float) -> float | None:
    """Labels at which the curve first reaches `target` (linear between rounds); None if never."""
    for i, m in enumerate(miou):
        if m >= target:
            if i == 0:
                return float(labels[0])
            frac = (target - miou[i - 1]) / (m - miou[i - 1])
            return labels[i - 1] + frac * (labels[i] - labels[i - 1])
    return None


def summarize(per_seed: list[dict], pool_size: int) -> dict:
    """Mean and std over seeds per arm and round; the headline differences; labels to full pool."""

    def ms(values: list[float]) -> dict:
        return {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
            "n": len(values),
        }

    full = [s["full_pool"]["miou"] for s in per_seed]
    table = {}
    names = [n for n in ARMS if any(n in s["arms"] for s in per_seed)]
    for name in names:  # each arm over the seeds that ran it (its n says how many)
        runs = [s["arms"][name] for s in per_seed if name in s["arms"]]
        rounds = len(runs[0]["miou"])
        group_names = list(runs[0]["groups"][0])
        mean_curve = [float(np.mean([r["miou"][i] for r in runs])) for i in range(rounds)]
        reach = labels_to_reach(runs[0]["labels"], mean_curve, float(np.mean(full)))
        table[name] = {
            "miou": [ms([r["miou"][i] for r in runs]) for i in range(rounds)],
            "gain_over_round_0": ms([r["miou"][-1] - r["miou"][0] for r in runs]),
            "groups_final": {g: ms([r["groups"][-1][g] for r in runs]) for g in group_names},
            "labels": runs[0]["labels"],
            "labels_to_full_pool": reach,
            "labels_to_full_pool_share": None if reach is None else reach / pool_size,
        }

    def diff(a: str, b: str, key: str = "miou") -> dict | None:
        both = [s["arms"] for s in per_seed if a in s["arms"] and b in s["arms"]]
        if not both:
            return None
        if key == "miou":
            d = [arms[a]["miou"][-1] - arms[b]["miou"][-1] for arms in both]
        else:
            d = [arms[a]["groups"][-1][key] - arms[b]["groups"][-1][key] for arms in both]
        out = ms(d)
        out["beyond_2_std"] = bool(len(d) > 1 and out["mean"] > 2 * out["std"])
        return out

    return {
        "full_pool_miou": ms(full),
        "pool_frames": pool_size,
        "arms": table,
        "default_minus_random": diff("dpe_mi_diversity", "random"),
        "default_minus_stratified": diff("dpe_mi_diversity", "stratified"),
        "dpe_mi_minus_stratified": diff("dpe_mi", "stratified"),
        "dpe_mi_minus_ensemble_mi": diff("dpe_mi", "ensemble_mi"),
        "dpe_mi_minus_entropy": diff("dpe_mi", "entropy"),
        "diversity_effect": diff("dpe_mi_diversity", "dpe_mi"),
        "stratified_minus_random": diff("stratified", "random"),
        "pseudo_rare_gain": diff("dpe_mi_diversity_pseudo", "dpe_mi_diversity", "rare"),
        "pseudo_overall_gain": diff("dpe_mi_diversity_pseudo", "dpe_mi_diversity"),
    }


def table_md(summary: dict) -> str:
    """The ablation as a markdown table: mean ± std over seeds per round, final groups, labels."""

    def f(m: dict) -> str:
        return f"{m['mean']:.1f} ± {m['std']:.1f}" if m["n"] > 1 else f"{m['mean']:.1f}"

    arms = summary["arms"]
    rounds = len(next(iter(arms.values()))["miou"])
    head = ["arm", "seeds", *(f"round {i}" for i in range(rounds)), "gain", "rare", "night"]
    head += ["labels to whole pool"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, arm in arms.items():
        reach = arm["labels_to_full_pool"]
        share = arm["labels_to_full_pool_share"]
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    str(arm["miou"][0]["n"]),
                    *(f(m) for m in arm["miou"]),
                    f(arm["gain_over_round_0"]),
                    f(arm["groups_final"]["rare"]),
                    f(arm["groups_final"]["night"]) if "night" in arm["groups_final"] else "",
                    f"> {arm['labels'][-1]} (> {arm['labels'][-1] / summary['pool_frames']:.0%})"
                    if reach is None
                    else f"{reach:.0f} ({share:.0%})",
                ]
            )
            + " |"
        )
    lines.append(f"\nwhole pool ({summary['pool_frames']} frames): {f(summary['full_pool_miou'])}")
    for key, value in summary.items():
        if isinstance(value, dict) and "beyond_2_std" in value:
            lines.append(
                f"- {key}: {value['mean']:+.1f} ± {value['std']:.1f} points over {value['n']} seeds"
                + (" (beyond 2 std)" if value["beyond_2_std"] else " (within 2 std)")
            )
    return "\n".join(lines)


def plot(summary: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, arm in summary["arms"].items():
        if "@" in name:
            continue
        mean = np.array([m["mean"] for m in arm["miou"]])
        std = np.nan_to_num(np.array([m["std"] for m in arm["miou"]]))
        rounds = np.arange(len(mean))
        ax.plot(rounds, mean, marker="o", label=name)
        ax.fill_between(rounds, mean - std, mean + std, alpha=0.12)
    ax.axhline(summary["full_pool_miou"]["mean"], color="black", ls="--", label="whole pool")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("held-out mIoU (%)")
    ax.set_title(f"selection ablation: mean ± std over {summary['full_pool_miou']['n']} seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    _, heldout = datasets()
    fleet = cached_fleet(POOL_SPEC)
    index = _indexed(fleet, POOL_SPEC.start_date)
    pool = pool_frames(index)
    per_seed = []
    name = f"selection_rounds-{ROUNDS}x{BUDGET}"
    for seed in range(SEEDS):
        per_seed.append(run_seed(seed, fleet, index, heldout, pool))
        summary = summarize(per_seed, len(pool))
        save(
            name,
            {
                "seeds": len(per_seed),
                "rounds": ROUNDS,
                "budget_per_round": BUDGET,
                "initial_frames": INITIAL,
                "epochs": EPOCHS,
                "pool_spec": json.loads(POOL_SPEC.to_json()),
                "summary": summary,
                "per_seed": per_seed,
                "goals": "default >= +5 mIoU over random after 3 rounds; default - stratified > 2 "
                "std; labels to whole-pool mIoU <= 50% of the pool; pseudo-labels >= +2 rare mIoU",
            },
        )
        plot(summary, RESULTS / f"{name}{'-smoke' if SMOKE else ''}.png")
        (RESULTS / f"{name}{'-smoke' if SMOKE else ''}.md").write_text(table_md(summary) + "\n")
    print(table_md(summary))


if __name__ == "__main__":
    main()
