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
