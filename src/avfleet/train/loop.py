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
import hashlib
import io
import json
import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from avfleet.core import config as config_lib
from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.core.metrics import JobMetrics
from avfleet.dataset.labels import IGNORE
from avfleet.latency.lut import LatencyTable, MissingUnits, load_table
from avfleet.taxonomy import NUM_CLASSES
from avfleet.train import checkpoint, compress, lowrank, prune, regularizers
from avfleet.train.config import TrainConfig
from avfleet.train.context import RunContext
from avfleet.train.data import ShardedDataset
from avfleet.train.models import build, contracted_model, default_arch, num_parameters

log = logging.getLogger(__name__)


DEFAULT_STRENGTH = 0.005
"""The starting group-sparsity strength when only a budget is given (the controller adapts it)."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    steps: int
    resumed_from: int | None
    samples_per_s: float
    final_loss: float
    num_parameters: int
    pruned_parameters: int | None
    model_uri: str
    compression: dict | None = None


def setup_device(ctx: RunContext) -> torch.device:
    """Deterministic kernels; the rank's device; the process group (gloo on CPU, NCCL on GPU)."""
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


def train_metrics(config: TrainConfig) -> JobMetrics:
    """Metrics of a training run, grouped by run: `<run-name>-<ensemble|deployable>` from the
    run folder (runs/<run-name>/<kind>), so two runs never overwrite each other's group."""
    parts = config.out_uri.rstrip("/").rsplit("/", 2)
    return JobMetrics("train", {"run": "-".join(parts[-2:])})


