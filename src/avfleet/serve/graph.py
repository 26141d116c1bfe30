"""The scoring graph: frames in, per-frame uncertainty scores out, computed where the model runs.

Triton serves this graph, not the bare ensemble: per-pixel probability maps
of E members (E x C x H x W floats per frame) never leave the server. What
comes back per frame is the predictive entropy, mutual information and
variation ratio, each reduced from its per-pixel map as configured ("mean", or
"top": the mean of the top q fraction of pixels), plus the mean probability
of each class (a small summary, also the mining job's cheap embedding).

Input "frames": uint8 (N, H, W, 3), as decoded from JPEG: a quarter of the
bytes of float32 on the wire, and the graph does the scaling.
"""

from __future__ import annotations

import torch

from avfleet import uncertainty
from avfleet.serve.outputs import OUTPUTS, SCORES, Reduction

__all__ = ["OUTPUTS", "SCORES", "Reduction", "ScoringGraph", "export_onnx", "score_in_process"]


class ScoringGraph(torch.nn.Module):
    """Wraps a stacked ensemble (members >= 1): uint8 frames -> scores (N,) x 3 and (N, C)."""

    def __init__(self, ensemble: torch.nn.Module, reduction: Reduction = Reduction()) -> None:  # noqa: B008 - frozen
        super().__init__()
        self.ensemble = ensemble.eval()
        self.reduction = reduction

    def forward(self, frames_NHWC: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = frames_NHWC.permute(0, 3, 1, 2).float() / 255.0
        probs_NEKHW = self.ensemble(images).softmax(2)
        maps = (
            uncertainty.predictive_entropy(probs_NEKHW),
            uncertainty.mutual_information(probs_NEKHW),
            uncertainty.variation_ratio(probs_NEKHW),
        )
        scores = [
            uncertainty.reduce_map(m, self.reduction.how, self.reduction.top_fraction) for m in maps
        ]
        class_probability = probs_NEKHW.mean(1).mean((2, 3))
        return (*scores, class_probability)


def score_in_process(graph: ScoringGraph, frames_NHWC) -> dict:  # noqa: ANN001
    """The same scores without a server: the reference the served path is checked against."""
    import numpy as np

    with torch.no_grad():
        outs = graph(torch.from_numpy(np.ascontiguousarray(frames_NHWC)))
    return {name: out.numpy() for name, out in zip(OUTPUTS, outs, strict=True)}


def export_onnx(graph: ScoringGraph, height: int, width: int) -> bytes:
    """The scoring graph as ONNX: input "frames" uint8 (N, H, W, 3), dynamic N; OUTPUTS."""
    import io

    example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    buf = io.BytesIO()
    torch.onnx.export(
        graph.eval(),
        (example,),
        buf,
        input_names=["frames"],
        output_names=list(OUTPUTS),
        dynamic_axes={"frames": {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}},
        opset_version=17,
        dynamo=False,
    )
    return buf.getvalue()
