"""Does mining find the long tail? An ablation of the selection over rounds and seeds.

The pool is one day of a 16-vehicle fleet (POOL_SPEC: 20-second recordings, so ~90 drives,
and the hazards of taxonomy.HAZARD_NAMES in about 5% of its candidates). Every arm starts,
per seed, from the same random labeled set, adds BUDGET oracle-labeled frames per round
mined from the same date (temporal de-dup for all), fine-tunes its ensemble on what it has,
and is scored on a held-out fleet of the same world (HELDOUT_SPEC, its own seed: the same
mix of domains as the pool) and its hazard-rich slice (avfleet.dataset.heldout):

  random               uniform over the candidates (no quotas, no model)
  stratified           the per-domain quotas, random inside each domain
  entropy              quotas + the most uncertain by predictive entropy of a single net
                       (fine-tuned beside the ensemble on the same data)
  ensemble_mi          quotas + mutual information of a plain 4-member ensemble
  dpe_mi               quotas + mutual information of the DPE ensemble
  dpe_mi_diversity     quotas + DPE mutual information + k-center (the default)
  dpe_mi_diversity_pseudo  the default plus pseudo-labels for under-represented domains
  dpe_mi@S             dpe_mi at DPE strength S (the strength sweep; 0 is ensemble_mi)

Training is label-bound, not step-bound: round 0 and the whole pool train from scratch for
STEPS steps, and each round fine-tunes the last round's ensemble for ROUND_STEPS steps
(`RoundsConfig.warm_start`), every training with ENet's class weights (TrainConfig
.class_weights) so the hazards' few pixels count, at learning rate LR. The convergence check trains the whole
pool for 2 x STEPS too: if that moves its mIoU by less than 0.5 points, the curves measure
labels. Mining scores in process with ONNX Runtime (the served path is
benchmarks/mining_serving.py). Results are saved after every seed; a rerun keeps every arm
that finished all its rounds.

Per round and arm: held-out mIoU, IoU per class, hazard IoU (the mean over the hazard
classes, on the held-out set with its slice), the share of the picks that show a hazard
against the candidates' base rate; per arm the labels it needs to reach the whole pool's
mIoU and hazard IoU (interpolated between rounds).

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
from _common import RESULTS, SMOKE, difference_lines, save  # noqa: E402
from _selection_common import (  # noqa: E402
    CLASS_WEIGHTS,
    HELDOUT_SPEC,
    LR,
    POOL_SPEC,
    ROUND_STEPS,
    STEPS,
    base_config,
    labeled_set,
    ms,
    pool,
    scored,
    trained,
)

from avfleet import taxonomy  # noqa: E402
from avfleet.mining.pseudo import PseudoConfig  # noqa: E402
from avfleet.mining.rounds import read_results, run_rounds  # noqa: E402
from avfleet.mining.select import SelectionConfig  # noqa: E402

ONLY: set[str] | None = None
if "--only" in sys.argv:
    at = sys.argv.index("--only")
    ONLY = set(sys.argv[at + 1].split(","))
    del sys.argv[at : at + 2]
ARGS = [int(a) for a in sys.argv[1:]]
SEEDS = 1 if SMOKE else ARGS[0] if ARGS else 3
ROUNDS = 1 if SMOKE else ARGS[1] if len(ARGS) > 1 else 3
BUDGET = 8 if SMOKE else ARGS[2] if len(ARGS) > 2 else 100
INITIAL = 48 if SMOKE else 100
DPE = 0.02
SWEEP = (0.2,)


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


def arm_result(root: pathlib.Path, start: dict) -> dict:
    """One arm's curve from its rounds.json (what run_rounds wrote after every round)."""
    rounds = read_results(str(root))["rounds"]
    return {
        "labels": [INITIAL] + [r["dataset_frames"] for r in rounds],
        "miou": [100 * start["miou"]] + [100 * r["miou"] for r in rounds],
        "hazard_iou": [100 * (start["hazard_iou"] or 0.0)]
        + [100 * (r["hazard_iou"] or 0.0) for r in rounds],
        "iou_per_class": [start["iou_per_class"]] + [r["iou_per_class"] for r in rounds],
        "hazard_pick_share": [r["hazard_pick_share"] for r in rounds],
        "hazard_pool_share": [r["hazard_pool_share"] for r in rounds],
        "picks_per_hazard": [r["picks_per_hazard"] for r in rounds],
        "picked_per_domain": [r["mining"]["selected_per_domain"] for r in rounds],
        "pseudo_per_domain": [r["pseudo_per_domain"] for r in rounds],
    }


def finished(root: pathlib.Path) -> bool:
    """An arm that ran all its rounds (a rerun keeps it; a partial one starts over)."""
    try:
        return len(read_results(str(root))["rounds"]) == ROUNDS
    except (OSError, ValueError, KeyError):
        return False


