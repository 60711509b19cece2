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

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from train.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from train.config import TrainConfig, parse_train_args
from train.data import inspect_lists, make_loaders
from train.distributed import (
    DistContext,
    all_gather_objects,
    broadcast_buffers,
    broadcast_object,
    check_device,
    setup_distributed,
    split_batch_size,
    teardown,
)
from train.engine import (
    EpochHooks,
    EpochReport,
    EpochResult,
    EvalResult,
    StepOptions,
    TrainParts,
    evaluate,
    train_one_epoch,
)
from train.logging_utils import RunLog, epoch_progress, progress_wanted
from train.models import build_model
from train.optim import LRSchedule, build_optimizer, drop_running_stats, freeze_batchnorm
from train.runtime import (
    RunnerConfigError,
    adopt_recorded_model,
    check_arch,
    check_channel_order,
    draw_seed,
    seed_everything,
)
from train.weights import load_checkpoint, load_weights
from videoprep.atomic import atomic_write_json
from videoprep.errors import VideoprepError
from videoprep.locations import check_output_dir

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a run ended: epochs done, best and last validation top-1, the checkpoint written last."""

    epochs_done: int
    best_prec1: float
    last_eval: EvalResult | None
    checkpoint: Path | None
    seed: int


@dataclass
class Prepared:
    """What a run knows before any model exists: the --resume file, whether it continues it, what was inferred."""

    checkpoint: dict[str, Any] | None
    continuing: bool
    said: list[str] = field(default_factory=list)


@dataclass
class Hooks:
    """Test and tooling hooks: after each epoch's checkpoint, after each step (and its mid-epoch checkpoint)."""

    on_epoch_end: Callable[[int], None] | None = None
    on_step: Callable[[int, int], None] | None = None


def eval_due(epoch: int, *, eval_freq: int, epochs: int) -> bool:
    """Official rule: validate (and save) every eval_freq epochs and in the last 10% of the run."""
    return (epoch + 1) % eval_freq == 0 or (epoch + 1) >= 0.9 * epochs


def save_due(epoch: int, *, save_freq: int) -> bool:
    """Official rule for epochs without validation: save every save_freq epochs."""
    return (epoch + 1) % save_freq == 0


def _check(cfg: TrainConfig) -> None:
    """Flag combinations that cannot work, refused before anything is written."""
    if cfg.epochs < 1:
        raise RunnerConfigError(f"--epochs ({cfg.epochs}) must be >= 1")
    if cfg.soft_resume and not cfg.resume:
        raise RunnerConfigError("--soft_resume needs --resume PATH (the weights to start from)")


def prepare(cfg: TrainConfig) -> Prepared:
    """Everything checked before a model is built: flags, output folders, the --resume file, both lists.

    Continuing one of our checkpoints takes its model and clip settings; the lists give the backend
    and class count when the flags do not. `said` holds a line for each thing inferred.
    """
    _check(cfg)
    check_device(cfg.device)
    check_output_dir(cfg.snapshot_dir, what="--snapshot_dir")
    check_output_dir(cfg.log_dir, what="--log_dir")
    checkpoint = None
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume, trusted_legacy=cfg.trusted_legacy_checkpoint, given_as="--resume")
    continuing = checkpoint is not None and "state_dict" in checkpoint and not cfg.soft_resume
    taken, said = frozenset(), []
    if continuing:
        taken, line = adopt_recorded_model(cfg, checkpoint, source=cfg.resume,
                                           instead=", or add --soft_resume to start a new model from its weights")
        said += [line] if line else []
    check_arch(cfg, taken=taken, source=cfg.resume)
    said += inspect_lists(cfg, [cfg.train_list, cfg.val_list], taken=taken)
    if continuing:
        check_channel_order(cfg, checkpoint, source=cfg.resume)
    return Prepared(checkpoint=checkpoint, continuing=continuing, said=said)


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
    prepared = prepare(cfg)
    ctx = setup_distributed(device=cfg.device, backend=cfg.dist_backend)
    run_log = RunLog(log_dir=cfg.log_dir, enabled=ctx.is_main, stream=stream)
    try:
        for line in prepared.said:
            run_log.line(line)
        return _train(Trainer(cfg, ctx, run_log, prepared, hooks=Hooks(on_epoch_end, on_step)))
    finally:
        run_log.close()
        teardown(ctx)


