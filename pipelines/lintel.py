"""Lintel's decoding API (`loadvid_frame_nums`, `loadvid`) on our own frame-exact PyAV core.

The BAT `read_mode video` path reads a whole video into memory and calls Lintel's
`loadvid_frame_nums` on the bytes. The real Lintel is a C extension that no longer
builds against FFmpeg >= 5 or Python >= 3.11, and it is not frame-exact (index n gives
frame n+1 without seeking, it loops at end of file, it drifts on webm when seeking).
This module keeps its call contract and returns the frames a full decode yields at
exactly the requested indices; `should_seek` changes only the speed.

Frame n is the n-th frame (0-based) that decoding the whole stream yields, the same
numbering as `videoprep.synth.decode_all` and the `frame_num` column of our lists.

The decoding itself lives in the one decode core (`videoprep.decode`, as RGB through
`pipelines.decode.decode_indices`); this module keeps only Lintel's contract: its two
functions, the buffer view, the native extension when present, and the errors they raise.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Literal

import numpy as np

from pipelines.decode import count_frames, decode_indices
from videoprep.decode import MEMORY_SOURCE, DecodeError, FrameIndexError

__all__ = [
    "IMPLEMENTATIONS",
    "DecodeError",
    "FrameIndexError",
    "Implementation",
    "frames_from_buffer",
    "loadvid",
    "loadvid_frame_nums",
    "native_lintel",
]

log = logging.getLogger(__name__)

Implementation = Literal["ours", "native"]
IMPLEMENTATIONS: tuple[str, ...] = ("ours", "native")


def native_lintel() -> ModuleType | None:
    """The genuine Lintel C extension when installed, else None.

    The PyPI package named `lintel` is an unrelated docstring checker; the real
    one is recognised by its `loadvid_frame_nums` function.
    """
    if importlib.util.find_spec("lintel") is None:
        return None
    try:
        module = importlib.import_module("lintel")
    except ImportError as exc:  # a broken build of the extension: report, use ours
        log.warning("a `lintel` package is installed but does not import: %s", exc)
        return None
    return module if callable(getattr(module, "loadvid_frame_nums", None)) else None


def _check_size(frames: np.ndarray, width: int, height: int, name: str) -> None:
    got_h, got_w = frames.shape[1:3]
    if (width, height) != (got_w, got_h):
        raise DecodeError(
            name,
            f"width={width} height={height} given but the video is {got_w}x{got_h}: Lintel never "
            f"resizes; pass width=0 height=0 to get the native size back",
        )


def loadvid_frame_nums(
    encoded: bytes,
    *,
    frame_nums: Sequence[int],
    width: int = 0,
    height: int = 0,
    should_seek: bool = False,
    name: str = MEMORY_SOURCE,
) -> bytes | tuple[bytes, int, int]:
    """Lintel's `loadvid_frame_nums`: RGB24 frames at strictly increasing indices, decoded from bytes.

    Returns the buffer (len(frame_nums) * height * width * 3 bytes, frame after frame)
    or, when width and height are both 0, `(buffer, width, height)` at native size.
    Given sizes must equal the native size (Lintel decodes at native size and never
    resizes). `name` only labels errors.
    """
    frames = decode_indices(io.BytesIO(encoded), frame_nums, should_seek=should_seek, name=name)
    if width == 0 and height == 0:
        return frames.tobytes(), int(frames.shape[2]), int(frames.shape[1])
    _check_size(frames, width, height, name)
    return frames.tobytes()


def loadvid(
    encoded: bytes,
    *,
    should_random_seek: bool = True,
    width: int = 0,
    height: int = 0,
    num_frames: int = 32,
    rng: np.random.Generator | None = None,
    name: str = MEMORY_SOURCE,
) -> tuple[bytes, float] | tuple[bytes, int, int, float]:
    """Lintel's `loadvid`: `num_frames` consecutive frames from a random (or the first) position.

    Returns `(buffer, seek_distance)`, or `(buffer, width, height, seek_distance)` when
    width and height are both 0; seek_distance is the start as a fraction of the video.
    Unlike Lintel there is no fps cap, and a video shorter than `num_frames` repeats
    its last frame instead of looping back to the start.
    """
    if num_frames <= 0:
        raise FrameIndexError(name, f"num_frames ({num_frames}) must be > 0")
    total = count_frames(encoded, name=name)
    start = 0
    if should_random_seek and total > num_frames:
        start = int((rng or np.random.default_rng()).integers(0, total - num_frames + 1))
    wanted = [min(start + i, total - 1) for i in range(num_frames)]
    unique = sorted(set(wanted))
    frames = decode_indices(io.BytesIO(encoded), unique, should_seek=True, name=name)
    frames = frames[[unique.index(i) for i in wanted]] if len(unique) != len(wanted) else frames
    seek_distance = start / total
    if width == 0 and height == 0:
        return frames.tobytes(), int(frames.shape[2]), int(frames.shape[1]), seek_distance
    _check_size(frames, width, height, name)
    return frames.tobytes(), seek_distance


def frames_from_buffer(buffer: bytes, *, num_frames: int, width: int, height: int) -> np.ndarray:
    """View a Lintel RGB24 buffer as uint8 [num_frames, height, width, 3]."""
    expected = num_frames * width * height * 3
    if len(buffer) != expected:
        raise DecodeError(
            MEMORY_SOURCE, f"buffer holds {len(buffer)} bytes, expected {num_frames}x{height}x{width}x3 = {expected}"
        )
    return np.frombuffer(buffer, dtype=np.uint8).reshape(num_frames, height, width, 3)
