"""Train a BAT video model with the flags of the official main.py (plus DDP, AMP, exact resume).

Single process (CPU or one GPU):
    python -m train.main TRAIN_LIST VAL_LIST --read_mode video --arch c2d_resnet50 \
        --nonlocal_mod 2 --nltype bat --k 8 --tk 4 --seq_length 8 --sample_rate 8 \
        --lr 0.01 --lr_steps 40 80 --epochs 100 -b 64 -j 48 --dropout 0.5
One node, 8 GPUs (-b stays the total batch; each process takes -b / 8):
    torchrun --nproc_per_node=8 -m train.main TRAIN_LIST VAL_LIST ... --amp bf16 --channels-last
Continue a killed run where its last checkpoint left it (same result as never stopping):
    python -m train.main TRAIN_LIST VAL_LIST ... --resume checkpoints/c2d_resnet50_checkpoint.pth.tar
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipelines.loader import build_loader
from pipelines.spec import ClipSpec
from train.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from train.config import TrainConfig, parse_train_args
from train.distributed import (
    DistContext,
    all_gather_objects,
    broadcast_buffers,
    broadcast_object,
    setup_distributed,
    split_batch_size,
    teardown,
)
from train.engine import EvalResult, StepOptions, evaluate, train_one_epoch
from train.logging_utils import RunLog, epoch_progress, progress_wanted
from train.models import build_model, model_names
from train.optim import LRSchedule, build_optimizer, drop_running_stats, freeze_batchnorm
from train.runtime import (
    RunnerConfigError,
    build_eval_loader,
    draw_seed,
    load_weights,
    loader_config,
    seed_everything,
)
from train.weights import load_checkpoint
from videoprep.atomic import atomic_write_json
from videoprep.errors import VideoprepError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a run ended: epochs done, best and last validation top-1, the checkpoint written last."""

    epochs_done: int
    best_prec1: float
    last_eval: EvalResult | None
    checkpoint: Path | None
    seed: int


def eval_due(epoch: int, *, eval_freq: int, epochs: int) -> bool:
    """Official rule: validate (and save) every eval_freq epochs and in the last 10% of the run."""
    return (epoch + 1) % eval_freq == 0 or (epoch + 1) >= 0.9 * epochs


def save_due(epoch: int, *, save_freq: int) -> bool:
    """Official rule for epochs without validation: save every save_freq epochs."""
    return (epoch + 1) % save_freq == 0


def _check(cfg: TrainConfig) -> None:
    """Flag combinations that cannot work, refused before anything is written."""
    if cfg.arch not in model_names():
        raise RunnerConfigError(f"--arch {cfg.arch!r} is not one of {', '.join(model_names())}")
    if cfg.epochs < 1:
        raise RunnerConfigError(f"--epochs ({cfg.epochs}) must be >= 1")
    if cfg.soft_resume and not cfg.resume:
        raise RunnerConfigError("--soft_resume needs --resume PATH (the weights to start from)")


