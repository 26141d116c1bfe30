"""TensorRT engines from the deploy path: FP16 and calibrated INT8, against PyTorch on the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfleet.bench.engines import EngineSpec, build_engine, load_runner
from avfleet.bench.measure import latency_ms, to_input
from avfleet.train.export import export_onnx
from avfleet.train.models import build, default_arch

trt = pytest.importorskip(
    "tensorrt", reason="TensorRT is absent: pip install tensorrt on the GPU machine"
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build(default_arch(width=1.0)).eval()
    return net, export_onnx(net, 64, 128)


def frames(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 64, 128, 3), dtype=np.uint8)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_tensorrt_engine_matches_pytorch(model, precision, tmp_path):
    net, onnx = model
    x = to_input(frames(8))
    engine = build_engine(
        onnx,
        EngineSpec(runtime="tensorrt", precision=precision),
        str(tmp_path),
        to_input(frames(32)),
    )
    assert engine.info["runtime_version"] == trt.__version__
    assert build_engine(
        onnx,
        EngineSpec(runtime="tensorrt", precision=precision),
        str(tmp_path),
        to_input(frames(32)),
    ).cached
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    out = load_runner(engine)(x)
    assert out.shape == ref.shape
    assert (out.argmax(2) == ref.argmax(2)).mean() > (0.99 if precision == "fp16" else 0.9)
    timing = latency_ms(load_runner(engine), x[:1], warmup=20, runs=200)
    assert timing["p50_ms"] > 0
