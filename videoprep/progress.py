"""The progress callback stages report through; the CLI turns it into a bar."""

from __future__ import annotations

from collections.abc import Callable

# Called as on_progress(done, total) after each finished item.
ProgressFn = Callable[[int, int], None]


def no_progress(done: int, total: int) -> None:
    """Default callback: report nothing."""
