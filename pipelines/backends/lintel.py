"""The BAT `read_mode video` reader: whole file into memory, Lintel's `loadvid_frame_nums` on the bytes."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Literal

import numpy as np

from pipelines.backends import expand, plan_indices
from pipelines.decode import count_frames, decode_indices, native_size
from pipelines.lintel import IMPLEMENTATIONS, Implementation, frames_from_buffer, native_lintel
from videoprep.decode import DecodeError, past_end_error

log = logging.getLogger(__name__)


class LintelReader:
    """Reads frames the way BAT's video mode does: one read of the file, one Lintel call per clip.

    `implementation="ours"` (default) is the frame-exact PyAV core of `pipelines.decode`;
    `"native"` calls the genuine Lintel C extension (when installed), with its known
    off-by-one, looping and webm drift. `should_seek` (default on) seeks to the keyframe
    before the first needed frame; ours returns the same frames either way.
    """

    def __init__(self, *, implementation: Implementation = "ours", should_seek: bool = True) -> None:
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation ({implementation!r}) must be one of {', '.join(IMPLEMENTATIONS)}")
        self.implementation: Literal["ours", "native"] = implementation
        self.should_seek = should_seek
        self._native: ModuleType | None = None
        if implementation == "native":
            self._native = native_lintel()
            if self._native is None:
                raise DecodeError(
                    "lintel",
                    "implementation 'native' needs the Lintel C extension (github.com/dukebw/lintel, "
                    "built from source; the PyPI package `lintel` is an unrelated docstring checker); "
                    "use implementation 'ours' instead",
                )

    def __repr__(self) -> str:
        return f"LintelReader(implementation={self.implementation!r}, should_seek={self.should_seek})"

    def read(self, path: str, indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, 3] RGB; the sorted unique indices are decoded once."""
        unique, inverse = plan_indices(indices)
        try:
            with open(path, "rb") as handle:
                encoded = handle.read()
        except OSError as exc:
            raise DecodeError(path, f"cannot read: {exc.strerror}") from None
        if self._native is not None:
            frames = self._read_native(encoded, unique, path)
        else:
            # loadvid_frame_nums's own core on the same bytes, minus its bytes round trip:
            # the buffer copy and the copy back to writable memory cost ~0.5 ms a clip.
            frames = decode_indices(io.BytesIO(encoded), unique, should_seek=self.should_seek, name=path)
        return expand(frames, inverse)

    def _read_native(self, encoded: bytes, unique: list[int], path: str) -> np.ndarray:
        # Lintel pads past the end by looping instead of failing: check the count first.
        total = count_frames(encoded, name=path)
        if unique[-1] >= total:
            raise past_end_error(path, unique[-1], total)
        result = self._native.loadvid_frame_nums(encoded, frame_nums=unique, should_seek=self.should_seek)
        if isinstance(result, tuple):  # width/height 0: (buffer, width, height)
            buf, width, height = result
        else:  # some builds return the bare buffer
            buf, (width, height) = result, native_size(encoded, name=path)
        return np.array(frames_from_buffer(bytes(buf), num_frames=len(unique), width=width, height=height))

    def frame_count(self, path: str) -> int:
        """Frames a full decode yields, from demuxing (no decoding)."""
        return count_frames(path)
