"""The training loop, read top to bottom: one entry (`train`) for the DPE ensemble and the deployable net.

Under torchrun each rank runs this with its own RunContext; gloo on CPU, NCCL
on GPU. Every `checkpoint_every` steps rank 0 writes a checkpoint that counts
only when complete; on start every rank loads the newest complete one, so when
a worker dies and torchrun restarts the group, training resumes there. On CPU
the run is deterministic: one thread per rank, seeded data order, gloo's fixed
reduction order, so the resumed run ends with the same weights, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time

import torch
import torch.nn.functional as F

from avfleet.core import config as config_lib
from avfleet.core import storage
from avfleet.core.metrics import JobMetrics, MetricsConfig
from avfleet.train import checkpoint, prune, regularizers
from avfleet.train.context import RunContext
from avfleet.train.data import ShardedDataset
from avfleet.train.models import build, default_arch, num_parameters

log = logging.getLogger(__name__)


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
    epochs: int = 4
    """Passes over the dataset."""
    batch_size: int = 8
    """Frames per rank per step."""
    lr: float = 0.05
    """SGD learning rate (momentum 0.9, cosine decay)."""
    weight_decay: float = 1e-4
    """rho: the (rho/2)||theta||^2 term."""
    dpe_strength: float = 0.0
    """Weight of the DPE KL-to-prior term (per training frame); 0 disables (plain ensemble)."""
    group_sparsity: float = 0.0
    """lambda of the group-sparsity proximal step (members=1); 0 disables pruning."""
    seed: int = 0
    """Seed of initialisation and data order."""
    checkpoint_every: int = 20
    """Steps between checkpoints."""
    stop_after_steps: int = 0
    """Stop (cleanly, after a checkpoint) at this global step; 0 runs to the end. For drills."""
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    """Where metrics go."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    steps: int
    resumed_from: int | None
    samples_per_s: float
    final_loss: float
    num_parameters: int
    pruned_parameters: int | None
    model_uri: str


def _setup(ctx: RunContext) -> torch.device:
    torch.use_deterministic_algorithms(True)
    if torch.cuda.is_available():
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # determinism on CPU, and ranks do not fight over cores
    if ctx.distributed and not torch.distributed.is_initialized():
        # torchrun's agent store outlives a restart of the group. Keys of the group that died
        # (gloo's peer addresses) would be read by the new one and point at dead ports, so each
        # restart gets its own key prefix.
        store, rank, world_size = next(torch.distributed.rendezvous("env://"))
        store = torch.distributed.PrefixStore(f"avfleet/restart-{ctx.restart_count}", store)
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, store=store, rank=rank, world_size=world_size)
    return device


