"""Shared fixtures: real videos generated on the fly with PyAV (nothing binary is committed).

A guard for a fresh machine: every test runs with an `ffmpeg` and an `ffprobe` first on PATH that
record their call and fail. The project runs only its own pinned ffmpeg (videoprep.ffmpeg), never
PATH's, and a test that shells out to a bare `ffmpeg` fails here exactly as it would on a machine
without one (tests/test_fresh_machine.py also finds such calls in the source).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from videoprep.synth import write_video

PATH_GUARD_PROGRAMS = ("ffmpeg", "ffprobe")
_GUARD: dict[str, Path] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Put the recording, failing ffmpeg and ffprobe first on PATH for the whole session (children inherit it)."""
    folder = Path(tempfile.mkdtemp(prefix="videoprep-path-guard-"))
    calls = folder / "calls.log"
    calls.touch()
    for name in PATH_GUARD_PROGRAMS:
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\n'
                          f'echo "a bare {name} from PATH was run; use videoprep.ffmpeg" >&2\nexit 127\n')
        script.chmod(0o755)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    _GUARD.update(folder=folder, calls=calls)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "folder" in _GUARD:
        shutil.rmtree(_GUARD["folder"], ignore_errors=True)


@pytest.fixture
def path_ffmpeg_calls() -> Path:
    """The log file the PATH guard's ffmpeg/ffprobe append each call to."""
    return _GUARD["calls"]


@pytest.fixture(autouse=True)
def _no_ffmpeg_from_path() -> Iterator[None]:
    """Fail the test when anything it ran started PATH's ffmpeg or ffprobe."""
    calls = _GUARD["calls"]
    before = calls.stat().st_size
    yield
    with open(calls, "rb") as f:
        f.seek(before)
        new = f.read().decode("utf-8", "replace").strip()
    if new:
        pytest.fail(f"a bare ffmpeg/ffprobe from PATH was run (use videoprep.ffmpeg.ffmpeg_exe): {new[:500]}")


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_video("a/b.mp4", codec="h264", num_frames=40, ...) -> absolute path under tmp_path."""

    def _make(relpath: str, **kwargs) -> Path:
        return write_video(tmp_path / relpath, **kwargs)

    return _make
