"""What a download has finished, kept on disk so Ctrl-C or kill -9 resumes where it stopped."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from videoprep.stage import JournalWriter, load_records, read_journal, stage_lock, sweep_partials

STATE_DIRNAME = ".videoprep-download"
EXTRACT_STAGE = "extract"  # the engine's journal of extracted parts: {state}/extract.jsonl


class DownloadState:
    """The state folder `{out}/.videoprep-download`: journals of finished work, archives, the lock.

    Journal entries are appended only after the work they record is complete
    and verified, so a missing entry means "do it again" and never "half done".
    Extracted parts are journaled by the stage engine (`extract.jsonl`); other
    records (YouTube clips, the replacement archive) go to `journal.jsonl`, in
    the engine's journal format, while `locked()` holds.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / STATE_DIRNAME
        self.journal_path = self.root / "journal.jsonl"
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] | None = None
        self._writer: JournalWriter | None = None

    def entries(self) -> list[dict[str, Any]]:
        """Every finished-work record of journal.jsonl, oldest first (read once, then kept in step)."""
        with self._lock:
            if self._entries is None:
                self._entries = read_journal(self.journal_path)
            return list(self._entries)

    def record(self, entry: dict[str, Any]) -> None:
        """Append one record (thread-safe; on disk within a second, fsync'd when the lock is released)."""
        if self._writer is None:
            raise RuntimeError("DownloadState.record needs locked()")
        self.entries()
        with self._lock:
            self._writer.append(entry)
            assert self._entries is not None
            self._entries.append(entry)

    def latest(self, kind: str) -> dict[str, dict[str, Any]]:
        """The last record of each key for one kind of record ("part": the engine's extraction journal)."""
        if kind == "part":
            return load_records(self.root, EXTRACT_STAGE)[0]
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
        """Hold the download lock (two downloads into one folder would collide) and the journal open."""
        with stage_lock(self.root, "download", holder=self.root), JournalWriter(self.journal_path) as writer:
            self._writer = writer
            try:
                yield
            finally:
                self._writer = None

    def remove_stale_temp_files(self, folders: list[Path]) -> int:
        """Delete half-written temporaries a killed run left in these folders (the engine's sweep)."""
        return sum(sweep_partials(folder) for folder in folders if folder.is_dir())


def as_completed_interruptible(
    futures: Collection[concurrent.futures.Future[Any]], *, poll_s: float = 0.2, idle: bool = False
) -> Iterator[concurrent.futures.Future[Any] | None]:
    """Yield futures as they finish, waking every `poll_s` so Ctrl-C reaches the main thread at once.

    (SIGINT may land on a worker thread; a main thread blocked without a
    timeout would only see it when the next future completes.) `idle`: also
    yield None after each wake-up with nothing finished, so the caller can do
    other work meanwhile.
    """
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=poll_s,
                                                return_when=concurrent.futures.FIRST_COMPLETED)
        yield from done
        if idle and not done:
            yield None
