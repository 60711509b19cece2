"""Pieces both runners share: seeding, loaders with exact distributed shards, loading weights."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.loader import build_loader
from pipelines.spec import ClipSpec, LoaderConfig
from train.config import RunnerConfig
from train.distributed import DistContext
from train.weights import AdaptReport, adapt_state_dict
from videoprep.errors import VideoprepError

log = logging.getLogger(__name__)


class RunnerConfigError(VideoprepError, ValueError):
    """A flag combination the runners cannot honour (named, with the reason)."""


def seed_everything(seed: int, *, rank: int = 0) -> None:
    """Seed python, numpy and torch; ranks differ (dropout masks) while model init is broadcast by DDP."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def draw_seed() -> int:
    """A fresh seed for --seed < 0 (printed, and stored in the checkpoint so --resume reuses it)."""
    return int(np.random.SeedSequence().entropy % 1_000_000)


@dataclass
class ShardedLoader:
    """An evaluation loader split exactly over ranks: each rank's even shard, then its share of the remainder.

    Every list entry is seen by exactly one rank, once. `indices` are the list positions in the
    order this rank yields them (used to put test scores back in list order).
    """

    parts: list[Any]
    indices: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for part in self.parts:
            yield from part


def visit_order(loader: Any) -> list[int]:
    """List entries a loader yields, in order (DALI loaders say so; ours tag each index with the epoch)."""
    if hasattr(loader, "order"):
        return list(loader.order())
    return [index for index, _ in loader.sampler]


def loader_config(cfg: RunnerConfig, ctx: DistContext, *, batch_size: int, seed: int) -> LoaderConfig:
    """How both runners load clips, from their flags; GPU-capable backends decode on this rank's GPU."""
    device = f"cuda:{ctx.local_rank}" if ctx.device.type == "cuda" else "cpu"
    if ctx.device.type == "cuda" and cfg.loader_backend != "dali":
        device = "auto"  # the backend's default: CPU decoding in DataLoader workers
    return LoaderConfig(root_path=cfg.root_path, backend=cfg.loader_backend, workers=cfg.workers,
                        num_classes=cfg.num_classes, max_bad_fraction=cfg.max_bad_fraction, batch_size=batch_size,
                        seed=seed, device=device, distributed=ctx.is_distributed, num_replicas=ctx.world_size,
                        rank=ctx.rank)


def build_eval_loader(list_file: str, clip: ClipSpec, config: LoaderConfig) -> ShardedLoader:
    """build_loader for val/test that counts every video once across ranks (no padding, no duplicates)."""
    main = build_loader(list_file, clip, config.with_options(shuffle=False, drop_last=False))
    indices = visit_order(main)
    parts: list[Any] = [main] if indices else []
    remainder = list(main.remainder_indices) if config.distributed else []
    rank, world_size = (config.rank or 0), (config.num_replicas or 1)
    mine = remainder[rank::world_size]
    if mine:
        # At most one video: not worth starting processes.
        extra = build_loader(list_file, clip, config.with_options(distributed=False, shuffle=False, drop_last=False,
                                                                  workers=0), subset=mine)
        parts.append(extra)
        indices.extend(mine)
    return ShardedLoader(parts=parts, indices=indices)


def load_weights(model: nn.Module, checkpoint: dict[str, Any], *, strict: bool, source: str) -> AdaptReport:
    """Adapt (strip module., inflate 2-D, skip shape mismatches) and load; strict fails on a missing or skipped key."""
    adapted, report = adapt_state_dict(model, checkpoint)
    problems = report.missing + report.skipped
    if strict and problems:
        raise RunnerConfigError(
            f"{source}: weights do not match the model ({report.summary()}; first: {', '.join(problems[:5])}); "
            "use --soft_resume to load what fits"
        )
    model.load_state_dict(adapted, strict=False)
    log.info("%s: %s", source, report.summary())
    if not report.exact:
        log.info("%s", report.details())
    return report
