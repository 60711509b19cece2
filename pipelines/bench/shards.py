"""`videoprep bench --shards`: clips/s of the shard loader, beside the file-list loader over the same videos.

Each repetition runs every (loader, worker count) once, in an order rotated per
repetition (the machine is noisy); a run is one pass over the split in val view
(each clip once), timed after the first batches (start-up and pipeline fill). The
ratio shards / list per worker count comes from the medians of the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.bench.measures import time_batches
from pipelines.bench.report import machine_description
from pipelines.sampling import Mode
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.atomic import atomic_write_json
from videoprep.progress import ProgressFn, no_progress

RESULT_NAME = "bench_shards.json"


@dataclass(frozen=True)
class ShardBenchConfig:
    """What `bench --shards` measures: the shards, optionally the list of the same videos, workers, clip."""

    shards: str
    out_dir: Path
    list_file: Path | None = None
    root_path: str = ""
    workers: tuple[int, ...] = (0, 1, 2)
    repeats: int = 3
    batch_size: int = 4
    seq_length: int = 8
    sample_rate: int = 8
    view: Mode = "val"
    allow_pipe: bool = False  # True only for a pattern typed on the command line


def _clip(config: ShardBenchConfig) -> ClipSpec:
    return ClipSpec(mode=config.view, seq_length=config.seq_length, sample_rate=config.sample_rate)


def _loader_config(config: ShardBenchConfig, workers: int, num_classes: int | None) -> LoaderConfig:
    return LoaderConfig(root_path=config.root_path, batch_size=config.batch_size, workers=workers,
                        num_classes=num_classes, drop_last=False, persistent_workers=False)


def shard_pass(config: ShardBenchConfig, workers: int) -> tuple[int, float]:
    """(clips, seconds) of one pass of the shard loader."""
    from pipelines.shards import build_shard_loader

    loader = build_shard_loader(config.shards, _clip(config), _loader_config(config, workers, None),
                                allow_pipe=config.allow_pipe, shuffle_buffer=0)
    return time_batches(iter(loader), skip=max(1, workers))


def list_pass(config: ShardBenchConfig, workers: int) -> tuple[int, float]:
    """(clips, seconds) of one pass of the file-list loader (pyav, the decode core the shards use)."""
    from pipelines.loader import build_loader

    assert config.list_file is not None
    loader = build_loader(config.list_file, _clip(config),
                          _loader_config(config, workers, None).with_options(backend="pyav"))
    return time_batches(iter(loader), skip=max(1, workers))


def run_shard_bench(config: ShardBenchConfig, *, on_progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Interleaved repetitions of every loader and worker count; medians, ratios and the machine in bench_shards.json."""
    runs: list[tuple[str, int, Callable[[ShardBenchConfig, int], tuple[int, float]]]] = [
        ("shards", w, shard_pass) for w in config.workers]
    if config.list_file is not None:
        runs += [("list", w, list_pass) for w in config.workers]
    machine = machine_description()
    rates: dict[tuple[str, int], list[float]] = {(name, w): [] for name, w, _ in runs}
    total = len(runs) * config.repeats
    for rep in range(config.repeats):
        order = runs[rep % len(runs):] + runs[: rep % len(runs)]
        for done, (name, workers, fn) in enumerate(order, start=rep * len(runs) + 1):
            clips, seconds = fn(config, workers)
            rates[(name, workers)].append(clips / seconds)
            on_progress(done, total)
    rows = [{"loader": name, "workers": w, "clips_per_s": statistics.median(v), "runs": [round(x, 2) for x in v]}
            for (name, w), v in rates.items()]
    ratios = {str(w): rates[("shards", w)] and statistics.median(rates[("shards", w)])
              / statistics.median(rates[("list", w)]) for w in config.workers if ("list", w) in rates}
    report = {"shards": config.shards, "list": str(config.list_file) if config.list_file else None,
              "view": config.view, "batch_size": config.batch_size, "clip": [config.seq_length, config.sample_rate],
              "repeats": config.repeats, "rows": rows, "shards_over_list": ratios, "machine": machine}
    config.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config.out_dir / RESULT_NAME, report)
    return report
