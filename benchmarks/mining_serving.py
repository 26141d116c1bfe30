"""Mining's serving figures, each pair measured in one run on the same frames:

1. Triton-served vs in-process scoring, frames/s at batch 32 (goal: served >= 0.9x).
   The same ONNX scoring graph of a trained 4-member ensemble: ONNX Runtime in
   this process vs a real Triton server (`avfleet serve`, PyTriton's
   tritonserver, ONNX Runtime behind it) over gRPC with 2 batches in flight.
   Both get the machine's 2 cores for ONNX Runtime.
2. E members in one graph vs E members run one after another (goal >= 2x):
   the stacked ensemble (grouped convolutions) vs E single-member nets with the
   same weights, both exported to ONNX and run by ONNX Runtime, batch 32.
3. Bytes returned per frame by the scoring graph vs the ensemble's probability maps.

    python benchmarks/mining_serving.py
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import SMOKE, save, scratch_dir  # noqa: E402
from _train_common import datasets, plain_ensemble  # noqa: E402

from avfleet.bench.engines import ort_session  # noqa: E402
from avfleet.mining.job import InProcessScorer  # noqa: E402
from avfleet.serve.graph import OUTPUTS, ScoringGraph, export_onnx  # noqa: E402
from avfleet.serve.local import local_triton  # noqa: E402
from avfleet.serve.publish import publish_model  # noqa: E402
from avfleet.serve.repository import load_version  # noqa: E402
from avfleet.train.data import iter_all  # noqa: E402
from avfleet.train.loop import load_model  # noqa: E402
from avfleet.train.models import build  # noqa: E402

BATCH, FRAMES, MEMBERS = 32, 64 if SMOKE else 1024, 4


def frames_uint8(dataset: str, n: int) -> np.ndarray:
    out = []
    for batch in iter_all(dataset, 64):
        out.append((batch.images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
        if sum(len(o) for o in out) >= n:
            break
    frames = np.concatenate(out)[:n]
    return np.concatenate([frames] * (n // len(frames) + 1))[:n]


def rate(score_batches, frames: np.ndarray, repeats: int = 3) -> float:
    """Best frames/s over `repeats` passes of all frames in batches of BATCH."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in score_batches(frames[i : i + BATCH] for i in range(0, len(frames), BATCH)):
            pass
        best = max(best, len(frames) / (time.perf_counter() - started))
    return best


def served_vs_in_process(repo: str, ref: str, frames: np.ndarray) -> dict:
    in_process = InProcessScorer(load_version(repo, ref).onnx, threads=2)
    with local_triton(repo, ref, max_in_flight=2) as scorer:  # the server: 2 ORT threads too
        rate(scorer.score_batches, frames[:256], repeats=1)  # warm-up
        rate(in_process.score_batches, frames[:256], repeats=1)
        served, local = [], []
        for _ in range(2):  # interleaved
            served.append(rate(scorer.score_batches, frames))
            local.append(rate(in_process.score_batches, frames))
        out = next(scorer.score_batches([frames[:BATCH]]))
        returned = sum(v.nbytes for v in out.values()) / BATCH
    return {
        "frames_per_s": {"triton_grpc": max(served), "in_process": max(local)},
        "served_over_in_process": max(served) / max(local),
        "triton_latency_ms_p50": 1000 * float(np.median(scorer.latencies_s)),
        "bytes_returned_per_frame": returned,
    }


def stacked_vs_sequential(ensemble: torch.nn.Module, frames: np.ndarray) -> dict:
    """The stacked graph vs its E members as separate single-member graphs, same weights."""
    members = []
    state = ensemble.state_dict()
    for e in range(MEMBERS):
        single = build(ensemble.arch, members=1)
        single.load_state_dict(
            {k: v.view(MEMBERS, -1, *v.shape[1:])[e] if v.dim() else v for k, v in state.items()}
        )
        members.append(ort_session(export_onnx(ScoringGraph(single), 64, 128), threads=2))
    stacked = ort_session(export_onnx(ScoringGraph(ensemble), 64, 128), threads=2)
    check = frames[:8]
    together = stacked.run(["class_probability"], {"frames": check})[0]
    apart = np.mean([m.run(["class_probability"], {"frames": check})[0] for m in members], axis=0)
    assert np.allclose(together, apart, atol=1e-5), "members extracted wrongly"

    def run_stacked(batches):
        for b in batches:
            yield stacked.run(list(OUTPUTS), {"frames": b})

    def run_sequential(batches):
        for b in batches:
            yield [m.run(["class_probability"], {"frames": b}) for m in members]

    sub = frames[:512]
    rate(run_stacked, sub[:64], repeats=1)
    rate(run_sequential, sub[:64], repeats=1)
    s, q = [], []
    for _ in range(2):
        s.append(rate(run_stacked, sub))
        q.append(rate(run_sequential, sub))
    return {
        "frames_per_s": {"one_graph": max(s), "one_after_another": max(q)},
        "one_graph_over_sequential": max(s) / max(q),
    }


def main() -> None:
    train, test = datasets()
    run = pathlib.Path(plain_ensemble(train))  # a str: `run / "model"` raised TypeError
    with scratch_dir("repo-") as repo:
        ref = publish_model(str(run / "model"), repo, "dpe")
        frames = frames_uint8(test, FRAMES)
        ensemble = load_model(str(run / "model"))
        served = served_vs_in_process(repo, ref, frames)
        stacked = stacked_vs_sequential(ensemble, frames)
        maps = MEMBERS * int(ensemble.arch["num_classes"]) * 64 * 128 * 4
        save(
            "mining_serving",
            {
                "batch": BATCH,
                "frames": FRAMES,
                "members": MEMBERS,
                "served_vs_in_process": served,
                "stacked_vs_sequential": stacked,
                "bytes_per_frame": {
                    "returned_scores": served["bytes_returned_per_frame"],
                    "probability_maps_float32": maps,
                    "sent_uint8_frame": 64 * 128 * 3,
                },
                "goal": "served >= 0.9x in-process; one graph >= 2x sequential",
            },
        )


if __name__ == "__main__":
    main()
