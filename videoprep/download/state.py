"""What a download has finished, kept on disk so Ctrl-C or kill -9 resumes where it stopped."""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from videoprep.atomic import PART_SUFFIX, Journal
from videoprep.errors import PathError

log = logging.getLogger(__name__)

STATE_DIRNAME = ".videoprep-download"


class DownloadState:
    """The state folder `{out}/.videoprep-download`: a journal of finished work, archives, a lock.

    Journal entries are appended only after the work they record is complete
    and verified, so a missing entry means "do it again" and never "half done".
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / STATE_DIRNAME
        self.journal = Journal(self.root / "journal.jsonl")
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] | None = None

    def entries(self) -> list[dict[str, Any]]:
        """Every finished-work record, oldest first (read once, then kept in step with appends)."""
        with self._lock:
            if self._entries is None:
                self._entries = self.journal.load()
            return list(self._entries)

    def record(self, entry: dict[str, Any]) -> None:
        """Append one record durably (thread-safe)."""
        with self._lock:
            if self._entries is None:
                self._entries = self.journal.load()
            self.journal.append(entry)
            self._entries.append(entry)

    def latest(self, kind: str) -> dict[str, dict[str, Any]]:
        """The last record of each key for one kind of record."""
        found: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            if entry.get("kind") == kind:
                found[entry["key"]] = entry
        return found

    def archive_path(self, split: str, name: str) -> Path:
        """Where a part archive is downloaded to before extraction."""
        return self.root / "archives" / split / name

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the state folder: two downloads into one folder would collide."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "lock", "w")  # noqa: SIM115 - closed in finally
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PathError(self.root, "another download is running into this folder") from None
            yield
        finally:
            handle.close()

    def remove_stale_temp_files(self, folders: list[Path]) -> int:
        """Delete half-written `.name.*.part` files a killed run left behind; return how many."""
        removed = 0
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.rglob(f".*{PART_SUFFIX}"):
                if path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed += 1
        if removed:
            log.info("removed %d half-written file(s) left by an interrupted run", removed)
        return removed


def as_completed_interruptible(
    futures: Collection[concurrent.futures.Future[Any]], *, poll_s: float = 0.2
) -> Iterator[concurrent.futures.Future[Any]]:
    """Yield futures as they finish, waking every `poll_s` so Ctrl-C reaches the main thread at once.

    (SIGINT may land on a worker thread; a main thread blocked without a
    timeout would only see it when the next future completes.)
    """
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=poll_s,
                                                return_when=concurrent.futures.FIRST_COMPLETED)
        yield from done
