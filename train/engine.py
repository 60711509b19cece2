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
    """Averages of one training epoch on this rank; data_wait_fraction is the loader's share of step time."""

    loss: float
    top1: float
    top5: float
    iterations: int
    clips_per_s: float
    clipped_steps: int
    data_wait_fraction: float


@dataclass
class TrainParts:
    """What a training step uses: model, loss, optimizer, gradient scaler, lr rule and how batches become input."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    opts: StepOptions
    weight_decay: float
    clip_gradient: float | None
    freeze_bn: bool = False


@dataclass
class EpochReport:
    """Where an epoch reports: official lines and metrics every print_freq steps, a progress callback."""

    run_log: RunLog
    print_freq: int = 20
    save_vg: bool = False  # also every parameter's mean |value| and |grad| (official --save-vg)
    on_progress: ProgressFn = no_progress


@dataclass
class EpochHooks:
    """A resumed epoch: steps already done, a call right before the first step taken, a call after each step."""

    start_iteration: int = 0
    before_first_step: Callable[[], None] | None = None
    after_step: Callable[[int, int], None] | None = None  # (iteration, steps in the epoch)


class _Meters:
    """The running averages an epoch prints, and the loader's share of step time."""

    def __init__(self) -> None:
        self.batch_time, self.data_time = AverageMeter(), AverageMeter()
        self.loss, self.top1, self.top5 = AverageMeter(), AverageMeter(), AverageMeter()

    @property
    def data_wait_fraction(self) -> float:
        """Seconds spent waiting for batches over seconds of whole steps (0 before any step)."""
        return self.data_time.sum / self.batch_time.sum if self.batch_time.sum > 0 else 0.0


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


def train_step(parts: TrainParts, clips: torch.Tensor, labels: torch.Tensor, *, where: str) -> tuple[
        torch.Tensor, torch.Tensor, float, bool]:
    """One optimisation step at the lr already set: (logits, target, loss, whether the gradient was clipped)."""
    target = labels.to(parts.opts.device, non_blocking=True)
    logits = video_logits(parts.model, clips, parts.opts).mean(dim=1)
    loss = parts.criterion(logits, target)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"loss is {loss_value} at {where}")
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    clipped = False
    if parts.clip_gradient is not None:
        parts.scaler.unscale_(parts.optimizer)
        params = [p for group in parts.optimizer.param_groups for p in group["params"]]
        norm = float(torch.nn.utils.clip_grad_norm_(params, parts.clip_gradient))
        clipped = norm > parts.clip_gradient
        if clipped:
            log.debug("clipping gradient: %.3f with coef %.4f", norm, parts.clip_gradient / norm)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return logits.detach(), target, loss_value, clipped


def _report_step(parts: TrainParts, report: EpochReport, m: _Meters, *, epoch: int, i: int, total: int) -> None:
    """The official step line, its metrics record and (--save-vg) the value/grad means."""
    shown_lr = parts.optimizer.param_groups[-1]["lr"]
    report.run_log.line(
        f"Epoch: [{epoch}][{i}/{total}], lr: {shown_lr:.5f}\t"
        f"Time {m.batch_time.val:.3f} ({m.batch_time.avg:.3f})\t"
        f"Data {m.data_time.val:.3f} ({m.data_time.avg:.3f})\t"
        f"Loss {m.loss.val:.4f} ({m.loss.avg:.4f})\t"
        f"Prec@1 {m.top1.val:.3f} ({m.top1.avg:.3f})\t"
        f"Prec@5 {m.top5.val:.3f} ({m.top5.avg:.3f})"
    )
    step = epoch * total + i
    report.run_log.metrics(
        "train", step=step, epoch=epoch, iteration=i, lr=shown_lr, loss=m.loss.val, loss_avg=m.loss.avg,
        prec1_avg=m.top1.avg, prec5_avg=m.top5.avg, batch_time=m.batch_time.avg, data_time=m.data_time.avg,
        data_wait_fraction=m.data_wait_fraction,
    )
    if report.save_vg:
        report.run_log.metrics("vg", step=step, epoch=epoch, iteration=i, **value_grad_means(parts.optimizer))


def train_one_epoch(parts: TrainParts, loader: Iterable, *, epoch: int, report: EpochReport,
                    hooks: EpochHooks | None = None) -> EpochResult:
    """One pass over the training loader with the lr set at every iteration (official semantics).

    hooks.start_iteration > 0 continues an epoch a mid-epoch checkpoint stopped in: the batches
    before it are drawn (same data order) and dropped.
    """
    hooks = hooks or EpochHooks()
    parts.model.train()
    if parts.freeze_bn:
        freeze_batchnorm(parts.model)
    meters = _Meters()
    total = len(loader)  # type: ignore[arg-type]
    clipped = clips_seen = 0
    before_first_step = hooks.before_first_step
    start = end = time.perf_counter()
    for i, (clips, labels) in enumerate(loader):
        if i < hooks.start_iteration:
            continue
        if before_first_step is not None:
            before_first_step()
            before_first_step = None
        meters.data_time.update(time.perf_counter() - end)
        lr = parts.schedule.lr_at(epoch=epoch, iteration=i, iters_per_epoch=total)
        apply_lr(parts.optimizer, lr=lr, weight_decay=parts.weight_decay)
        logits, target, loss, was_clipped = train_step(parts, clips, labels, where=f"epoch {epoch} iteration {i}")
        clipped += was_clipped
        n = target.shape[0]
        clips_seen += n
        prec1, prec5 = accuracy(logits, target)
        meters.loss.update(loss, n)
        meters.top1.update(prec1, n)
        meters.top5.update(prec5, n)
        meters.batch_time.update(time.perf_counter() - end)
        end = time.perf_counter()
        report.on_progress(i + 1, total)
        if _print_due(i, total, report.print_freq):
            _report_step(parts, report, meters, epoch=epoch, i=i, total=total)
        if hooks.after_step is not None:
            hooks.after_step(i, total)
    elapsed = max(time.perf_counter() - start, 1e-9)
    return EpochResult(
        loss=meters.loss.avg, top1=meters.top1.avg, top5=meters.top5.avg, iterations=total - hooks.start_iteration,
        clips_per_s=clips_seen / elapsed, clipped_steps=clipped, data_wait_fraction=meters.data_wait_fraction,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    criterion: nn.Module,
    opts: StepOptions,
    ctx: DistContext,
    report: EpochReport,
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
        report.on_progress(i + 1, total)
        if _print_due(i, total, report.print_freq):
            report.run_log.line(
                f"Test: [{i}/{total}]\tLoss {loss_sum / max(count, 1):.4f}\t"
                f"Prec@1 {100.0 * correct1 / max(count, 1):.3f}\tPrec@5 {100.0 * correct5 / max(count, 1):.3f}"
            )
    sums = all_reduce_sum(torch.tensor([loss_sum, correct1, correct5, float(count)], dtype=torch.float64), ctx)
    loss_sum, correct1, correct5, n = (float(v) for v in sums)
    n_items = int(round(n))
    if n_items == 0:
        raise ValueError("evaluation saw no samples (empty validation list?)")
    result = EvalResult(top1=100.0 * correct1 / n, top5=100.0 * correct5 / n, loss=loss_sum / n, count=n_items)
    report.run_log.line(f"Testing Results: Prec@1 {result.top1:.3f} Prec@5 {result.top5:.3f} Loss {result.loss:.5f}")
    return result
