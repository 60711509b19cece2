"""The YouTube route: each clip is an item of the download's engine stage, run on threads.

yt-dlp fetches the video and ffmpeg cuts the annotated window. Output:
`{out}/{split}/{label}/{ytid}_{start:06d}_{end:06d}.mp4` (test clips, which have
no label, in `{out}/test/`). HTTP 429 halves the number of concurrent downloads
and spaces them out; failures are classified and journaled, and the run keeps going.
"""

from __future__ import annotations

import functools
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoprep.atomic import atomic_path
from videoprep.download.http import DownloadFailed, RetryPolicy, Transient, with_retries
from videoprep.download.report import Failure
from videoprep.download.state import DOWNLOAD_STAGE, DownloadState
from videoprep.download.ytdlp import (
    ClipFailure,
    FetchPath,
    YoutubeAuth,
    check_browser,
    classify_error,
    fetch_video,
)
from videoprep.errors import FFmpegError, ProbeError
from videoprep.ffmpeg import run_ffmpeg
from videoprep.kinetics import Clip
from videoprep.progress import ProgressFn
from videoprep.stage import Item, StageOptions, StageSpec, run_stage

__all__ = ["AdaptiveLimiter", "ClipFailure", "YoutubeAuth", "YoutubeJob", "check_browser", "classify_error",
           "clip_destination", "run_youtube", "trim_clip"]

log = logging.getLogger(__name__)

YOUTUBE_URL_TEMPLATE = "https://www.youtube.com/watch?v={youtube_id}"
# Failures a retry will not fix; re-runs skip these clips unless asked to retry them.
PERMANENT_KINDS: frozenset[str] = frozenset({"unavailable", "private", "removed"})
# Failures the whole-file fallback cannot fix either: the video is gone, or YouTube refuses us.
_NO_FALLBACK: frozenset[str] = PERMANENT_KINDS | {"throttled", "bot_check"}
_TRIM_TIMEOUT_S = 600.0


def clip_destination(out_dir: Path, clip: Clip) -> Path:
    """`{out}/{split}/{label}/{clip}.mp4`, or `{out}/test/{clip}.mp4` for unlabelled/test clips."""
    if clip.split == "test" or not clip.label:
        return out_dir / "test" / f"{clip.clip_id}.mp4"
    label = clip.label.replace("/", "_")
    return out_dir / clip.split / label / f"{clip.clip_id}.mp4"


class AdaptiveLimiter:
    """How many downloads may run at once and how far apart they start; tightens on HTTP 429.

    Each 429 halves the concurrency, doubles the spacing between starts and
    pauses everyone for the Retry-After time (or the backoff). A run of
    successes slowly loosens it again.
    """

    def __init__(self, limit: int, *, policy: RetryPolicy) -> None:
        self.max_limit = max(1, limit)
        self.limit = self.max_limit
        self.policy = policy
        self.active = 0
        self.spacing_s = 0.0
        self.not_before = 0.0
        self.last_start = 0.0
        self.strikes = 0
        self.throttle_events = 0
        self.min_limit_seen = self.limit
        self._successes = 0
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event | None = None) -> None:
        """Block until a download may start."""
        with self._cond:
            while True:
                if stop is not None and stop.is_set():
                    raise ClipFailure("other", "stopped")
                now = time.monotonic()
                start_at = max(self.not_before, self.last_start + self.spacing_s)
                if self.active < self.limit and now >= start_at:
                    self.active += 1
                    self.last_start = now
                    return
                self._cond.wait(timeout=max(0.01, min(start_at - now, 0.5)) if now < start_at else 0.5)

    def release(self, *, throttled: bool = False, retry_after_s: float | None = None) -> None:
        """End a download; a throttled one tightens the limits."""
        with self._cond:
            self.active -= 1
            if throttled:
                self.throttle_events += 1
                self.limit = max(1, self.limit // 2)
                self.min_limit_seen = min(self.min_limit_seen, self.limit)
                self.spacing_s = min(max(self.policy.backoff_base_s, self.spacing_s * 2), self.policy.backoff_max_s)
                delay = self.policy.delay_s(self.strikes, retry_after_s=retry_after_s)
                self.strikes += 1
                self.not_before = max(self.not_before, time.monotonic() + delay)
                self._successes = 0
                log.warning("HTTP 429: %d parallel download(s), %.2f s apart, pausing %.2f s",
                            self.limit, self.spacing_s, delay)
            else:
                self._successes += 1
                if self._successes >= 8:
                    self._successes = 0
                    self.strikes = max(0, self.strikes - 1)
                    self.spacing_s = self.spacing_s / 2 if self.spacing_s > 0.01 else 0.0
                    self.limit = min(self.max_limit, self.limit + 1)
            self._cond.notify_all()


def trim_clip(source: Path, dest: Path, *, time_start: float, time_end: float, ffmpeg: str | None = None) -> int:
    """Cut [time_start, time_end] of `source` into `dest` (H.264 MP4), atomically; return frames.

    `ffmpeg` is the program (None: videoprep.ffmpeg's choice).
    """
    duration = time_end - time_start
    if duration <= 0:
        raise ClipFailure("trim_failed", f"empty window {time_start}-{time_end}")
    try:
        with atomic_path(dest) as tmp:
            run_ffmpeg([
                "-y", "-ss", f"{time_start:g}", "-i", str(source), "-t", f"{duration:g}",
                "-map", "0:v:0", "-map", "0:a:0?",
                "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-movflags", "+faststart", "-threads", "1", "-f", "mp4", str(tmp),
            ], target=str(dest), timeout_s=_TRIM_TIMEOUT_S, exe=ffmpeg)
            from videoprep.probe import probe_video  # PyAV: only when a clip is cut

            frames = probe_video(tmp).frames
    except (FFmpegError, ProbeError) as exc:
        raise ClipFailure("trim_failed", exc.reason[-300:]) from None
    return frames


@dataclass
class YoutubeOutcome:
    """What the YouTube route did: failures and per-clip reasons, throttling seen, how each clip was fetched."""

    failures: list[Failure] = field(default_factory=list)
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    bytes_downloaded: int = 0
    notes: list[str] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)  # {"id", "split", "fetch", "file_bytes"}
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClipTask:
    """One clip to fetch and cut: where from and where to."""

    clip: Clip
    url: str
    dest: Path