class StepReport:
    """Rank 0's view of a training phase while it runs (see TrainConfig.log_every)."""

    def __init__(
        self, config: TrainConfig, phase: str, total_steps: int, start_step: int, rank: int
    ) -> None:
        self.config, self.phase, self.total = config, phase, total_steps
        self.enabled = rank == 0 and config.log_every > 0
        self.started_s, self.start_step = time.time(), start_step
        self._bar = self._task = None

    def __enter__(self) -> StepReport:
        import sys

        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(
                f"train {self.phase}", total=self.total, completed=self.start_step, figures=""
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(self, steps: int, epoch: int, loss: float, lr: float, frames: int) -> None:
        """After optimizer step `steps` (frames: seen in this process's run of the phase)."""
        if not self.enabled:
            return
        fps = frames / max(time.time() - self.started_s, 1e-9)
        figures = f"loss {loss:.4f}  lr {lr:.4g}  {fps:.1f} frames/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=steps, figures=figures)  # type: ignore[arg-type]
        if steps % self.config.log_every and steps != self.total:
            return
        if self._bar is None:
            log.info("%s: step %d/%d (epoch %d) %s", self.phase, steps, self.total, epoch, figures)
        metrics = train_metrics(self.config)
        metrics.set("step", steps, "Optimizer steps done (this phase)")
        metrics.set("total_steps", self.total, "Steps this phase will take")
        metrics.set("loss", loss, "Last training loss")
        metrics.set("learning_rate", lr, "Learning rate at the last report")
        metrics.set("samples_per_second", fps, "Training frames per second (all ranks)")
        metrics.push_quietly(self.config.metrics)


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from `base` at step 0 to 0 at `total`."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


def enet_class_weights(pixels_K: np.ndarray, c: float = 1.02) -> torch.Tensor:
    """ENet's class weights (Paszke et al. 2016): 1 / ln(c + p_k), p_k the class's share of the
    labeled pixels; bounded by 1/ln(1 + c) and 1/ln(c) (1.42 and 50.5 at c = 1.02)."""
    share = pixels_K / max(float(pixels_K.sum()), 1.0)
    return torch.tensor(1.0 / np.log(c + share), dtype=torch.float32)


def class_pixels(data: ShardedDataset) -> np.ndarray:
    """Labeled pixels per class over every frame of the dataset (all shards, so that every
    rank computes the same weights)."""
    whole = ShardedDataset(
        data.uri, rank=0, world_size=1, batch_size=1, seed=0, storage_config=data.storage
    )
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for row in whole._stream(["frame_id", "mask_png"], None):
        mask = np.asarray(Image.open(io.BytesIO(row[1])), dtype=np.uint8)
        counts += np.bincount(mask[mask < NUM_CLASSES].ravel(), minlength=NUM_CLASSES)
    return counts


def loss_fn(
    logits_BEKHW: torch.Tensor,
    masks_BHW: torch.Tensor,
    weights_B: torch.Tensor | None = None,
    class_weights_K: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel cross-entropy of each member, summed over members.

    A sum, not a mean: every member gets the gradient it would get trained alone.
    Averaging would divide each member's effective learning rate by E (with SGD),
    so an ensemble would train E times slower than the single net it stacks.
    Pixels marked IGNORE (pseudo-labels where the members disagreed) count for
    nothing; `weights_B` scales each frame's pixels (pseudo-labels' weight) and
    `class_weights_K` each class's (enet_class_weights); the sum is divided by the
    labeled pixels' class weights, so all-ones weights give the mean.
    """
    b, e, k, h, w = logits_BEKHW.shape
    target = masks_BHW.unsqueeze(1).expand(b, e, h, w).reshape(b * e, h, w)
    logits = logits_BEKHW.reshape(b * e, k, h, w)
    if weights_B is None:
        return e * F.cross_entropy(logits, target, weight=class_weights_K, ignore_index=IGNORE)
    per_pixel = F.cross_entropy(
        logits, target, weight=class_weights_K, ignore_index=IGNORE, reduction="none"
    )
    weights = weights_B.repeat_interleave(e).view(b * e, 1, 1)
    labeled = target != IGNORE
    pixel_weight = torch.ones_like(per_pixel)
    if class_weights_K is not None:
        pixel_weight = class_weights_K[target.clamp(max=k - 1)]
    norm = (pixel_weight * labeled).sum().clamp(min=1e-6)
    return e * (per_pixel * weights).sum() / norm


def frame_weights(sources: list[str], pseudo_weight: float) -> torch.Tensor | None:
    """Per-frame loss weights: `pseudo_weight` for pseudo-labels, 1 otherwise (None: all 1)."""
    if pseudo_weight == 1.0 or "pseudo" not in sources:
        return None
    return torch.tensor([pseudo_weight if s == "pseudo" else 1.0 for s in sources])


@dataclasses.dataclass
class _Phase:
    """What one phase of training did (main training, then the pruned net's fine-tune)."""

    steps: int = 0
    resumed_from: int | None = None
    frames_seen: int = 0
    seconds: float = 0.0
    loss: float = float("nan")
    last_checkpoint_s: float = 0.0
    finished: bool = False


def _fit(
    model: torch.nn.Module,
    data: ShardedDataset,
    config: TrainConfig,
    ctx: RunContext,
    device: torch.device,
    *,
    run_uri: str,
    epochs: int,
    proximal: bool,
    controller: compress.Controller | None = None,
    steps: int = 0,
) -> _Phase:
    """SGD (momentum, cosine decay) over `epochs` (or exactly `steps`), resuming from run_uri's
    newest complete checkpoint."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
    )
    total_steps = steps or epochs * data.steps_per_epoch
    class_weights = None
    if config.class_weights == "enet":
        class_weights = enet_class_weights(class_pixels(data)).to(device)

    phase = _Phase(last_checkpoint_s=time.time())
    start = checkpoint.latest_complete(run_uri)
    if start is not None:
        model.load_state_dict(start.model)
        if controller is not None:  # optim.pt holds the controller's decisions beside SGD's state
            controller.load_state_dict(start.optimizer["compress"])
            optimizer.load_state_dict(start.optimizer["sgd"])
        else:
            optimizer.load_state_dict(start.optimizer)
        phase.steps = phase.resumed_from = start.step
        log.info(
            "rank %d resumes from %s (step %d, restart %d)",
            ctx.rank,
            start.uri,
            start.step,
            ctx.restart_count,
        )
    ddp = torch.nn.parallel.DistributedDataParallel(model) if ctx.distributed else model
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    members = getattr(model, "members", 1)
    started = time.time()
    stop_at = config.stop_after_steps or total_steps
    with StepReport(
        config, run_uri.rstrip("/").rsplit("/", 1)[-1], total_steps, phase.steps, ctx.rank
    ) as report:
        while phase.steps < min(total_steps, stop_at):
            epoch = phase.steps // data.steps_per_epoch
            for batch in data.epoch(epoch, skip_steps=phase.steps % data.steps_per_epoch):
                step_lr = cosine_lr(config.lr, phase.steps, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = step_lr
                images, masks = batch.images.to(device), batch.masks.to(device)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    weights = frame_weights(batch.sources, config.pseudo_label_weight)
                    if weights is not None:
                        weights = weights.to(device)
                    loss = loss_fn(ddp(images), masks, weights, class_weights)
                    if config.dpe_strength and members > 1:
                        kl = regularizers.ensemble_kl(model, members)
                        loss = loss + config.dpe_strength / data.manifest["num_frames"] * kl
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                phase.steps += 1
                if proximal and controller is not None:
                    controller.after_step(model, phase.steps, step_lr)
                if proximal and config.low_rank:
                    lowrank.proximal_step_(model, step_lr, config.low_rank)
                phase.frames_seen += len(batch.frame_ids) * ctx.world_size
                phase.loss = float(loss.detach()) / members  # per member, as a single net's
                report.step(phase.steps, epoch, phase.loss, step_lr, phase.frames_seen)
                at_end = phase.steps in (total_steps, stop_at)
                if phase.steps % config.checkpoint_every == 0 or at_end:
                    if ctx.rank == 0:
                        checkpoint.save(
                            run_uri,
                            phase.steps,
                            epoch,
                            model.state_dict(),
                            optimizer.state_dict()
                            if controller is None
                            else {
                                "sgd": optimizer.state_dict(),
                                "compress": controller.state_dict(),
                            },
                            {"loss": phase.loss, "arch": getattr(model, "arch", None)},
                        )
                        phase.last_checkpoint_s = time.time()
                        progress = train_metrics(config)
                        progress.set("step", phase.steps, "Optimizer steps done (this phase)")
                        progress.set("total_steps", total_steps, "Steps this phase will take")
                        progress.set(
                            "last_checkpoint_timestamp_seconds",
                            phase.last_checkpoint_s,
                            "When the run last wrote a checkpoint",
                        )
                        progress.push_quietly(config.metrics)
                    if ctx.distributed:
                        torch.distributed.barrier()
                if at_end:
                    break
    phase.seconds = time.time() - started
    phase.finished = phase.steps == total_steps
    return phase


def train(config: TrainConfig, ctx: RunContext) -> TrainResult:
    """Main training; with group sparsity / low rank, then prune / factor and fine-tune the smaller net."""
    device = setup_device(ctx)
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
    arch = read_arch(config.arch_uri) if config.arch_uri else default_arch(width=config.width)
    if config.expand_ratio > 1:
        arch["expand_ratio"] = config.expand_ratio
    model = build(arch, members=config.members).to(device)
    if config.init_uri:  # a checkpoint of this run, if any, still wins (_fit resumes from it)
        _init_from(model, config.init_uri)
    table = load_table(config.latency_lut_uri) if config.latency_lut_uri else None
    controller = None
    if config.pruning:
        controller = compress.Controller(
            model,
            config.group_sparsity or DEFAULT_STRENGTH,
            table,
            compress.Budget(
                target_latency_ms=config.target_latency_ms or None,
                target_params=config.target_params or None,
            ),
            total_steps=config.steps or config.epochs * data.steps_per_epoch,
        )
    main = _fit(
        model,
        data,
        config,
        ctx,
        device,
        run_uri=config.out_uri,
        epochs=config.epochs,
        proximal=True,
        controller=controller,
        steps=config.steps,
    )
    phases, final, dense = [main], model, model
    report = None
    if main.finished and config.expand_ratio > 1:
        final = dense = contracted_model(model.cpu()).to(device)  # exact: the compact net
    if main.finished and (config.pruning or config.low_rank) and config.members == 1:
        # Prune, then factor, the jointly trained net (deterministic, so a restarted group
        # derives the same architecture), then fine-tune the smaller net without the penalties.
        final = model.cpu()
        if controller is not None:
            report = controller.report(final)
            (log.info if report.met is not False else log.warning)(
                "compression: %s", report.message
            )
            final = prune.pruned_model(final, report.widths)
        if config.low_rank:
            final = lowrank.factored_model(final, config.low_rank_energy)
        final = final.to(device)
        if config.finetune_epochs:
            phases.append(
                _fit(
                    final,
                    data,
                    config,
                    ctx,
                    device,
                    run_uri=storage.join(config.out_uri, "finetune"),
                    epochs=config.finetune_epochs,
                    proximal=False,
                )
            )
    done = all(p.finished for p in phases)
    model_uri = storage.join(config.out_uri, "model")
    frames = sum(p.frames_seen for p in phases)
    samples_per_s = frames / max(sum(p.seconds for p in phases), 1e-9)
    if ctx.distributed:  # every rank is done: rank 0 alone measures and writes from here on
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    result = TrainResult(
        steps=sum(p.steps for p in phases),
        resumed_from=main.resumed_from,
        samples_per_s=samples_per_s,
        final_loss=phases[-1].loss,
        num_parameters=num_parameters(dense),
        pruned_parameters=num_parameters(final) if final is not dense else None,
        model_uri=model_uri,
        # Latency measured here only once the other ranks stopped using the cores.
        compression=_compression_record(dense, final, report, table)
        if ctx.rank == 0 and done
        else None,
    )
    if ctx.rank == 0:
        if done:
            _save_models(dense, final, config, model_uri, result.compression)
        metrics = train_metrics(config)
        metrics.set("samples_per_second", samples_per_s, "Training frames per second (all ranks)")
        metrics.set("loss", result.final_loss, "Last training loss")
        metrics.set(
            "checkpoint_age_seconds",
            time.time() - phases[-1].last_checkpoint_s,
            "Seconds since the last checkpoint",
        )
        metrics.set("steps", result.steps, "Optimizer steps done")
        metrics.finish(config.metrics, storage.join(config.out_uri, "metrics.prom"))
        storage.atomic_write_text(
            storage.join(config.out_uri, "result.json"),
            json.dumps(dataclasses.asdict(result), indent=2),
        )
    return result


def _compression_record(
    dense: torch.nn.Module,
    final: torch.nn.Module,
    report: compress.CompressionReport | None,
    table: LatencyTable | None,
) -> dict | None:
    """Parameters and latency (table-predicted, and measured here on ONNX Runtime) before and after."""
    if final is dense or getattr(dense, "members", 1) != 1:
        return None
    from avfleet.train.export import measured_latency_ms

    record: dict = {
        "parameters": {"before": num_parameters(dense), "after": num_parameters(final)},
        "measured_latency_ms": {
            "before": measured_latency_ms(dense.cpu()),
            "after": measured_latency_ms(final.cpu()),
            "how": "ONNX Runtime on this node, batch 1, one thread, p50 (the bench's gate decides)",
        },
    }
    if table is not None:
        predicted: dict = {"bench": table.bench}
        for when, model in (("before", dense), ("after", final)):
            try:
                predicted[when] = table.predict(model.arch).total_ms
            except MissingUnits as e:  # a low-rank reload's ranks are not on the pruning grid
                predicted[when] = None
                predicted[f"{when}_why_not"] = str(e)
        record["predicted_latency_ms"] = predicted
    if report is not None:
        record["budget"] = dataclasses.asdict(report)
    return record


def _save_models(
    dense: torch.nn.Module,
    final: torch.nn.Module,
    config: TrainConfig,
    model_uri: str,
    compression: dict | None,
) -> None:
    """model/dense: the net as trained; model/: the net to use (pruned and fine-tuned when pruning)."""
    members = config.members
    save_model(dense, storage.join(model_uri, "dense"), {"members": members})
    info: dict = {"members": members}
    if final is not dense:
        info["pruned_from_parameters"] = num_parameters(dense)
    if compression is not None:
        info["compression"] = compression
    save_model(final, model_uri, info)


def save_model(model: torch.nn.Module, uri: str, info: dict) -> None:
    """arch.json (every width) + weights.pt (state dict); loads with `load_model`, shapes not guessed."""
    import io

    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    weights = buf.getvalue()
    storage.atomic_write_bytes(storage.join(uri, "weights.pt"), weights)
    doc = {"arch": model.arch, **info, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    storage.atomic_write_text(storage.join(uri, "arch.json"), json.dumps(doc, indent=2))


def _init_from(model: torch.nn.Module, uri: str) -> None:
    """Start from a saved model's weights: the same architecture and members, or a clear error."""
    start = load_model(uri)
    if start.arch != model.arch or getattr(start, "members", 1) != getattr(model, "members", 1):
        raise ConfigError(
            "init_uri",
            f"{uri}: its net ({getattr(start, 'members', 1)} members) is not the one this run "
            "trains: warm starts need the same architecture and members",
        )
    model.load_state_dict(start.state_dict())


def read_arch(uri: str) -> dict:
    """The arch dict of an arch.json (a saved model's, or a derived search's), checked by building it."""
    try:
        doc = json.loads(storage.read_bytes(uri))
        arch = doc["arch"] if "arch" in doc else doc
        build(arch)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ConfigError("arch", f"{uri}: not a SegNet architecture: {e}") from e
    return arch


def load_model(uri: str) -> torch.nn.Module:
    import io

    doc = json.loads(storage.read_bytes(storage.join(uri, "arch.json")))
    model = build(doc["arch"], members=doc.get("members", 1))
    weights = storage.read_bytes(storage.join(uri, "weights.pt"))
    expected = doc.get("weights_sha256")
    if expected and hashlib.sha256(weights).hexdigest() != expected:
        raise PermanentError(
            f"{uri}/weights.pt: sha256 does not match arch.json: the weights are corrupted"
        )
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    return model.eval()
