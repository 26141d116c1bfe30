"""Does uncertainty find a long tail in real pixels? Active learning on handwritten digits.

The fleet benchmark (selection_rounds.py) runs on a world avfleet draws itself. This one runs
the same mechanism on images nobody here made: scikit-learn's copy of the UCI "Optical
Recognition of Handwritten Digits" test set (1,797 8x8 scans of digits written by 43 people,
shipped inside the scikit-learn wheel as sklearn/datasets/data/digits.csv.gz; nothing is
downloaded). It fits because it is real (writer-to-writer variation, scanner noise), small
enough to train an ensemble to convergence in a second on a CPU, and can be given a long tail
the way a fleet has one: the pool keeps every example of digits 0-6 but only RARE_KEPT of
each of 7, 8 and 9 (about 2% of the pool each), while the test set stays balanced, so the
rare digits weigh as much in the score as they would on the road.

Arms (each starts from the same INITIAL random labels per seed, adds BUDGET per round, and
retrains from scratch for STEPS steps: converged, see `convergence`):

  random        uniform over the unlabeled pool
  entropy       predictive entropy of a single net
  ensemble_mi   mutual information of a 4-member ensemble
  dpe_mi        mutual information of the 4-member DPE ensemble (avfleet.train.regularizers)

The members are small convnets side by side, the DPE term avfleet's (train.regularizers
.dpe_kl over each layer's member copies); the scores are avfleet.uncertainty's, per image
(H = W = 1).
Reported per arm: balanced test accuracy, accuracy on the rare digits, and the share of the
picks that are rare digits against their share of the pool.

    python benchmarks/selection_real_pixels.py [SEEDS [ROUNDS [BUDGET]]]
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # tiny nets: threads only contend
from _common import RESULTS, SMOKE, difference_lines, save  # noqa: E402

from avfleet import uncertainty  # noqa: E402
from avfleet.train import regularizers  # noqa: E402

ARGS = [int(a) for a in sys.argv[1:]]
SEEDS = 2 if SMOKE else ARGS[0] if ARGS else 5
ROUNDS = 1 if SMOKE else ARGS[1] if len(ARGS) > 1 else 5
BUDGET = 10 if SMOKE else ARGS[2] if len(ARGS) > 2 else 20
INITIAL = 20
STEPS = 20 if SMOKE else 800
RARE = (7, 8, 9)
RARE_KEPT = 20
TEST_PER_CLASS = 40
MEMBERS = 4
DPE = 0.02
"""As the fleet's ensembles train (the train workflow's default), scaled by 1/N the same way."""
ARMS = {
    "random": dict(members=MEMBERS, dpe=0.0, score=None),
    "entropy": dict(members=1, dpe=0.0, score="predictive_entropy"),
    "ensemble_mi": dict(members=MEMBERS, dpe=0.0, score="mutual_information"),
    "dpe_mi": dict(members=MEMBERS, dpe=DPE, score="mutual_information"),
}


def data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pool images, pool labels, test images, test labels): a balanced test split, then the
    pool's rare digits cut to RARE_KEPT each."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target
    rng = np.random.default_rng(1000 + seed)
    test, pool = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test += idx[:TEST_PER_CLASS].tolist()
        rest = idx[TEST_PER_CLASS:]
        pool += (rest[:RARE_KEPT] if c in RARE else rest).tolist()
    pool = rng.permutation(pool)
    return images[pool], labels[pool], images[test], labels[test]


class Members(torch.nn.Module):
    """E small convnets (8x8 -> 3x3 conv 32 -> 3x3 conv 32 stride 2 -> a linear layer -> 10
    logits; a global-average-pool head instead reached 64% at 300 steps, this one 95.7%),
    run side by side. Plain convolutions per member rather than avfleet's grouped stacking:
    PyTorch's grouped convolution on a CPU ran 13x slower here (80 ms a step against 6)."""

    def __init__(self, members: int) -> None:
        super().__init__()
        self.members = members
        self.nets = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Conv2d(1, 32, 3, padding=1),
                torch.nn.ReLU(),
                torch.nn.Conv2d(32, 32, 3, stride=2, padding=1),
                torch.nn.ReLU(),
                torch.nn.Flatten(),
                torch.nn.Linear(32 * 4 * 4, 10),
            )
            for _ in range(members)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8) -> (B, E, 10, 1, 1)
        return torch.stack([net(x) for net in self.nets], 1)[..., None, None]

    def dpe_kl(self) -> torch.Tensor:
        """The DPE regulariser (avfleet.train.regularizers.dpe_kl) over each layer's E copies."""
        total = torch.zeros(())
        for layer in range(len(self.nets[0])):
            copies = [net[layer] for net in self.nets]
            if isinstance(copies[0], torch.nn.Conv2d | torch.nn.Linear):
                w = copies[0].weight
                fan_in = int(np.prod(w.shape[1:]))
                total = total + regularizers.dpe_kl(torch.stack([c.weight for c in copies]), fan_in)
        return total


