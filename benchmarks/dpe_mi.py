"""DPE vs the same ensemble without its regulariser: mutual information on common vs rare domains.

Both ensembles: 4 stacked members, same data (mostly day/clear, as the fleet
is), same recipe and seed; one adds the DPE KL-to-prior term. On the
domain-balanced held-out set we report the mean per-frame mutual information
(BALD, mean over pixels) on common domains (day, clear) and rare ones (night,
twilight, rain, fog, snow), and mIoU. An ensemble whose disagreement means
something is more uncertain where it has seen little data.
"""

from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import RESULTS, save  # noqa: E402
from _train_common import ENSEMBLE_RECIPE, datasets, plain_ensemble, torchrun  # noqa: E402

from avfleet import uncertainty  # noqa: E402
from avfleet.train.data import iter_all  # noqa: E402
from avfleet.train.evaluate import evaluate  # noqa: E402
from avfleet.train.loop import load_model  # noqa: E402


def is_common(domain: str) -> bool:
    tod, weather, _ = domain.split("/")
    return tod == "day" and weather == "clear"


@torch.no_grad()
def mi_by_domain(model, dataset: str) -> dict[str, float]:
    scores: dict[str, list[float]] = {"common": [], "rare": []}
    for batch in iter_all(dataset, 32):
        mi = uncertainty.reduce_map(
            uncertainty.mutual_information(model(batch.images).softmax(2)), "mean"
        )
        for d, v in zip(batch.domains, mi.tolist(), strict=True):
            scores["common" if is_common(d) else "rare"].append(v)
    return {k: float(np.mean(v)) for k, v in scores.items()} | {
        "frames_common": len(scores["common"]),
        "frames_rare": len(scores["rare"]),
    }


def main(strength: float = float(sys.argv[1]) if len(sys.argv) > 1 else 0.02) -> None:
    train, test = datasets()
    runs = RESULTS / "runs"
    plain = json.loads((pathlib.Path(plain_ensemble(train)) / "result.json").read_text())
    dpe = torchrun(
        train,
        str(runs / f"ensemble-dpe-{strength:g}"),
        *ENSEMBLE_RECIPE,
        "--dpe-strength",
        str(strength),
    )
    out = {}
    for name, run in (("plain", "ensemble-plain"), ("dpe", f"ensemble-dpe-{strength:g}")):
        model = load_model(str(runs / run / "model"))
        mi = mi_by_domain(model, test)
        out[name] = {
            **mi,
            "rare_over_common": mi["rare"] / mi["common"],
            "miou": evaluate(model, test).miou,
        }
    save(
        "dpe_mi",
        {
            "dpe_strength": strength,
            "samples_per_s": {"plain": plain["samples_per_s"], "dpe": dpe["samples_per_s"]},
            **out,
        },
    )


if __name__ == "__main__":
    main()