def run_seed(seed: int, p) -> dict:  # noqa: ANN001 - a _selection_common.Pool
    work = RESULTS / "runs" / f"selection-{ROUNDS}x{BUDGET}" / f"seed-{seed}"
    rng = np.random.default_rng(seed)
    ids = p.frames["frame_id"].tolist()
    initial = labeled_set(
        p.index, p.fleet, rng.choice(ids, INITIAL, replace=False).tolist(), work / "initial"
    )
    whole = labeled_set(p.index, p.fleet, ids, work / "pool")
    base = base_config(p, seed, rounds=ROUNDS, selection=SelectionConfig(budget=BUDGET))
    started = time.time()
    full = scored(trained(whole, work / "pool-run", base), base)
    out = {"full_pool": _pct(full), "arms": {}}
    print(f"seed {seed}: whole pool ({len(ids)} frames) {_pct(full)}", flush=True)
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
        out["arms"][name] = arm_result(work / name, scored(first, base))
        curve = out["arms"][name]
        print(
            f"seed {seed} {name}: mIoU "
            + " -> ".join(f"{m:.1f}" for m in curve["miou"])
            + "; hazard IoU "
            + " -> ".join(f"{m:.1f}" for m in curve["hazard_iou"])
            + "; hazard picks "
            + ", ".join(f"{100 * s:.0f}%" for s in curve["hazard_pick_share"])
            + f" ({time.time() - started:.0f} s)",
            flush=True,
        )
    if seed == 0:  # the convergence check, after the arms: twice the steps on the whole pool
        double = scored(trained(whole, work / "pool-run-2x", base, steps=2 * STEPS), base)
        out["full_pool_2x_steps"] = _pct(double)
    return out


def _pct(s: dict) -> dict:
    return {"miou": 100 * s["miou"], "hazard_iou": 100 * (s["hazard_iou"] or 0.0)}


def labels_to_reach(labels: list[int], curve: list[float], target: float) -> float | None:
    """Labels at which the curve first reaches `target` (linear between rounds); None if never."""
    for i, m in enumerate(curve):
        if m >= target:
            if i == 0:
                return float(labels[0])
            frac = (target - curve[i - 1]) / (m - curve[i - 1])
            return labels[i - 1] + frac * (labels[i] - labels[i - 1])
    return None


def summarize(per_seed: list[dict], pool_size: int, pool_hazard_share: float) -> dict:
    """Mean and std over seeds per arm and round; the headline differences; labels needed."""
    full = {k: [s["full_pool"][k] for s in per_seed] for k in ("miou", "hazard_iou")}
    table = {}
    names = [n for n in ARMS if any(n in s["arms"] for s in per_seed)]
    for name in names:  # each arm over the seeds that ran it (its n says how many)
        runs = [s["arms"][name] for s in per_seed if name in s["arms"]]
        rounds = len(runs[0]["miou"])
        curves = {}
        for key in ("miou", "hazard_iou"):
            curves[key] = [ms([r[key][i] for r in runs]) for i in range(rounds)]
        mean = {key: [m["mean"] for m in curves[key]] for key in curves}
        reach = {
            key: labels_to_reach(runs[0]["labels"], mean[key], float(np.mean(full[key])))
            for key in curves
        }
        shares = [float(np.mean(r["hazard_pick_share"])) for r in runs]
        table[name] = {
            **curves,
            "hazard_pick_share": ms(shares),
            "hazard_pick_ratio": ms([s / pool_hazard_share for s in shares]),
            "iou_per_class_final": {
                c: ms([r["iou_per_class"][-1].get(c, 0.0) * 100 for r in runs])
                for c in taxonomy.NAMES
            },
            "labels": runs[0]["labels"],
            "labels_to_full_pool": reach,
            "labels_to_full_pool_share": {
                k: None if v is None else v / pool_size for k, v in reach.items()
            },
        }

    def diff(a: str, b: str, key: str = "miou") -> dict | None:
        both = [s["arms"] for s in per_seed if a in s["arms"] and b in s["arms"]]
        if not both:
            return None
        out = ms([arms[a][key][-1] - arms[b][key][-1] for arms in both])
        out["beyond_2_std"] = bool(len(both) > 1 and out["mean"] > 2 * out["std"])
        return out

    summary = {
        "full_pool": {k: ms(v) for k, v in full.items()},
        "pool_frames": pool_size,
        "pool_hazard_share": pool_hazard_share,
        "arms": table,
    }
    for a, b in (
        ("dpe_mi_diversity", "random"),
        ("dpe_mi_diversity", "stratified"),
        ("dpe_mi", "stratified"),
        ("dpe_mi", "ensemble_mi"),
        ("dpe_mi", "entropy"),
        ("dpe_mi_diversity", "dpe_mi"),
        ("stratified", "random"),
        ("dpe_mi_diversity_pseudo", "dpe_mi_diversity"),
    ):
        for key in ("miou", "hazard_iou"):
            summary[f"{a}_minus_{b}_{key}"] = diff(a, b, key)
    doubled = [s["full_pool_2x_steps"] for s in per_seed if "full_pool_2x_steps" in s]
    if doubled:
        summary["convergence"] = {
            "steps": STEPS,
            "miou": per_seed[0]["full_pool"]["miou"],
            "miou_2x_steps": doubled[0]["miou"],
            "hazard_iou": per_seed[0]["full_pool"]["hazard_iou"],
            "hazard_iou_2x_steps": doubled[0]["hazard_iou"],
        }
    return summary