def _train(trainer: Trainer) -> TrainResult:
    """The loop, as the official main.py: train an epoch, validate and save when due."""
    cfg, state = trainer.cfg, trainer.state
    if cfg.evaluate:
        state.last_eval = trainer.validate(state.epoch)
        return trainer.result(epochs_done=state.epoch)
    for epoch in range(state.epoch, cfg.epochs):
        trainer.train_epoch(epoch)
        if eval_due(epoch, eval_freq=cfg.eval_freq, epochs=cfg.epochs):
            state.last_eval = trainer.validate(epoch + 1)
            is_best = state.last_eval.top1 > state.best_prec1
            state.best_prec1 = max(state.last_eval.top1, state.best_prec1)
            trainer.checkpoint(epoch, is_best=is_best)
        elif save_due(epoch, save_freq=cfg.save_freq):
            trainer.checkpoint(epoch, is_best=False)
        if trainer.hooks.on_epoch_end is not None:
            trainer.hooks.on_epoch_end(epoch)
    return trainer.result(epochs_done=cfg.epochs)


@dataclass
class RunState:
    """Where a run stands: the epoch (and step inside it) to start at, best top-1, what was saved and seen last."""

    seed: int
    epoch: int = 0
    iteration: int = 0
    best_prec1: float = 0.0
    saved: Path | None = None
    last_eval: EvalResult | None = None


