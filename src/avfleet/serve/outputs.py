"""The scoring graph's outputs by name: the contract between the graph (serve/graph.py), the
server's repository, its clients and the mining job. Torch-free, so that whoever only reads
scores (a client, the CLI) does not pay for importing torch."""

import dataclasses

SCORES = ("predictive_entropy", "mutual_information", "variation_ratio")
OUTPUTS = (*SCORES, "class_probability")


@dataclasses.dataclass(frozen=True)
class Reduction:
    """How a per-pixel uncertainty map becomes one score per frame."""

    how: str = "mean"
    """mean, or top (the mean of the top `top_fraction` of pixels)."""
    top_fraction: float = 0.1
    """With how=top: the share of a frame's pixels, most uncertain first, that its score averages."""

    def __post_init__(self) -> None:
        if self.how not in ("mean", "top") or not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"reduction: expected mean or top with 0 < q <= 1, got {self}")
