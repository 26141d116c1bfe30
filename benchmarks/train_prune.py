"""Joint training + pruning: parameters removed, held-out mIoU change, ONNX Runtime latency, in one run.

Two nets from the same over-parameterised architecture (width 2) and recipe:
a dense baseline trained for MAIN + FINETUNE epochs, and one trained MAIN
epochs with the group-sparsity proximal step, physically pruned, then trained
FINETUNE more epochs without the penalty (same total epochs, same data).
Goal: >= 50% of parameters removed, <= 1 mIoU point lost against the dense
net, >= 1.5x lower ONNX Runtime latency (batch 1, one thread, p50 of 300 runs
after warm-up).

    python benchmarks/train_prune.py [LAMBDA [MAIN FINETUNE]]
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import RESULTS, save  # noqa: E402
from _train_common import datasets, torchrun  # noqa: E402

from avfleet.bench.engines import ort_runner  # noqa: E402
from avfleet.bench.measure import latency_ms  # noqa: E402
from avfleet.train.evaluate import evaluate  # noqa: E402
from avfleet.train.export import export_onnx, parity  # noqa: E402
from avfleet.train.loop import load_model  # noqa: E402
from avfleet.train.models import num_parameters  # noqa: E402

MAIN, FINETUNE = (int(a) for a in sys.argv[2:4]) if len(sys.argv) > 3 else (2, 12)
RECIPE = ["--width", "2.0", "--batch-size", "16", "--lr", "0.05", "--checkpoint-every", "100"]


def main(strength: float = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5) -> None:
    train, test = datasets()
    runs = RESULTS / "runs"
    dense_run = str(runs / f"prune-dense-{MAIN + FINETUNE}ep")
    sparse_run = str(runs / f"prune-sparse-{strength:g}-{MAIN}-ft{FINETUNE}")
    torchrun(train, dense_run, *RECIPE, "--epochs", str(MAIN + FINETUNE))
    torchrun(
        train,
        sparse_run,
        *RECIPE,
        "--epochs",
        str(MAIN),
        "--group-sparsity",
        str(strength),
        "--finetune-epochs",
        str(FINETUNE),
    )
    dense, pruned = load_model(f"{dense_run}/model"), load_model(f"{sparse_run}/model")
    unpruned = load_model(f"{sparse_run}/model/dense")
    ev = {
        name: evaluate(m, test)
        for name, m in (("dense", dense), ("sparse_unpruned", unpruned), ("pruned", pruned))
    }
    onnx = {name: export_onnx(m, 64, 128) for name, m in (("dense", dense), ("pruned", pruned))}
    import torch

    images = torch.rand(4, 3, 64, 128)
    frame = np.random.default_rng(0).random((1, 3, 64, 128), dtype=np.float32)
    lat = {}
    for _ in range(2):  # interleaved, best of two
        for name, model_bytes in onnx.items():
            t = latency_ms(ort_runner(model_bytes), frame, warmup=20, runs=300)
            lat[name] = min(lat.get(name, {"p50_ms": 1e9}), t, key=lambda d: d["p50_ms"])
    save(
        "train_prune",
        {
            "group_sparsity": strength,
            "epochs": {
                "dense": MAIN + FINETUNE,
                "sparse": MAIN,
                "finetune_after_pruning": FINETUNE,
            },
            "parameters": {"dense": num_parameters(dense), "pruned": num_parameters(pruned)},
            "parameters_removed_fraction": 1 - num_parameters(pruned) / num_parameters(dense),
            "miou": {k: v.miou for k, v in ev.items()},
            "miou_change_points": 100 * (ev["pruned"].miou - ev["dense"].miou),
            "miou_change_from_finetune_points": 100
            * (ev["pruned"].miou - ev["sparse_unpruned"].miou),
            "miou_per_domain": {k: v.miou_per_domain for k, v in ev.items()},
            "ort_latency_ms": lat,
            "latency_speedup": lat["dense"]["p50_ms"] / lat["pruned"]["p50_ms"],
            "onnx_parity_pruned": parity(pruned, onnx["pruned"], images),
            "pruned_arch": pruned.arch,
            "goal": "removed >= 0.5, miou_change >= -1 point, latency_speedup >= 1.5",
        },
    )


if __name__ == "__main__":
    main()
