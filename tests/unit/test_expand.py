"""ExpandNets: the expanded net contracts exactly into the compact one (PyTorch and ONNX Runtime)."""

from __future__ import annotations

import torch

from avfleet.train.export import export_onnx, parity
from avfleet.train.models import build, contracted_model, default_arch, num_parameters


def test_contraction_is_exact_and_gives_the_compact_net():
    torch.manual_seed(0)
    arch = {**default_arch(width=1.0), "expand_ratio": 3}
    expanded = build(arch)
    with torch.no_grad():  # trained-looking BatchNorms, so every path carries signal
        for m in expanded.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.uniform_(-0.5, 1.5)
                m.running_mean.uniform_(-1, 1)
        expanded.head.c.bias.uniform_(-1, 1)
    expanded.eval()
    compact = contracted_model(expanded).eval()
    assert "expand_ratio" not in compact.arch
    assert num_parameters(compact) == num_parameters(build(default_arch(width=1.0)))
    assert num_parameters(expanded) > 5 * num_parameters(compact)
    x = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        assert torch.allclose(expanded(x), compact(x), atol=1e-4, rtol=1e-4)
    onnx_parity = parity(compact, export_onnx(compact, 64, 128), x)
    assert onnx_parity["max_abs_error"] < 1e-4 and onnx_parity["argmax_agreement"] == 1.0
