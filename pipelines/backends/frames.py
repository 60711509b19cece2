"""The `frames` reader: JPEG directories `img_{:05d}.jpg` (0-based), the official img read mode.

Only the files of the needed indices are opened and decoded (PIL). Frames come back RGB; the
official img mode's BGR channel order is a normalisation option (`normalize(..., bgr=True)`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.backends import expand, plan_indices
from pipelines.decode import stack
from videoprep.decode import DecodeError, past_end_error

FRAME_TEMPLATE = "img_{:05d}.jpg"
_FRAME_NAME = re.compile(r"img_\d{5,}\.jpg")


def frame_path(directory: str | os.PathLike[str], index: int) -> str:
    """Path of frame `index` (0-based) inside a frame directory."""
    return os.path.join(os.fspath(directory), FRAME_TEMPLATE.format(index))


def _decode(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class FramesReader:
    """Reads frames of a JPEG frame directory at 0-based indices (any order, duplicates allowed)."""

    def read(self, path: str | os.PathLike[str], indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, 3] RGB, decoding each needed file once."""
        directory = os.fspath(path)
        unique, inverse = plan_indices(indices)
        frames = []
        for index in unique:
            file = frame_path(directory, index)
            try:
                frames.append(_decode(file))
            except FileNotFoundError:
                raise self._missing(directory, index) from None
            except (OSError, UnidentifiedImageError) as exc:
                raise DecodeError(file, f"cannot decode JPEG frame: {exc}") from None
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise DecodeError(directory, f"frames differ in size: {sorted(shapes)}")
        return expand(stack(frames), inverse)

    def frame_count(self, path: str | os.PathLike[str]) -> int:
        """Number of `img_NNNNN.jpg` files in the directory (gaps are reported when read)."""
        directory = os.fspath(path)
        try:
            names = os.listdir(directory)
        except OSError as exc:
            raise DecodeError(directory, f"cannot list frame directory: {exc.strerror}") from None
        return sum(1 for name in names if _FRAME_NAME.fullmatch(name))

    def _missing(self, directory: str, index: int) -> DecodeError:
        if not os.path.isdir(directory):
            return DecodeError(directory, "frame directory not found")
        count = self.frame_count(directory)
        if index >= count:
            return past_end_error(directory, index, count, holder="directory")
        return DecodeError(directory, f"{FRAME_TEMPLATE.format(index)} is missing (a gap in the frames)")

    def __repr__(self) -> str:
        return "FramesReader()"
