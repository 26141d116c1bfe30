"""ONNX export with a parity check, and ONNX Runtime latency."""

from __future__ import annotations

import io
import time

import numpy as np
import torch


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


def ort_session(onnx_bytes: bytes, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def parity(model: torch.nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> dict[str, float]:
    """Max absolute logit error and argmax agreement between PyTorch and ONNX Runtime."""
    with torch.no_grad():
        ref = model.eval()(images).numpy()
    got = ort_session(onnx_bytes).run(["logits"], {"images": images.numpy()})[0]
    return {
        "max_abs_error": float(np.abs(ref - got).max()),
        "argmax_agreement": float((ref.argmax(2) == got.argmax(2)).mean()),
    }


def latency_ms(
    onnx_bytes: bytes,
    height: int,
    width: int,
    *,
    batch: int = 1,
    warmup: int = 20,
    runs: int = 200,
    threads: int = 1,
) -> dict[str, float]:
    session = ort_session(onnx_bytes, threads)
    x = np.random.default_rng(0).random((batch, 3, height, width), dtype=np.float32)
    for _ in range(warmup):
        session.run(["logits"], {"images": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(["logits"], {"images": x})
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
