"""One engine under every preparation stage: plan, lock, journal, sweep, executor, shard, summary.

A stage (validate, index, transcode, frames, the download's extraction) gives
the engine its items (a key = the path relative to the source, a stamp that
says when the item changed, and the picklable task a worker runs) and keeps
only its per-item function and its report. The engine:

- takes the stage lock (one run per state folder, stage and shard at a time),
- sweeps temporaries (`.NAME.XXXX.part`) a killed run left behind,
- skips what the journal records as done with the same stamp,
- runs the rest on an executor (`local` processes or `ray`), each item with a
  time limit; an item that fails costs only itself and gets one failure record,
- appends each result to an append-only JSONL journal (batched: a crash loses
  at most the last second of records, which a re-run simply redoes),
- and writes the `--summary-json` counts.

`--shard I/N` keeps the items whose stable hash of their key is I mod N and
journals into a file of its own; a later plain run reads every shard's journal,
so after all N shards it does no per-item work.
"""
# size: the engine's parts (plan, lock, sweep, journal, shards, summary) share one run's state; split, they would pass it around.

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoprep.atomic import PART_SUFFIX, atomic_write_json, atomic_write_text
from videoprep.errors import PathError, VideoprepError
from videoprep.executors import RAY_TIMEOUT_S, ExecutorName, executor_session, run_tasks
from videoprep.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)

STATE_DIR = ".videoprep"  # journals and locks live here, hidden from discovery
FLUSH_INTERVAL_S = 1.0  # a crash loses at most this much of the journal (those items are redone)
SUMMARY_KEYS = ("stage", "executor", "shard", "planned", "cached", "done", "failed", "wall_s")