def run_training(
    cfg: TrainConfig,
    *,
    stream: TextIO | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """The whole training run of `python -m train.main`.

    on_epoch_end(epoch) runs after each epoch's checkpoint, on_step(epoch, iteration) after each
    step (and its mid-epoch checkpoint, if one is due).
    """
    _check(cfg)
    ctx = setup_distributed(device=cfg.device, backend=cfg.dist_backend)
    run_log = RunLog(log_dir=cfg.log_dir, enabled=ctx.is_main, stream=stream)
    try:
        return _train(cfg, ctx, run_log, on_epoch_end, on_step)
    finally:
        run_log.close()
        teardown(ctx)


def _train(cfg: TrainConfig, ctx: DistContext, run_log: RunLog, on_epoch_end: Callable[[int], None] | None,
           on_step: Callable[[int, int], None] | None) -> TrainResult:
    # --resume: read the file first; our own checkpoints carry the seed that keeps data order identical.
    checkpoint = load_checkpoint(cfg.resume, trusted_legacy=cfg.trusted_legacy_checkpoint) if cfg.resume else None
    continuing = checkpoint is not None and "state_dict" in checkpoint and not cfg.soft_resume
    seed = cfg.seed
    if continuing and "seed" in checkpoint:
        seed = int(checkpoint["seed"])
    if seed < 0:
        seed = broadcast_object(draw_seed(), ctx)
    run_log.line(f"seed: {seed}")
    seed_everything(seed, rank=ctx.rank)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS refuses determinism without it
        torch.use_deterministic_algorithms(True)
    elif ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the official code; fixed clip shapes make it pay off
    if ctx.is_main:
        Path(cfg.snapshot_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(cfg.log_dir) / "params.json", {**dataclasses.asdict(cfg), "seed": seed,
                                                              "world_size": ctx.world_size})

    if cfg.amp == "fp16" and ctx.device.type == "cpu":
        log.warning("--amp fp16 on CPU runs without a gradient scaler; bf16 is the CPU choice")
    model = build_model(cfg.arch, **cfg.model_kwargs())
    if cfg.use_affine:
        drop_running_stats(model)
    start_epoch, start_iteration, best_prec1 = cfg.start_epoch, 0, 0.0
    if checkpoint is not None:
        load_weights(model, checkpoint, strict=not cfg.soft_resume, source=cfg.resume)
        if continuing:
            start_epoch = int(checkpoint.get("epoch", 0))
            start_iteration = int(checkpoint.get("iteration", 0))
            best_prec1 = float(checkpoint.get("best_prec1", 0.0))
        inside = f", iteration {start_iteration}" if start_iteration else ""
        run_log.line(f"=> loaded checkpoint '{cfg.resume}' (epoch {checkpoint.get('epoch', 'n/a')}{inside})"
                     + (", soft: epoch and best restart at 0" if cfg.soft_resume else ""))
    if cfg.freeze_bn:
        run_log.line(f"Freeze All BN Layers ({freeze_batchnorm(model)})")
    model.to(ctx.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last_3d)

    optimizer = build_optimizer(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                nesterov=cfg.nesterov)
    for group in optimizer.param_groups:
        log.info("group: %s has %d params, lr_mult: %s, decay_mult: %s", group["name"], len(group["params"]),
                 group["lr_mult"], group["decay_mult"])
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16" and ctx.device.type == "cuda")
    if continuing:
        _restore_optim(optimizer, scaler, checkpoint, ctx)

    train_model: nn.Module = model
    if ctx.is_distributed:
        train_model = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)

    opts = StepOptions(device=ctx.device, norm=cfg.norm, channels_last=cfg.channels_last, amp=cfg.amp, bgr=cfg.bgr)
    per_process = split_batch_size(cfg.batch_size, ctx)
    clip = ClipSpec(mode="train", seq_length=cfg.seq_length, sample_rate=cfg.sample_rate,
                    num_segments=cfg.num_segments, crop_size=cfg.crop_size, scale_size=cfg.scale_size, norm=cfg.norm,
                    num_clips=cfg.num_clips)
    loading = loader_config(cfg, ctx, batch_size=per_process, seed=seed)
    val_loader = build_eval_loader(cfg.val_list, clip.for_mode("val"), loading)
    criterion = nn.CrossEntropyLoss().to(ctx.device)
    show_bar = progress_wanted(cfg.progress, enabled=ctx.is_main)

    def validate(epoch: int) -> EvalResult:
        broadcast_buffers(model, ctx)  # every rank evaluates exactly the weights rank 0 saves
        with epoch_progress(f"val {epoch}", show=show_bar) as bar:
            # The unwrapped model: DDP's forward would sync buffers, and shards may differ in length.
            result = evaluate(model=model, loader=val_loader, criterion=criterion, opts=opts, ctx=ctx,
                              run_log=run_log, print_freq=cfg.print_freq, on_progress=bar)
        run_log.metrics("val", step=epoch, epoch=epoch, prec1=result.top1, prec5=result.top5, loss=result.loss,
                        count=result.count)
        return result

    if cfg.evaluate:
        result = validate(start_epoch)
        return TrainResult(start_epoch, best_prec1, result, None, seed)

    train_loader = build_loader(cfg.train_list, clip, loading)
    if len(train_loader) == 0:
        raise RunnerConfigError(
            f"{cfg.train_list}: fewer videos per process than the batch size ({per_process}); no full batch to train on"
        )
    schedule = LRSchedule(base_lr=cfg.lr, epochs=cfg.epochs, lr_steps=tuple(cfg.lr_steps),
                          warmup_epochs=cfg.warmup_epochs, cosine=cfg.coslr)
    restore_at_step = None
    if continuing and start_iteration == 0:
        # Saved after an epoch (and its validation): restore last of all, before the next epoch starts.
        _restore_rng(checkpoint, ctx)
    elif continuing:
        # Saved right after a step: restore right before the next step, once the skipped batches are drawn.
        def restore_at_step() -> None:
            _restore_rng(checkpoint, ctx)

    last_eval: EvalResult | None = None
    saved: Path | None = None
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.set_epoch(epoch)

        def after_step(iteration: int, total: int, epoch: int = epoch, best: float = best_prec1) -> None:
            nonlocal saved
            if cfg.save_iter_freq > 0 and (iteration + 1) % cfg.save_iter_freq == 0 and iteration + 1 < total:
                saved = _save(cfg, ctx, model, optimizer, scaler, epoch=epoch, best_prec1=best, seed=seed,
                              is_best=False, iteration=iteration + 1)
            if on_step is not None:
                on_step(epoch, iteration)

        with epoch_progress(f"epoch {epoch}", show=show_bar) as bar:
            stats = train_one_epoch(
                model=train_model, loader=train_loader, criterion=criterion, optimizer=optimizer, scaler=scaler,
                schedule=schedule, epoch=epoch, weight_decay=cfg.weight_decay, clip_gradient=cfg.clip_gradient,
                opts=opts, run_log=run_log, print_freq=cfg.print_freq, freeze_bn=cfg.freeze_bn, save_vg=cfg.save_vg,
                on_progress=bar,
                start_iteration=start_iteration if epoch == start_epoch else 0,
                before_first_step=restore_at_step if epoch == start_epoch else None, after_step=after_step,
            )
        run_log.metrics("epoch", step=epoch, epoch=epoch, loss=stats.loss, prec1=stats.top1, prec5=stats.top5,
                        clips_per_s=stats.clips_per_s, clipped_steps=stats.clipped_steps, lr=optimizer.param_groups[-1]["lr"])
        is_best = False
        if eval_due(epoch, eval_freq=cfg.eval_freq, epochs=cfg.epochs):
            last_eval = validate(epoch + 1)
            is_best = last_eval.top1 > best_prec1
            best_prec1 = max(last_eval.top1, best_prec1)
            saved = _save(cfg, ctx, model, optimizer, scaler, epoch=epoch, best_prec1=best_prec1, seed=seed,
                          is_best=is_best)
        elif save_due(epoch, save_freq=cfg.save_freq):
            saved = _save(cfg, ctx, model, optimizer, scaler, epoch=epoch, best_prec1=best_prec1, seed=seed,
                          is_best=False)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return TrainResult(cfg.epochs, best_prec1, last_eval, saved, seed)


