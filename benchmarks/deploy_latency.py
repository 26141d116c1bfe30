"""Deploy: ONNX Runtime engine latency of the pruned vs the unpruned net, in one run.

The nets are train_prune.py's (trained there if absent): width 2 trained with the
group-sparsity step, `model/dense` before pruning and `model/` after pruning and
fine-tuning, and the dense baseline trained as long. Each goes through the deploy
path: `deploy export` (ONNX, parity, the bench bundle), the engine builder (ONNX
Runtime fp32; INT8 calibrated on 64 training frames for the pruned net), and the
bench agent's measurement (batch 1, one thread, p50/p99 of RUNS runs after 50
warm-up runs; interleaved, best p50 of two rounds), plus mIoU on the bundle's
held-out frames. The unpruned engine is the baseline of the ratios.

    python benchmarks/deploy_latency.py [RUNS]
"""

from __future__ import annotations

import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    SMOKE,  # noqa: E402
    save,
)
from train_prune import FINETUNE, MAIN  # noqa: E402
from train_prune import main as train_prune

from avfleet.bench.engines import EngineSpec, build_engine, load_runner  # noqa: E402
from avfleet.bench.measure import load_bundle, measure, to_input  # noqa: E402
from avfleet.core import storage  # noqa: E402
from avfleet.deploy.export import ExportConfig, export_release, read_export  # noqa: E402

RUNS = 20 if SMOKE else int(sys.argv[1]) if len(sys.argv) > 1 else 1000
STRENGTH = 0.5


def main() -> None:
    runs = RESULTS / "runs"
    sparse = runs / f"prune-sparse-{STRENGTH:g}-{MAIN}-ft{FINETUNE}"
    dense = runs / f"prune-dense-{MAIN + FINETUNE}ep"
    if not (sparse / "result.json").exists() or not (dense / "result.json").exists():
        train_prune(STRENGTH)
    from _train_common import datasets

    train, test = datasets()
    work = RESULTS / "runs" / "deploy-latency"
    shutil.rmtree(work, ignore_errors=True)
    models = {
        "unpruned (sparse-trained, before removal)": sparse / "model" / "dense",
        "pruned": sparse / "model",
        "dense baseline (trained as long)": dense / "model",
    }
    engines = {}
    for name, model in models.items():
        release = export_release(
            ExportConfig(
                model_uri=str(model),
                validation_uri=test,
                releases_uri=str(work / "releases"),
                calibration_uri=train,
            )
        )
        bundle = load_bundle(storage.read_bytes(f"{release}/bundle.npz"))
        onnx = storage.read_bytes(f"{release}/model.onnx")
        precisions = ("fp32", "int8") if name == "pruned" else ("fp32",)
        for precision in precisions:
            engine = build_engine(
                onnx,
                EngineSpec(precision=precision),
                str(work / "engines"),
                calibration_NCHW=to_input(bundle.calibration_NHWC),
            )
            engines[f"{name} {precision}"] = (engine, bundle, read_export(release))
    results: dict[str, dict] = {}
    for _ in range(2):  # interleaved, best p50 of two rounds
        for name, (engine, bundle, info) in engines.items():
            report = measure(load_runner(engine), bundle, warmup=50, runs=RUNS)
            best = results.get(name)
            if best is None or report["latency"]["p50_ms"] < best["latency"]["p50_ms"]:
                results[name] = {**report, "parameters": info["parameters"], "engine": engine.info}
    base = results["unpruned (sparse-trained, before removal) fp32"]["latency"]["p50_ms"]
    table = {
        name: {
            "parameters": r["parameters"],
            "p50_ms": r["latency"]["p50_ms"],
            "p99_ms": r["latency"]["p99_ms"],
            "speedup_vs_unpruned_p50": base / r["latency"]["p50_ms"],
            "miou": r["accuracy"]["miou"],
            "max_abs_error_vs_pytorch": r["parity"]["max_abs_error"],
            "argmax_agreement_vs_pytorch": r["parity"]["argmax_agreement"],
            "engine_bytes": r["engine"]["engine_bytes"],
        }
        for name, r in results.items()
    }
    save(
        "deploy_latency",
        {
            "runtime": "onnxruntime (CPU), batch 1, 1 thread",
            "runs": RUNS,
            "engines": table,
            "baseline": "unpruned (sparse-trained, before removal) fp32",
        },
    )


if __name__ == "__main__":
    main()
