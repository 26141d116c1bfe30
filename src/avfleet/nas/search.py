"""The search job: supernet weights and architecture parameters trained alternately, on two splits.

    loss_w = CE(weights split)                                  SGD on the supernet's weights
    loss_a = CE(arch split) + lambda * log(E[LAT] / T)^2         Adam on alpha

E[LAT] is the bench table's expected latency under the masks (nas.latency).
Why a pull to a target rather than FBNet's CE * a * log(LAT)^b: a plan asks
for the best net *at* each latency target (the Pareto front is swept by
targets), not for one trade-off exponent whose latency is only known after
the search. The squared log ratio is symmetric (half or twice the target cost
the same), flat at the target, so there cross-entropy alone chooses between
nets of about that latency, and steep far from it (lambda = 2: 20% off costs
0.07 nats, twice off 0.96). A one-sided hinge was tried first: a supernet
trained for a few epochs prefers the blocks that learn fastest, the small
ones, and the search at 1.6 ms landed at 0.82 ms, leaving the accuracy the
budget pays for on the table.

Weights train alone for the first `warmup` of the steps (FBNet trains the
weights first, so early alpha steps do not judge untrained blocks); after that
every weight step is followed by one alpha step. The arch split is a fixed
1-in-`arch_split` share of the frames (by a hash of the frame id), never
seen by the weight steps.

Under torchrun the supernet is DDP (find_unused_parameters with hard masks:
only the sampled blocks run) and alpha's gradients are all-reduced; every rank
draws the same Gumbel noise (a generator seeded by seed and step), so alpha is
identical everywhere, which each checkpoint checks. Checkpoints hold the
weights, both optimisers and alpha, count only when complete, and a restarted
group resumes from the newest, as training does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator

import torch

from avfleet.core import config as config_lib
from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.latency.lut import MissingUnits, load_table
from avfleet.nas.config import SearchConfig
from avfleet.nas.latency import cost_tables, expected_latency, table_sum_ms
from avfleet.nas.space import default_space
from avfleet.nas.supernet import SuperNet, annealed_tau, argmax_choice, gumbel_masks, init_alpha
from avfleet.train import checkpoint
from avfleet.train.context import RunContext
from avfleet.train.data import Batch, ShardedDataset, batches_from
from avfleet.train.loop import cosine_lr, loss_fn, setup_device

log = logging.getLogger(__name__)


def in_arch_split(frame_id: str, parts: int) -> bool:
    """A fixed share 1/parts of the frames, by a hash of the id (the same on every rank and run)."""
    return int(hashlib.sha256(frame_id.encode()).hexdigest()[:8], 16) % parts == 0


def _min_over_ranks(value: int, ctx: RunContext) -> int:
    if not ctx.distributed:
        return value
    t = torch.tensor([value])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return int(t.item())


def _check_identical(alpha: dict[str, torch.Tensor], ctx: RunContext) -> None:
    """Every rank must hold the same alpha (same noise, all-reduced gradients)."""
    if not ctx.distributed:
        return
    mine = torch.cat([a.detach().flatten() for a in alpha.values()])
    ref = mine.clone()
    torch.distributed.broadcast(ref, 0)
    if not torch.equal(mine, ref):
        raise PermanentError(
            f"rank {ctx.rank}: architecture parameters differ from rank 0's "
            f"(max {float((mine - ref).abs().max()):.3g})"
        )


def _arch_step(
    model: SuperNet,
    alpha: dict[str, torch.Tensor],
    adam: torch.optim.Optimizer,
    masks: dict[str, torch.Tensor],
    batch: Batch,
    costs: list,
    config: SearchConfig,
    ctx: RunContext,
) -> tuple[float, float]:
    """One Adam step on alpha from an arch-split batch; (its cross-entropy, E[LAT] in ms).

    The supernet runs outside DDP and only alpha's gradients are taken
    (autograd.grad), so the weights' gradients and DDP's hooks stay untouched;
    alpha's gradients are averaged over the ranks by hand.
    """
    device = next(model.parameters()).device
    logits = model(batch.images.to(device), {n: m.to(device) for n, m in masks.items()})
    ce = loss_fn(logits, batch.masks.to(device))
    lat = expected_latency(masks, costs)
    loss = ce.cpu() + config.latency_weight * torch.log(lat / config.target_latency_ms) ** 2
    grads = torch.autograd.grad(loss, list(alpha.values()))
    for a, g in zip(alpha.values(), grads, strict=True):
        if ctx.distributed:
            torch.distributed.all_reduce(g)
            g /= ctx.world_size
        a.grad = g
    adam.step()
    return float(ce.detach()), float(lat.detach())


def search(config: SearchConfig, ctx: RunContext) -> dict:
    """Run (or resume) the search; rank 0 writes and returns search.json's content."""
    device = setup_device(ctx)
    space = default_space()
    table = load_table(config.latency_lut_uri)
    try:
        costs = cost_tables(space, table)
    except MissingUnits as e:
        raise PermanentError(f"{e} (`avfleet nas profile` covers the search space)") from e
    if ctx.rank == 0:
        storage.atomic_write_text(
            storage.join(config.out_uri, "config.json"), config_lib.dumps(config)
        )

    weights_data = ShardedDataset(
        config.dataset_uri,
        rank=ctx.rank,
        world_size=ctx.world_size,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    arch_data = weights_data.split_off(
        lambda f: in_arch_split(f, config.arch_split), config.seed + 1
    )
    for part, data in (("weights", weights_data), ("arch", arch_data)):
        data.steps_per_epoch = _min_over_ranks(data.steps_per_epoch, ctx)
        if data.steps_per_epoch == 0:
            raise ConfigError(
                "dataset",
                f"{config.dataset_uri}: too few frames for the {part} split at batch size "
                f"{config.batch_size} on {ctx.world_size} ranks",
            )
    torch.manual_seed(config.seed)
    model = SuperNet(space, hard=config.hard).to(device)
    alpha = init_alpha(space)
    sgd = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
    )
    adam = torch.optim.Adam(list(alpha.values()), lr=config.arch_lr, betas=(0.5, 0.999))
    total = config.epochs * weights_data.steps_per_epoch
    warmup_steps = int(config.warmup * total)
    step, history = 0, []
    start = checkpoint.latest_complete(config.out_uri)
    if start is not None:
        model.load_state_dict(start.model)
        sgd.load_state_dict(start.optimizer["sgd"])
        adam.load_state_dict(start.optimizer["adam"])
        with torch.no_grad():
            for name, value in start.optimizer["alpha"].items():
                alpha[name].copy_(value)
        history = start.meta.get("history", [])
        step = start.step
        log.info("rank %d resumes the search from %s (step %d)", ctx.rank, start.uri, step)
    ddp = (
        torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=config.hard)
        if ctx.distributed
        else model
    )
    stop_at = min(config.stop_after_steps or total, total)
    started, frames = time.time(), 0
    arch_batches: Iterator[Batch] | None = None  # opened at the first alpha step, then kept
    while step < stop_at:
        epoch = step // weights_data.steps_per_epoch
        for batch in weights_data.epoch(epoch, skip_steps=step % weights_data.steps_per_epoch):
            tau = annealed_tau(step, total, config.tau_start, config.tau_end)
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            for group in sgd.param_groups:
                group["lr"] = cosine_lr(config.lr, step, total)
            fixed = gumbel_masks(
                {k: a.detach() for k, a in alpha.items()}, tau, generator, hard=config.hard
            )
            loss = loss_fn(
                ddp(batch.images.to(device), {k: m.to(device) for k, m in fixed.items()}),
                batch.masks.to(device),
            )
            sgd.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            record = {"step": step + 1, "tau": tau, "weights_ce": float(loss.detach())}
            if step >= warmup_steps:  # one alpha step on the arch split
                if arch_batches is None:
                    arch_batches = batches_from(arch_data, step - warmup_steps)
                arch_batch = next(arch_batches)
                masks = gumbel_masks(alpha, tau, generator, hard=config.hard)
                ce, lat = _arch_step(model, alpha, adam, masks, arch_batch, costs, config, ctx)
                record.update(arch_ce=ce, expected_ms=lat)
            step += 1
            frames += len(batch.frame_ids) * ctx.world_size
            if step % 10 == 0 or step == stop_at:
                history.append(record)
                if ctx.rank == 0:
                    log.info("search step %d/%d: %s", step, total, record)
            if step % config.checkpoint_every == 0 or step == stop_at:
                _check_identical(alpha, ctx)
                if ctx.rank == 0:
                    checkpoint.save(
                        config.out_uri,
                        step,
                        epoch,
                        model.state_dict(),
                        {
                            "sgd": sgd.state_dict(),
                            "adam": adam.state_dict(),
                            "alpha": {n: a.detach().clone() for n, a in alpha.items()},
                        },
                        {"history": history},
                    )
                if ctx.distributed:
                    torch.distributed.barrier()
            if step == stop_at:
                break
    seconds = time.time() - started
    # DDP's reducer holds the process group: free it while the group lives. Freed after
    # destroy_process_group (when this function returned), gloo's destructor waited forever on
    # its worker thread (seen once in CI, a rank hung after its last step).
    del ddp
    if ctx.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    choice = argmax_choice(space, alpha)
    result = {
        "target_latency_ms": config.target_latency_ms,
        "bench": table.bench,
        "latency_lut": config.latency_lut_uri,
        "steps": step,
        "finished": step == total,
        "seconds": seconds,
        "process_hours": seconds * ctx.world_size / 3600.0,
        "device": device.type,
        "frames_per_s": frames / max(seconds, 1e-9),
        "alpha": {n: a.detach().tolist() for n, a in alpha.items()},
        "choices": {n: list(c) for n, c in space.variables().items()},
        "argmax": choice,
        "argmax_table_ms": table_sum_ms(costs, space, choice),
        "history": history,
    }
    if ctx.rank == 0:
        storage.atomic_write_text(
            storage.join(config.out_uri, "search.json"), json.dumps(result, indent=2)
        )
    return result
