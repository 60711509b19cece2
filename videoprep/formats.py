"""Which files are videos: the one extension list and folder walk that stages, reports and fingerprints share.

Imports no av, so the download and fingerprint paths start fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".ogv", ".m4v")


def video_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Every video under `root` in sorted order; hidden names (`.x.part` temporaries, `._` forks) are skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
                yield Path(dirpath) / name
