"""Frames at given indices as one RGB array, on the decode core; RGB24 through one reused swscale context."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import BinaryIO

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from videoprep.decode import MEMORY_SOURCE, DecodeError, check_frame_nums, decode_frames


class RGBConverter:
    """Frame -> RGB24 array through one reused swscale context (the same pixels as to_ndarray)."""

    def __init__(self) -> None:
        # frame.to_ndarray(format=...) may set up a new swscale context per frame, which costs
        # more than decoding it (1-2.5 ms vs 0.3 ms at 340x256); one reformatter keeps it.
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """uint8 [H, W, 3] RGB pixels of `frame` (a view of the converted frame's buffer)."""
        rgb = self.reformat(frame)
        plane = rgb.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(rgb.height, plane.line_size)
        return rows[:, : rgb.width * 3].reshape(rgb.height, rgb.width, 3)

    def reformat(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The rgb24 frame."""
        # One swscale thread: its automatic pool stays alive with the reformatter, gains little
        # at these sizes, and forking while it exists hung child processes (ffmpeg's preexec_fn).
        return self._reformatter.reformat(frame, format="rgb24", threads=1)


# One per thread: a reformatter holds a swscale context, which is not safe to share across threads.
_local = threading.local()
# Converters a forked child inherited: their swscale worker threads did not survive the fork,
# so using or freeing them would wait forever (a DataLoader worker hung that way). Kept, unused.
_inherited: list[RGBConverter] = []


def _converter() -> RGBConverter:
    """This thread's converter, new in a forked child (see _inherited)."""
    convert = getattr(_local, "convert", None)
    if convert is None or _local.pid != os.getpid():
        if convert is not None:
            _inherited.append(convert)
        convert = _local.convert = RGBConverter()
        _local.pid = os.getpid()
    return convert


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB24 pixels of a frame, bit-identical to the full decode of synth.decode_all."""
    return _converter()(frame)


def stack(frames: list[np.ndarray]) -> np.ndarray:
    """[N, H, W, 3] from N frames of one size."""
    out = np.empty((len(frames), *frames[0].shape), np.uint8)
    for slot, frame in enumerate(frames):
        out[slot] = frame
    return out


class RGBClip:
    """A clip's frames converted to RGB straight into one [N, H, W, 3] array (one copy per frame).

    np.stack of the converted frames copies row by row around swscale's line padding and
    measured 4x slower than converting into slots of one array.
    """

    def __init__(self, count: int, label: str) -> None:
        self.label = label
        self.array: np.ndarray | None = None
        self.filled = [False] * count

    def put(self, slot: int, frame: av.VideoFrame) -> None:
        """Convert `frame` into `slot`."""
        rgb = to_rgb(frame)
        if self.array is None:
            self.array = np.empty((len(self.filled), *rgb.shape), np.uint8)
        elif rgb.shape != self.array.shape[1:]:
            raise DecodeError(self.label, f"frame size changes mid-stream ({rgb.shape[1]}x{rgb.shape[0]} after "
                                          f"{self.array.shape[2]}x{self.array.shape[1]}): not supported")
        self.array[slot] = rgb
        self.filled[slot] = True

    def done(self) -> bool:
        """True once every slot holds its frame."""
        return all(self.filled)


def decode_indices(
    source: str | BinaryIO,
    indices: Sequence[int],
    *,
    should_seek: bool = True,
    name: str | None = None,
) -> np.ndarray:
    """Decode frames at strictly increasing `indices` -> uint8 [len(indices), H, W, 3] RGB.

    The core (`videoprep.decode.decode_frames`) picks the fastest exact way; `should_seek`
    changes only the speed.
    """
    label = name or (source if isinstance(source, str) else MEMORY_SOURCE)
    nums = check_frame_nums(indices, source=label)
    return decode_frames(source, nums, RGBClip(len(nums), label), should_seek=should_seek, label=label).array
