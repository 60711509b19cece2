"""Which frames a clip takes: the official BAT index rules as pure functions (no decoding)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["train", "val", "test"]
MODES: tuple[str, ...] = ("train", "val", "test")


def clip_span(*, seq_length: int, sample_rate: int) -> int:
    """Frames one clip spans from its first to its last index: T*r - (r-1) (57 for 8x8)."""
    return seq_length * sample_rate - (sample_rate - 1)


def _check(num_frames: int, num_segments: int, seq_length: int, sample_rate: int, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode ({mode!r}) must be one of {', '.join(MODES)}")
    for name, value in (("num_segments", num_segments), ("seq_length", seq_length),
                        ("sample_rate", sample_rate), ("num_frames", num_frames)):
        if value < 1:
            raise ValueError(f"{name} ({value}) must be >= 1")


def segment_starts(
    num_frames: int,
    *,
    num_segments: int,
    seq_length: int,
    sample_rate: int,
    mode: Mode,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """First frame of each segment's clip, by the official train (random) or val/test (centred) rule."""
    _check(num_frames, num_segments, seq_length, sample_rate, mode)
    need = clip_span(seq_length=seq_length, sample_rate=sample_rate)
    if mode == "train":
        if rng is None:
            raise ValueError("mode 'train' draws random starts: pass rng (a numpy Generator)")
        avg = (num_frames - need + 1) // num_segments
        if avg > 0:
            return [s * avg + int(rng.integers(avg)) for s in range(num_segments)]
        if num_frames > need:
            return sorted(int(x) for x in rng.integers(num_frames - need + 1, size=num_segments))
        return [0] * num_segments
    if num_frames > num_segments + need - 1:
        # Float tick, evaluated in this order, as the official code does (300 frames, S=10 -> 182, not 183).
        tick = (num_frames - need + 1) / float(num_segments)
        return [int(tick / 2.0 + tick * s) for s in range(num_segments)]
    return [0] * num_segments


def clip_from_start(start: int, *, num_frames: int, seq_length: int, sample_rate: int) -> list[int]:
    """start, start+r, ... (T of them), each clamped to the last frame (short videos repeat it)."""
    last = num_frames - 1
    return [min(start + i * sample_rate, last) for i in range(seq_length)]


def clip_indices(
    num_frames: int,
    *,
    num_segments: int,
    seq_length: int,
    sample_rate: int,
    mode: Mode,
    rng: np.random.Generator | None = None,
) -> list[list[int]]:
    """Frame indices (0-based) of every segment's clip: one list of seq_length indices per segment."""
    starts = segment_starts(
        num_frames, num_segments=num_segments, seq_length=seq_length,
        sample_rate=sample_rate, mode=mode, rng=rng,
    )
    return [
        clip_from_start(p, num_frames=num_frames, seq_length=seq_length, sample_rate=sample_rate)
        for p in starts
    ]


TEST_CROPS: tuple[int, ...] = (1, 3, 10)


@dataclass(frozen=True)
class TestView:
    """One test view of a video: which segment's frames and which crop of them."""

    segment: int
    crop: int
    indices: tuple[int, ...]


def test_views(
    num_frames: int, *, test_segments: int, test_crops: int, seq_length: int, sample_rate: int
) -> list[TestView]:
    """Every view of the official test protocol, segment-major: (seg0 crop0, seg0 crop1, ..., seg1 crop0, ...)."""
    if test_crops not in TEST_CROPS:
        raise ValueError(f"test_crops ({test_crops}) must be one of {TEST_CROPS}")
    clips = clip_indices(
        num_frames, num_segments=test_segments, seq_length=seq_length,
        sample_rate=sample_rate, mode="test",
    )
    return [TestView(s, c, tuple(idx)) for s, idx in enumerate(clips) for c in range(test_crops)]
