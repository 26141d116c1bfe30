"""Engines: an ONNX model compiled for one target, precision and runtime, and cached.

Two backends build an engine from the same model.onnx:

- `onnxruntime` (the embedded default, CPU): the engine is the model after ONNX
  Runtime's full graph optimisation (fusions, constant folding, layouts chosen
  for this CPU), saved with `optimized_model_filepath`. ORT documents such a file
  as specific to the hardware it was optimised on, as a TensorRT plan is. INT8
  quantises weights and activations statically (QDQ), with activation ranges
  calibrated on frames drawn from the dataset.
- `tensorrt` (where a GPU and TensorRT are present, e.g. a Xavier bench): the
  serialised TensorRT plan, FP16 or INT8 (entropy calibration on the same frames).

Engines are cached under `<cache>/<key>/` where the key hashes (model sha256,
target, precision, runtime version): the same model on the same bench is built
once. `engine.json` is written after the engine, so a crashed build is rebuilt.

The model's contract is the training export's: input "images" float32
(N, 3, H, W) in [0, 1], output "logits" (N, E, K, H, W).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import tempfile
import time
from typing import Protocol

import numpy as np

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError

ENGINE_FILE = "engine.bin"
ENGINE_INFO = "engine.json"
INPUT, OUTPUT = "images", "logits"

PRECISIONS = {"onnxruntime": ("fp32", "int8"), "tensorrt": ("fp32", "fp16", "int8")}


class Runner(Protocol):
    def __call__(self, images_NCHW: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    runtime: str = "onnxruntime"
    """Backend that builds and runs the engine: onnxruntime or tensorrt."""
    precision: str = "fp32"
    """fp32, fp16 (tensorrt) or int8 (calibrated)."""
    target: str = ""
    """What the engine is built for (a bench's target, e.g. xavier-agx-jp5); '' = this machine."""

    def __post_init__(self) -> None:
        if self.runtime not in PRECISIONS:
            raise ConfigError("runtime", f"{self.runtime!r}: expected one of {sorted(PRECISIONS)}")
        if self.precision not in PRECISIONS[self.runtime]:
            raise ConfigError(
                "precision",
                f"{self.precision!r} is not built by {self.runtime} "
                f"(it builds {', '.join(PRECISIONS[self.runtime])})",
            )

    @property
    def resolved_target(self) -> str:
        return self.target or f"{platform.machine()}-{self.runtime}"


@dataclasses.dataclass(frozen=True)
class Engine:
    key: str
    uri: str
    """Folder holding engine.bin and engine.json."""
    info: dict
    cached: bool
    """True when an earlier build was reused."""


def runtime_version(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    try:
        import tensorrt
    except ImportError as e:
        raise PermanentError(
            "runtime 'tensorrt': TensorRT is not installed here (it runs on a GPU machine or a "
            "Jetson with JetPack); use runtime 'onnxruntime' on CPU"
        ) from e
    return tensorrt.__version__


def engine_key(model_sha256: str, spec: EngineSpec, version: str) -> str:
    """The cache key: one engine per (model, target, precision, runtime version)."""
    parts = [model_sha256, spec.resolved_target, spec.precision, spec.runtime, version]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def check_model(onnx_bytes: bytes) -> None:
    """A clear error for bytes that are not the expected ONNX model (before any build)."""
    import onnx

    try:
        model = onnx.load_from_string(onnx_bytes)
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError, ValidationError, ...
        raise PermanentError(f"the model is not a valid ONNX model: {e}") from e
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if INPUT not in inputs or OUTPUT not in outputs:
        raise PermanentError(
            f"the model has inputs {inputs} and outputs {outputs}; "
            f"expected input {INPUT!r} and output {OUTPUT!r}"
        )


def build_engine(
    onnx_bytes: bytes,
    spec: EngineSpec,
    cache_uri: str,
    calibration_NCHW: np.ndarray | None = None,
    storage_config: storage.StorageConfig | None = None,
) -> Engine:
    """The engine for `spec`, from the cache or built now (and cached)."""
    if spec.precision == "int8" and (calibration_NCHW is None or not len(calibration_NCHW)):
        raise ConfigError("precision", "int8 needs calibration frames")
    version = runtime_version(spec.runtime)
    model_sha = hashlib.sha256(onnx_bytes).hexdigest()
    key = engine_key(model_sha, spec, version)
    folder = storage.join(cache_uri, key)
    info_uri = storage.join(folder, ENGINE_INFO)
    if storage.exists(info_uri, storage_config):
        info = json.loads(storage.read_bytes(info_uri, storage_config))
        engine_bytes = storage.read_bytes(storage.join(folder, ENGINE_FILE), storage_config)
        if hashlib.sha256(engine_bytes).hexdigest() == info["engine_sha256"]:
            return Engine(key, folder, info, cached=True)
    check_model(onnx_bytes)
    started = time.perf_counter()
    builder = _ort_build if spec.runtime == "onnxruntime" else _trt_build
    engine_bytes = builder(onnx_bytes, spec.precision, calibration_NCHW)
    info = {
        "key": key,
        "model_sha256": model_sha,
        "target": spec.resolved_target,
        "precision": spec.precision,
        "runtime": spec.runtime,
        "runtime_version": version,
        "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
        "engine_bytes": len(engine_bytes),
        "build_s": round(time.perf_counter() - started, 3),
        "calibration_frames": 0 if calibration_NCHW is None else int(len(calibration_NCHW)),
    }
    storage.atomic_write_bytes(storage.join(folder, ENGINE_FILE), engine_bytes, storage_config)
    storage.atomic_write_text(info_uri, json.dumps(info, indent=2), storage_config)
    return Engine(key, folder, info, cached=False)


def load_runner(
    engine: Engine, threads: int = 1, storage_config: storage.StorageConfig | None = None
) -> Runner:
    engine_bytes = storage.read_bytes(storage.join(engine.uri, ENGINE_FILE), storage_config)
    if engine.info["runtime"] == "onnxruntime":
        return ort_runner(engine_bytes, threads, optimized=True)
    return _trt_runner(engine_bytes)


# ONNX Runtime ---------------------------------------------------------------------------------


def ort_session(
    model: bytes | str, threads: int = 1, *, optimized: bool = False, save_to: str = ""
):  # noqa: ANN201
    """An ONNX Runtime CPU session: avfleet's one way to open ONNX models (engines, scoring, export).

    `optimized`: the model is an engine ORT already optimised here (no second pass).
    `save_to`: optimise fully and save the result there (how an engine is built).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = (
        3  # not the warning that a saved optimised model is hardware specific
    )
    if save_to:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = save_to
    elif optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def ort_runner(model: bytes, threads: int = 1, *, optimized: bool = False) -> Runner:
    """images (N, 3, H, W) -> logits through ONNX Runtime."""
    session = ort_session(model, threads, optimized=optimized)

    def run(images_NCHW: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: images_NCHW.astype(np.float32, copy=False)})[0]

    return run


def _ort_build(onnx_bytes: bytes, precision: str, calibration_NCHW: np.ndarray | None) -> bytes:
    with tempfile.TemporaryDirectory(prefix="avfleet-engine-") as tmp:
        source = os.path.join(tmp, "model.onnx")
        with open(source, "wb") as f:
            f.write(onnx_bytes)
        if precision == "int8":
            source = _ort_quantize(source, tmp, calibration_NCHW)
        optimized = os.path.join(tmp, "engine.onnx")
        ort_session(source, save_to=optimized)
        with open(optimized, "rb") as f:
            return f.read()


def _ort_quantize(model_path: str, tmp: str, calibration_NCHW: np.ndarray) -> str:
    """Static INT8 (QDQ, per-channel weights), activation ranges from the calibration frames."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                np.array_split(calibration_NCHW, max(1, len(calibration_NCHW) // 8))
            )

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch.astype(np.float32)}

    prepared = os.path.join(tmp, "prepared.onnx")
    quant_pre_process(model_path, prepared, skip_symbolic_shape=True)
    quantized = os.path.join(tmp, "int8.onnx")
    quantize_static(
        prepared,
        quantized,
        Frames(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return quantized


# TensorRT (GPU machines and Jetson benches; tests carry the gpu marker) -------------------------


def _trt_build(onnx_bytes: bytes, precision: str, calibration_NCHW: np.ndarray | None) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch: a flag JetPack 5's TensorRT 8.5 needs, the only mode (flag ignored) in 10.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PermanentError(f"TensorRT cannot parse the model: {errors}")
    config = builder.create_builder_config()
    shape = tuple(network.get_input(0).shape)[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT, (1, *shape), (1, *shape), (32, *shape))
    config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot take fall back to FP16
        config.int8_calibrator = _trt_calibrator(calibration_NCHW)
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise PermanentError(f"TensorRT could not build a {precision} engine for the model")
    return bytes(plan)


def _trt_calibrator(frames_NCHW: np.ndarray):  # noqa: ANN202
    import tensorrt as trt
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = [
                torch.from_numpy(b).float().cuda()
                for b in np.array_split(frames_NCHW, max(1, len(frames_NCHW) // 8))
            ]
            self.index = 0

        def get_batch_size(self) -> int:
            return int(self.batches[0].shape[0])

        def get_batch(self, names):  # noqa: ANN001, ANN202
            if self.index == len(self.batches):
                return None
            self.index += 1
            return [int(self.batches[self.index - 1].data_ptr())]

        def read_calibration_cache(self):  # noqa: ANN202
            return None

        def write_calibration_cache(self, cache) -> None:  # noqa: ANN001
            pass

    return Calibrator()


def _trt_runner(engine_bytes: bytes) -> Runner:
    import tensorrt as trt
    import torch  # CUDA buffers and the stream; torch ships with the GPU image

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()

    def run(images_NCHW: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images_NCHW, dtype=np.float32)).cuda()
        context.set_input_shape(INPUT, tuple(x.shape))
        y = torch.empty(tuple(context.get_tensor_shape(OUTPUT)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(INPUT, x.data_ptr())
        context.set_tensor_address(OUTPUT, y.data_ptr())
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return y.cpu().numpy()

    return run