class Trainer:
    """One training run's model, optimizer, loaders and state: resume, train_epoch, validate, checkpoint."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, run_log: RunLog, prepared: Prepared, *,
                 hooks: Hooks | None = None) -> None:
        self.cfg, self.ctx, self.run_log, self.hooks = cfg, ctx, run_log, hooks or Hooks()
        checkpoint = prepared.checkpoint
        self.state = RunState(seed=self._seed(checkpoint if prepared.continuing else None), epoch=cfg.start_epoch)
        self._write_params()
        self.model = build_model(cfg.arch, **cfg.model_kwargs())
        if cfg.use_affine:
            drop_running_stats(self.model)
        if checkpoint is not None:
            self._load_weights(checkpoint)
        if cfg.freeze_bn:
            run_log.line(f"Freeze All BN Layers ({freeze_batchnorm(self.model)})")
        self.model.to(ctx.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        self.parts = self._train_parts()
        self.loaders = make_loaders(cfg, ctx, batch_size=split_batch_size(cfg.batch_size, ctx), seed=self.state.seed,
                                    with_train=not cfg.evaluate)
        self.show_bar = progress_wanted(cfg.progress, enabled=ctx.is_main)
        self._rng_pending: dict[str, Any] | None = None
        if prepared.continuing:
            self.resume(checkpoint)

    # -- set-up

    def _seed(self, continued: dict[str, Any] | None) -> int:
        """The run's seed (a continued checkpoint's keeps the data order), then global RNGs seeded from it."""
        cfg, ctx = self.cfg, self.ctx
        seed = int(continued["seed"]) if continued is not None and "seed" in continued else cfg.seed
        if seed < 0:
            seed = broadcast_object(draw_seed(), ctx)
        self.run_log.line(f"seed: {seed}")
        seed_everything(seed, rank=ctx.rank)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS refuses determinism without it
            torch.use_deterministic_algorithms(True)
        elif ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as the official code; fixed clip shapes make it pay off
        if cfg.amp == "fp16" and ctx.device.type == "cpu":
            log.warning("--amp fp16 on CPU runs without a gradient scaler; bf16 is the CPU choice")
        return seed

    def _write_params(self) -> None:
        if self.ctx.is_main:
            Path(self.cfg.snapshot_dir).mkdir(parents=True, exist_ok=True)
            atomic_write_json(Path(self.cfg.log_dir) / "params.json",
                              {**self.cfg.record(), "seed": self.state.seed, "world_size": self.ctx.world_size})

    def _load_weights(self, checkpoint: dict[str, Any]) -> None:
        """--resume weights: strict unless --soft_resume / --non-strict."""
        cfg = self.cfg
        strict = not (cfg.soft_resume or cfg.non_strict)
        report = load_weights(self.model, checkpoint, strict=strict, source=cfg.resume, relax_flag="--soft_resume")
        for line in [] if strict else report.load_lines(cfg.resume):
            self.run_log.line(line)
        iteration = int(checkpoint.get("iteration", 0))
        inside = f", iteration {iteration}" if iteration and not cfg.soft_resume else ""
        self.run_log.line(f"=> loaded checkpoint '{cfg.resume}' (epoch {checkpoint.get('epoch', 'n/a')}{inside})"
                          + (", soft: epoch and best restart at 0" if cfg.soft_resume else ""))

    def _train_parts(self) -> TrainParts:
        cfg, ctx = self.cfg, self.ctx
        optimizer = build_optimizer(self.model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    nesterov=cfg.nesterov)
        for group in optimizer.param_groups:
            log.info("group: %s has %d params, lr_mult: %s, decay_mult: %s", group["name"], len(group["params"]),
                     group["lr_mult"], group["decay_mult"])
        train_model: nn.Module = self.model
        if ctx.is_distributed:
            train_model = DistributedDataParallel(self.model,
                                                  device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
        return TrainParts(
            model=train_model, criterion=nn.CrossEntropyLoss().to(ctx.device), optimizer=optimizer,
            scaler=torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16" and ctx.device.type == "cuda"),
            schedule=LRSchedule(base_lr=cfg.lr, epochs=cfg.epochs, lr_steps=tuple(cfg.lr_steps),
                                warmup_epochs=cfg.warmup_epochs, cosine=cfg.coslr),
            opts=StepOptions(device=ctx.device, norm=cfg.norm, channels_last=cfg.channels_last, amp=cfg.amp,
                             bgr=cfg.bgr),
            weight_decay=cfg.weight_decay, clip_gradient=cfg.clip_gradient, freeze_bn=cfg.freeze_bn,
        )

    # -- resume

    def resume(self, checkpoint: dict[str, Any]) -> None:
        """Continue a run where its checkpoint left it: epoch, step, best, optimizer, scaler, RNG streams."""
        self.state.epoch = int(checkpoint.get("epoch", 0))
        self.state.iteration = int(checkpoint.get("iteration", 0))
        self.state.best_prec1 = float(checkpoint.get("best_prec1", 0.0))
        self._restore_optim(checkpoint)
        # RNG streams: saved after an epoch, restored now (last of all, before the next epoch starts);
        # saved inside an epoch, restored right before the next step, once the skipped batches are drawn.
        if self.state.iteration > 0:
            self._rng_pending = checkpoint
        else:
            self._restore_rng(checkpoint)

    def _restore_optim(self, checkpoint: dict[str, Any]) -> None:
        if "optim" in checkpoint:
            try:
                self.parts.optimizer.load_state_dict(checkpoint["optim"])
            except (ValueError, KeyError) as exc:
                # The official code also carries on here: weights are loaded, momentum restarts.
                log.warning("optimizer state not loaded (%s); momentum buffers start from zero", exc)
        if checkpoint.get("scaler"):
            self.parts.scaler.load_state_dict(checkpoint["scaler"])

    def _restore_rng(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng")
        if not states:
            log.warning("checkpoint has no RNG state (official format?): the resumed run will not be bit-identical")
        elif len(states) != self.ctx.world_size:
            log.warning("checkpoint was written by %d processes, this run has %d: RNG streams restart from the seed",
                        len(states), self.ctx.world_size)
        else:
            restore_rng_state(states[self.ctx.rank])

    def _restore_pending_rng(self) -> None:
        if self._rng_pending is not None:
            self._restore_rng(self._rng_pending)
            self._rng_pending = None

    # -- the loop's steps

    def train_epoch(self, epoch: int) -> EpochResult:
        """One epoch (continuing inside it when resumed there); its summary line and metrics record."""
        cfg, state = self.cfg, self.state
        self.loaders.train.set_epoch(epoch)
        resumed_here = epoch == state.epoch and state.iteration > 0
        hooks = EpochHooks(start_iteration=state.iteration if resumed_here else 0,
                           before_first_step=self._restore_pending_rng if resumed_here else None,
                           after_step=lambda i, total: self._after_step(epoch, i, total))
        with epoch_progress(f"epoch {epoch}", show=self.show_bar) as bar:
            report = EpochReport(run_log=self.run_log, print_freq=cfg.print_freq, save_vg=cfg.save_vg,
                                 on_progress=bar)
            stats = train_one_epoch(self.parts, self.loaders.train, epoch=epoch, report=report, hooks=hooks)
        lr = self.parts.optimizer.param_groups[-1]["lr"]
        self.run_log.line(f"Epoch: [{epoch}] done: Loss {stats.loss:.4f}  Prec@1 {stats.top1:.3f}  "
                          f"{stats.clips_per_s:.1f} clips/s  data wait {stats.data_wait_fraction:.1%} of step time")
        self.run_log.metrics("epoch", step=epoch, epoch=epoch, loss=stats.loss, prec1=stats.top1, prec5=stats.top5,
                             clips_per_s=stats.clips_per_s, clipped_steps=stats.clipped_steps, lr=lr,
                             data_wait_fraction=stats.data_wait_fraction)
        return stats

    def _after_step(self, epoch: int, iteration: int, total: int) -> None:
        freq = self.cfg.save_iter_freq
        if freq > 0 and (iteration + 1) % freq == 0 and iteration + 1 < total:
            self.checkpoint(epoch, is_best=False, iteration=iteration + 1)
        if self.hooks.on_step is not None:
            self.hooks.on_step(epoch, iteration)

    def validate(self, epoch: int) -> EvalResult:
        """Exact top-1/top-5/loss over the whole val list, every rank on the weights rank 0 saves."""
        broadcast_buffers(self.model, self.ctx)
        with epoch_progress(f"val {epoch}", show=self.show_bar) as bar:
            # The unwrapped model: DDP's forward would sync buffers, and shards may differ in length.
            report = EpochReport(run_log=self.run_log, print_freq=self.cfg.print_freq, on_progress=bar)
            result = evaluate(self.model, self.loaders.val, criterion=self.parts.criterion, opts=self.parts.opts,
                              ctx=self.ctx, report=report)
        self.run_log.metrics("val", step=epoch, epoch=epoch, prec1=result.top1, prec5=result.top5, loss=result.loss,
                             count=result.count)
        return result

    def checkpoint(self, epoch: int, *, is_best: bool, iteration: int = 0) -> Path | None:
        """Collect every rank's RNG state (a collective), then rank 0 writes the checkpoint atomically.

        iteration 0: epoch `epoch` is complete (official meaning of 'epoch': epochs done). iteration > 0:
        a mid-epoch checkpoint; 'epoch' stays at the epochs done and 'iteration' steps of the next are done.
        """
        cfg, ctx = self.cfg, self.ctx
        done = epoch + 1 if iteration == 0 else epoch
        rng_per_rank = all_gather_objects(capture_rng_state(), ctx)
        if not ctx.is_main:
            return None
        state = {
            "epoch": done,
            "arch": cfg.arch,
            "state_dict": self.model.state_dict(),
            "best_prec1": self.state.best_prec1,
            "optim": self.parts.optimizer.state_dict(),
            # ours: what builds the model and its clips (test and --resume read these) ...
            "model": cfg.model_record(),
            "clip": cfg.clip_record(),
            # ... and what an exact --resume needs
            "scaler": self.parts.scaler.state_dict(),
            "rng": rng_per_rank,
            "sampler_epoch": done,
            "iteration": iteration,
            "seed": self.state.seed,
            "world_size": ctx.world_size,
            "config": cfg.record(),
        }
        self.state.saved = save_checkpoint(state, snapshot_dir=cfg.snapshot_dir, arch=cfg.arch, is_best=is_best)
        return self.state.saved

    def result(self, *, epochs_done: int) -> TrainResult:
        """The run's outcome for the caller."""
        return TrainResult(epochs_done, self.state.best_prec1, self.state.last_eval, self.state.saved, self.state.seed)


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
