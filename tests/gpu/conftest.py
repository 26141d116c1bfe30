"""GPU tier: CUDA-only paths (TensorRT engines, NCCL). Skipped with a reason where no GPU is present."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.gpu)


@pytest.fixture(autouse=True)
def need_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU tests run on a GPU machine (the device tool), never in CI")
