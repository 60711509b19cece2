"""The `pyav` reader: frame-exact decoding of video files with PyAV, seeking once per clip.

The decoding core is `pipelines.decode.decode_indices`, shared with the Lintel-compatible API:
frames are identified by presentation timestamps read from the packets, so the result equals a
full decode at those indices on any codec and on variable frame rate. Per call it

- intra-only codecs (MJPEG, ...: `codec.intra_only`): decodes only the needed packets;
- other codecs: seeks to the last keyframe at or before the first needed frame and decodes
  forward to the last needed one, jumping to a later keyframe where no needed frame lies
  before it, converting to RGB only the needed frames;
- an index at or past the real frame count raises FrameIndexError (never loops).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from pipelines.backends import DecodeError, expand, plan_indices
from pipelines.decode import decode_indices
from videoprep.errors import ProbeError
from videoprep.probe import probe_video


class PyAVReader:
    """Reads frames of a video file at 0-based indices (any order, duplicates allowed)."""

    def __init__(self, *, seek: bool = True) -> None:
        self.seek = seek

    def read(self, path: str | os.PathLike[str], indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, 3] RGB, identical to a full decode at those indices."""
        unique, inverse = plan_indices(indices)
        frames = decode_indices(os.fspath(path), unique, should_seek=self.seek)
        return expand(frames, inverse)

    def frame_count(self, path: str | os.PathLike[str]) -> int:
        """Frames a full decode yields, counted from packets (no decoding)."""
        try:
            return probe_video(path).frames
        except ProbeError as exc:
            raise DecodeError(exc.path, exc.reason) from None

    def __repr__(self) -> str:
        return f"PyAVReader(seek={self.seek})"
