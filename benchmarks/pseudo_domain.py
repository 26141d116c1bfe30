"""Pseudo-labels for a domain nobody labeled (seed 000's case), at zero extra human labels.

Seed 000 adapts a net to a new domain with its own confident predictions on that domain's
unlabeled frames. Here the new domain is TARGET (a weather the labeled set never holds): per
seed, INITIAL random frames of the long-tail pool (benchmarks/_selection_common.py) outside
TARGET are labeled by the oracle, and an ensemble trains on them from scratch. Then, from that
same ensemble and with no more human labels:

  without   fine-tunes on the labeled set alone for ROUND_STEPS steps;
  pseudo    mines the date (in process), pseudo-labels the confident candidates of the
            under-represented domains (avfleet.mining.pseudo: TARGET's above all, which has
            none), and fine-tunes on labeled + pseudo-labeled frames for ROUND_STEPS steps
            (pseudo-labels weigh 0.5, pixels the members disagree on are ignored).

Both are scored per domain on the held-out fleet of the same world; the result is the gain
of `pseudo` over `without` on TARGET's held-out domains (mean over them), and overall.

    python benchmarks/pseudo_domain.py [SEEDS]
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import RESULTS, SMOKE, save  # noqa: E402
from _selection_common import (  # noqa: E402
    ROUND_STEPS,
    STEPS,
    base_config,
    labeled_set,
    ms,
    pool,
    scored,
    trained,
)

from avfleet.mining.job import InProcessScorer, MineConfig, run_mine  # noqa: E402
from avfleet.mining.pseudo import PseudoConfig  # noqa: E402
from avfleet.mining.rounds import add_pseudo_labels, train_ensemble  # noqa: E402
from avfleet.mining.select import SelectionConfig  # noqa: E402
from avfleet.serve.publish import publish_model  # noqa: E402
from avfleet.serve.repository import load_version  # noqa: E402

ARGS = [int(a) for a in sys.argv[1:]]
SEEDS = 1 if SMOKE else ARGS[0] if ARGS else 3
INITIAL = 40 if SMOKE else 300
TARGET = "rain"
"""The weather no human labels: the commonest rare one (12% of drives), so the held-out set
holds several drives of it."""


def target_mean(per_domain: dict[str, float]) -> float | None:
    values = [v for d, v in per_domain.items() if d.split("/")[1] == TARGET]
    return 100 * float(np.mean(values)) if values else None


def run_seed(seed: int, p) -> dict:  # noqa: ANN001 - a _selection_common.Pool
    work = RESULTS / "runs" / "pseudo-domain" / f"seed-{seed}"
    rng = np.random.default_rng(seed)
    others = p.frames[p.frames["weather"] != TARGET]["frame_id"].tolist()
    if SMOKE and len(others) < INITIAL:  # the tiny pool: too few to feed two ranks otherwise
        others = p.frames["frame_id"].tolist()
    labeled = labeled_set(
        p.index,
        p.fleet,
        rng.choice(others, min(INITIAL, len(others)), replace=False).tolist(),
        work / "initial",
    )
    base = base_config(p, seed)
    first = trained(labeled, work / "round-0", base)
    without = work / "without"
    if not (without / "result.json").exists():
        train_ensemble(labeled, str(without), base, last=first)
    mining = str(work / "mining")
    if not (pathlib.Path(mining) / "summary.json").exists():
        ref = publish_model(f"{first}/model", str(work / "repo"), "dpe")
        run_mine(
            MineConfig(
                index_uri=p.index,
                date=base.date,
                model=ref,
                out_uri=mining,
                selection=SelectionConfig(budget=1),  # the scores are what pseudo-labels need
                labeled_uri=labeled,
            ),
            InProcessScorer(load_version(str(work / "repo"), ref).onnx),
        )
    config = dataclasses.replace(base, pseudo=PseudoConfig())
    training, per_domain = add_pseudo_labels(config, work, 1, mining, labeled, first)
    with_pseudo = work / "pseudo"
    if not (with_pseudo / "result.json").exists():
        train_ensemble(training, str(with_pseudo), base, last=first)
    scores = {name: scored(str(work / name), base) for name in ("without", "pseudo")}
    out = {
        "pseudo_frames": sum(per_domain.values()),
        "pseudo_target_frames": int(sum(n for d, n in per_domain.items() if f"/{TARGET}/" in d)),
        "round_0": {"miou": 100 * scored(first, base)["miou"]},
    }
    for name, s in scores.items():
        out[name] = {"miou": 100 * s["miou"], "target": target_mean(s["miou_per_domain"])}
    print(f"seed {seed}: {out}", flush=True)
    return out


def main() -> None:
    p = pool()
    per_seed = [run_seed(seed, p) for seed in range(SEEDS)]
    summary = {
        "target": TARGET,
        **{
            f"{k}_gain": ms([s["pseudo"][k] - s["without"][k] for s in per_seed])
            for k in ("target", "miou")
            if all(s["pseudo"][k] is not None and s["without"][k] is not None for s in per_seed)
        },
        "pseudo_frames": ms([s["pseudo_frames"] for s in per_seed]),
        "pseudo_target_frames": ms([s["pseudo_target_frames"] for s in per_seed]),
    }
    save(
        "pseudo_domain",
        {
            "initial_frames": INITIAL,
            "steps": STEPS,
            "round_steps": ROUND_STEPS,
            "seeds": SEEDS,
            "summary": summary,
            "per_seed": per_seed,
            "goal": f"pseudo-labels >= +2 mIoU on {TARGET} (no human labels) at zero extra labels",
        },
    )
    lines = [f"pseudo-labels for {TARGET}, never human-labeled ({SEEDS} seeds):"]
    for key, value in summary.items():
        if isinstance(value, dict) and "mean" in value:
            lines.append(f"- {key}: {value['mean']:+.1f} ± {value['std']:.1f} (n={value['n']})")
    (RESULTS / f"pseudo_domain{'-smoke' if SMOKE else ''}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
