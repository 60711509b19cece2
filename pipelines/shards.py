"""Training input from WebDataset tar shards (`videoprep shard`): local files, http(s):// or pipe: commands.

`build_shard_loader(pattern, clip, config)` streams the tars named by a brace pattern
(`DIR/train-{000000..000041}.tar`) or by a split's index (`DIR/train.json`):

- shards are split by DDP rank, then by DataLoader worker; train shuffles the shard order
  per epoch (the same order on every rank) and mixes clips through a shuffle buffer;
- each clip's bytes are checked against the sha256 of its json, then decoded from memory by
  the decode core with the ClipSpec sampling of the file loader, seeded by the clip's list
  position: the same video and epoch give the same pixels as `build_loader` over the list;
- a bad clip (checksum, decode, unreadable shard) is counted as in the file loader
  (`BadSampleLog`) and replaced by the next good clip of the stream;
- val/test see every clip exactly once across ranks and workers; train gives every rank the
  same number of batches (clips of the split / ranks), cycling through its shards.

`pipe:` runs a shell command, so it is accepted only when the caller says the pattern came
from the command line (`allow_pipe`); an index lists bare file names in its own folder and
a name that leaves it is refused.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipelines.backends import expand, plan_indices
from pipelines.decode import decode_indices
from pipelines.loader import collate_items, worker_options
from pipelines.planning import (
    BadSample,
    BadSampleError,
    BadSampleLog,
    CountsBadSamples,
    make_views,
    plan_clips,
    sample_rng,
    world,
)
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.decode import DecodeError, FrameIndexError
from videoprep.errors import PathError, VideoprepError
from videoprep.tarshards import RawSample, ShardError, ShardSet, open_shard, resolve_shards, tar_samples

log = logging.getLogger("pipelines.loader")

SHUFFLE_BUFFER = 64  # train: clips held for mixing (each a few hundred KB of encoded video)


# --- the dataset ----------------------------------------------------------------------------------


class ShardItem(NamedTuple):
    """An `Item` that also says which clip it stands for: its list position and path (from its json)."""

    clips: torch.Tensor
    label: int
    bad: tuple[BadSample, ...]
    index: int
    path: str


def collate_shard_items(batch: list[ShardItem]) -> tuple[torch.Tensor, torch.Tensor, list[BadSample],
                                                          list[tuple[int, str]]]:
    """`collate_items`, plus the (list position, path) of every video in the batch."""
    return (*collate_items(batch), [(item.index, item.path) for item in batch])


def assign(urls: list[str], *, slot: int, slots: int) -> list[str]:
    """This slot's shards (slot = rank * workers + worker): every shard to exactly one slot."""
    return urls[slot::slots]