def table_md(summary: dict) -> str:
    """The ablation as markdown: mean ± std over seeds per round, hazards, labels needed."""

    def f(m: dict) -> str:
        return f"{m['mean']:.1f} ± {m['std']:.1f}" if m["n"] > 1 else f"{m['mean']:.1f}"

    def reach(arm: dict, key: str) -> str:
        value, share = arm["labels_to_full_pool"][key], arm["labels_to_full_pool_share"][key]
        if value is None:
            last = arm["labels"][-1]
            return f"> {last} (> {last / summary['pool_frames']:.0%})"
        return f"{value:.0f} ({share:.0%})"

    arms = summary["arms"]
    rounds = len(next(iter(arms.values()))["miou"])
    lines = []
    for key, title in (("miou", "held-out mIoU (%)"), ("hazard_iou", "hazard IoU (%)")):
        head = ["arm", "seeds", *(f"round {i}" for i in range(rounds)), "labels to whole pool"]
        lines += [f"\n{title}\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, arm in arms.items():
            row = [name, str(arm[key][0]["n"]), *(f(m) for m in arm[key]), reach(arm, key)]
            lines.append("| " + " | ".join(row) + " |")
    head = ["arm", "picks with a hazard", "x base rate", *taxonomy.HAZARD_NAMES]
    lines += [
        f"\nhazards in the picks (base rate {100 * summary['pool_hazard_share']:.1f}% of the "
        "candidates) and final IoU per hazard class (%)\n",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, arm in arms.items():
        share = arm["hazard_pick_share"]
        pct = {"mean": 100 * share["mean"], "std": 100 * share["std"], "n": share["n"]}
        row = [name, f(pct), f(arm["hazard_pick_ratio"])]
        row += [f(arm["iou_per_class_final"][c]) for c in taxonomy.HAZARD_NAMES]
        lines.append("| " + " | ".join(row) + " |")
    full = summary["full_pool"]
    lines.append(
        f"\nwhole pool ({summary['pool_frames']} frames): mIoU {f(full['miou'])}, hazard IoU "
        f"{f(full['hazard_iou'])}"
    )
    if "convergence" in summary:
        c = summary["convergence"]
        lines.append(
            f"convergence: the whole pool at {c['steps']} steps {c['miou']:.1f} mIoU "
            f"({c['hazard_iou']:.1f} hazard IoU), at {2 * c['steps']} steps {c['miou_2x_steps']:.1f}"
            f" ({c['hazard_iou_2x_steps']:.1f})"
        )
    lines += difference_lines(summary)
    return "\n".join(lines)


def plot(summary: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in (
        (axes[0], "miou", "held-out mIoU (%)"),
        (axes[1], "hazard_iou", "hazard IoU (%)"),
    ):
        for name, arm in summary["arms"].items():
            if "@" in name:
                continue
            mean = np.array([m["mean"] for m in arm[key]])
            std = np.nan_to_num(np.array([m["std"] for m in arm[key]]))
            ax.plot(arm["labels"], mean, marker="o", label=name)
            ax.fill_between(arm["labels"], mean - std, mean + std, alpha=0.12)
        ax.axhline(summary["full_pool"][key]["mean"], color="black", ls="--", label="whole pool")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("labeled frames")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"selection ablation on the long-tail fleet: mean ± std over "
        f"{summary['full_pool']['miou']['n']} seeds"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = pool()
    print(
        f"pool: {len(p.frames)} candidates, {100 * p.hazard_share:.1f}% show a hazard; held-out "
        f"{p.heldout.dataset_uri} + {p.heldout.hazard_frames} hazard frames",
        flush=True,
    )
    per_seed = []
    name = f"selection_rounds-{ROUNDS}x{BUDGET}"
    for seed in range(SEEDS):
        per_seed.append(run_seed(seed, p))
        summary = summarize(per_seed, len(p.frames), p.hazard_share)
        save(
            name,
            {
                "seeds": len(per_seed),
                "rounds": ROUNDS,
                "budget_per_round": BUDGET,
                "initial_frames": INITIAL,
                "steps": STEPS,
                "round_steps": ROUND_STEPS,
                "class_weights": CLASS_WEIGHTS,
                "lr": LR,
                "pool_spec": json.loads(POOL_SPEC.to_json()),
                "heldout_spec": json.loads(HELDOUT_SPEC.to_json()),
                "summary": summary,
                "per_seed": per_seed,
                "goals": "the default's picks >= 3x random's share of hazard frames; the "
                "default's hazard IoU beats random and stratified by > 2 std; labels to the "
                "whole-pool mIoU <= 25% of the pool (50% the floor); pseudo-labels >= +2 mIoU "
                "on a domain with no human labels (benchmarks/pseudo_domain.py)",
            },
        )
        plot(summary, RESULTS / f"{name}{'-smoke' if SMOKE else ''}.png")
        (RESULTS / f"{name}{'-smoke' if SMOKE else ''}.md").write_text(table_md(summary) + "\n")
    print(table_md(summary))


if __name__ == "__main__":
    main()
