"""Triton's `onnxruntime` backend, as a Python-based backend for the tritonserver PyTriton bundles.

`avfleet tritonserver` installs this file as `<backends>/onnxruntime/model.py`: Triton then
runs models whose config.pbtxt says `backend: "onnxruntime"` through its Python backend and
this class (Triton's "Python-based backends"). The server around it is Triton's own: the
model repository (S3 included), explicit model control and its load API, version policies,
dynamic batching, warm-up, readiness and metrics. Only the execution differs from NVIDIA's
image, whose C++ ONNX Runtime backend PyTriton's build does not carry: here ONNX Runtime's
Python package runs the version's model.onnx on the CPU.

What it honours of config.pbtxt, as the C++ backend does: inputs and outputs by name, an
output's `reshape` (the graph emits the reshaped shape, clients see `dims`), and the
`intra_op_thread_count` / `inter_op_thread_count` parameters (0: ONNX Runtime's default).
It is imported only inside Triton's Python stub (triton_python_backend_utils lives there).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

MODEL_FILE = "model.onnx"


def _parameter(config: dict, key: str, default: int) -> int:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return int(value) if value.strip() else default


class TritonPythonModel:
    """One instance: an ONNX Runtime session over one version's model.onnx."""

    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or MODEL_FILE
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _parameter(config, "intra_op_thread_count", 0)
        options.inter_op_num_threads = _parameter(config, "inter_op_thread_count", 0)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        # Triton's output dims (what clients see) per output, without the batch dimension.
        self.outputs = {o["name"]: [int(d) for d in o["dims"]] for o in config["output"]}
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests: list[Any]) -> list[Any]:
        """The dynamic batcher's requests, run as one ONNX Runtime batch and split again."""
        feeds: dict[str, list[np.ndarray]] = {name: [] for name in self.inputs}
        sizes = []
        for request in requests:
            for name in self.inputs:
                feeds[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            sizes.append(feeds[self.inputs[0]][-1].shape[0] if self.batching else 1)
        if self.batching:
            batch = {name: np.concatenate(arrays) for name, arrays in feeds.items()}
            results = self._run(batch)
            bounds = np.cumsum([0, *sizes])
            return [
                self._response({n: r[lo:hi] for n, r in results.items()})
                for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            ]
        return [
            self._response(self._run({n: a[i] for n, a in feeds.items()}))
            for i in range(len(requests))
        ]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = list(self.outputs)
        outs = self.session.run(names, feeds)
        shaped = {}
        for name, out in zip(names, outs, strict=True):
            dims = self.outputs[name]
            shaped[name] = out.reshape([out.shape[0], *dims] if self.batching else dims)
        return shaped

    def _response(self, outputs: dict[str, np.ndarray]) -> Any:
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, out) for name, out in outputs.items()]
        )