def loss_fn(logits_BEKHW: torch.Tensor, masks_BHW: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy, averaged over members."""
    b, e, k, h, w = logits_BEKHW.shape
    target = masks_BHW.unsqueeze(1).expand(b, e, h, w).reshape(b * e, h, w)
    return F.cross_entropy(logits_BEKHW.reshape(b * e, k, h, w), target)


def train(config: TrainConfig, ctx: RunContext) -> TrainResult:
    device = _setup(ctx)
    if ctx.rank == 0:
        storage.atomic_write_text(
            storage.join(config.out_uri, "config.json"), config_lib.dumps(config)
        )
    data = ShardedDataset(
        config.dataset_uri,
        rank=ctx.rank,
        world_size=ctx.world_size,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    torch.manual_seed(config.seed)
    model = build(default_arch(width=config.width), members=config.members).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
    )
    total_steps = config.epochs * data.steps_per_epoch

    def lr_at(step: int) -> float:
        """Cosine decay from config.lr to 0 over the run."""
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))

    start = checkpoint.latest_complete(config.out_uri)
    step = 0
    if start is not None:
        model.load_state_dict(start.model)
        optimizer.load_state_dict(start.optimizer)
        step = start.step
        log.info(
            "rank %d resumes from %s (step %d, restart %d)",
            ctx.rank,
            start.uri,
            step,
            ctx.restart_count,
        )
    ddp = torch.nn.parallel.DistributedDataParallel(model) if ctx.distributed else model
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    metrics = JobMetrics("train", f"{config.out_uri.rsplit('/', 1)[-1]}-rank{ctx.rank}")
    frames_seen, started, last_checkpoint_s, loss_value = 0, time.time(), time.time(), float("nan")
    while step < total_steps:
        epoch = step // data.steps_per_epoch
        for batch in data.epoch(epoch, skip_steps=step % data.steps_per_epoch):
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, masks = batch.images.to(device), batch.masks.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(ddp(images), masks)
                if config.dpe_strength and config.members > 1:
                    num_frames = data.manifest["num_frames"]
                    loss = loss + config.dpe_strength / num_frames * regularizers.ensemble_kl(
                        model, config.members
                    )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if config.group_sparsity:
                prune.proximal_step_(model, lr, config.group_sparsity)
            step += 1
            frames_seen += len(batch.frame_ids) * ctx.world_size
            loss_value = float(loss.detach())
            if (
                step % config.checkpoint_every == 0
                or step == total_steps
                or step == config.stop_after_steps
            ):
                if ctx.rank == 0:
                    checkpoint.save(
                        config.out_uri,
                        step,
                        epoch,
                        model.state_dict(),
                        optimizer.state_dict(),
                        {"loss": loss_value},
                    )
                    last_checkpoint_s = time.time()
                if ctx.distributed:
                    torch.distributed.barrier()
            if step == config.stop_after_steps:
                break
        if step == config.stop_after_steps:
            break
    elapsed = time.time() - started
    samples_per_s = frames_seen / max(elapsed, 1e-9)
    model_uri = storage.join(config.out_uri, "model")
    pruned_params = None
    if ctx.rank == 0 and step == total_steps:
        pruned_params = _save_models(model, config, model_uri)
    metrics.set("samples_per_second", samples_per_s, "Training frames per second (all ranks)")
    metrics.set("loss", loss_value, "Last training loss")
    metrics.set(
        "checkpoint_age_seconds",
        time.time() - last_checkpoint_s,
        "Seconds since the last checkpoint",
    )
    metrics.set("steps", step, "Optimizer steps done")
    result = TrainResult(
        step,
        start.step if start else None,
        samples_per_s,
        loss_value,
        num_parameters(model),
        pruned_params,
        model_uri,
    )
    if ctx.rank == 0:
        metrics.finish(config.metrics, storage.join(config.out_uri, "metrics.prom"))
        storage.atomic_write_text(
            storage.join(config.out_uri, "result.json"),
            json.dumps(dataclasses.asdict(result), indent=2),
        )
    if ctx.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


def _save_models(model: torch.nn.Module, config: TrainConfig, model_uri: str) -> int | None:
    """model/dense (always) and, after joint training + pruning, model/ as the pruned net."""
    save_model(model, storage.join(model_uri, "dense"), {"members": config.members})
    if config.group_sparsity and config.members == 1:
        small = prune.pruned_model(model.cpu())
        save_model(
            small, model_uri, {"members": 1, "pruned_from_parameters": num_parameters(model)}
        )
        return num_parameters(small)
    save_model(model, model_uri, {"members": config.members})
    return None


def save_model(model: torch.nn.Module, uri: str, info: dict) -> None:
    """arch.json (every width) + weights.pt (state dict); loads with `load_model`, shapes not guessed."""
    import io

    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    storage.atomic_write_bytes(storage.join(uri, "weights.pt"), buf.getvalue())
    storage.atomic_write_text(
        storage.join(uri, "arch.json"), json.dumps({"arch": model.arch, **info}, indent=2)
    )


def load_model(uri: str) -> torch.nn.Module:
    import io

    doc = json.loads(storage.read_bytes(storage.join(uri, "arch.json")))
    model = build(doc["arch"], members=doc.get("members", 1))
    model.load_state_dict(
        torch.load(
            io.BytesIO(storage.read_bytes(storage.join(uri, "weights.pt"))), weights_only=True
        )
    )
    return model.eval()
