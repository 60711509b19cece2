"""Video-level testing of a BAT model with the flags of the official test_models.py (which crashes as published).

Every video gives test_segments x crops views (crops: 1 centre, 3 fully-convolutional
256x256, or 10 = 5 crops and their flips); its score is the mean of the raw logits over
the views. Reported, each by name: overall top-1, top-5 and the mean per-class accuracy
(the official script's "Accuracy").

    python -m train.test_models VAL_LIST CHECKPOINT --read_mode video --arch c2d_resnet50 \
        --nonlocal_mod 2 --nltype bat --k 8 --tk 4 --test_segments 10 --test_crops 3 \
        --seq_length 8 --sample_rate 8 -j 16
    torchrun --nproc_per_node=8 -m train.test_models VAL_LIST CHECKPOINT ...   # large test sets
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from train.config import TestConfig, parse_test_args
from train.data import ShardedLoader, inspect_lists, make_loaders
from train.distributed import DistContext, all_gather_objects, check_device, setup_distributed, teardown
from train.engine import StepOptions, video_logits
from train.logging_utils import RunLog, epoch_progress, progress_wanted
from train.models import build_model
from train.runtime import RunnerConfigError, adopt_recorded_model, check_arch, check_channel_order
from train.weights import load_checkpoint, load_weights
from videoprep.atomic import atomic_path
from videoprep.errors import VideoprepError
from videoprep.locations import check_output_file
from videoprep.records import read_list

log = logging.getLogger(__name__)


@dataclass
class TestResult:
    """Video-level accuracy of a test run; percentages."""

    __test__ = False  # not a pytest class

    top1: float
    top5: float
    mean_class_accuracy: float
    num_videos: int
    views: int
    class_accuracy: dict[int, float] = field(default_factory=dict)
    scores_path: Path | None = None


def summarize(video_scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, dict[int, float]]:
    """(top-1, top-5, mean per-class accuracy, per-class accuracy) in percent; classes without videos are left out."""
    if video_scores.ndim != 2 or len(video_scores) != len(labels) or len(labels) == 0:
        raise ValueError(f"scores {video_scores.shape} and labels {labels.shape} must be [N, K] and [N], N > 0")
    k = min(5, video_scores.shape[1])
    ranked = np.argsort(-video_scores, axis=1, kind="stable")
    top1_hits = ranked[:, 0] == labels
    top5_hits = (ranked[:, :k] == labels[:, None]).any(axis=1)
    per_class = {int(c): 100.0 * float(top1_hits[labels == c].mean()) for c in np.unique(labels)}
    return (100.0 * float(top1_hits.mean()), 100.0 * float(top5_hits.mean()),
            float(np.mean(list(per_class.values()))), per_class)


def scores_path(path: str | os.PathLike[str]) -> Path:
    """Where --save_scores PATH lands: np.savez's rule appends .npz unless the name has it."""
    target = Path(os.fspath(path))
    return target if target.suffix == ".npz" else target.with_name(target.name + ".npz")


def write_scores(path: str | os.PathLike[str], *, names: Sequence[str], view_scores: np.ndarray,
                 labels: np.ndarray) -> Path:
    """The official --save_scores npz: videos sorted by path; scores[i] is [views, 1, classes], labels[i] an int.

    The official file holds pickled (scores, label) pairs; ours holds plain arrays (loadable
    without pickle) with the same order and the same per-video score shape, plus `names`.
    """
    target = scores_path(path)
    order = sorted(range(len(names)), key=lambda i: names[i])
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, scores=view_scores[order][:, :, None, :].astype(np.float32),
                 labels=labels[order].astype(np.int64), names=np.array([names[i] for i in order]))
    return target


def prepare_test(cfg: TestConfig) -> tuple[dict, list[str]]:
    """Everything checked before a model is built: flags, the scores file, the checkpoint, the list.

    The checkpoint's recorded model and clip settings replace the flags' defaults (a contradicting
    flag is an error); the list gives the backend and class count the flags and checkpoint leave open.
    Returns the checkpoint and a line for each thing taken or inferred.
    """
    if cfg.tsm:
        raise RunnerConfigError("--tsm: temporal shift is not part of the released BAT models (the official "
                                "script passes it to a model that does not accept it); drop the flag")
    check_device(cfg.device)
    if cfg.save_scores:
        check_output_file(scores_path(cfg.save_scores), what="--save_scores")
    checkpoint = load_checkpoint(cfg.weights, trusted_legacy=cfg.trusted_legacy_checkpoint,
                                 given_as="WEIGHTS (the second argument)")
    taken, line = adopt_recorded_model(cfg, checkpoint, source=cfg.weights)
    check_arch(cfg, taken=taken, source=cfg.weights)
    said = ([line] if line else []) + inspect_lists(cfg, [cfg.test_list], taken=taken)
    check_channel_order(cfg, checkpoint, source=cfg.weights)
    return checkpoint, said