# --- options every stage takes ---------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """`--shard I/N`: this run covers the items whose stable key hash is I mod N."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise VideoprepError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'3/8' -> Shard(3, 8)."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise VideoprepError(f"shard {text!r}: expected I/N, e.g. 0/4")
        return cls(int(match.group(1)), int(match.group(2)))

    def covers(self, key: str) -> bool:
        """Is this item (path relative to the source) one of this shard's?"""
        return shard_of(key, self.count) == self.index

    @property
    def tag(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(key: str, count: int) -> int:
    """The shard of a key: a hash that is the same on every host, Python version and run."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, kw_only=True)
class StageOptions:
    """How a stage runs: executor, parallelism, shard, summary file; every stage's config extends it."""

    executor: ExecutorName = "local"
    address: str | None = None  # an existing Ray cluster (or RAY_ADDRESS)
    ray_timeout_s: float = RAY_TIMEOUT_S  # joining the Ray cluster gives up after this long
    jobs: int | None = None  # parallel items; None: every core (Ray: its CPUs)
    shard: Shard | None = None
    summary_json: Path | None = None


# --- the journal ------------------------------------------------------------------------


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every complete entry of one JSONL journal, in the order written; a torn last line is ignored."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[:-1]  # the piece after the last newline is torn (or empty)
    try:  # one parse of the whole journal (5x faster at Kinetics' size); a bad line: line by line below
        whole = json.loads(b"[" + b",".join(lines) + b"]" if all(lines) else b"x")
        return [entry for entry in whole if isinstance(entry, dict)]
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    entries = []
    for line in lines:
        try:
            entry = json.loads(line.decode("utf-8", "surrogateescape"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


class JournalWriter:
    """Append entries to a JSONL journal: batched writes, flushed at least every second, fsync at close.

    A torn last line from a killed run is terminated first, so the next entry
    starts on a line of its own. Thread-safe.
    """

    def __init__(self, path: Path, *, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.path = path
        self._interval = interval_s
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._file: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> JournalWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in __exit__
        if self._file.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")
        self._thread = threading.Thread(target=self._flush_loop, name="journal-flush", daemon=True)
        self._thread.start()
        return self

    def append(self, entry: Mapping[str, Any]) -> None:
        """Queue one finished item; it reaches the file within `interval_s`."""
        line = json.dumps(entry, sort_keys=True, default=str, ensure_ascii=True) + "\n"
        with self._lock:
            self._pending.append(line)

    def flush(self) -> None:
        """Write what is queued to the OS (survives kill -9 of this process)."""
        with self._lock:
            if self._pending and self._file is not None:
                self._file.write("".join(self._pending).encode("utf-8", "surrogateescape"))
                self._file.flush()
                self._pending.clear()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None


def journal_path(state_dir: Path, stage: str, shard: Shard | None) -> Path:
    """The journal this run appends to: one per stage, one per shard."""
    return state_dir / (f"{stage}.{shard.tag}.jsonl" if shard else f"{stage}.jsonl")


_LEGACY_STAMP = ("size", "mtime_ns", "settings", "output")


def _journal_files(state_dir: Path, stage: str) -> list[Path]:
    """The shards' journals, then the stage's own (read in this order: later entries win)."""
    return sorted(state_dir.glob(f"{stage}.shard-*.jsonl")) + [state_dir / f"{stage}.jsonl"]


def load_records(
    state_dir: Path, stage: str, *, shard: Shard | None = None,
) -> tuple[dict[str, dict[str, Any]], int]:
    """(key -> newest entry, number of entries read): a plain run merges the stage's and every shard's journal;
    a shard run reads the stage's journal and its own only (not the other shards')."""
    records: dict[str, dict[str, Any]] = {}
    read = 0
    paths = _journal_files(state_dir, stage) if shard is None else [
        state_dir / f"{stage}.jsonl", journal_path(state_dir, stage, shard)]
    for path in paths:
        for entry in read_journal(path):
            if "key" not in entry and "source" in entry:  # transcode/frames before the engine: same facts
                entry = {**entry, "key": entry["source"], "stamp": {k: entry.get(k) for k in _LEGACY_STAMP}}
            key = entry.get("key")
            if isinstance(key, str):
                records[key] = entry
                read += 1
    return records, read


def compact_journal(state_dir: Path, stage: str, records: Mapping[str, Mapping[str, Any]]) -> None:
    """Rewrite the stage's journal as exactly `records` and fold the shards' journals into it.

    A plain run does this when superseded entries or shard files exist, so
    journals do not grow with every change and every shard.
    """
    shards = _journal_files(state_dir, stage)[:-1]
    text = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in records.values())
    atomic_write_text(state_dir / f"{stage}.jsonl", text)
    for path in shards:
        path.unlink(missing_ok=True)


# --- lock and sweep ---------------------------------------------------------------------


@contextmanager
def stage_lock(state_dir: Path, name: str, *, holder: str | os.PathLike[str]) -> Iterator[None]:
    """One run per state folder and `name` at a time; a second gets a one-line error.

    A POSIX record lock (lockf), not flock: forked workers do not inherit it,
    so a worker still unwinding after its parent was killed does not block the
    next run. `holder` is the path named in the error.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / f"{name}.lock", "w") as lock:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PathError(holder, f"another {name} run is writing here") from None
        try:
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)


def is_partial(name: str) -> bool:
    """Is this file or folder name one of our temporaries (`.NAME.XXXX.part`)?"""
    return name.startswith(".") and name.endswith(PART_SUFFIX)


def partial_target(path: Path) -> Path:
    """The final path a temporary `.NAME.XXXX.part` stands for."""
    return path.with_name(path.name[1:].rsplit(".", 2)[0])


def sweep_partials(root: Path, *, owned: Callable[[Path], bool] | None = None) -> int:
    """Delete our temporaries under root (only those whose final path is `owned`, if given)."""
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if not is_partial(name):
                continue
            path = Path(dirpath) / name
            if owned is not None and not owned(partial_target(path)):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
        dirnames[:] = [d for d in dirnames if not is_partial(d)]
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)
    return removed


# --- items, failures, runs ---------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One unit of work: its key (path relative to the source), what says it changed, its task."""

    key: str
    stamp: Mapping[str, Any]  # size, mtime, settings digest, output name...: all must match to reuse
    task: Any  # picklable; what the worker function gets
    output: Path | None = None  # the final output, when the item writes one (its temporaries are swept)


@dataclass(frozen=True)
class Failure:
    """An item that was not done: its key, a short reason class and the full message."""

    source: str
    reason: str
    error: str


@dataclass
class StageRun:
    """What the engine did: the journal entry of every covered item now done, failures and counts."""

    stage: str
    options: StageOptions
    entries: dict[str, dict[str, Any]]
    failures: list[Failure]
    planned: int
    cached: int
    done: int
    started: float = field(default_factory=time.monotonic)
    wall_s: float = 0.0

    def summary(self, failed: Mapping[str, int] | None = None) -> dict[str, Any]:
        """The `--summary-json` record (keys in SUMMARY_KEYS; documented in docs/commands.md)."""
        counts = failed if failed is not None else Counter(f.reason for f in self.failures)
        return {
            "stage": self.stage, "executor": self.options.executor,
            "shard": str(self.options.shard) if self.options.shard else None,
            "planned": self.planned, "cached": self.cached, "done": self.done,
            "failed": dict(sorted(counts.items())), "wall_s": round(time.monotonic() - self.started, 3),
        }


@dataclass(frozen=True)
class StageSpec:
    """What a stage gives the engine: its name, worker function, time limit and journal record."""

    name: str
    fn: Callable[[Any], Any]  # module level (pickled to workers)
    timeout_s: float | None
    # The journal fields of a finished item (stamp and key are added); by default the value's dict.
    record: Callable[[Item, Any], dict[str, Any]] = lambda item, value: dict(value)
    # Is a cached entry still good (e.g. its output still there)? Called only when the stamp matches.
    still_valid: Callable[[Item, dict[str, Any]], bool] = lambda item, entry: True
    plain_workers: bool = False  # workers hold no resources: a time limit kills them at once
    # Journal failures too (as this record) when retrying cannot help: a probe past its time limit
    # is that video's verdict. None: failures are not journaled and a re-run tries them again.
    failure_record: Callable[[Failure], dict[str, Any]] | None = None
    # Called once an item's record is written to the journal (flushed to the OS first), e.g. to
    # delete an input that the journal now makes unnecessary. None: nothing to do.
    after_record: Callable[[Item, dict[str, Any]], None] | None = None


def run_stage(spec: StageSpec, items: Iterable[Item], *, options: StageOptions, **kwargs: Any) -> StageRun:
    """`_run_stage` inside the executor's session: options checked and a Ray cluster joined before any output."""
    with executor_session(options.executor, options.address, jobs=options.jobs, ray_timeout_s=options.ray_timeout_s):
        return _run_stage(spec, items, options=options, **kwargs)


def _run_stage(
    spec: StageSpec,
    items: Iterable[Item],
    *,
    state_dir: Path,
    options: StageOptions,
    on_progress: ProgressFn = no_progress,
    sweep_root: Path | None = None,
    fresh: bool = False,
    feed: Callable[[list[Item]], Iterable[Item | None]] | None = None, stop: threading.Event | None = None,
) -> StageRun:
    """Lock, sweep, skip what is journaled, run the rest, journal each result; see the module docstring.

    `items` are every item of the source; the shard keeps its own. `fresh`
    ignores the journal (newer entries then win over the old ones). `feed`
    yields the items to run in the order they become ready (the download's
    parts as their transfers finish; None while none is ready); an item it does not yield is not run.
    `stop` is set when the run is interrupted (thread tasks check it)."""
    started = time.monotonic()
    shard = options.shard
    mine = [item for item in items if shard is None or shard.covers(item.key)]
    lock_name = f"{spec.name}.{shard.tag}" if shard else spec.name
    with stage_lock(state_dir, lock_name, holder=state_dir.parent):
        if sweep_root is not None:
            outputs = {item.output for item in mine if item.output is not None}
            sweep_partials(sweep_root, owned=None if shard is None else outputs.__contains__)
        records, read = load_records(state_dir, spec.name, shard=shard)
        if fresh:
            keys = {item.key for item in mine}  # once: a set per entry made --fresh quadratic
            records = {k: e for k, e in records.items() if k not in keys}
        run = StageRun(spec.name, options, {}, [], planned=len(mine), cached=0, done=0, started=started)
        todo: dict[str, Item] = {}
        for item in mine:
            entry = records.get(item.key)
            if entry is not None and _same_stamp(entry.get("stamp"), item.stamp) and spec.still_valid(item, entry):
                run.entries[item.key] = entry
            else:
                todo[item.key] = item
        run.cached = len(run.entries)
        log.info("%s: %d items, %d already done, %d to do", spec.name, run.planned, run.cached, len(todo))
        on_progress(run.cached, run.planned)
        _run_todo(spec, todo, run, journal=journal_path(state_dir, spec.name, shard), on_progress=on_progress,
                  feed=feed, stop=stop)
        if shard is None:
            live = {k: e for k, e in records.items() if k not in todo} | run.entries
            if read + len(run.entries) - run.cached != len(live) or len(_journal_files(state_dir, spec.name)) > 1:
                compact_journal(state_dir, spec.name, live)
    run.failures.sort(key=lambda f: f.source)
    run.wall_s = round(time.monotonic() - started, 3)
    return run


def _run_todo(
    spec: StageSpec, todo: dict[str, Item], run: StageRun, *, journal: Path, on_progress: ProgressFn,
    feed: Callable[[list[Item]], Iterable[Item | None]] | None, stop: threading.Event | None = None,
) -> None:
    """Run the items not done yet on the executor; journal each success as it lands."""
    if not todo:
        return
    by_task = {id(item.task): item for item in todo.values()}
    ready = feed(list(todo.values())) if feed is not None else todo.values()
    # a feed may yield None for "nothing ready yet", so results that finished meanwhile are journaled
    tasks = (None if item is None else item.task for item in ready) if feed is not None else [
        item.task for item in ready]
    opts = run.options
    results = run_tasks(spec.fn, tasks, executor=opts.executor, jobs=opts.jobs, address=opts.address,
                        timeout_s=spec.timeout_s, plain=spec.plain_workers, stop=stop,
                        ray_timeout_s=opts.ray_timeout_s)
    with JournalWriter(journal) as writer:
        for count, result in enumerate(results, start=run.cached + 1):
            item = by_task[id(result.item)]  # the executors hand back the very task object scheduled
            if result.ok:
                entry = {**spec.record(item, result.value), "key": item.key, "stamp": _jsonable(item.stamp)}
                writer.append(entry)
                run.entries[item.key] = entry
                run.done += 1
                if spec.after_record is not None:
                    writer.flush()  # the record survives a kill -9 before the input it replaces is gone
                    spec.after_record(item, entry)
            else:
                error = result.error or "unknown error"
                failure = Failure(item.key, result.reason or "error", error)
                run.failures.append(failure)
                log.warning("%s failed: %s: %s", spec.name, item.key, error)
                if spec.failure_record is not None:
                    entry = {**spec.failure_record(failure), "key": item.key, "stamp": _jsonable(item.stamp)}
                    writer.append(entry)
                    run.entries[item.key] = entry
            on_progress(count, run.planned)


def _same_stamp(recorded: Any, stamp: Mapping[str, Any]) -> bool:
    """Does the journal's stamp match the item's? Plain values compare as they are (the JSON round trip is slow)."""
    return recorded == stamp or recorded == _jsonable(stamp)


def _jsonable(value: Any) -> Any:
    """The stamp as it reads back from the journal (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def write_summary(path: Path | None, summary: Mapping[str, Any]) -> None:
    """Write the `--summary-json` file when one was asked for."""
    if path is not None:
        atomic_write_json(path, dict(summary))
