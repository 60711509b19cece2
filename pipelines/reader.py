"""The per-sample reader protocol every loader backend implements (a leaf: nothing here imports a backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VideoReader(Protocol):
    """Reads frames of one video (a file, or a frame directory) at given 0-based indices."""

    def read(self, path: str, indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, 3] RGB (a CUDA tensor when decoding there); any order, duplicates allowed.

        Raises DecodeError (with the path) when the video cannot be decoded, and its
        subclass FrameIndexError when an index is past the real last frame.
        """
        ...
