"""Per-sample frame readers: one small protocol, a registry by name, and `get_reader`.

A reader turns (path, frame indices) into RGB frames; sampling and cropping live
elsewhere (`pipelines.sampling`, `pipelines.transforms`). DALI is not here: it is a
whole pipeline (`pipelines.dali`), not a per-sample reader.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

# The decode error types are shared with the Lintel-compatible core, which every
# PyAV-based reader uses: a FrameIndexError means "index past the real end".
from pipelines.lintel import DecodeError, FrameIndexError

__all__ = [
    "READERS",
    "DecodeError",
    "FrameIndexError",
    "VideoReader",
    "get_reader",
    "plan_indices",
    "reader_names",
    "register_reader",
]


@runtime_checkable
class VideoReader(Protocol):
    """Reads frames of one video (a file, or a frame directory) at given 0-based indices."""

    def read(self, path: str, indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), H, W, 3] RGB; indices in any order, duplicates allowed.

        Raises DecodeError (with the path) when the video cannot be decoded, and its
        subclass FrameIndexError when an index is past the real last frame.
        """
        ...


# name -> reader class, or "module:attribute" imported on first use (keeps optional
# backends, and their imports, out of processes that never select them).
READERS: dict[str, type | Callable[..., VideoReader] | str] = {
    "pyav": "pipelines.backends.pyav:PyAVReader",
    "lintel": "pipelines.backends.lintel:LintelReader",
    "frames": "pipelines.backends.frames:FramesReader",
}


def reader_names() -> list[str]:
    """Registered reader names, sorted."""
    return sorted(READERS)


def register_reader(name: str, factory: type | Callable[..., VideoReader] | str) -> None:
    """Add or replace a reader under `name` (a class, a factory, or "module:attribute")."""
    READERS[name] = factory


def _resolve(name: str) -> Callable[..., VideoReader]:
    entry = READERS[name]
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module_name), attr)
        READERS[name] = entry
    return entry


def get_reader(name: str, **options) -> VideoReader:
    """A reader instance by registry name; options go to its constructor."""
    if name not in READERS:
        raise ValueError(f"backend ({name!r}) must be one of: {', '.join(reader_names())}")
    return _resolve(name)(**options)


def plan_indices(indices: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """(sorted unique indices to decode once, positions that expand them back to `indices`)."""
    if len(indices) == 0:
        raise ValueError("indices is empty: ask for at least one frame")
    wanted = np.asarray(indices, dtype=np.int64)
    if wanted.ndim != 1:
        raise ValueError(f"indices must be a flat sequence, got shape {wanted.shape}")
    if int(wanted.min()) < 0:
        raise ValueError(f"indices must be >= 0, got {int(wanted.min())}")
    unique, inverse = np.unique(wanted, return_inverse=True)
    return [int(i) for i in unique], inverse


def expand(frames: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Frames of the unique indices -> frames in the requested order (no copy when already so)."""
    if len(inverse) == len(frames) and bool(np.all(inverse == np.arange(len(frames)))):
        return frames
    return frames[inverse]
