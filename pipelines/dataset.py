"""A torch Dataset over a BAT list: sample indices, read frames with a backend, crop, ship uint8.

Each item is `(clips, label, bad)`: clips uint8 [V, C, T, H, W] (V = num_segments in
train/val, test_segments x crops in test), the int label, and a tuple of `BadSample`s
met on the way (videos that failed and were replaced). Randomness comes only from a
numpy Generator seeded with (seed, epoch, index), so the same seed and epoch give the
same clips whatever the worker count or order. The loader (`pipelines.loader`) counts
bad samples in the main process and stops the run past a threshold.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from pipelines import transforms as T
from pipelines.backends import DecodeError, FrameIndexError, VideoReader, get_reader
from pipelines.sampling import MODES, TEST_CROPS, Mode, clip_indices
from videoprep.errors import PathError, VideoprepError
from videoprep.records import ListRecord, read_list

log = logging.getLogger(__name__)

# How many other videos to try, one after another, before a sample gives up.
MAX_REPLACEMENTS = 10


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
    """Stand-in for failed entry `index` of a `size`-entry list: another entry, fixed by (seed, epoch, index, attempt).

    Shared by the dataset and the DALI loader so both replace a bad video with the same one.
    """
    if size == 1:
        return index
    rng = np.random.default_rng([seed, epoch, index, attempt + 1])
    pick = int(rng.integers(size - 1))
    return pick + 1 if pick >= index else pick


def bad_sample_limit(num_videos: int, *, max_bad_fraction: float, min_bad_samples: int) -> int:
    """Bad list entries a run tolerates: max_bad_fraction of the list, at least min_bad_samples."""
    return max(min_bad_samples, int(max_bad_fraction * num_videos))


def too_many_bad_samples(
    list_file: str, *, bad: int, num_videos: int, limit: int, max_bad_fraction: float, examples: list[str]
) -> BadSampleError:
    """The error that stops a run with more bad entries than `limit`, naming the first few."""
    return BadSampleError(
        list_file,
        f"{bad} bad videos of {num_videos} exceed the limit of {limit} (max_bad_fraction={max_bad_fraction}); "
        f"first: {'; '.join(examples[:3])}. Check the videos with `videoprep validate`, "
        f"or re-run `videoprep index` to fix frame_num",
    )


class Item(NamedTuple):
    """One dataset item: uint8 clips [V, C, T, H, W], the label, and the bad samples replaced."""

    clips: torch.Tensor
    label: int
    bad: tuple[BadSample, ...]


def check_view_options(*, mode: str, test_crops: int, crop_size: int, scale_size: int) -> None:
    """The checks every loader makes of how clips are viewed, whatever decodes them."""
    if mode not in MODES:
        raise ValueError(f"mode ({mode!r}) must be one of {', '.join(MODES)}")
    if mode == "test" and test_crops not in TEST_CROPS:
        raise ValueError(f"test_crops ({test_crops}) must be one of {TEST_CROPS}")
    # Crop and short-side resize (official 224/256; the official test --img_size scales both;
    # smaller sizes also make CPU smoke runs fast).
    if crop_size > scale_size:
        raise ValueError(f"crop_size ({crop_size}) must be <= scale_size ({scale_size})")


class VideoClipDataset(Dataset):
    """Clips of the videos of one BAT list, sampled and cropped as the official code does."""

    def __init__(
        self,
        list_file: str | os.PathLike[str],
        *,
        mode: Mode,
        root_path: str | os.PathLike[str] = "",
        backend: str | VideoReader = "pyav",
        backend_options: dict | None = None,
        num_segments: int = 1,
        seq_length: int = 8,
        sample_rate: int = 8,
        test_segments: int = 10,
        test_crops: int = 1,
        num_classes: int | None = 400,
        seed: int = 0,
        check_files: bool = True,
        max_replacements: int = MAX_REPLACEMENTS,
        crop_size: int = T.CROP_SIZE,
        scale_size: int = T.SCALE_SIZE,
        verify_frame_num: bool = True,
    ) -> None:
        check_view_options(mode=mode, test_crops=test_crops, crop_size=crop_size, scale_size=scale_size)
        if seed < 0:
            raise ValueError(f"seed ({seed}) must be >= 0")
        self.crop_size = crop_size
        self.scale_size = scale_size
        self.list_file = os.fspath(list_file)
        self.root_path = os.fspath(root_path)
        self.records: list[ListRecord] = read_list(
            list_file, num_classes=num_classes, root=self.root_path, check_files=check_files
        )
        self.mode = mode
        self.reader: VideoReader = (
            get_reader(backend, **(backend_options or {})) if isinstance(backend, str) else backend
        )
        self.num_segments = num_segments if mode != "test" else test_segments
        self.seq_length = seq_length
        self.sample_rate = sample_rate
        self.test_crops = test_crops
        self.seed = seed
        self.max_replacements = max_replacements
        # Each process counts each video's frames once (a demux, no decoding: about 1-5 ms for a
        # 10 s 256p video against 7-50 ms for loading its clip) and remembers it was right, so an
        # overstated frame_num is reported even when the sampled indices fall inside the video.
        self.verify_frame_num = verify_frame_num and callable(getattr(self.reader, "frame_count", None))
        self._verified: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def views_per_video(self) -> int:
        """V: clips per item (segments, times crops per segment in test mode)."""
        return self.num_segments * (self.test_crops if self.mode == "test" else 1)

    @property
    def labels(self) -> list[int]:
        """Label of every list entry, in list order."""
        return [r.label for r in self.records]

    def video_path(self, index: int) -> str:
        """Full path of entry `index` (the list path joined to root_path)."""
        return os.path.join(self.root_path, self.records[index].path)

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        """Item for `index` or `(index, epoch)`; a failing video is replaced by another, deterministically."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        bad: list[BadSample] = []
        current = index
        for attempt in range(self.max_replacements + 1):
            try:
                clips = self.load(current, epoch=epoch)
                return Item(clips, self.records[current].label, tuple(bad))
            except (PathError, OSError) as exc:
                bad.append(self._bad_sample(current, exc))
                current = replacement_index(
                    index, size=len(self.records), seed=self.seed, epoch=epoch, attempt=attempt
                )
        raise BadSampleError(
            self.video_path(index),
            f"this video and {self.max_replacements} replacements all failed; last: {bad[-1].reason}",
        )

    def load(self, index: int, *, epoch: int = 0) -> torch.Tensor:
        """uint8 [V, C, T, H, W] clips of entry `index` for `epoch` (raises on a bad video)."""
        rec = self.records[index]
        if self.verify_frame_num and index not in self._verified:
            self._check_frame_num(index)
        rng = np.random.default_rng([self.seed, epoch, index])
        clips = clip_indices(
            rec.frame_num, num_segments=self.num_segments, seq_length=self.seq_length,
            sample_rate=self.sample_rate, mode=self.mode, rng=rng if self.mode == "train" else None,
        )
        frames = self.reader.read(self.video_path(index), [i for clip in clips for i in clip])
        video = T.to_clip(frames)  # [C, S*T, H, W]; one crop draw for all segments, as the official code
        if self.mode == "train":
            params = T.sample_train_crop(video.shape[-2], video.shape[-1], rng=rng, out_size=self.crop_size)
            out = T.train_transform(video, params).unsqueeze(0)
        elif self.mode == "val":
            out = T.val_transform(video, scale_size=self.scale_size, crop_size=self.crop_size).unsqueeze(0)
        else:
            out = T.test_transform(video, test_crops=self.test_crops, crop_size=self.crop_size,
                                   scale_size=self.scale_size)
        # [crops, C, S*T, h, w] -> [S * crops, C, T, h, w], segment-major.
        crops, c, _, h, w = out.shape
        out = out.reshape(crops, c, self.num_segments, self.seq_length, h, w).permute(2, 0, 1, 3, 4, 5)
        return out.reshape(self.num_segments * crops, c, self.seq_length, h, w).contiguous()

    def _check_frame_num(self, index: int) -> None:
        """Raise FrameIndexError when the list's frame_num exceeds the frames the video really has."""
        path = self.video_path(index)
        count = self.reader.frame_count(path)
        if count < self.records[index].frame_num:
            raise FrameIndexError(path, f"the video has only {count} frames")
        self._verified.add(index)

    def _bad_sample(self, index: int, exc: Exception) -> BadSample:
        path = self.video_path(index)
        if isinstance(exc, FrameIndexError):
            rec = self.records[index]
            return BadSample(index, path, "frame_num", f"frame_num {rec.frame_num} in the list is wrong: {exc.reason}")
        reason = exc.reason if isinstance(exc, PathError) else f"{type(exc).__name__}: {exc}"
        return BadSample(index, path, "decode" if isinstance(exc, DecodeError) else "read", reason)

    def __repr__(self) -> str:
        return (
            f"VideoClipDataset({self.list_file!r}, mode={self.mode!r}, videos={len(self)}, "
            f"reader={self.reader!r}, segments={self.num_segments}, "
            f"clip={self.seq_length}x{self.sample_rate}, views={self.views_per_video})"
        )

