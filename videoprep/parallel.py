"""Run one function over many items in worker processes, each item isolated with a time limit."""

from __future__ import annotations

import concurrent.futures
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import pebble

from videoprep.ffmpeg import die_with_parent_hook

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskResult(Generic[T, R]):
    """The outcome of one item: its value, or the error that cost only this item."""

    item: T
    value: R | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def init_plain_worker() -> None:
    """Initializer for workers that hold no resources (probing, decoding checks).

    SIGTERM, how the pool stops a worker past its time limit, ends it at once:
    pebble's own handler is Python code that waits until a stuck demuxer
    returns (then SIGKILL after 3 s). The worker also dies with its parent,
    so a stage killed with SIGKILL leaves no workers behind.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    hook = die_with_parent_hook(signal.SIGKILL)
    if hook is not None:
        hook()


def run_isolated(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    jobs: int | None = None,
    timeout_s: float | None = None,
    initializer: Callable[[], None] | None = None,
) -> Iterator[TaskResult[T, R]]:
    """Yield each item's result as it completes.

    A worker that hangs past `timeout_s` is killed and replaced; one that
    crashes (a decoder segfault) costs only its item. Ctrl-C stops every
    worker before re-raising. `initializer` runs once in each new worker.
    """
    items = list(items)
    if not items:
        return
    workers = max(1, min(jobs or default_jobs(), len(items)))
    pool = pebble.ProcessPool(max_workers=workers, initializer=initializer)
    try:
        futures = {pool.schedule(fn, args=(item,), timeout=timeout_s): item for item in items}
        for future in concurrent.futures.as_completed(futures):
            item = futures[future]
            try:
                yield TaskResult(item, future.result(), None)
            except concurrent.futures.TimeoutError:
                yield TaskResult(item, None, f"timed out after {timeout_s:g} s")
            except pebble.ProcessExpired as exc:
                yield TaskResult(item, None, f"worker died (exit code {exc.exitcode})")
            except Exception as exc:  # an item's own failure is its result, never the batch's
                yield TaskResult(item, None, f"{type(exc).__name__}: {exc}")
        pool.close()
    finally:
        pool.stop()
        pool.join()
