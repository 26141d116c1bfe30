"""The training job's configuration, apart from the trainer (which needs torch): the CLI and
the workflow builders read its fields' docstrings without importing torch."""

from __future__ import annotations

import dataclasses

from avfleet.core.errors import ConfigError
from avfleet.core.metrics import MetricsConfig

CLASS_WEIGHTINGS = ("none", "enet")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    dataset_uri: str
    """Dataset version to train on (avfleet dataset build)."""
    out_uri: str
    """Run folder: checkpoints/, model/, config.json, metrics.prom."""
    members: int = 1
    """Networks trained jointly: 1 for the deployable net, E > 1 for a DPE ensemble."""
    width: float = 1.0
    """Width multiplier of the architecture (over-parameterise, then prune)."""
    arch_uri: str = ""
    """An arch.json to train instead of the default family (a searched net, `avfleet nas
    derive`); its widths are the ones trained, so `width` stays 1."""
    epochs: int = 4
    """Passes over the dataset."""
    init_uri: str = ""
    """A model folder (same architecture and members) whose weights start the training, as a
    round of the loop fine-tunes the last round's ensemble; '' starts from scratch."""
    steps: int = 0
    """Train for exactly this many optimizer steps instead (epochs follow from the dataset's
    size), so that sets of different sizes get the same compute; 0: `epochs` passes."""
    batch_size: int = 8
    """Frames per rank per step."""
    lr: float = 0.05
    """SGD learning rate (momentum 0.9, cosine decay)."""
    weight_decay: float = 1e-4
    """rho: the (rho/2)||theta||^2 term."""
    dpe_strength: float = 0.0
    """Weight of the DPE KL-to-prior term (per training frame); 0 disables (plain ensemble)."""
    group_sparsity: float = 0.0
    """lambda of the group-sparsity proximal step (members=1), the starting strength when a
    budget is set; 0 disables pruning."""
    target_latency_ms: float = 0.0
    """Latency budget of the pruned net at batch 1, as the latency table predicts it; 0: none."""
    target_params: int = 0
    """Parameter budget of the pruned net; 0: none."""
    latency_lut_uri: str = ""
    """The bench's latency table (`avfleet latency profile`): weights the penalty by what each
    channel costs there, snaps widths to the fastest measured ones; '' weighs by parameters."""
    expand_ratio: int = 1
    """ExpandNets: train every dense conv expanded r times (linear), contract exactly after."""
    low_rank: float = 0.0
    """Strength of the nuclear-norm proximal step on the blocks' 1x1 convs (members=1); 0 disables."""
    low_rank_energy: float = 0.9
    """At the SVD reload, the share of each matrix's spectral energy its factors keep."""
    finetune_epochs: int = 0
    """After pruning / the SVD reload, epochs of training the smaller net without the penalties."""
    class_weights: str = "enet"
    """enet: each class's pixels weigh 1 / ln(1.02 + p), p its share of the training set's
    labeled pixels (ENet, Paszke et al. 2016, as ERFNet trains): 1.4 for a class that fills
    the frames, up to 50 for one that is almost never there, so a long-tail class's few pixels
    still shape the net (measured: 200 frames, 600 steps, 49.1 -> 55.0 held-out mIoU,
    pedestrians and cyclists from ~0 to 63 and 81 IoU); none: every pixel alike."""
    pseudo_label_weight: float = 1.0
    """Loss weight of frames labeled by a model (label source pseudo) against human/oracle ones."""
    seed: int = 0
    """Seed of initialisation and data order."""
    checkpoint_every: int = 20
    """Steps between checkpoints."""
    log_every: int = 10
    """Report loss, learning rate and frames/s every this many steps (rank 0): a progress bar
    on a terminal, a plain log line elsewhere (a pod's log), and the same figures pushed to
    the Pushgateway; 0: only at checkpoints."""
    stop_after_steps: int = 0
    """Stop (cleanly, after a checkpoint) at this global step; 0 runs to the end. For drills."""
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    """Where metrics go."""

    def __post_init__(self) -> None:
        if self.members > 1 and (self.group_sparsity or self.low_rank):
            raise ConfigError(
                "members",
                f"group sparsity and low rank compress a single network: set members=1, "
                f"not {self.members}",
            )
        budget = self.target_latency_ms or self.target_params
        if budget and self.members > 1:
            raise ConfigError("members", "a latency or parameter budget prunes a single network")
        if self.steps < 0:
            raise ConfigError("steps", f"must be >= 0 (0: train by epochs), got {self.steps}")
        if self.target_latency_ms < 0 or self.target_params < 0:
            raise ConfigError("target_latency_ms", "budgets are positive (0: none)")
        if self.target_latency_ms and not self.latency_lut_uri:
            raise ConfigError(
                "latency_lut_uri",
                "a latency budget needs the bench's latency table (avfleet latency profile)",
            )
        if self.expand_ratio < 1 or (
            self.expand_ratio > 1 and (self.members > 1 or self.pruning or self.low_rank)
        ):
            raise ConfigError(
                "expand_ratio",
                f"ExpandNets trains one compact net (members=1, no pruning or low rank); "
                f"got {self.expand_ratio}",
            )
        if self.arch_uri and self.width != 1.0:
            raise ConfigError("width", "an arch file sets every width: leave width at 1")
        if self.class_weights not in CLASS_WEIGHTINGS:
            raise ConfigError(
                "class_weights", f"{self.class_weights!r}: expected one of {CLASS_WEIGHTINGS}"
            )
        if not 0.0 <= self.pseudo_label_weight <= 1.0:
            raise ConfigError(
                "pseudo_label_weight", f"must be in [0, 1], got {self.pseudo_label_weight}"
            )
        if not 0.0 < self.low_rank_energy <= 1.0:
            raise ConfigError("low_rank_energy", f"must be in (0, 1], got {self.low_rank_energy}")

    @property
    def pruning(self) -> bool:
        return bool(self.group_sparsity or self.target_latency_ms or self.target_params)