def fit(x: np.ndarray, y: np.ndarray, members: int, dpe: float, seed: int, steps: int = 0):  # noqa: ANN201
    """Train from scratch: Adam, batch 32, `steps` steps (members' losses summed, + DPE)."""
    torch.manual_seed(seed)
    model = Members(members)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    rng = np.random.default_rng(seed)
    for _ in range(steps or STEPS):
        idx = torch.from_numpy(rng.integers(0, len(x), min(32, len(x))))
        logits = model(xt[idx])[..., 0, 0]  # (B, E, 10)
        target = yt[idx].repeat_interleave(members)
        loss = members * torch.nn.functional.cross_entropy(logits.reshape(-1, 10), target)
        if dpe and members > 1:
            loss = loss + dpe / len(x) * model.dpe_kl()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def probs(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    return model(torch.from_numpy(x)).softmax(2)  # (N, E, 10, 1, 1)


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Balanced accuracy over all digits and accuracy on the rare digits, percent."""
    pred = probs(model, x).mean(1)[..., 0, 0].argmax(1).numpy()
    per_class = [float((pred[y == c] == c).mean()) for c in range(10)]
    return {
        "accuracy": 100 * float(np.mean(per_class)),
        "rare_accuracy": 100 * float(np.mean([per_class[c] for c in RARE])),
    }


def run_arm(arm: dict, seed: int, pool_x, pool_y, test_x, test_y) -> dict:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    labeled = rng.choice(len(pool_x), INITIAL, replace=False).tolist()
    curve = {"labels": [], "accuracy": [], "rare_accuracy": [], "rare_pick_share": []}
    for r in range(ROUNDS + 1):
        model = fit(pool_x[labeled], pool_y[labeled], arm["members"], arm["dpe"], seed)
        scores = accuracy(model, test_x, test_y)
        curve["labels"].append(len(labeled))
        curve["accuracy"].append(scores["accuracy"])
        curve["rare_accuracy"].append(scores["rare_accuracy"])
        if r == ROUNDS:
            break
        rest = np.setdiff1d(np.arange(len(pool_x)), labeled)
        if arm["score"] is None:
            picks = rng.choice(rest, BUDGET, replace=False)
        else:
            scores = getattr(uncertainty, arm["score"])(probs(model, pool_x[rest]))[:, 0, 0]
            picks = rest[np.argsort(-scores.numpy(), kind="stable")[:BUDGET]]
        curve["rare_pick_share"].append(float(np.isin(pool_y[picks], RARE).mean()))
        labeled += picks.tolist()
    return curve


def main() -> None:
    per_seed = []
    for seed in range(SEEDS):
        pool_x, pool_y, test_x, test_y = data(seed)
        out = {"pool": len(pool_x), "pool_rare_share": float(np.isin(pool_y, RARE).mean())}
        full = fit(pool_x, pool_y, MEMBERS, 0.0, seed)
        out["full_pool"] = accuracy(full, test_x, test_y)
        if seed == 0:
            double = fit(pool_x, pool_y, MEMBERS, 0.0, seed, steps=2 * STEPS)
            out["full_pool_2x_steps"] = accuracy(double, test_x, test_y)
        out["arms"] = {
            name: run_arm(arm, seed, pool_x, pool_y, test_x, test_y) for name, arm in ARMS.items()
        }
        per_seed.append(out)
        print(
            f"seed {seed}: "
            + "; ".join(
                f"{n} rare {a['rare_accuracy'][-1]:.0f}% picks rare "
                f"{100 * np.mean(a['rare_pick_share']):.0f}%"
                for n, a in out["arms"].items()
            ),
            flush=True,
        )
    summary = summarize(per_seed)
    save(
        "selection_real_pixels",
        {
            "data": "scikit-learn load_digits (UCI optical digits, 1,797 8x8 scans)",
            "seeds": SEEDS,
            "rounds": ROUNDS,
            "budget_per_round": BUDGET,
            "initial": INITIAL,
            "steps": STEPS,
            "rare_digits": list(RARE),
            "rare_kept_per_digit": RARE_KEPT,
            "summary": summary,
            "per_seed": per_seed,
        },
    )
    (RESULTS / f"selection_real_pixels{'-smoke' if SMOKE else ''}.md").write_text(
        table_md(summary) + "\n"
    )
    print(table_md(summary))


def summarize(per_seed: list[dict]) -> dict:
    def ms(values: list[float]) -> dict:
        return {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
            "n": len(values),
        }

    arms = {}
    for name in ARMS:
        runs = [s["arms"][name] for s in per_seed]
        arms[name] = {
            "labels": runs[0]["labels"],
            "accuracy": [ms([r["accuracy"][i] for r in runs]) for i in range(ROUNDS + 1)],
            "rare_accuracy": [ms([r["rare_accuracy"][i] for r in runs]) for i in range(ROUNDS + 1)],
            "rare_pick_share": ms([float(np.mean(r["rare_pick_share"])) for r in runs]),
        }
    out = {
        "pool_rare_share": per_seed[0]["pool_rare_share"],
        "full_pool": {
            k: ms([s["full_pool"][k] for s in per_seed]) for k in ("accuracy", "rare_accuracy")
        },
        "convergence": {
            "full_pool": per_seed[0]["full_pool"],
            "2x_steps": per_seed[0].get("full_pool_2x_steps"),
        },
        "arms": arms,
    }
    for a in ("entropy", "ensemble_mi", "dpe_mi"):
        d = [
            s["arms"][a]["rare_accuracy"][-1] - s["arms"]["random"]["rare_accuracy"][-1]
            for s in per_seed
        ]
        out[f"{a}_minus_random_rare_accuracy"] = {
            **ms(d),
            "beyond_2_std": bool(len(d) > 1 and np.mean(d) > 2 * np.std(d, ddof=1)),
        }
    return out


def table_md(summary: dict) -> str:
    def f(m: dict) -> str:
        return f"{m['mean']:.1f} ± {m['std']:.1f}" if m["n"] > 1 else f"{m['mean']:.1f}"

    arms = summary["arms"]
    labels = next(iter(arms.values()))["labels"]
    head = ["arm", *(f"{n} labels" for n in labels), "rare digits, last", "picks rare"]
    lines = [
        "balanced test accuracy (%) per round; rare-digit accuracy after the last round; share "
        f"of picks that are rare digits (the pool: {100 * summary['pool_rare_share']:.1f}%)\n",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, arm in arms.items():
        share = arm["rare_pick_share"]
        pct = {"mean": 100 * share["mean"], "std": 100 * share["std"], "n": share["n"]}
        lines.append(
            "| "
            + " | ".join(
                [name, *(f(m) for m in arm["accuracy"]), f(arm["rare_accuracy"][-1]), f(pct)]
            )
            + " |"
        )
    full = summary["full_pool"]
    lines.append(
        f"\nwhole pool: accuracy {f(full['accuracy'])}, rare digits {f(full['rare_accuracy'])}"
    )
    conv = summary["convergence"]
    if conv["2x_steps"]:
        lines.append(
            f"convergence (seed 0): {conv['full_pool']['accuracy']:.1f} at {STEPS} steps, "
            f"{conv['2x_steps']['accuracy']:.1f} at {2 * STEPS}"
        )
    lines += difference_lines(summary)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
