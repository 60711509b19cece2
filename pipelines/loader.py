"""`build_loader`: a ready iterable of uint8 `(clips, labels)` batches over a BAT list.

Workers decode and crop, and ship uint8 [B, V, C, T, H, W] (4x fewer bytes than float; the
runner normalises on the device with `pipelines.transforms.normalize`). Every index the
sampler yields carries the epoch, so per-sample randomness (seeded by seed, epoch, index)
is the same with 0 or N workers, persistent or not. Bad videos are replaced in the worker
and counted here: each bad path is logged once, and too many stop the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from pipelines.backends import VideoReader
from pipelines.dataset import BadSample, Item, VideoClipDataset, bad_sample_limit, too_many_bad_samples
from pipelines.lintel import set_decoder_threads
from pipelines.sampling import Mode

log = logging.getLogger(__name__)

# Bad videos tolerated whatever max_bad_fraction says (a tiny list must not stop on its first one).
MIN_BAD_SAMPLES = 5


class EpochTaggedSampler(Sampler):
    """Yields `(dataset index, epoch)` so the epoch reaches persistent workers with every index."""

    def __init__(self, base: DistributedSampler, *, indices: Sequence[int] | None = None) -> None:
        self.base = base
        self.indices = list(indices) if indices is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (train) and re-draw clips for `epoch`."""
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.base:
            yield (self.indices[i] if self.indices is not None else i), self.epoch

    def __len__(self) -> int:
        return len(self.base)


def collate_items(batch: list[Item]) -> tuple[torch.Tensor, torch.Tensor, list[BadSample]]:
    """Stack clips [B, V, C, T, H, W] (uint8) and labels int64 [B]; gather the bad samples met."""
    clips = torch.stack([item.clips for item in batch])
    labels = torch.tensor([item.label for item in batch], dtype=torch.int64)
    bad = [b for item in batch for b in item.bad]
    return clips, labels, bad


def worker_init(worker_id: int) -> None:
    """One torch thread and single-threaded decoders per worker: parallelism comes from the workers."""
    torch.set_num_threads(1)
    set_decoder_threads(1)


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank) from the arguments, else torch.distributed, else torchrun's environment."""
    if num_replicas is not None and rank is not None:
        return num_replicas, rank
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    raise ValueError("distributed=True needs num_replicas and rank, an initialised process group, or torchrun")