def run_test(cfg: TestConfig, *, stream: TextIO | None = None) -> TestResult:
    """The whole test run of `python -m train.test_models`; rank 0 prints and returns the full result."""
    checkpoint, said = prepare_test(cfg)
    ctx = setup_distributed(device=cfg.device, backend=cfg.dist_backend)
    run_log = RunLog(log_dir=None, enabled=ctx.is_main, stream=stream, tensorboard=False)
    try:
        for line in said:
            run_log.line(line)
        return _test(cfg, ctx, run_log, checkpoint)
    finally:
        run_log.close()
        teardown(ctx)


def _load_model(cfg: TestConfig, ctx: DistContext, run_log: RunLog, checkpoint: dict) -> torch.nn.Module:
    """The model the settings describe, with the checkpoint's weights (strict unless --non-strict), in eval mode."""
    model = build_model(cfg.arch, **cfg.model_kwargs())
    if "state_dict" in checkpoint and "epoch" in checkpoint:
        run_log.line(f"model epoch {checkpoint['epoch']} best prec@1: {checkpoint.get('best_prec1', 'n/a')}")
    report = load_weights(model, checkpoint, strict=not cfg.non_strict, source=cfg.weights, relax_flag="--non-strict")
    for line in report.load_lines(cfg.weights) if cfg.non_strict else []:
        run_log.line(line)
    model.to(ctx.device).eval()
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    return model


@torch.no_grad()
def _score_views(cfg: TestConfig, model: torch.nn.Module, loader: ShardedLoader, opts: StepOptions, *,
                 run_log: RunLog, show_bar: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """This rank's per-view logits [videos, views, classes] (None when its shard is empty) and labels."""
    view_chunks: list[np.ndarray] = []
    label_chunks: list[np.ndarray] = []
    done = correct = 0
    start = time.perf_counter()
    with epoch_progress("test", show=show_bar) as bar:
        for i, (clips, labels) in enumerate(loader):
            logits = video_logits(model, clips, opts, div=cfg.div).cpu()
            view_chunks.append(logits.numpy())
            label_chunks.append(labels.numpy())
            done += len(labels)
            correct += int((logits.mean(dim=1).argmax(dim=1) == labels).sum())
            bar(i + 1, len(loader))
            if (i + 1) % cfg.print_freq == 0 or i + 1 == len(loader):
                run_log.line(f"video {done - 1} done, total {done}/{len(loader.indices)}, "
                             f"average {(time.perf_counter() - start) / done:.3f} sec/video, "
                             f"acc {100.0 * correct / done:.2f}")
    local_views = np.concatenate(view_chunks) if view_chunks else None
    return local_views, np.concatenate(label_chunks) if label_chunks else np.zeros(0, dtype=np.int64)


def _merge_ranks(gathered: list, *, count: int, list_file: str) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's (indices, views, labels) back in list order; each entry must be covered exactly once."""
    indices = [i for part in gathered for i in part[0]]
    if sorted(indices) != list(range(count)):
        raise RunnerConfigError(f"{list_file}: ranks covered {len(indices)} entries of {count}")
    view_scores = np.empty((count,) + next(p[1] for p in gathered if p[1] is not None).shape[1:], dtype=np.float32)
    labels_all = np.empty(count, dtype=np.int64)
    for part_indices, part_views, part_labels in gathered:
        if part_views is not None:
            view_scores[part_indices] = part_views
            labels_all[part_indices] = part_labels
    return view_scores, labels_all


def _test(cfg: TestConfig, ctx: DistContext, run_log: RunLog, checkpoint: dict) -> TestResult:
    model = _load_model(cfg, ctx, run_log, checkpoint)
    opts = StepOptions(device=ctx.device, norm=cfg.norm, channels_last=cfg.channels_last, amp=cfg.amp, bgr=cfg.bgr)
    loader = make_loaders(cfg, ctx, batch_size=cfg.batch_size).test
    records = read_list(cfg.test_list, num_classes=cfg.num_classes)
    local_views, local_labels = _score_views(cfg, model, loader, opts, run_log=run_log,
                                             show_bar=progress_wanted(cfg.progress, enabled=ctx.is_main))
    gathered = all_gather_objects((loader.indices, local_views, local_labels), ctx)
    if not ctx.is_main:
        return TestResult(0.0, 0.0, 0.0, 0, 0)
    view_scores, labels_all = _merge_ranks(gathered, count=len(records), list_file=cfg.test_list)
    top1, top5, mean_cls, per_class = summarize(view_scores.mean(axis=1), labels_all)
    result = TestResult(top1=top1, top5=top5, mean_class_accuracy=mean_cls, num_videos=len(records),
                        views=view_scores.shape[1], class_accuracy=per_class)
    run_log.line("Class accuracy: " + " ".join(f"{c}:{a:.2f}" for c, a in sorted(per_class.items())))
    run_log.line(f"Overall top-1: {top1:.2f}%  Overall top-5: {top5:.2f}%  "
                 f"Mean class accuracy: {mean_cls:.2f}%  ({len(records)} videos, {len(per_class)} classes, "
                 f"{result.views} views per video)")
    if cfg.save_scores:
        result.scores_path = write_scores(cfg.save_scores, names=[r.path for r in records], view_scores=view_scores,
                                          labels=labels_all)
        run_log.line(f"scores saved to {result.scores_path}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train.test_models`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    cfg = parse_test_args(argv)
    try:
        run_test(cfg)
    except VideoprepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
