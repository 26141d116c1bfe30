"""The architecture search's configuration, apart from the search (which needs torch): the CLI
and the workflow builders read its fields' docstrings without importing torch."""

from __future__ import annotations

import dataclasses

from avfleet.core.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchConfig:
    dataset_uri: str
    """Dataset version searched on (split into a weights part and an arch part)."""
    out_uri: str
    """Search folder: checkpoints/, config.json, search.json."""
    latency_lut_uri: str
    """The bench's latency table, covering the space (`avfleet nas profile`)."""
    target_latency_ms: float
    """The latency the search aims at (batch 1, as the table predicts it)."""
    epochs: int = 4
    """Passes over the weights split."""
    batch_size: int = 8
    """Frames per rank per step (each split)."""
    lr: float = 0.05
    """SGD learning rate of the supernet weights (momentum 0.9, cosine decay)."""
    weight_decay: float = 1e-4
    """SGD weight decay of the supernet weights."""
    arch_lr: float = 0.03
    """Adam learning rate of alpha."""
    latency_weight: float = 2.0
    """lambda of the pull lambda * log(E[LAT] / T)^2."""
    warmup: float = 0.2
    """Share of the steps that train the weights alone."""
    tau_start: float = 5.0
    """Gumbel-softmax temperature at the first step (annealed exponentially)."""
    tau_end: float = 0.2
    """Gumbel-softmax temperature at the last step."""
    hard: bool = True
    """Straight-through one-hot masks (one sampled block runs); False: FBNet's soft mix."""
    arch_split: int = 5
    """One frame in `arch_split` trains alpha, the rest the weights."""
    seed: int = 0
    """Seed of initialisation, data order and the Gumbel noise."""
    checkpoint_every: int = 20
    """Steps between checkpoints."""
    stop_after_steps: int = 0
    """Stop (after a checkpoint) at this step; 0 runs to the end. For drills."""

    def __post_init__(self) -> None:
        if not self.target_latency_ms > 0:
            raise ConfigError("target_latency_ms", f"must be > 0, got {self.target_latency_ms}")
        if not self.latency_lut_uri:
            raise ConfigError("latency_lut_uri", "the search needs the bench's latency table")
        if self.arch_split < 2:
            raise ConfigError("arch_split", f"must be >= 2, got {self.arch_split}")
        if not 0 <= self.warmup < 1:
            raise ConfigError("warmup", f"must be in [0, 1), got {self.warmup}")
        if not 0 < self.tau_end <= self.tau_start:
            raise ConfigError("tau_end", "0 < tau_end <= tau_start")