@dataclass
class YoutubeJob:
    """What run_youtube is asked to do."""

    clips: Sequence[Clip]
    out_dir: Path
    url_template: str
    policy: RetryPolicy
    jobs: int
    retry_failed: bool
    auth: YoutubeAuth = YoutubeAuth()
    ffmpeg: str | None = None  # the program that reads sections and cuts clips; None: videoprep.ffmpeg's choice


class ClipFetcher:
    """The engine's task function on the threads executor: fetch and cut one clip, return its journal record.

    Shared by every thread: the rate limiter, the stop flag, the byte count.
    A ClipFailure is the clip's recorded result; any other error is the engine's
    failure of the item (not journaled, tried again next run).
    """

    def __init__(self, job: YoutubeJob, *, work_root: Path) -> None:
        self.job, self.work_root = job, work_root
        self.limiter = AdaptiveLimiter(job.jobs, policy=job.policy)
        self.stop = threading.Event()
        self.bytes_fetched = 0
        self._lock = threading.Lock()

    def __call__(self, task: ClipTask) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": "clip", "split": task.clip.split, "clip": task.clip.clip_id}
        if task.dest.exists():  # cut by an earlier run (or put there by hand): done
            return {**record, "status": "ok", "fetch": "present"}
        work_dir = self.work_root / task.clip.clip_id
        try:
            path, source = self._fetch_clip(task, work_dir=work_dir)
            size = source.stat().st_size
            with self._lock:
                self.bytes_fetched += size
            # the range path's file starts at the window's start (keyframe forced there)
            start = 0.0 if path == "range" else task.clip.time_start
            trim_clip(source, task.dest, time_start=start, time_end=start + task.clip.time_end - task.clip.time_start,
                      ffmpeg=self.job.ffmpeg)
        except ClipFailure as failure:
            if self.stop.is_set():
                raise  # interrupted, not failed: the next run tries it again
            if failure.kind in PERMANENT_KINDS or failure.kind == "trim_failed":
                shutil.rmtree(work_dir, ignore_errors=True)  # else keep yt-dlp's .part for the next try
            return {**record, "status": "failed", "failure": failure.kind, "reason": failure.reason}
        shutil.rmtree(work_dir, ignore_errors=True)  # the fetched video is not kept
        return {**record, "status": "ok", "fetch": path, "file_bytes": size}

    def _fetch_clip(self, task: ClipTask, *, work_dir: Path) -> tuple[FetchPath, Path]:
        """Only the window (range requests) when possible, else the whole video: (path taken, file)."""
        window = (float(task.clip.time_start), float(task.clip.time_end))
        try:
            return "range", self._fetch(task.url, work_dir=work_dir / "range", name=task.clip.clip_id, section=window)
        except ClipFailure as failure:
            if failure.kind in _NO_FALLBACK or self.stop.is_set():
                raise
            log.info("%s: range fetch failed (%s); fetching the whole video", task.url, failure.reason)
        return "whole", self._fetch(task.url, work_dir=work_dir / "whole", name=task.clip.clip_id)

    def _fetch(self, url: str, *, work_dir: Path, name: str, section: tuple[float, float] | None = None) -> Path:
        """fetch_video under the limiter and the download's one retry loop (a 429 is retried)."""
        def attempt(_: int) -> Path:
            self.limiter.acquire(self.stop)
            try:
                path = fetch_video(url, work_dir=work_dir, name=name, policy=self.job.policy, stop=self.stop,
                                   auth=self.job.auth, section=section, ffmpeg=self.job.ffmpeg)
            except ClipFailure as failure:
                throttled = failure.kind == "throttled"
                self.limiter.release(throttled=throttled, retry_after_s=failure.retry_after_s)
                if throttled:
                    raise Transient(failure.reason, retry_after_s=failure.retry_after_s) from None
                raise
            self.limiter.release()
            return path

        try:
            path, _ = with_retries(url, self.job.policy, attempt, stop=self.stop)
        except DownloadFailed as exc:
            raise ClipFailure("other" if self.stop.is_set() else "throttled", exc.reason) from None
        assert isinstance(path, Path)
        return path


