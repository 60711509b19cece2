"""A torch Dataset over a BAT list: plan clips, read frames with a backend, crop, ship uint8.

Each item is `(clips, label, bad)`: clips uint8 [K, V, C, T, H, W] (K = ClipSpec.num_clips,
V = views per clip), the int label, and a tuple of `BadSample`s met on the way (videos that
failed and were replaced). Planning, views and stand-ins come from `pipelines.planning`, so
the same seed and epoch give the same clips whatever the worker count, order or backend.
The loader (`pipelines.loader`) counts bad samples in the main process and stops the run
past a threshold.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from pipelines.backends import FrameIndexError, VideoReader, make_reader
from pipelines.planning import BadSample, BadSampleError, ClipPlanner, make_views
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.records import read_list

__all__ = ["BadSample", "BadSampleError", "Item", "VideoClipDataset"]


class Item(NamedTuple):
    """One dataset item: uint8 clips [K, V, C, T, H, W], the label, and the bad samples replaced."""

    clips: torch.Tensor
    label: int
    bad: tuple[BadSample, ...]


class VideoClipDataset(Dataset):
    """Clips of the videos of one BAT list, sampled and cropped as the official code does."""

    def __init__(self, list_file: str | os.PathLike[str], clip: ClipSpec, config: LoaderConfig) -> None:
        self.clip = clip
        self.list_file = os.fspath(list_file)
        self.records = read_list(list_file, num_classes=config.num_classes, root=config.root_path,
                                 check_files=config.check_files)
        self.reader: VideoReader = make_reader(config)
        self.planner = ClipPlanner(self.records, clip=clip, config=config)
        # Each process counts each video's frames once (a demux, no decoding: about 1-5 ms for a
        # 10 s 256p video against 7-50 ms for loading its clip) and remembers it was right, so an
        # overstated frame_num is reported even when the sampled indices fall inside the video.
        self.verify_frame_num = config.verify_frame_num and callable(getattr(self.reader, "frame_count", None))
        self._verified: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def views_per_video(self) -> int:
        """V: views per clip (segments, times crops per segment in test mode)."""
        return self.clip.views

    @property
    def labels(self) -> list[int]:
        """Label of every list entry, in list order."""
        return [r.label for r in self.records]

    def video_path(self, index: int) -> str:
        """Full path of entry `index` (the list path joined to root_path)."""
        return self.planner.path(index)

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        """Item for `index` or `(index, epoch)`; a failing video is replaced by another, deterministically."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        (clips, label), bad = self.planner.first_good(
            index, epoch=epoch, attempt=lambda i: (self.load(i, epoch=epoch), self.records[i].label)
        )
        return Item(clips, label, tuple(bad))

    def load(self, index: int, *, epoch: int = 0) -> torch.Tensor:
        """uint8 [K, V, C, T, H, W] clips of entry `index` for `epoch`, decoded in one pass (raises on a bad video)."""
        if self.verify_frame_num and index not in self._verified:
            self._check_frame_num(index)
        plan = self.planner.plan(index, epoch=epoch)
        frames = self.reader.read(plan.path, plan.flat_indices)
        return make_views(frames, self.clip, plan.rng)

    def _check_frame_num(self, index: int) -> None:
        """Raise FrameIndexError when the list's frame_num exceeds the frames the video really has."""
        path = self.video_path(index)
        count = self.reader.frame_count(path)
        if count < self.records[index].frame_num:
            raise FrameIndexError(path, f"the video has only {count} frames")
        self._verified.add(index)

    def __repr__(self) -> str:
        c = self.clip
        return (
            f"VideoClipDataset({self.list_file!r}, mode={c.mode!r}, videos={len(self)}, reader={self.reader!r}, "
            f"segments={c.segments}, clip={c.seq_length}x{c.sample_rate}, views={c.views}, clips={c.num_clips})"
        )