class ClipLoader:
    """Iterable of `(clips, labels)` batches with `set_epoch`, `len()` and bad-sample accounting."""

    def __init__(
        self,
        dataset: VideoClipDataset,
        *,
        batch_size: int,
        workers: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        distributed: bool,
        num_replicas: int | None,
        rank: int | None,
        subset: Sequence[int] | None,
        pin_memory: bool,
        persistent_workers: bool,
        prefetch_factor: int | None,
        max_bad_fraction: float,
        min_bad_samples: int,
    ) -> None:
        self.dataset = dataset
        size = len(subset) if subset is not None else len(dataset)
        replicas, self.rank = _world(num_replicas, rank) if distributed else (1, 0)
        self.num_replicas = replicas
        # Distributed shards drop their tail so every rank runs the same number of steps;
        # `remainder_indices` lists what the shards leave out (exact evaluation runs it once).
        base = DistributedSampler(
            range(size), num_replicas=replicas, rank=self.rank, shuffle=shuffle, seed=seed,
            drop_last=distributed,
        )
        self.sampler = EpochTaggedSampler(base, indices=subset)
        covered = (size // replicas) * replicas if distributed else size
        order = list(subset) if subset is not None else list(range(size))
        self.remainder_indices: list[int] = order[covered:] if not shuffle else []
        self.max_bad_fraction = max_bad_fraction
        self.bad_limit = bad_sample_limit(
            len(dataset), max_bad_fraction=max_bad_fraction, min_bad_samples=min_bad_samples
        )
        self.bad_samples: dict[int, BadSample] = {}  # by list entry (0-based), first failure
        self.bad_events = 0
        self._loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_items,
            pin_memory=pin_memory,
            drop_last=drop_last,
            worker_init_fn=worker_init if workers > 0 else None,
            persistent_workers=persistent_workers and workers > 0,
            prefetch_factor=prefetch_factor if workers > 0 else None,
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
                self._record(bad)
            yield clips, labels

    def _record(self, bad: list[BadSample]) -> None:
        self.bad_events += len(bad)
        for sample in bad:
            if sample.index in self.bad_samples:
                continue
            self.bad_samples[sample.index] = sample
            log.warning("bad video replaced by another (%s): %s: %s", sample.kind, sample.path, sample.reason)
        if len(self.bad_samples) > self.bad_limit:
            raise too_many_bad_samples(
                self.dataset.list_file, bad=len(self.bad_samples), num_videos=len(self.dataset),
                limit=self.bad_limit, max_bad_fraction=self.max_bad_fraction,
                examples=[f"{b.path}: {b.reason}" for b in self.bad_samples.values()],
            )

    def __repr__(self) -> str:
        return f"ClipLoader({self.dataset!r}, batches={len(self)}, replicas={self.num_replicas}, rank={self.rank})"


def build_loader(
    list_file: str | os.PathLike[str],
    *,
    root_path: str | os.PathLike[str] = "",
    mode: Mode,
    backend: str | VideoReader = "pyav",
    backend_options: dict | None = None,
    batch_size: int,
    workers: int = 4,
    num_segments: int = 1,
    seq_length: int = 8,
    sample_rate: int = 8,
    test_segments: int = 10,
    test_crops: int = 1,
    num_classes: int | None = 400,
    distributed: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
    seed: int = 0,
    shuffle: bool | None = None,
    drop_last: bool | None = None,
    subset: Sequence[int] | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool = True,
    prefetch_factor: int | None = 2,
    max_bad_fraction: float = 0.01,
    min_bad_samples: int = MIN_BAD_SAMPLES,
    check_files: bool = True,
    crop_size: int = 224,
    scale_size: int = 256,
    verify_frame_num: bool = True,
) -> ClipLoader:
    """A loader of uint8 `(clips [B, V, C, T, H, W], labels [B])` batches over a BAT list.

    V is num_segments in train/val and test_segments x crops (1, 3 or 10) in test. Train
    shuffles and drops the last partial batch by default; val/test keep list order and
    every video. `subset` restricts the loader to some list entries (e.g. the
    `remainder_indices` that distributed shards leave out). `check_files` (default on) fails
    at once, naming the list line, when a listed video does not exist (one stat per entry,
    about 1 s for 240k files on a local disk); off, a missing video is a bad sample replaced at
    run time like an undecodable one. `verify_frame_num` (default on)
    counts each video's frames once per worker (a demux, no decoding) and treats a list
    frame_num above the real count as a bad sample even when the sampled indices fall inside
    the video; off, it is caught only when a sampled index passes the real end.
    """
    if backend == "dali":  # a whole DALI pipeline, not a per-sample reader; options: device, num_threads
        from pipelines.dali import build_dali_loader

        return build_dali_loader(
            list_file, root_path=root_path, mode=mode, batch_size=batch_size, num_segments=num_segments,
            seq_length=seq_length, sample_rate=sample_rate, test_segments=test_segments,
            test_crops=test_crops, num_classes=num_classes, distributed=distributed,
            num_replicas=num_replicas, rank=rank, seed=seed, shuffle=shuffle, drop_last=drop_last,
            subset=subset, max_bad_fraction=max_bad_fraction, min_bad_samples=min_bad_samples,
            check_files=check_files, crop_size=crop_size, scale_size=scale_size,
            verify_frame_num=verify_frame_num, **(backend_options or {}),
        )
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be >= 1")
    if workers < 0:
        raise ValueError(f"workers ({workers}) must be >= 0")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"max_bad_fraction ({max_bad_fraction}) must be in 0..1")
    dataset = VideoClipDataset(
        list_file, mode=mode, root_path=root_path, backend=backend, backend_options=backend_options,
        num_segments=num_segments, seq_length=seq_length, sample_rate=sample_rate,
        test_segments=test_segments, test_crops=test_crops, num_classes=num_classes, seed=seed,
        check_files=check_files, crop_size=crop_size, scale_size=scale_size, verify_frame_num=verify_frame_num,
    )
    train = mode == "train"
    return ClipLoader(
        dataset,
        batch_size=batch_size,
        workers=workers,
        shuffle=train if shuffle is None else shuffle,
        drop_last=train if drop_last is None else drop_last,
        seed=seed,
        distributed=distributed,
        num_replicas=num_replicas,
        rank=rank,
        subset=subset,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=persistent_workers,
        prefetch_factor=prefetch_factor,
        max_bad_fraction=max_bad_fraction,
        min_bad_samples=min_bad_samples,
    )
