"""Video-level evaluation of a BAT model: the `Evaluator` behind `python -m train.test_models` and `videoprep test`.

Every video gives test_segments x crops views (crops: 1 centre, 3 fully-convolutional
256x256, or 10 = 5 crops and their flips); its score is the mean of the raw logits over
the views. Reported, each by name: overall top-1, top-5 and the mean per-class accuracy
(the official script's "Accuracy"). Under torchrun each rank scores its shard and rank 0
gathers them, so every video counts exactly once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from train.config import TestConfig
from train.data import ShardedLoader, inspect_lists, make_loaders
from train.distributed import DistContext, all_gather_objects, check_device, setup_distributed, teardown
from train.engine import StepOptions, video_logits
from train.logging_utils import RunLog, epoch_progress, progress_wanted
from train.models import build_model
from train.runtime import RunnerConfigError, adopt_recorded_model, check_arch, check_channel_order
from train.weights import load_checkpoint, load_weights
from videoprep.atomic import atomic_path
from videoprep.locations import check_output_file
from videoprep.records import read_list


@dataclass
class EvaluationResult:
    """Video-level accuracy of a test run; percentages."""

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


def run_test(cfg: TestConfig, *, stream: TextIO | None = None) -> EvaluationResult:
    """The whole test run of `python -m train.test_models`; rank 0 prints and returns the full result."""
    checkpoint, said = prepare_test(cfg)
    ctx = setup_distributed(device=cfg.device, backend=cfg.dist_backend)
    run_log = RunLog(log_dir=None, enabled=ctx.is_main, stream=stream, tensorboard=False)
    try:
        for line in said:
            run_log.line(line)
        return Evaluator(cfg, ctx, run_log, checkpoint).run()
    finally:
        run_log.close()
        teardown(ctx)


def merge_ranks(gathered: list, *, count: int, list_file: str) -> tuple[np.ndarray, np.ndarray]:
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


class Evaluator:
    """One test run's model, loader and list: score every view, gather the ranks, summarise, save scores."""

    def __init__(self, cfg: TestConfig, ctx: DistContext, run_log: RunLog, checkpoint: dict) -> None:
        self.cfg, self.ctx, self.run_log = cfg, ctx, run_log
        self.model = self._load_model(checkpoint)
        self.opts = StepOptions(device=ctx.device, norm=cfg.norm, channels_last=cfg.channels_last, amp=cfg.amp,
                                bgr=cfg.bgr)
        self.loader: ShardedLoader = make_loaders(cfg, ctx, batch_size=cfg.batch_size).test
        # over shards the names come from the clips every rank yielded (see names_in_order)
        self.records = [] if cfg.shards else read_list(cfg.test_list, num_classes=cfg.num_classes)
        self.show_bar = progress_wanted(cfg.progress, enabled=ctx.is_main)

    def _load_model(self, checkpoint: dict) -> torch.nn.Module:
        """The model the settings describe, with the checkpoint's weights (strict unless --non-strict), in eval mode."""
        cfg, device = self.cfg, self.ctx.device
        model = build_model(cfg.arch, **cfg.model_kwargs())
        if "state_dict" in checkpoint and "epoch" in checkpoint:
            self.run_log.line(f"model epoch {checkpoint['epoch']} best prec@1: {checkpoint.get('best_prec1', 'n/a')}")
        report = load_weights(model, checkpoint, strict=not cfg.non_strict, source=cfg.weights,
                              relax_flag="--non-strict")
        for line in report.load_lines(cfg.weights) if cfg.non_strict else []:
            self.run_log.line(line)
        model.to(device).eval()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last_3d)
        return model

    @torch.no_grad()
    def score_views(self) -> tuple[np.ndarray | None, np.ndarray]:
        """This rank's per-view logits [videos, views, classes] (None when its shard is empty) and labels."""
        cfg, loader = self.cfg, self.loader
        view_chunks: list[np.ndarray] = []
        label_chunks: list[np.ndarray] = []
        done = correct = 0
        start = time.perf_counter()
        with epoch_progress("test", show=self.show_bar) as bar:
            for i, (clips, labels) in enumerate(loader):
                logits = video_logits(self.model, clips, self.opts, div=cfg.div).cpu()
                view_chunks.append(logits.numpy())
                label_chunks.append(labels.numpy())
                done += len(labels)
                correct += int((logits.mean(dim=1).argmax(dim=1) == labels).sum())
                bar(i + 1, len(loader))
                if (i + 1) % cfg.print_freq == 0 or i + 1 == len(loader):
                    self.run_log.line(f"video {done - 1} done, total {done}/{len(loader.indices)}, "
                                      f"average {(time.perf_counter() - start) / done:.3f} sec/video, "
                                      f"acc {100.0 * correct / done:.2f}")
        local_views = np.concatenate(view_chunks) if view_chunks else None
        return local_views, np.concatenate(label_chunks) if label_chunks else np.zeros(0, dtype=np.int64)

    def run(self) -> EvaluationResult:
        """Score this rank's videos, gather every rank's on rank 0, and report there (other ranks get zeros)."""
        local_views, local_labels = self.score_views()
        gathered = all_gather_objects((self.loader.indices, local_views, local_labels,
                                       getattr(self.loader, "names", {})), self.ctx)
        if not self.ctx.is_main:
            return EvaluationResult(0.0, 0.0, 0.0, 0, 0)
        self.names = self.names_in_order([part[3] for part in gathered])
        view_scores, labels = merge_ranks([part[:3] for part in gathered], count=len(self.names),
                                          list_file=self.cfg.shards or self.cfg.test_list)
        return self.report(view_scores, labels)

    def names_in_order(self, names: list[dict[int, str]]) -> list[str]:
        """The test videos in list order: the list's paths; over shards, the clips' paths every rank yielded."""
        if not self.cfg.shards:
            return [r.path for r in self.records]
        by_index = {i: path for part in names for i, path in part.items()}
        return [by_index.get(i, f"#{i}") for i in range(self.loader.count)]

    def report(self, view_scores: np.ndarray, labels: np.ndarray) -> EvaluationResult:
        """The official summary lines from every video's view scores, and --save_scores when asked."""
        top1, top5, mean_cls, per_class = summarize(view_scores.mean(axis=1), labels)
        count = len(self.names)
        result = EvaluationResult(top1=top1, top5=top5, mean_class_accuracy=mean_cls, num_videos=count,
                                  views=view_scores.shape[1], class_accuracy=per_class)
        self.run_log.line("Class accuracy: " + " ".join(f"{c}:{a:.2f}" for c, a in sorted(per_class.items())))
        self.run_log.line(f"Overall top-1: {top1:.2f}%  Overall top-5: {top5:.2f}%  "
                          f"Mean class accuracy: {mean_cls:.2f}%  ({count} videos, {len(per_class)} classes, "
                          f"{result.views} views per video)")
        if self.cfg.save_scores:
            result.scores_path = write_scores(self.cfg.save_scores, names=self.names,
                                              view_scores=view_scores, labels=labels)
            self.run_log.line(f"scores saved to {result.scores_path}")
        return result
