"""Run one task function over many items: a local process pool, threads, or a Ray cluster, same results.

Every executor yields `videoprep.parallel.TaskResult`s as items finish, so a stage
is written once and scales from a laptop (`local`) to many machines (`ray`).
The task function must be a module-level function and items picklable, except on
`threads`: network-bound tasks (YouTube fetches) that share objects in this process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sized
from typing import Any, Literal, TypeVar

from videoprep.errors import OptionError, TimedOutError, VideoprepError
from videoprep.ffmpeg import die_with_parent_hook
from videoprep.parallel import TaskResult, default_jobs, failed, init_plain_worker, run_isolated

T = TypeVar("T")
R = TypeVar("R")

ExecutorName = Literal["local", "ray", "threads"]
RAY_TIMEOUT_S = 30.0  # how long joining a Ray cluster may take before the run gives up (--ray-timeout)
RAY_CLIENT_PORT = 10001  # ray://host without a port

log = logging.getLogger(__name__)


class WorkerStopped(BaseException):
    """Raised inside a worker when its pool stops it, so cleanup (`finally`, ffmpeg kill) runs."""


def run_tasks(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    executor: ExecutorName = "local",
    jobs: int | None = None,
    address: str | None = None,
    timeout_s: float | None = None,
    plain: bool = False,
    stop: threading.Event | None = None,
    ray_timeout_s: float = RAY_TIMEOUT_S,
) -> Iterator[TaskResult[T, R]]:
    """Yield each item's result as it completes, on the chosen executor.

    `jobs` is the number of parallel tasks (local workers, or the CPUs of a Ray
    cluster started here); `address` joins an existing Ray cluster instead.
    SIGTERM is treated like Ctrl-C while tasks run, so workers and their ffmpeg
    children are stopped before this returns. `plain`: the task holds no
    resources (probing, decoding checks), so a local worker past its time
    limit is ended at once instead of unwinding. `stop` is set when the run is
    interrupted, so thread tasks (which no signal reaches) end at their next check.
    `ray_timeout_s` bounds joining (or starting) the Ray cluster.
    """
    try:
        backend = EXECUTORS[executor]
    except KeyError:
        raise VideoprepError(
            f"executor {executor!r} is not one of: {', '.join(sorted(EXECUTORS))}"
        ) from None
    if address and executor != "ray":
        raise VideoprepError(f"address {address!r} is only used by the ray executor")
    if jobs is not None and jobs < 1:
        raise VideoprepError(f"jobs ({jobs}) must be >= 1")
    if isinstance(items, Sized) and not len(items):
        return  # nothing to do: no pool, no Ray
    with sigterm_as_interrupt():
        yield from backend(fn, items, jobs=jobs, address=address, timeout_s=timeout_s, plain=plain, stop=stop,
                           ray_timeout_s=ray_timeout_s)



def check_executor(executor: str, address: str | None, *, ray_timeout_s: float = RAY_TIMEOUT_S) -> None:
    """Before any output exists: the executor options agree, and a Ray address answers within the timeout.

    Raises OptionError naming --ray-address / RAY_ADDRESS. Only the TCP port is
    tried here (no Ray import): an address nobody listens on fails at once
    instead of Ray's endless reconnect warnings.
    """
    if ray_timeout_s <= 0:
        raise OptionError(f"--ray-timeout ({ray_timeout_s:g}) must be > 0 seconds")
    if address and executor != "ray":
        raise OptionError(f"--ray-address {address}: only --executor ray joins a cluster; "
                          "add --executor ray, or drop --ray-address")
    endpoint = ray_endpoint(address) if executor == "ray" and address else None
    if endpoint is None:
        return
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=ray_timeout_s):
            pass
    except OSError as exc:
        reason = f"no answer within {ray_timeout_s:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or exc)
        raise OptionError(
            f"--ray-address / RAY_ADDRESS {address}: cannot reach a Ray cluster there ({reason}); start it (`ray start --head`), fix the address, or drop it to start Ray here"
        ) from None


@contextlib.contextmanager
def executor_session(
    executor: str, address: str | None, *, jobs: int | None = None, ray_timeout_s: float = RAY_TIMEOUT_S,
) -> Iterator[None]:
    """Check the executor options and join the Ray cluster at `address` before any output exists; leave it after.

    A Ray without an address is started lazily by the first run_tasks (a run
    with nothing to do starts none).
    """
    check_executor(executor, address, ray_timeout_s=ray_timeout_s)
    joined = bool(executor == "ray" and address) and _join_ray(address, jobs=jobs, timeout_s=ray_timeout_s)
    try:
        yield
    finally:
        if joined:
            import ray

            ray.shutdown()


def ray_endpoint(address: str) -> tuple[str, int] | None:
    """The (host, port) a Ray address connects to first: 'host:port' (GCS) or 'ray://host[:port]' (client).

    None for addresses Ray resolves itself ('auto', 'local'), which only the
    join timeout bounds.
    """
    text = address.strip()
    if text in ("auto", "local"):
        return None
    default_port = None
    if text.startswith("ray://"):
        text, default_port = text[len("ray://"):], RAY_CLIENT_PORT
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    if not port.isdigit():
        if default_port is None:
            raise OptionError(f"--ray-address / RAY_ADDRESS {address!r}: expected HOST:PORT, ray://HOST[:PORT] or auto")
        return host.strip("[]"), default_port
    return host.strip("[]") or "127.0.0.1", int(port)


def _join_ray(address: str | None, *, jobs: int | None, timeout_s: float) -> bool:
    """Connect to (or start) Ray unless already connected (then False); give up with one line after `timeout_s`.

    ray.init has no time limit of its own (it retries a silent cluster
    forever), so it runs in a daemon thread that this call waits for.
    """
    try:
        import ray
    except ImportError:
        raise VideoprepError("the ray executor needs Ray: pip install 'videoprep[ray]'") from None

    if ray.is_initialized():
        return False
    if address:
        kwargs: dict = {"address": address, "log_to_driver": False}
    else:
        kwargs = {"num_cpus": jobs or default_jobs(), "include_dashboard": False, "log_to_driver": False}
    if not address:
        # Starting a Ray here must happen on this thread: Ray's GCS and raylet die with the thread that
        # started them (PR_SET_PDEATHSIG), so a helper thread's exit would kill the cluster a minute later.
        # A local start has no remote peer to wait for, so it needs no time limit.
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; one line for the user
            raise OptionError(f"a Ray started here could not start: {exc}") from exc
        return True
    outcome: list[BaseException | None] = []

    def join() -> None:
        try:
            ray.init(**kwargs)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread below
            outcome.append(exc)

    thread = threading.Thread(target=join, name="ray-join", daemon=True)
    thread.start()
    thread.join(timeout_s)
    where = f"--ray-address / RAY_ADDRESS {address}" if address else "a Ray started here"
    if not outcome:
        raise OptionError(f"{where}: Ray did not connect within {timeout_s:g} s; check that the cluster is up "
                          "(`ray status`), or raise --ray-timeout")
    if outcome[0] is not None:
        raise OptionError(f"{where}: Ray could not connect: {outcome[0]}") from outcome[0]
    return True


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises KeyboardInterrupt so `finally` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_task_running = False  # per worker process: is a task function on the stack?


def _init_local_worker() -> None:
    """In each pool worker: SIGTERM (how the pool stops workers) unwinds a running task.

    Unwinding runs the task's `finally` blocks (ffmpeg killed, temporary output
    removed); an idle worker just exits, as the pool expects. The worker also
    gets SIGTERM when the parent dies without stopping the pool (SIGKILL).
    """
    hook = die_with_parent_hook(signal.SIGTERM)
    if hook is not None:
        hook()

    def handler(signum: int, frame: object) -> None:
        if _task_running:
            raise WorkerStopped(f"signal {signum}")
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _call_in_worker(fn: Callable[[T], R], item: T) -> R:
    """Run one task with the running flag set, so SIGTERM knows to unwind it."""
    global _task_running
    _task_running = True
    try:
        return fn(item)
    except WorkerStopped:
        os._exit(128 + signal.SIGTERM)  # the task has unwound; the pool wants this worker gone
    finally:
        _task_running = False


def _run_local(
    fn: Callable[[T], R], items: list[T], *, jobs: int | None, address: str | None, timeout_s: float | None,
    plain: bool, stop: threading.Event | None, ray_timeout_s: float,
) -> Iterator[TaskResult[T, R]]:
    """A pebble process pool on this machine (`videoprep.parallel.run_isolated`); workers stop by signal."""
    if plain:
        yield from run_isolated(fn, items, jobs=jobs, timeout_s=timeout_s, initializer=init_plain_worker)
        return
    task = functools.partial(_call_in_worker, fn)
    yield from run_isolated(task, items, jobs=jobs, timeout_s=timeout_s, initializer=_init_local_worker)


def _run_ray(
    fn: Callable[[T], R], items: list[T], *, jobs: int | None, address: str | None, timeout_s: float | None,
    plain: bool, stop: threading.Event | None, ray_timeout_s: float,
) -> Iterator[TaskResult[T, R]]:
    """Ray tasks, one CPU each (cancelled when stopped); a local Ray is started (and shut down) when none runs.

    Items travel by path (shared storage); no video bytes go through the object
    store. At most twice the cluster's CPUs are in flight, so a 240k-item run
    does not queue 240k tasks. A lost worker or node is retried (RAY_RETRIES
    times); an exception the task raises (a bad video) is its recorded result.
    """
    try:
        import ray
        import ray.exceptions
    except ImportError:
        raise VideoprepError("the ray executor needs Ray: pip install 'videoprep[ray]'") from None
    started_here = _join_ray(address, jobs=jobs, timeout_s=ray_timeout_s)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        in_flight_max = max(1, 2 * (min(jobs, cpus) if jobs else cpus))
        remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES, retry_exceptions=False)(_call)
        pending: dict[object, tuple[T, float]] = {}  # ref -> (item, when it was submitted)
        queue = iter(items)
        try:
            while True:
                while len(pending) < in_flight_max:
                    item = next(queue, _DONE)
                    if item is _DONE:
                        break
                    pending[remote.remote(fn, item)] = (item, time.monotonic())
                if not pending:
                    break
                poll = min(1.0, timeout_s) if timeout_s else None
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll)
                for ref in ready:
                    yield _ray_outcome(ray, ref, pending.pop(ref)[0])
                if not ready and timeout_s:
                    yield from _cancel_overdue(ray, pending, timeout_s)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):  # best effort: the task may have just finished
                    ray.cancel(ref, force=True)
    finally:
        if started_here:
            ray.shutdown()


def _ray_outcome(ray, ref: object, item: T) -> TaskResult:
    """A finished Ray task as a TaskResult: its value, its own exception, or a loss past its retries."""
    try:
        return TaskResult(item, ray.get(ref), None)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        return failed(item, cause)
    except ray.exceptions.RayError as exc:  # lost past its retries: this item only
        return failed(item, exc)


def _cancel_overdue(ray, pending: dict[object, tuple[T, float]], timeout_s: float) -> Iterator[TaskResult]:
    """Cancel the tasks submitted longer than `timeout_s` ago: each is a timed-out item (the per-item limit)."""
    now = time.monotonic()
    for ref, (item, submitted) in list(pending.items()):
        if now - submitted > timeout_s:
            del pending[ref]
            with contextlib.suppress(Exception):  # best effort: it may have just finished
                ray.cancel(ref, force=True)
            yield failed(item, TimedOutError(f"timed out after {timeout_s:g} s"), bare=True)


def _call(fn: Callable[[T], R], item: T) -> R:
    """A Ray task: any picklable callable (a functools.partial too) applied to one item."""
    return fn(item)


def _run_threads(
    fn: Callable[[T], R], items: Iterable[T | None], *, jobs: int | None, address: str | None,
    timeout_s: float | None, plain: bool, stop: threading.Event | None, ray_timeout_s: float,
) -> Iterator[TaskResult[T, R]]:
    """Threads of this process, for tasks that wait on the network; at most 2 x jobs items in flight.

    No per-item time limit (a thread cannot be killed): the tasks' own socket timeouts bound them.
    On Ctrl-C the queued items are cancelled and running ones finish or see the run's `stop`.
    """
    workers = max(1, jobs or 4)
    queue = iter(items)
    exhausted = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="task") as pool:
        pending: dict[concurrent.futures.Future[R], T] = {}
        try:
            while pending or not exhausted:
                while not exhausted and len(pending) < 2 * workers:
                    item = next(queue, _DONE)
                    if item is _DONE:
                        exhausted = True
                    elif item is not None:  # None: "nothing ready yet" from a lazy producer
                        pending[pool.submit(fn, item)] = item  # type: ignore[arg-type]
                for future in as_completed_interruptible(list(pending), first_only=True):
                    item = pending.pop(future)
                    try:
                        yield TaskResult(item, future.result(), None)
                    except Exception as exc:  # the task's own failure: this item's result
                        yield TaskResult(item, None, f"{type(exc).__name__}: {exc}", type(exc).__name__)
        except BaseException:
            if stop is not None:
                stop.set()  # before waiting: running tasks see it at their next check
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def as_completed_interruptible(
    futures: Collection[concurrent.futures.Future[Any]], *, poll_s: float = 0.2, idle: bool = False,
    first_only: bool = False,
) -> Iterator[concurrent.futures.Future[Any] | None]:
    """Yield futures as they finish, waking every `poll_s` so Ctrl-C reaches the main thread at once.

    (SIGINT may land on a worker thread; a main thread blocked without a
    timeout would only see it when the next future completes.) `idle`: also
    yield None after each wake-up with nothing finished, so the caller can do
    other work meanwhile. `first_only`: stop after the first wake-up that finished any.
    """
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=poll_s,
                                                return_when=concurrent.futures.FIRST_COMPLETED)
        yield from done
        if done and first_only:
            return
        if idle and not done:
            yield None


_DONE = object()
RAY_RETRIES = 3  # a task whose worker or node died is run again this many times

EXECUTORS: dict[str, Callable[..., Iterator[TaskResult]]] = {
    "local": _run_local, "ray": _run_ray, "threads": _run_threads}
