"""Engine builds with ONNX Runtime: cache keys, reuse, INT8 calibration, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfleet.bench.engines import EngineSpec, build_engine, engine_key, load_runner
from avfleet.bench.measure import Bundle, load_bundle, measure, to_input
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.train.export import export_onnx
from avfleet.train.models import build, default_arch


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build(default_arch(width=0.25)).eval()
    return net, export_onnx(net, 32, 64)


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 64, 3), dtype=np.uint8)


def test_the_key_changes_with_model_target_precision_and_runtime_version():
    base = engine_key("a" * 64, EngineSpec(target="xavier"), "1.0")
    assert base == engine_key("a" * 64, EngineSpec(target="xavier"), "1.0")
    assert base != engine_key("b" * 64, EngineSpec(target="xavier"), "1.0")
    assert base != engine_key("a" * 64, EngineSpec(target="orin"), "1.0")
    assert base != engine_key("a" * 64, EngineSpec(target="xavier", precision="int8"), "1.0")
    assert base != engine_key("a" * 64, EngineSpec(target="xavier"), "1.1")


def test_an_engine_is_built_once_and_matches_pytorch(model, tmp_path):
    net, onnx = model
    first = build_engine(onnx, EngineSpec(), str(tmp_path))
    again = build_engine(onnx, EngineSpec(), str(tmp_path))
    assert not first.cached and again.cached and again.key == first.key
    x = to_input(frames(4))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(load_runner(again)(x) - ref).max() < 1e-4


def test_a_torn_cache_entry_is_rebuilt(model, tmp_path):
    _, onnx = model
    engine = build_engine(onnx, EngineSpec(), str(tmp_path))
    (tmp_path / engine.key / "engine.bin").write_bytes(b"torn")
    assert not build_engine(onnx, EngineSpec(), str(tmp_path)).cached


def test_int8_is_calibrated_on_frames_and_stays_close(model, tmp_path):
    net, onnx = model
    with pytest.raises(ConfigError, match="calibration"):
        build_engine(onnx, EngineSpec(precision="int8"), str(tmp_path))
    engine = build_engine(onnx, EngineSpec(precision="int8"), str(tmp_path), to_input(frames(16)))
    assert engine.info["calibration_frames"] == 16
    x = to_input(frames(8, seed=1))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    out = load_runner(engine)(x)
    assert np.abs(out - ref).max() > 1e-4  # quantised: not the float model's numbers ...
    assert (out.argmax(2) == ref.argmax(2)).mean() > 0.8  # ... but close to its predictions


def test_bad_models_and_specs_are_refused_by_name(model, tmp_path):
    with pytest.raises(PermanentError, match="not a valid ONNX model"):
        build_engine(b"\x08\x01garbage", EngineSpec(), str(tmp_path))
    with pytest.raises(ConfigError, match="fp16"):
        EngineSpec(runtime="onnxruntime", precision="fp16")
    with pytest.raises(PermanentError, match="TensorRT is not installed"):
        build_engine(model[1], EngineSpec(runtime="tensorrt", precision="fp16"), str(tmp_path))


def test_measure_reports_latency_parity_and_accuracy(model, tmp_path):
    net, onnx = model
    f = frames(6)
    with torch.no_grad():
        ref = net(torch.from_numpy(to_input(f[:3]))).numpy()
    masks = np.zeros((6, 32, 64), dtype=np.uint8)
    bundle = load_bundle(Bundle(f, masks, np.array(["d"] * 6), ref, f[:2]).to_bytes())
    report = measure(
        load_runner(build_engine(onnx, EngineSpec(), str(tmp_path))), bundle, warmup=2, runs=10
    )
    assert (
        report["latency"]["runs"] == 10
        and report["latency"]["p99_ms"] >= report["latency"]["p50_ms"] > 0
    )
    assert report["parity"]["frames"] == 3 and report["parity"]["max_abs_error"] < 1e-4
    assert 0.0 <= report["accuracy"]["miou"] <= 1.0 and list(
        report["accuracy"]["miou_per_domain"]
    ) == ["d"]
    with pytest.raises(PermanentError, match="not a readable"):
        load_bundle(b"not an npz")
