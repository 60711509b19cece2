"""The download's state folder: one engine journal of finished work, the archives, the lock.

Everything a download finishes is an item of one stage-engine journal,
`{out}/.videoprep-download/extract.jsonl`: each extracted part, the replacement
archive once applied, each YouTube clip. An entry is appended only after the
work it records is complete and verified, so Ctrl-C or kill -9 resumes where
it stopped. The completion record (`complete.json`) sits beside it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from videoprep.stage import load_records, stage_lock, sweep_partials

STATE_DIRNAME = ".videoprep-download"
# The engine stage (and journal file) of every download item; named "extract" since the first
# versions, so folders they left resume.
DOWNLOAD_STAGE = "extract"


class DownloadState:
    """The state folder `{out}/.videoprep-download`: the journal, part archives, the download lock."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / STATE_DIRNAME

    def records(self, kind: str) -> dict[str, dict[str, Any]]:
        """key -> newest journal entry of one kind ("part", "replacement", "clip")."""
        return {k: e for k, e in load_records(self.root, DOWNLOAD_STAGE)[0].items() if e.get("kind") == kind}

    def archive_path(self, split: str, name: str) -> Path:
        """Where a part archive is downloaded to before extraction."""
        return self.root / "archives" / split / name

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the download lock: two downloads into one folder would collide."""
        with stage_lock(self.root, "download", holder=self.root):
            yield

    def remove_stale_temp_files(self, folders: list[Path]) -> int:
        """Delete half-written temporaries a killed run left in these folders (the engine's sweep)."""
        return sum(sweep_partials(folder) for folder in folders if folder.is_dir())
