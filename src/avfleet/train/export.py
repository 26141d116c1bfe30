"""ONNX export, and its parity with PyTorch through ONNX Runtime."""

from __future__ import annotations

import io

import torch

from avfleet.bench import measure
from avfleet.bench.engines import ort_runner


def export_onnx(model: torch.nn.Module, height: int, width: int) -> bytes:
    """The model as ONNX (input "images" (N, 3, H, W), output "logits"), dynamic batch."""
    model = model.eval().cpu()
    example = torch.rand(1, 3, height, width)
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buf,
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return buf.getvalue()


def parity(model: torch.nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> dict[str, float]:
    """Max absolute logit error and argmax agreement between PyTorch and ONNX Runtime."""
    with torch.no_grad():
        ref = model.eval()(images).numpy()
    return measure.parity(ref, ort_runner(onnx_bytes)(images.numpy()))


INPUT_HW = (64, 128)
"""The frame size avfleet's nets run at (the fleet's camera frames)."""


def measured_latency_ms(
    model: torch.nn.Module, input_hw: tuple[int, int] = INPUT_HW, rounds: int = 2, runs: int = 200
) -> float:
    """p50 ms at batch 1 on ONNX Runtime here, one thread, best of `rounds` (the engine's graph)."""
    import numpy as np

    runner = ort_runner(export_onnx(model, *input_hw))
    frame = np.random.default_rng(0).random((1, 3, *input_hw), dtype=np.float32)
    return min(measure.latency_ms(runner, frame, 20, runs)["p50_ms"] for _ in range(rounds))
