"""Output locations of the runners, checked before any model is built or any data read.

A folder must exist or be creatable, be a folder, and be writable; a file's folder the same,
and the file must not be a folder. Each failure is one OutputPathError line naming the flag,
the path and the reason (the CLI exits 2 on it, like a usage error).
"""

from __future__ import annotations

import os
from pathlib import Path

from videoprep.errors import PathError


class OutputPathError(PathError):
    """An output location a run could not write to (named with its flag)."""


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_output_dir(path: str | os.PathLike[str], *, flag: str) -> Path:
    """A folder the run will create or fill: exists as a folder or can be created, and is writable."""
    target = Path(path).absolute()
    _check_folder(target, shown=path, flag=flag)
    return target


def check_output_file(path: str | os.PathLike[str], *, flag: str) -> Path:
    """A file the run will write at the end: not a folder, and its folder exists or can be created, writable."""
    target = Path(path).absolute()
    if target.is_dir():
        raise OutputPathError(path, f"{flag} is a folder, not a file; pass a file path to {flag}")
    _check_folder(target.parent, shown=path, flag=flag)
    return target


def _check_folder(folder: Path, *, shown: str | os.PathLike[str], flag: str) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        where = f"{flag} is a file, not a folder" if existing == Path(shown).absolute() else (
            f"{flag} cannot be created: {existing} is a file")
        raise OutputPathError(shown, f"{where}; pass another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(shown, f"{flag} cannot be written: {existing} is not writable; pass a writable {flag}")
