"""The planning layer every loader shares, whatever decodes: sampler, clip plans, views, bad videos.

- `EpochTaggedSampler` / `build_sampler`: torch's DistributedSampler over list positions,
  tagged with the epoch, plus the remainder that distributed shards leave out.
- `ClipPlanner`: which frames each entry's clips take (seeded by seed, epoch, index, so the
  same with 0 or N workers), the deterministic stand-in for a bad entry, and the record of why.
- `make_views`: decoded frames -> uint8 views [K, V, C, T, h, w] by the official transforms.
- `BadSampleLog`: bad entries logged once, counted, and the run stopped past the limit.

The torch loader (`pipelines.loader`, `pipelines.dataset`) and the DALI loader
(`pipelines.dali`) both use these, so for the same ClipSpec and LoaderConfig they visit the
same videos in the same order and take the same clips, crops and stand-ins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler

from pipelines import transforms as T
from pipelines.backends import DecodeError, FrameIndexError
from pipelines.sampling import clip_indices
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.errors import PathError, VideoprepError
from videoprep.records import ListRecord

log = logging.getLogger("pipelines.loader")
R = TypeVar("R")


class BadSampleError(PathError):
    """Too many unreadable videos (or a sample whose replacements all failed too)."""

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None) -> None:
        if reason is None:
            # The DataLoader re-raises a worker's exception as `type(message)`: keep the type.
            VideoprepError.__init__(self, str(path))
            self.path, self.reason = "", str(path)
            return
        super().__init__(path, reason)


@dataclass(frozen=True)
class BadSample:
    """A list entry that could not be used this time, and why (kind "decode", "frame_num" or "read")."""

    index: int
    path: str
    kind: str
    reason: str


def replacement_index(index: int, *, size: int, seed: int, epoch: int, attempt: int) -> int:
    """Stand-in for failed entry `index` of a `size`-entry list: another entry, fixed by (seed, epoch, index, attempt)."""
    if size == 1:
        return index
    rng = np.random.default_rng([seed, epoch, index, attempt + 1])
    pick = int(rng.integers(size - 1))
    return pick + 1 if pick >= index else pick


def bad_sample_limit(num_videos: int, *, max_bad_fraction: float, min_bad_samples: int) -> int:
    """Bad list entries a run tolerates: max_bad_fraction of the list, at least min_bad_samples."""
    return max(min_bad_samples, int(max_bad_fraction * num_videos))


def sample_rng(*, seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one entry's random clips and crops in one epoch (reproducible, worker-free)."""
    return np.random.default_rng([seed, epoch, index])


def plan_clips(frame_num: int, clip: ClipSpec, rng: np.random.Generator | None) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """The frames of a video's K clips x S segments x T: K independent draws in train, the fixed views otherwise."""
    return tuple(
        tuple(tuple(seg) for seg in clip_indices(
            frame_num, num_segments=clip.segments, seq_length=clip.seq_length,
            sample_rate=clip.sample_rate, mode=clip.mode, rng=rng,
        ))
        for _ in range(clip.num_clips)
    )


@dataclass(frozen=True)
class ClipPlan:
    """One entry's clips: where it is, its label, and the frames of its K clips x S segments x T."""

    index: int
    path: str
    label: int
    clips: tuple[tuple[tuple[int, ...], ...], ...]
    rng: np.random.Generator | None = None  # train: drew the starts, draws the crops next

    @property
    def flat_indices(self) -> list[int]:
        """Every clip's and segment's indices, concatenated (clip-major, then segment-major)."""
        return [i for clip in self.clips for seg in clip for i in seg]


class ClipPlanner:
    """Plans the clips of a list's entries and finds the stand-in of a bad entry, the same in every loader."""

    def __init__(self, records: Sequence[ListRecord], *, clip: ClipSpec, config: LoaderConfig) -> None:
        self.records = list(records)
        self.clip = clip
        self.root_path = config.root_path
        self.seed = config.seed
        self.max_replacements = config.max_replacements

    def path(self, index: int) -> str:
        """Full path of entry `index` (the list path joined to root_path)."""
        return os.path.join(self.root_path, self.records[index].path)

    def plan(self, index: int, *, epoch: int) -> ClipPlan:
        """Entry `index`'s clips in `epoch`: K independent draws in train, the fixed views otherwise."""
        rec = self.records[index]
        rng = sample_rng(seed=self.seed, epoch=epoch, index=index) if self.clip.mode == "train" else None
        return ClipPlan(index, self.path(index), rec.label, plan_clips(rec.frame_num, self.clip, rng), rng)

    def bad_sample(self, index: int, exc: Exception) -> BadSample:
        """Why entry `index` failed, as a record (a past-the-end index blames the list's frame_num)."""
        path = self.path(index)
        if isinstance(exc, FrameIndexError):
            reason = f"frame_num {self.records[index].frame_num} in the list is wrong: {exc.reason}"
            return BadSample(index, path, "frame_num", reason)
        reason = exc.reason if isinstance(exc, PathError) else f"{type(exc).__name__}: {exc}"
        return BadSample(index, path, "decode" if isinstance(exc, DecodeError) else "read", reason)

    def first_good(self, index: int, *, epoch: int, attempt: Callable[[int], R]) -> tuple[R, list[BadSample]]:
        """`attempt(entry)` for `index`, else for its deterministic stand-ins; the bad entries met on the way.

        An error whose `replaceable` is False (a setup problem every video would hit) is raised at once.
        """
        bad: list[BadSample] = []
        current = index
        for tries in range(self.max_replacements + 1):
            try:
                return attempt(current), bad
            except (PathError, OSError) as exc:
                if not getattr(exc, "replaceable", True):
                    raise
                bad.append(self.bad_sample(current, exc))
                current = replacement_index(index, size=len(self.records), seed=self.seed, epoch=epoch,
                                            attempt=tries)
        raise BadSampleError(
            self.path(index),
            f"this video and {self.max_replacements} replacements all failed; last: {bad[-1].reason}",
        )