def _save(cfg: TrainConfig, ctx: DistContext, model: nn.Module, optimizer: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler, *, epoch: int, best_prec1: float, seed: int, is_best: bool,
          iteration: int = 0) -> Path | None:
    """Collect every rank's RNG state (a collective), then rank 0 writes the checkpoint atomically.

    iteration 0: epoch `epoch` is complete (official meaning of 'epoch': epochs done). iteration > 0:
    a mid-epoch checkpoint; 'epoch' stays at the epochs done and 'iteration' steps of the next are done.
    """
    done = epoch + 1 if iteration == 0 else epoch
    rng_per_rank = all_gather_objects(capture_rng_state(), ctx)
    if not ctx.is_main:
        return None
    state = {
        "epoch": done,
        "arch": cfg.arch,
        "state_dict": model.state_dict(),
        "best_prec1": best_prec1,
        "optim": optimizer.state_dict(),
        # ours: what an exact --resume needs
        "scaler": scaler.state_dict(),
        "rng": rng_per_rank,
        "sampler_epoch": done,
        "iteration": iteration,
        "seed": seed,
        "world_size": ctx.world_size,
        "config": dataclasses.asdict(cfg),
    }
    return save_checkpoint(state, snapshot_dir=cfg.snapshot_dir, arch=cfg.arch, is_best=is_best)


def _restore_optim(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, checkpoint: dict[str, Any],
                   ctx: DistContext) -> None:
    if "optim" in checkpoint:
        try:
            optimizer.load_state_dict(checkpoint["optim"])
        except (ValueError, KeyError) as exc:
            # The official code also carries on here: weights are loaded, momentum restarts.
            log.warning("optimizer state not loaded (%s); momentum buffers start from zero", exc)
    if checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])


def _restore_rng(checkpoint: dict[str, Any], ctx: DistContext) -> None:
    states = checkpoint.get("rng")
    if not states:
        log.warning("checkpoint has no RNG state (official format?): the resumed run will not be bit-identical")
        return
    if len(states) != ctx.world_size:
        log.warning("checkpoint was written by %d processes, this run has %d: RNG streams restart from the seed",
                    len(states), ctx.world_size)
        return
    restore_rng_state(states[ctx.rank])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train.main`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    cfg = parse_train_args(argv)
    try:
        result = run_training(cfg)
    except VideoprepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("done: %d epochs, best Prec@1 %.3f", result.epochs_done, result.best_prec1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
