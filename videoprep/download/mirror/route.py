"""The mirror route: fetch parts in threads, extract each on the stage engine as it lands, then the replacement.

Every part and the replacement archive are items of the download's one engine
stage (`{state}/extract.jsonl`, videoprep.download.state): a part is journaled
once all its clips are renamed into place, and its archive is then deleted.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import shutil
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from videoprep.download.http import DownloadFailed, RetryPolicy, StopSignal, fetch_file
from videoprep.download.mirror.extract import copy_file, safe_extract
from videoprep.download.mirror.plan import MirrorPlan, PartPlan
from videoprep.download.report import Failure
from videoprep.download.state import DOWNLOAD_STAGE, DownloadState
from videoprep.executors import as_completed_interruptible
from videoprep.progress import ProgressFn
from videoprep.stage import Item, StageOptions, StageRun, StageSpec, run_stage

log = logging.getLogger(__name__)


@dataclass
class MirrorOutcome:
    """What the mirror route did: failures, per-clip reasons for gaps, bytes moved, notes."""

    failures: list[Failure] = field(default_factory=list)
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    unfinished_parts: dict[str, int] = field(default_factory=dict)
    bytes_downloaded: int = 0
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # the extraction's --summary-json record


class _ByteProgress:
    """Thread-safe byte counter feeding on_progress(done_bytes, total_bytes)."""

    def __init__(self, total: int, on_progress: ProgressFn) -> None:
        self.done = 0
        self.total = total
        self.moved = 0
        self._fn = on_progress
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            if n > 0:
                self.moved += n
            self._fn(max(self.done, 0), max(self.total, self.done))


@dataclass(frozen=True)
class ExtractTask:
    """One downloaded part to extract in a worker process (paths on shared storage)."""

    split: str
    url: str
    archive: str
    dest_dir: str
    keep: frozenset[str] | None  # clip ids to keep; None: every clip


def extract_part(task: ExtractTask) -> dict[str, Any]:
    """Worker: extract one part safely; the journal record of what it gave."""
    keep = task.keep.__contains__ if task.keep is not None else None
    result = safe_extract(task.archive, dest_dir=task.dest_dir, keep=keep)
    return {
        "kind": "part", "split": task.split, "url": task.url, "bytes": os.path.getsize(task.archive),
        "format": result.format, "clips": result.written, "filtered": result.filtered, "hashes": result.hashes,
        "rejected": [{"member": r.member, "reason": r.reason} for r in result.rejected],
    }


@dataclass(frozen=True)
class ReplacementTask:
    """The replacement archive to apply: fixed copies go over their originals in these split folders."""

    url: str
    archive: str
    cache_dir: str
    targets: tuple[tuple[str, frozenset[str]], ...]  # (split folder, clip ids expected there)


def apply_replacement(task: ReplacementTask) -> dict[str, Any]:
    """Worker: unpack the replacement archive and copy each fixed clip over the one in every split."""
    cache = Path(task.cache_dir)
    if cache.exists():
        shutil.rmtree(cache)
    safe_extract(task.archive, dest_dir=cache)
    fixed = {p.stem: p for p in sorted(cache.iterdir()) if p.is_file() and not p.name.startswith(".")}
    hashes: dict[str, tuple[int, str]] = {}
    replaced = 0
    for split_dir, expected in task.targets:
        for clip, source in fixed.items():
            target = Path(split_dir) / source.name
            if target.exists() or clip in expected:
                hashes[clip] = copy_file(source, target)
                replaced += 1
    shutil.rmtree(cache, ignore_errors=True)
    return {"kind": "replacement", "url": task.url, "replaced": replaced, "available": len(fixed), "hashes": hashes}


def _remove_archive(item: Item, entry: dict[str, Any]) -> None:
    """Once an item is journaled its archive is not needed: disk holds one copy, not two."""
    Path(item.task.archive).unlink(missing_ok=True)


# Extraction has no time limit of its own: a 10 GB part on a slow disk takes what it takes.
EXTRACT_SPEC = StageSpec(DOWNLOAD_STAGE, extract_part, None)
REPLACEMENT_SPEC = StageSpec(DOWNLOAD_STAGE, apply_replacement, None)


@dataclass(frozen=True)
class MirrorJob:
    """What run_mirror is asked to do: the plan, where, which clips, and how."""

    plan: MirrorPlan
    out_dir: Path
    keep_by_split: Mapping[str, Collection[str] | None]  # clip ids to extract per split; None: all
    expected_by_split: Mapping[str, Collection[str]]
    policy: RetryPolicy
    jobs: int
    keep_archives: bool


def run_mirror(job: MirrorJob, *, state: DownloadState, on_progress: ProgressFn) -> MirrorOutcome:
    """Download every unfinished part while extracting those already fetched, then apply the replacement.

    Transfers run in `jobs` threads; each part is extracted on the stage
    engine (worker processes, one part each) as soon as its transfer ends,
    while the next parts download.
    """
    plan, outcome = job.plan, MirrorOutcome()
    done_parts = state.records("part")
    todo = [p for p in plan.parts if p.key not in done_parts]
    for part in plan.parts:
        if part.key in done_parts and not job.keep_archives:
            state.archive_path(part.split, part.name).unlink(missing_ok=True)
    log.info("%d of %d parts already extracted; %d to go", len(plan.parts) - len(todo), len(plan.parts), len(todo))
    progress = _ByteProgress(sum(p.size_bytes or 0 for p in todo) + (plan.replacement_size or 0), on_progress)
    progress.add(0)
    by_key = {p.key: p for p in plan.parts}
    items = [Item(key=p.key, stamp={"split": p.split, "url": p.url}, task=ExtractTask(
        p.split, p.url, str(state.archive_path(p.split, p.name)), str(job.out_dir / p.split),
        None if job.keep_by_split.get(p.split) is None else frozenset(job.keep_by_split[p.split] or ())))
        for p in plan.parts]
    fetcher = _Fetcher(state=state, policy=job.policy, jobs=job.jobs, progress=progress, outcome=outcome)

    def feed(ready: list[Item]) -> Iterator[Item | None]:
        """The parts to extract, each as soon as its transfer ends (extraction overlaps the next transfers)."""
        todo_items = {item.key: item for item in ready}
        return (None if key is None else todo_items[key] for key in fetcher.fetched([by_key[k] for k in todo_items]))

    spec = EXTRACT_SPEC if job.keep_archives else dataclasses.replace(EXTRACT_SPEC, after_record=_remove_archive)
    run = run_stage(spec, items, state_dir=state.root, options=StageOptions(), feed=feed)
    for failure in run.failures:
        part = by_key[failure.source]
        # the archive passed the size check but does not extract: fetch it anew next run
        state.archive_path(part.split, part.name).unlink(missing_ok=True)
        outcome.failures.append(Failure(part.url, "extract", failure.error, part.split))
    runs = [run]
    if plan.replacement_url:
        runs.append(_run_replacement(job, state=state, outcome=outcome, progress=progress))
    outcome.summary = _summary(runs, failed=Counter([f.reason for r in runs for f in r.failures]
                                                    + [f.kind for f in outcome.failures]))
    outcome.bytes_downloaded = progress.moved
    _note_gaps(plan, state=state, outcome=outcome)
    return outcome


def _summary(runs: list[StageRun], *, failed: Mapping[str, int]) -> dict[str, Any]:
    """One --summary-json record for the parts' and the replacement's runs of the stage."""
    summary = runs[0].summary(failed)
    for extra in runs[1:]:
        for key in ("planned", "cached", "done"):
            summary[key] += getattr(extra, key)
    return summary


def _note_gaps(plan: MirrorPlan, *, state: DownloadState, outcome: MirrorOutcome) -> None:
    """Parts still unfinished per split, and the clips an archive held as unsafe members."""
    done_parts = state.records("part")
    for split in {p.split for p in plan.parts}:
        left = sum(1 for p in plan.parts if p.split == split and p.key not in done_parts)
        if left:
            outcome.unfinished_parts[split] = left
    for entry in done_parts.values():
        for rejected in entry.get("rejected", []):
            base = PurePosixPath(rejected["member"].replace("\\", "/")).name
            clip = base.rsplit(".", 1)[0]
            outcome.reasons.setdefault(entry["split"], {})[clip] = f"unsafe archive member: {rejected['reason']}"


def _run_replacement(job: MirrorJob, *, state: DownloadState, outcome: MirrorOutcome,
                     progress: _ByteProgress) -> StageRun:
    """The replacement archive as one item of the stage, redone whenever the set of extracted parts changed.

    (A part extracted later would bring a corrupt original back.)
    """
    url = job.plan.replacement_url
    assert url is not None
    archive = state.root / "archives" / PurePosixPath(url).name
    parts = hashlib.sha256("\n".join(sorted(state.records("part"))).encode()).hexdigest()
    task = ReplacementTask(url, str(archive), str(state.root / "replacement"), tuple(
        (str(job.out_dir / split), frozenset(ids)) for split, ids in sorted(job.expected_by_split.items())))
    item = Item(key=f"replacement {url}", stamp={"url": url, "parts": parts}, task=task)

    def feed(ready: list[Item]) -> Iterator[Item]:
        """The replacement item once its archive is on disk; a mirror without one is a note, not a failure."""
        for pending in ready:
            try:
                fetch_file(url, archive, policy=job.policy, expected_size=job.plan.replacement_size,
                           on_bytes=progress.add)
            except DownloadFailed as exc:
                if exc.status == 404:
                    outcome.notes.append(f"no replacement archive at {url}; corrupt originals kept")
                else:
                    outcome.failures.append(Failure(url, "replacement", exc.reason))
                continue
            yield pending

    spec = REPLACEMENT_SPEC if job.keep_archives else dataclasses.replace(REPLACEMENT_SPEC, after_record=_remove_archive)
    run = run_stage(spec, [item], state_dir=state.root, options=StageOptions(jobs=1), feed=feed)
    for failure in run.failures:
        archive.unlink(missing_ok=True)  # a corrupt archive: fetch it anew next run
        outcome.failures.append(Failure(url, "replacement", failure.error))
    for entry in run.entries.values():
        if run.done:
            outcome.notes.append(f"replacement archive: {entry['replaced']} clip(s) replaced "
                                 f"({entry['available']} in the archive)")
    return run


class _Fetcher:
    """Downloads parts in threads, resumably, stopping at the next chunk on Ctrl-C."""

    def __init__(self, *, state: DownloadState, policy: RetryPolicy, jobs: int, progress: _ByteProgress,
                 outcome: MirrorOutcome) -> None:
        self.state, self.policy, self.jobs = state, policy, jobs
        self.progress, self.outcome = progress, outcome
        self.stop = StopSignal()

    def _fetch(self, part: PartPlan) -> None:
        fetch_file(part.url, self.state.archive_path(part.split, part.name), policy=self.policy,
                   expected_size=part.size_bytes, on_bytes=self.progress.add, stop=self.stop)

    def fetched(self, parts: list[PartPlan]) -> Iterator[str | None]:
        """Download the parts in threads; yield each part's key as it lands on disk (failed transfers recorded).

        None is yielded every 0.2 s while no transfer ends, so finished extractions are journaled meanwhile.
        Lazy: the transfers start at the first `next()`, so the extraction pool forks its
        workers before these threads exist, and each part is extracted while the next downloads.
        """
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.jobs), thread_name_prefix="part") as pool:
            futures = {pool.submit(self._fetch, part): part for part in parts}
            try:
                for future in as_completed_interruptible(futures, idle=True):
                    if future is None:  # nothing landed: let the extraction journal what it finished
                        yield None
                        continue
                    part = futures[future]
                    try:
                        future.result()
                    except DownloadFailed as exc:
                        self.outcome.failures.append(Failure(part.url, "download", exc.reason, part.split))
                        continue
                    except OSError as exc:  # disk full, permissions: this part's failure, reported
                        log.error("%s: %s", part.url, exc)
                        self.outcome.failures.append(
                            Failure(part.url, "io", f"{type(exc).__name__}: {exc}", part.split))
                        continue
                    yield part.key
            except BaseException:  # Ctrl-C, or the extraction stopped early (GeneratorExit)
                log.warning("interrupted: stopping transfers (partial downloads are kept for resume)")
                self.stop.set()  # transfers stop at their next chunk; .part files stay for resume
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def clip_hashes(state: DownloadState) -> dict[str, dict[str, tuple[int, str]]]:
    """Split -> clip id -> (size, sha256) as extracted (the replacement's copies win), from the journal."""
    found: dict[str, dict[str, tuple[int, str]]] = {}
    for entry in state.records("part").values():
        found.setdefault(entry["split"], {}).update({k: tuple(v) for k, v in entry.get("hashes", {}).items()})
    for entry in state.records("replacement").values():
        for clips in found.values():
            clips.update({k: tuple(v) for k, v in entry.get("hashes", {}).items() if k in clips})
    return found