def make_views(frames: np.ndarray | torch.Tensor, clip: ClipSpec, rng: np.random.Generator | None) -> torch.Tensor:
    """Decoded frames [K*S*T, H, W, 3] (a plan's flat indices) -> uint8 views [K, V, C, T, h, w].

    Train: one multi-scale crop and flip drawn per clip for all its segments (as the official
    code); val: short side scale_size, centre crop_size; test: every crop of every segment,
    segment-major. Works on CPU and CUDA tensors alike.
    """
    per_clip = clip.segments * clip.seq_length
    out = []
    for k in range(clip.num_clips):
        video = T.to_clip(frames[k * per_clip : (k + 1) * per_clip])  # [C, S*T, H, W]
        if clip.mode == "train":
            if rng is None:
                raise ValueError("mode 'train' draws a random crop: pass rng")
            params = T.sample_train_crop(video.shape[-2], video.shape[-1], rng=rng, out_size=clip.crop_size)
            views = T.train_transform(video, params).unsqueeze(0)
        elif clip.mode == "val":
            views = T.val_transform(video, scale_size=clip.scale_size, crop_size=clip.crop_size).unsqueeze(0)
        else:
            views = T.test_transform(video, test_crops=clip.test_crops, crop_size=clip.crop_size,
                                     scale_size=clip.scale_size)
        # [crops, C, S*T, h, w] -> [S * crops, C, T, h, w], segment-major.
        crops, c, _, h, w = views.shape
        views = views.reshape(crops, c, clip.segments, clip.seq_length, h, w).permute(2, 0, 1, 3, 4, 5)
        out.append(views.reshape(clip.segments * crops, c, clip.seq_length, h, w))
    return torch.stack(out).contiguous()


class BadSampleLog:
    """Bad list entries a loader met: each logged once, every event counted, the run stopped past the limit."""

    def __init__(self, list_file: str, *, num_videos: int, config: LoaderConfig) -> None:
        self.list_file = list_file
        self.num_videos = num_videos
        self.max_bad_fraction = config.max_bad_fraction
        self.limit = bad_sample_limit(num_videos, max_bad_fraction=config.max_bad_fraction,
                                      min_bad_samples=config.min_bad_samples)
        self.samples: dict[int, BadSample] = {}  # by list entry (0-based), first failure
        self.events = 0

    def record(self, bad: Iterable[BadSample]) -> None:
        """Count `bad`, log new entries once, raise BadSampleError past the limit."""
        for sample in bad:
            self.events += 1
            if sample.index in self.samples:
                continue
            self.samples[sample.index] = sample
            log.warning("bad video replaced by another (%s): %s: %s", sample.kind, sample.path, sample.reason)
        if len(self.samples) > self.limit:
            examples = [f"{b.path}: {b.reason}" for b in self.samples.values()]
            raise BadSampleError(
                self.list_file,
                f"{len(self.samples)} bad videos of {self.num_videos} exceed the limit of {self.limit} "
                f"(max_bad_fraction={self.max_bad_fraction}); first: {'; '.join(examples[:3])}. Check the videos "
                f"with `videoprep validate`, or re-run `videoprep index` to fix frame_num",
            )


class CountsBadSamples:
    """For loaders that keep a `bad_log`: the bad entries met so far and the failed loads, as properties."""

    bad_log: BadSampleLog

    @property
    def bad_samples(self) -> dict[int, BadSample]:
        """Bad entries met so far (first failure of each), by entry."""
        return self.bad_log.samples

    @property
    def bad_events(self) -> int:
        """Failed loads so far, replacements of replacements included."""
        return self.bad_log.events


class EpochTaggedSampler(Sampler):
    """Yields `(list entry, epoch)` so the epoch reaches persistent workers with every index."""

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


def world(config: LoaderConfig) -> tuple[int, int]:
    """(num_replicas, rank): (1, 0) unless distributed; then the config, torch.distributed, or torchrun's env."""
    if not config.distributed:
        return 1, 0
    if config.num_replicas is not None and config.rank is not None:
        replicas, rank = config.num_replicas, config.rank
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        replicas, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
    elif "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        replicas, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    else:
        raise ValueError("distributed=True needs num_replicas and rank, an initialised process group, or torchrun")
    if replicas < 1 or not 0 <= rank < replicas:
        raise ValueError(f"rank ({rank}) must be in 0..num_replicas-1 (num_replicas {replicas})")
    return replicas, rank


def build_sampler(
    num_videos: int, clip: ClipSpec, config: LoaderConfig, *, subset: Sequence[int] | None = None
) -> tuple[EpochTaggedSampler, list[int]]:
    """This shard's sampler over the list (or `subset` of it), and the entries no shard visits.

    Shuffling is torch.randperm seeded with seed + epoch. Distributed shards drop their tail so
    every rank runs the same number of steps; the remainder (unshuffled order) is what an exact
    evaluation runs once more.
    """
    size = len(subset) if subset is not None else num_videos
    replicas, rank = world(config)
    shuffle = config.shuffles(clip.mode)
    base = DistributedSampler(range(size), num_replicas=replicas, rank=rank, shuffle=shuffle, seed=config.seed,
                              drop_last=config.distributed)
    order = list(subset) if subset is not None else list(range(size))
    covered = (size // replicas) * replicas
    return EpochTaggedSampler(base, indices=subset), (order[covered:] if not shuffle else [])
