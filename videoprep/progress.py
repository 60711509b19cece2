"""The progress callback stages report through, and the one rich bar that draws it."""

from __future__ import annotations

import contextlib
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
