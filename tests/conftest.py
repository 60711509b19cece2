"""Shared fixtures: real videos generated on the fly with PyAV (nothing binary is committed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from videoprep.synth import write_video


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_video("a/b.mp4", codec="h264", num_frames=40, ...) -> absolute path under tmp_path."""

    def _make(relpath: str, **kwargs) -> Path:
        return write_video(tmp_path / relpath, **kwargs)

    return _make