def _still_done(retry_failed: bool, item: Item, entry: dict[str, Any]) -> bool:
    """A journaled clip is done while its file is there; a failure only while permanent (and not retried)."""
    if entry.get("status") == "ok":
        return item.task.dest.exists()
    return entry.get("failure") in PERMANENT_KINDS and not retry_failed


def run_youtube(job: YoutubeJob, *, state: DownloadState, on_progress: ProgressFn) -> YoutubeOutcome:
    """Fetch and cut every selected clip not done yet: clips are items of the engine, on threads."""
    outcome = YoutubeOutcome()
    fetcher = ClipFetcher(job, work_root=state.root / "youtube")
    items = []
    for clip in job.clips:
        url = job.url_template.format(youtube_id=clip.youtube_id)
        items.append(Item(key=f"{clip.split} {clip.clip_id}", task=ClipTask(clip, url, clip_destination(job.out_dir, clip)),
                          stamp={"url": url, "start": clip.time_start, "end": clip.time_end}))
    fresh: set[str] = set()

    def record(item: Item, value: dict[str, Any]) -> dict[str, Any]:
        fresh.add(item.key)
        return dict(value)

    spec = StageSpec(DOWNLOAD_STAGE, fetcher, None, record=record,
                     still_valid=functools.partial(_still_done, job.retry_failed))
    run = run_stage(spec, items, state_dir=state.root, options=StageOptions(executor="threads", jobs=job.jobs),
                    on_progress=on_progress, stop=fetcher.stop)
    by_key = {item.key: item.task.clip for item in items}
    for key, entry in sorted(run.entries.items()):
        clip = by_key[key]
        if entry.get("status") == "failed":
            outcome.reasons.setdefault(clip.split, {})[clip.clip_id] = f"{entry['failure']}: {entry.get('reason', '')}"
            if key in fresh:
                outcome.failures.append(Failure(clip.clip_id, entry["failure"], entry.get("reason", ""), clip.split))
        elif entry.get("fetch") in ("range", "whole"):
            outcome.clips.append({"id": clip.clip_id, "split": clip.split, "fetch": entry["fetch"],
                                  "file_bytes": entry.get("file_bytes")})
    for failure in run.failures:
        clip = by_key[failure.source]
        outcome.failures.append(Failure(clip.clip_id, "other", failure.error, clip.split))
        outcome.reasons.setdefault(clip.split, {})[clip.clip_id] = f"other: {failure.error}"
    _add_notes(outcome, skipped=sum(1 for k, e in run.entries.items() if e.get("status") == "failed" and k not in fresh),
               limiter=fetcher.limiter)
    outcome.bytes_downloaded = fetcher.bytes_fetched
    outcome.summary = run.summary()
    return outcome


def _add_notes(outcome: YoutubeOutcome, *, skipped: int, limiter: AdaptiveLimiter) -> None:
    """What the user should know: clips not retried, bot checks, throttling."""
    if skipped:
        outcome.notes.append(f"{skipped} clip(s) failed permanently before and were not retried (--retry-failed)")
    bots = sum(f.kind == "bot_check" for f in outcome.failures)
    if bots:
        outcome.notes.append(f"YouTube asked {bots} clip(s) to sign in to confirm they are not a bot; re-run with "
                             "--cookies FILE or --cookies-from-browser NAME")
    if limiter.throttle_events:
        outcome.notes.append(f"HTTP 429 seen {limiter.throttle_events} time(s); concurrency went down to "
                             f"{limiter.min_limit_seen}")

