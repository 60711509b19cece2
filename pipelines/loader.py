"""`build_loader`: a ready iterable of uint8 `(clips, labels)` batches over a BAT list.

What a clip is comes in one `ClipSpec`, how clips are loaded in one `LoaderConfig`. The
backend is looked up in the registry (`pipelines.backends`): a per-sample reader runs in
this module's DataLoader; a whole-loader backend (DALI) gets the same two objects and
returns its own loader. Workers decode and crop, and ship uint8 [B*K, V, C, T, H, W] (4x
fewer bytes than float; the runner normalises on the device with `ClipSpec.norm`). Every
index the sampler yields carries the epoch, so per-sample randomness (seeded by seed, epoch,
index) is the same with 0 or N workers, persistent or not. Bad videos are replaced in the
worker and counted here: each bad path is logged once, and too many stop the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from pipelines.backends import require_backend
from pipelines.dataset import BadSample, Item, VideoClipDataset
from pipelines.planning import BadSampleLog, CountsBadSamples, build_sampler
from pipelines.spec import MIN_BAD_SAMPLES, ClipSpec, LoaderConfig
from videoprep.decode import set_decoder_threads

__all__ = ["MIN_BAD_SAMPLES", "ClipLoader", "ClipSpec", "LoaderConfig", "build_loader"]


def collate_items(batch: list[Item]) -> tuple[torch.Tensor, torch.Tensor, list[BadSample]]:
    """Clips [B*K, V, C, T, H, W] (uint8, K clips of each video in a row), labels int64 [B*K], the bad samples met."""
    clips = torch.cat([item.clips for item in batch])
    labels = torch.tensor([item.label for item in batch for _ in range(len(item.clips))], dtype=torch.int64)
    bad = [b for item in batch for b in item.bad]
    return clips, labels, bad


def worker_init(worker_id: int) -> None:
    """One torch thread and single-threaded decoders per worker: parallelism comes from the workers."""
    torch.set_num_threads(1)
    set_decoder_threads(1)


def worker_options(config: LoaderConfig) -> dict[str, Any]:
    """The DataLoader's worker settings from the config: count, per-worker set-up, prefetch."""
    return {"num_workers": config.workers, "worker_init_fn": worker_init if config.workers > 0 else None,
            "prefetch_factor": config.prefetch_factor if config.workers > 0 else None}


class ClipLoader(CountsBadSamples):
    """Iterable of `(clips, labels)` batches with `set_epoch`, `len()` and bad-sample accounting."""

    def __init__(self, dataset: VideoClipDataset, config: LoaderConfig, *,
                 subset: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.config = config
        self.sampler, self.remainder_indices = build_sampler(len(dataset), dataset.clip, config, subset=subset)
        self.num_replicas, self.rank = self.sampler.base.num_replicas, self.sampler.base.rank
        self.bad_log = BadSampleLog(dataset.list_file, num_videos=len(dataset), config=config)
        on_gpu = getattr(dataset.reader, "device", "cpu") != "cpu"
        if on_gpu and config.workers > 0:
            raise ValueError(f"backend {config.backend!r} decodes on {config.device}: use workers 0 "
                             "(the GPU decodes; worker processes cannot share its context)")
        self._pin = torch.cuda.is_available() and not on_gpu if config.pin_memory is None else config.pin_memory
        self._loader = self._data_loader()

    def _data_loader(self) -> DataLoader:
        config, dataset = self.config, self.dataset
        return DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=self.sampler,
            collate_fn=collate_items,
            pin_memory=self._pin,
            drop_last=config.drops_last(dataset.clip.mode),
            persistent_workers=config.persistent_workers and config.workers > 0,
            **worker_options(config),
        )

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch: new shuffle and new random clips, reproducible from the seed."""
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for clips, labels, bad in self._loader:
            if bad:
                self.bad_log.record(bad)
            yield clips, labels

    def close(self) -> None:
        """Stop persistent worker processes now (a fresh DataLoader replaces the old one; iterating restarts them)."""
        self._loader = self._data_loader()

    def __enter__(self) -> ClipLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClipLoader({self.dataset!r}, batches={len(self)}, replicas={self.num_replicas}, rank={self.rank})"


def build_loader(
    list_file: str | os.PathLike[str], clip: ClipSpec, config: LoaderConfig, *,
    subset: Sequence[int] | None = None,
) -> Any:
    """A loader of uint8 `(clips [B*K, V, C, T, H, W], labels [B*K])` batches over a BAT list.

    V is `clip.views`, K is `clip.num_clips`. `subset` restricts the loader to some list entries
    (e.g. the `remainder_indices` that distributed shards leave out). An unknown backend, or one
    not usable here, raises BackendError naming what is available and why the others are not.
    """
    if isinstance(config.backend, str):
        backend, _ = require_backend(config.backend)
        if backend.kind == "loader":
            return backend.resolve()(list_file, clip, config, subset=subset)
    return ClipLoader(VideoClipDataset(list_file, clip, config), config, subset=subset)

