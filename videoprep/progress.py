"""The progress callback stages report through: a rich bar on a terminal, plain lines in a log."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator

# Called as on_progress(done, total) after each finished item.
ProgressFn = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """Default callback: report nothing."""


@contextlib.contextmanager
def rich_bar(description: str, *, transient: bool = False, unit: str = "items") -> Iterator[ProgressFn]:
    """A rich bar on stderr driven by on_progress(done, total); unit "bytes" shows size and rate."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(), TimeElapsedColumn())
    columns = (TextColumn("{task.description}"), BarColumn(), *counts, TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def format_duration(seconds: float) -> str:
    """12 -> '12 s', 754 -> '12 min 34 s', 7500 -> '2 h 05 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LogProgress:
    """Progress as plain lines for a log file: a line at the start, then at least every `interval_s`, then a summary.

    Each line: done/planned (percent), the rate since the start, the time left. `update` is the
    stages' ProgressFn (thread-safe); `tick` writes the periodic line (a timer thread calls it).
    """

    def __init__(self, description: str, *, interval_s: float = 30.0, unit: str = "items",
                 write: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.description = description
        self.interval_s = interval_s
        self.unit = unit
        self._write = write
        self._clock = clock
        self._lock = threading.Lock()
        self._done = self._total = 0
        self._first: tuple[float, int] | None = None  # (time, done) of the first update: the rate excludes cached
        self._last_line = clock()

    def update(self, done: int, total: int) -> None:
        """Record the state; the first call writes the start line."""
        with self._lock:
            self._done, self._total = done, total
            if self._first is None:
                self._first = (self._clock(), done)
                self._emit(self._line())

    def tick(self) -> None:
        """Write the current state when no line was written for `interval_s`."""
        with self._lock:
            if self._first is not None and self._clock() - self._last_line >= self.interval_s:
                self._emit(self._line())

    def finish(self) -> None:
        """The summary line: what was done, in how long, at what rate."""
        with self._lock:
            if self._first is not None:
                elapsed = self._clock() - self._first[0]
                self._emit(f"{self.description}: finished {self._amount(self._done)}/{self._amount(self._total)} "
                           f"in {format_duration(elapsed)} ({self._rate(elapsed)})")

    def _line(self) -> str:
        assert self._first is not None
        elapsed = self._clock() - self._first[0]
        percent = f" ({100 * self._done / self._total:.0f}%)" if self._total else ""
        text = f"{self.description}: {self._amount(self._done)}/{self._amount(self._total)}{percent}"
        made = self._done - self._first[1]
        if elapsed > 0 and made > 0:
            left = (self._total - self._done) * elapsed / made
            text += f", {self._rate(elapsed)}, about {format_duration(left)} left"
        return text

    def _rate(self, elapsed: float) -> str:
        made = self._done - (self._first[1] if self._first else 0)
        per_s = made / elapsed if elapsed > 0 else 0.0
        return f"{per_s / 1e6:.1f} MB/s" if self.unit == "bytes" else f"{per_s:.1f} {self.unit}/s"

    def _amount(self, n: int) -> str:
        return f"{n / 1e6:.1f} MB" if self.unit == "bytes" else str(n)

    def _emit(self, line: str) -> None:
        self._last_line = self._clock()
        self._write(line)


@contextlib.contextmanager
def log_lines(description: str, *, interval_s: float = 30.0, unit: str = "items",
              write: Callable[[str], None] | None = None) -> Iterator[ProgressFn]:
    """LogProgress with its timer thread: lines on stderr (or `write`), the summary line when the block ends."""
    progress = LogProgress(description, interval_s=interval_s, unit=unit, write=write or _to_stderr)
    stop = threading.Event()

    def timer() -> None:
        while not stop.wait(min(interval_s, 1.0)):
            progress.tick()

    thread = threading.Thread(target=timer, name="progress-log", daemon=True)
    thread.start()
    try:
        yield progress.update
    finally:
        stop.set()
        thread.join()
    progress.finish()  # only when the block ended without an error: a failure has its own message


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