def per_slot_counts(total: int, slots: int) -> list[int]:
    """Train: how many clips each slot yields per epoch, so every rank has the same number."""
    return [total // slots + (1 if i < total % slots else 0) for i in range(slots)]


class ShardClipDataset(IterableDataset):
    """Clips streamed from tar shards, sampled, decoded and cropped as `VideoClipDataset` does."""

    def __init__(self, shards: ShardSet, clip: ClipSpec, config: LoaderConfig, *, allow_pipe: bool = False,
                 shuffle_buffer: int | None = None) -> None:
        self.shards, self.clip, self.config = shards, clip, config
        self.allow_pipe = allow_pipe
        self.train = config.shuffles(clip.mode)
        self.shuffle_buffer = (SHUFFLE_BUFFER if self.train else 0) if shuffle_buffer is None else shuffle_buffer
        self.replicas, self.rank = world(config)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_urls(self) -> list[str]:
        """The shard order of this epoch: shuffled by (seed, epoch) in train, the same on every rank."""
        urls = list(self.shards.urls)
        if self.train:
            random.Random(f"{self.config.seed}-{self.epoch}").shuffle(urls)
        return urls

    def slot(self) -> tuple[int, int]:
        """(this process's slot, slots): ranks x DataLoader workers."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.replicas * workers

    def quota(self) -> int | None:
        """Train: clips this slot yields per epoch (equal batches on every rank); None: each shard once."""
        if not self.train or self.shards.index is None:
            return None
        slot, slots = self.slot()
        return per_slot_counts(self.shards.index.total_clips, slots)[slot]

    def __iter__(self) -> Iterator[ShardItem]:
        slot, slots = self.slot()
        quota = self.quota()
        urls = assign(self.epoch_urls(), slot=slot, slots=slots)
        if not urls and quota:
            urls = [self.epoch_urls()[slot % len(self.shards.urls)]]  # fewer shards than slots: share one
        rng = random.Random(f"{self.config.seed}-{self.epoch}-{slot}")
        buffer = self.shuffle_buffer if quota is None else min(self.shuffle_buffer, quota)  # never re-read to fill it
        items = self._items(self._mixed(self._raw(urls, cycle=quota is not None), rng, buffer))
        for count, item in enumerate(items):
            if quota is not None and count >= quota:
                return
            yield item

    def _raw(self, urls: list[str], *, cycle: bool) -> Iterator[RawSample | BadSample]:
        """Every clip of these shards (again and again when `cycle`); an unreadable shard becomes a BadSample."""
        while True:
            for url in urls:
                try:
                    with open_shard(url, allow_pipe=self.allow_pipe) as stream:
                        yield from tar_samples(stream, url)
                except (OSError, PathError) as exc:
                    reason = exc.reason if isinstance(exc, PathError) else f"{type(exc).__name__}: {exc}"
                    yield BadSample(-1, url, "read", f"shard unreadable: {reason}")
            if not cycle or not urls:
                return

    @staticmethod
    def _mixed(samples: Iterator[RawSample | BadSample], rng: random.Random,
               size: int) -> Iterator[RawSample | BadSample]:
        """A shuffle buffer of `size` clips (0 or 1: stream order)."""
        if size <= 1:
            yield from samples
            return
        buffer: list[RawSample | BadSample] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= size:
                pick = rng.randrange(len(buffer))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def _items(self, samples: Iterator[RawSample | BadSample]) -> Iterator[ShardItem]:
        """Decoded items; each bad sample is replaced by the next good one (and reported with it).

        A stand-in takes the bad clip's list position and path, as the file loader's does.
        """
        pending: list[BadSample] = []
        last: ShardItem | None = None
        for sample in samples:
            if not isinstance(sample, BadSample):
                try:
                    clips, label = self.load(sample)
                except (PathError, OSError) as exc:
                    sample = self.bad_sample(sample, exc)
            if isinstance(sample, BadSample):
                pending.append(sample)
                if len(pending) > self.config.max_replacements:  # as the file loader: give up, do not spin
                    raise BadSampleError(pending[0].path, f"this clip and the {len(pending) - 1} after it all "
                                         f"failed; last: {pending[-1].reason}")
                continue
            assert sample.meta is not None  # load() checked it
            last = ShardItem(clips, label, (), int(sample.meta["index"]), str(sample.meta["path"]))
            yield last
            for bad in pending:  # the stand-ins of the bad clips met before it
                yield last._replace(bad=(bad,), index=bad.index, path=bad.path)
            pending = []
        if pending and last is not None:
            for bad in pending:
                yield last._replace(bad=(bad,), index=bad.index, path=bad.path)
        elif pending:
            raise ShardError(pending[0].path, f"no readable clip in this process's shards; first: {pending[0].reason}")

    def load(self, sample: RawSample) -> tuple[torch.Tensor, int]:
        """Check the bytes against the json's sha256, plan the clips, decode from memory, crop."""
        meta = sample.meta
        if meta is None or sample.video is None:
            raise ShardError(sample.where, "a clip needs both its video and its json member")
        if hashlib.sha256(sample.video).hexdigest() != meta.get("sha256"):
            raise ChecksumError(sample.where, "the video's bytes do not match the sha256 in its json")
        try:
            index, frame_num, label = int(meta["index"]), int(meta["frame_num"]), int(meta["label"])
        except (KeyError, TypeError, ValueError):
            raise ShardError(sample.where, "its json lacks index, frame_num or label (shards of "
                             "`videoprep shard` have them)") from None
        rng = sample_rng(seed=self.config.seed, epoch=self.epoch, index=index) if self.clip.mode == "train" else None
        flat = [i for clip in plan_clips(frame_num, self.clip, rng) for seg in clip for i in seg]
        return make_views(frames_of(sample, flat), self.clip, rng), label

    @staticmethod
    def bad_sample(sample: RawSample, exc: Exception) -> BadSample:
        raw = sample.meta.get("index") if sample.meta else None
        index = raw if isinstance(raw, int) else -1
        path = str(sample.meta.get("path", sample.where)) if sample.meta else sample.where
        kind = ("checksum" if isinstance(exc, ChecksumError) else "frame_num" if isinstance(exc, FrameIndexError)
                else "decode" if isinstance(exc, DecodeError) else "read")
        reason = exc.reason if isinstance(exc, PathError) else f"{type(exc).__name__}: {exc}"
        return BadSample(index, path, kind, f"{sample.where}: {reason}")


class ChecksumError(ShardError):
    """A clip whose bytes differ from the sha256 its json records (a corrupted or altered shard)."""


# --- the loader -------------------------------------------------------------------------------------


class ShardLoader(CountsBadSamples):
    """Iterable of `(clips, labels)` batches over shards, with `set_epoch`, `len()` and bad-sample accounting."""

    def __init__(self, dataset: ShardClipDataset, config: LoaderConfig) -> None:
        self.dataset, self.config = dataset, config
        self.num_replicas, self.rank = dataset.replicas, dataset.rank
        index = dataset.shards.index
        num_videos = index.total_clips if index is not None else len(dataset.shards.urls)
        self.bad_log = BadSampleLog(dataset.shards.urls[0], num_videos=num_videos, config=config)
        self.seen: list[tuple[int, str]] = []  # (list position, path) of every video of the last pass
        self._loader = DataLoader(
            dataset, batch_size=config.batch_size, collate_fn=collate_shard_items,
            pin_memory=torch.cuda.is_available() if config.pin_memory is None else config.pin_memory,
            drop_last=config.drops_last(dataset.clip.mode), **worker_options(config),
        )

    def set_epoch(self, epoch: int) -> None:
        """New shard order, shuffle and random clips for `epoch` (workers start afresh each epoch)."""
        self.dataset.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def __len__(self) -> int:
        """Batches this rank yields per epoch (from the index's clip counts)."""
        counts = self.dataset.shards.clips_of()
        if counts is None:
            raise TypeError("the number of batches is unknown without the shards' index ({split}.json)")
        workers = max(self.config.workers, 1)
        size, drop = self.config.batch_size, self.config.drops_last(self.dataset.clip.mode)
        slots = self.num_replicas * workers
        if self.dataset.train:
            per_slot = per_slot_counts(sum(counts.values()), slots)
            mine = [per_slot[self.rank * workers + w] for w in range(workers)]
        else:
            urls = list(self.dataset.shards.urls)
            mine = [sum(counts[u] for u in assign(urls, slot=self.rank * workers + w, slots=slots))
                    for w in range(workers)]
        return sum(n // size if drop else -(-n // size) for n in mine)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.seen = []
        for clips, labels, bad, seen in self._loader:
            if bad:
                self.bad_log.record(bad)
            self.seen.extend(seen)
            yield clips, labels

    def __repr__(self) -> str:
        return (f"ShardLoader(shards={len(self.dataset.shards.urls)}, mode={self.dataset.clip.mode!r}, "
                f"replicas={self.num_replicas}, rank={self.rank})")


def build_shard_loader(pattern: str, clip: ClipSpec, config: LoaderConfig, *, allow_pipe: bool = False,
                       index: str | None = None, shuffle_buffer: int | None = None) -> ShardLoader:
    """A loader of uint8 `(clips [B*K, V, C, T, H, W], labels [B*K])` batches streamed from tar shards.

    `pattern` is a brace pattern of paths, http(s):// URLs or (with `allow_pipe`, for command-line
    input only) pipe: commands, or a split's index `DIR/{split}.json`.
    """
    shards = resolve_shards(pattern, allow_pipe=allow_pipe, index=index)
    return shard_loader(shards, clip, config, allow_pipe=allow_pipe, shuffle_buffer=shuffle_buffer)


def shard_loader(shards: ShardSet, clip: ClipSpec, config: LoaderConfig, *, allow_pipe: bool = False,
                 shuffle_buffer: int | None = None) -> ShardLoader:
    """`build_shard_loader` over shards already resolved (`resolve_shards`)."""
    if not shards.urls:
        raise VideoprepError("the shard pattern names no shard")
    return ShardLoader(ShardClipDataset(shards, clip, config, allow_pipe=allow_pipe,
                                        shuffle_buffer=shuffle_buffer), config)


def frames_of(sample: RawSample, indices: list[int]) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] RGB of a streamed clip at 0-based indices (what the file readers return)."""
    if sample.video is None:
        raise ShardError(sample.where, "no video member")
    unique, inverse = plan_indices(indices)
    return expand(decode_indices(io.BytesIO(sample.video), unique, name=sample.where), inverse)
