"""Run one function over many items in worker processes, each item isolated with a time limit."""

from __future__ import annotations

import concurrent.futures
import os
import queue
import signal
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import Generic, TypeVar

import pebble

from videoprep.errors import TimedOutError, WorkerDiedError, failure_reason
from videoprep.ffmpeg import die_with_parent_hook

T = TypeVar("T")
R = TypeVar("R")

# Items handed to the pool ahead of the workers, per worker: enough to never leave one idle.
_IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class TaskResult(Generic[T, R]):
    """The outcome of one item: its value, or the error that cost only this item."""

    item: T
    value: R | None
    error: str | None
    error_type: str = ""  # the exception's class name ("TimedOutError", "WorkerDiedError" for the pool's own)
    reason: str = ""  # the failure's reason class (errors.FAILURE_REASONS)

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
    items: Iterable[T | None],
    *,
    jobs: int | None = None,
    timeout_s: float | None = None,
    initializer: Callable[[], None] | None = None,
) -> Iterator[TaskResult[T, R]]:
    """Yield each item's result as it completes.

    A worker that hangs past `timeout_s` is killed and replaced; one that
    crashes (a decoder segfault) costs only its item. Ctrl-C stops every
    worker before re-raising. `initializer` runs once in each new worker.
    Only a few items per worker are in flight at a time, so memory does not
    grow with the item count (scheduling 100k items at once held ~200 MB).
    `items` may be lazy (a generator that blocks until its next item is ready): the
    workers are started before the first is asked for, each item is scheduled as it
    comes, and results that finished meanwhile are handed back after each; the
    producer may yield None now and then ("nothing ready yet") to get them back sooner.
    """
    if isinstance(items, Sized):
        if not len(items):
            return
        workers = max(1, min(jobs or default_jobs(), len(items)))
    else:  # a lazy iterable (items that become ready over time): taken as they come
        workers = max(1, jobs or default_jobs())
    pending = iter(items)
    finished: queue.SimpleQueue[tuple[T, concurrent.futures.Future]] = queue.SimpleQueue()
    pool = pebble.ProcessPool(max_workers=workers, initializer=initializer)
    cap = workers * _IN_FLIGHT_PER_WORKER

    def schedule(item: T) -> None:
        future = pool.schedule(fn, args=(item,), timeout=timeout_s)
        future.add_done_callback(lambda done, item=item: finished.put((item, done)))

    try:
        if not isinstance(items, Sized):
            # Fork the workers now, from this thread, before a lazy producer starts threads of its
            # own: a fork (and a Ctrl-C landing in its at-fork hooks) while they log could leave
            # the logging lock held. Later forks (replacing a dead worker) come from pebble's thread.
            pool.schedule(os.getpid)
        in_flight = 0
        for item in pending:  # a lazy producer blocks here until its next item is ready
            if item is not None:  # None: "nothing ready yet" from a lazy producer
                schedule(item)
                in_flight += 1
            while in_flight >= cap or (in_flight and not finished.empty()):  # hand back what has finished
                in_flight -= 1
                yield _outcome(*finished.get(), timeout_s)
        while in_flight:
            in_flight -= 1
            yield _outcome(*finished.get(), timeout_s)
        pool.close()
    finally:
        pool.stop()
        pool.join()


def _outcome(item: T, future: concurrent.futures.Future, timeout_s: float | None) -> TaskResult:
    """The finished future of one item as a TaskResult."""
    try:
        return TaskResult(item, future.result(), None)
    except concurrent.futures.TimeoutError:
        return failed(item, TimedOutError(f"timed out after {timeout_s:g} s"), bare=True)
    except pebble.ProcessExpired as exc:
        return failed(item, WorkerDiedError(f"worker died (exit code {exc.exitcode})"), bare=True)
    except Exception as exc:  # an item's own failure is its result, never the batch's
        return failed(item, exc)


def failed(item: T, exc: BaseException, *, bare: bool = False) -> TaskResult:
    """The result of an item that failed with `exc`: its message (type-prefixed unless `bare`), type and reason."""
    message = str(exc) if bare else f"{type(exc).__name__}: {exc}"
    return TaskResult(item, None, message, type(exc).__name__, failure_reason(exc))
