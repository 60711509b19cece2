"""Training and evaluation loops of the BAT runners: meters, accuracy, AMP, exact distributed eval.

Batches arrive as uint8 clips [B, V, C, T, H, W] (V views per video) and int64 labels
[B]; they are normalised on the device, run as B*V clips, and the logits are averaged
over the V views (segments in training, segments x crops in testing).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pipelines.transforms import normalize
from train.distributed import DistContext, all_reduce_sum
from train.logging_utils import RunLog
from train.optim import LRSchedule, apply_lr, freeze_batchnorm
from videoprep.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)

AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class AverageMeter:
    """Last value and running average of a per-batch quantity (weighted by batch size)."""

    def __init__(self) -> None:
        self.val = 0.0
        self.sum = 0.0
        self.count = 0
        self.avg = 0.0

    def update(self, value: float, n: int = 1) -> None:
        """Add a batch mean `value` over `n` items."""
        self.val = value
        self.sum += value * n
        self.count += n
        self.avg = self.sum / self.count


def topk_correct(logits: torch.Tensor, target: torch.Tensor, *, topk: Sequence[int] = (1, 5)) -> list[int]:
    """How many rows have their target among the k highest logits, for each k (k capped at the class count)."""
    maxk = min(max(topk), logits.shape[1])
    ranked = logits.topk(maxk, dim=1, largest=True, sorted=True).indices
    hits = ranked.eq(target.view(-1, 1))
    return [int(hits[:, : min(k, maxk)].any(dim=1).sum().item()) for k in topk]


def accuracy(logits: torch.Tensor, target: torch.Tensor, *, topk: Sequence[int] = (1, 5)) -> list[float]:
    """Precision@k in percent for each k, as the official logs report it."""
    n = max(target.shape[0], 1)
    return [100.0 * c / n for c in topk_correct(logits, target, topk=topk)]


@dataclass(frozen=True)
class StepOptions:
    """How a batch becomes model input: device, normalisation (bgr: official img mode), memory format, autocast."""

    device: torch.device
    norm: str = "official"
    channels_last: bool = False
    amp: str = "off"
    bgr: bool = False

    def __post_init__(self) -> None:
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"amp ({self.amp!r}) must be one of {', '.join(AMP_DTYPES)}")

    def autocast(self) -> contextlib.AbstractContextManager:
        """torch.autocast for bf16/fp16, a null context when AMP is off."""
        dtype = AMP_DTYPES[self.amp]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def model_input(clips: torch.Tensor, opts: StepOptions) -> torch.Tensor:
    """uint8 [B, V, C, T, H, W] on any device -> normalised float [B*V, C, T, H, W] on opts.device."""
    if clips.dim() != 6:
        raise ValueError(f"clips must be [B, V, C, T, H, W], got shape {tuple(clips.shape)}")
    x = clips.to(opts.device, non_blocking=True)
    x = normalize(x, norm=opts.norm, bgr=opts.bgr)
    x = x.flatten(0, 1)
    if opts.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


def video_logits(model: nn.Module, clips: torch.Tensor, opts: StepOptions, *, div: int = 1) -> torch.Tensor:
    """Per-view logits [B, V, K] in float32; `div` runs the B*V views in that many parts to bound memory."""
    batch, views = clips.shape[:2]
    x = model_input(clips, opts)
    with opts.autocast():
        if div <= 1:
            out = model(x)
        else:
            out = torch.cat([model(part) for part in torch.tensor_split(x, min(div, x.shape[0]))], dim=0)
    return out.float().view(batch, views, -1)


@dataclass
class EvalResult:
    """Exact metrics over every sample of an evaluation (summed over all ranks)."""

    top1: float
    top5: float
    loss: float
    count: int


@dataclass
class EpochResult:
    """Averages of one training epoch on this rank."""

    loss: float
    top1: float
    top5: float
    iterations: int
    clips_per_s: float
    clipped_steps: int


def value_grad_means(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """--save-vg: mean |value| and mean |grad| of every parameter, keyed `value/NAME` and `grad/NAME`."""
    means: dict[str, float] = {}
    for group in optimizer.param_groups:
        for name, param in zip(group["param_names"], group["params"], strict=True):
            means[f"value/{name}"] = float(param.detach().abs().mean())
            if param.grad is not None:
                means[f"grad/{name}"] = float(param.grad.detach().abs().mean())
    return means


def _print_due(i: int, total: int, print_freq: int) -> bool:
    # Official: i > 0 and (i % print_freq == 0 or last); we also print the last one of a 1-batch epoch.
    return (i > 0 and i % print_freq == 0) or i + 1 == total


def train_one_epoch(
    *,
    model: nn.Module,
    loader: Iterable,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: LRSchedule,
    epoch: int,
    weight_decay: float,
    clip_gradient: float | None,
    opts: StepOptions,
    run_log: RunLog,
    print_freq: int = 20,
    freeze_bn: bool = False,
    save_vg: bool = False,
    on_progress: ProgressFn = no_progress,
    start_iteration: int = 0,
    before_first_step: Callable[[], None] | None = None,
    after_step: Callable[[int, int], None] | None = None,
) -> EpochResult:
    """One pass over the training loader with the lr set at every iteration (official semantics).

    start_iteration > 0 continues an epoch a mid-epoch checkpoint stopped in: the batches before
    it are drawn (same data order) and dropped. before_first_step() runs right before the first
    step taken (where a resumed run restores its RNG state); after_step(iteration, total) after each.
    save_vg also records every parameter's mean |value| and |grad| at each printed step (official --save-vg).
    """
    model.train()
    if freeze_bn:
        freeze_batchnorm(model)
    meters = {name: AverageMeter() for name in ("batch_time", "data_time", "loss", "top1", "top5")}
    total = len(loader)  # type: ignore[arg-type]
    clipped = 0
    clips_seen = 0
    start = end = time.perf_counter()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for i, (clips, labels) in enumerate(loader):
        if i < start_iteration:
            continue
        if before_first_step is not None:
            before_first_step()
            before_first_step = None
        meters["data_time"].update(time.perf_counter() - end)
        lr = schedule.lr_at(epoch=epoch, iteration=i, iters_per_epoch=total)
        apply_lr(optimizer, lr=lr, weight_decay=weight_decay)
        target = labels.to(opts.device, non_blocking=True)
        logits = video_logits(model, clips, opts).mean(dim=1)
        loss = criterion(logits, target)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} iteration {i}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_gradient is not None:
            scaler.unscale_(optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip_gradient))
            if norm > clip_gradient:
                clipped += 1
                log.debug("clipping gradient: %.3f with coef %.4f", norm, clip_gradient / norm)
        scaler.step(optimizer)
        scaler.update()

        n = target.shape[0]
        clips_seen += n
        prec1, prec5 = accuracy(logits.detach(), target)
        meters["loss"].update(loss.item(), n)
        meters["top1"].update(prec1, n)
        meters["top5"].update(prec5, n)
        meters["batch_time"].update(time.perf_counter() - end)
        end = time.perf_counter()
        on_progress(i + 1, total)
        if _print_due(i, total, print_freq):
            shown_lr = optimizer.param_groups[-1]["lr"]
            m = meters
            run_log.line(
                f"Epoch: [{epoch}][{i}/{total}], lr: {shown_lr:.5f}\t"
                f"Time {m['batch_time'].val:.3f} ({m['batch_time'].avg:.3f})\t"
                f"Data {m['data_time'].val:.3f} ({m['data_time'].avg:.3f})\t"
                f"Loss {m['loss'].val:.4f} ({m['loss'].avg:.4f})\t"
                f"Prec@1 {m['top1'].val:.3f} ({m['top1'].avg:.3f})\t"
                f"Prec@5 {m['top5'].val:.3f} ({m['top5'].avg:.3f})"
            )
            run_log.metrics(
                "train", step=epoch * total + i, epoch=epoch, iteration=i, lr=shown_lr,
                loss=m["loss"].val, loss_avg=m["loss"].avg, prec1_avg=m["top1"].avg, prec5_avg=m["top5"].avg,
                batch_time=m["batch_time"].avg, data_time=m["data_time"].avg,
            )
            if save_vg:
                run_log.metrics("vg", step=epoch * total + i, epoch=epoch, iteration=i, **value_grad_means(optimizer))
        if after_step is not None:
            after_step(i, total)
    elapsed = max(time.perf_counter() - start, 1e-9)
    return EpochResult(
        loss=meters["loss"].avg, top1=meters["top1"].avg, top5=meters["top5"].avg, iterations=total - start_iteration,
        clips_per_s=clips_seen / elapsed, clipped_steps=clipped,
    )


@torch.no_grad()
def evaluate(
    *,
    model: nn.Module,
    loader: Iterable,
    criterion: nn.Module,
    opts: StepOptions,
    ctx: DistContext,
    run_log: RunLog,
    print_freq: int = 20,
    on_progress: ProgressFn = no_progress,
    on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> EvalResult:
    """Loss, top-1 and top-5 over every sample; each rank sees a disjoint shard, sums are all-reduced."""
    model.eval()
    loss_sum = correct1 = correct5 = 0.0
    count = 0
    total = len(loader)  # type: ignore[arg-type]
    for i, (clips, labels) in enumerate(loader):
        target = labels.to(opts.device, non_blocking=True)
        logits = video_logits(model, clips, opts).mean(dim=1)
        loss_sum += float(criterion(logits, target).item()) * target.shape[0]
        c1, c5 = topk_correct(logits, target)
        correct1 += c1
        correct5 += c5
        count += target.shape[0]
        if on_batch is not None:
            on_batch(logits, target)
        on_progress(i + 1, total)
        if _print_due(i, total, print_freq):
            run_log.line(
                f"Test: [{i}/{total}]\tLoss {loss_sum / max(count, 1):.4f}\t"
                f"Prec@1 {100.0 * correct1 / max(count, 1):.3f}\tPrec@5 {100.0 * correct5 / max(count, 1):.3f}"
            )
    sums = all_reduce_sum(torch.tensor([loss_sum, correct1, correct5, float(count)], dtype=torch.float64), ctx)
    loss_sum, correct1, correct5, n = (float(v) for v in sums)
    n_items = int(round(n))
    if n_items == 0:
        raise ValueError("evaluation saw no samples (empty validation list?)")
    result = EvalResult(top1=100.0 * correct1 / n, top5=100.0 * correct5 / n, loss=loss_sum / n, count=n_items)
    run_log.line(f"Testing Results: Prec@1 {result.top1:.3f} Prec@5 {result.top5:.3f} Loss {result.loss:.5f}")
    return result
