"""yt-dlp for the YouTube route: fetch a video or just a section of it, and classify its failures by type.

yt-dlp is imported only when a fetch runs (it is slow to import).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from videoprep.download.http import RetryPolicy, parse_retry_after
from videoprep.ffmpeg import ffmpeg_exe

log = logging.getLogger(__name__)

FailureKind = Literal["unavailable", "private", "removed", "throttled", "bot_check", "trim_failed", "other"]


@dataclass(frozen=True)
class YoutubeAuth:
    """Cookies for yt-dlp: a Netscape cookies file and/or a browser to read them from ("NAME[:PROFILE]")."""

    cookies: Path | None = None
    cookies_from_browser: str | None = None

    def ytdlp_options(self) -> dict[str, Any]:
        """The YoutubeDL options that carry these cookies."""
        options: dict[str, Any] = {}
        if self.cookies is not None:
            options["cookiefile"] = str(self.cookies)
        if self.cookies_from_browser:
            browser, _, profile = self.cookies_from_browser.partition(":")
            options["cookiesfrombrowser"] = (browser.lower(), profile or None, None, None)
        return options


def check_browser(name: str) -> str:
    """'' when yt-dlp can read cookies from browser `name` ("NAME[:PROFILE]"), else why not."""
    from yt_dlp.cookies import SUPPORTED_BROWSERS

    browser = name.partition(":")[0].lower()
    if browser not in SUPPORTED_BROWSERS:
        return f"{browser!r} is not a browser yt-dlp reads cookies from; one of {', '.join(sorted(SUPPORTED_BROWSERS))}"
    return ""


class ClipFailure(Exception):
    """A clip that could not be fetched or cut, with its failure kind."""

    def __init__(self, kind: FailureKind, reason: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason
        self.retry_after_s = retry_after_s


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """The error and everything it wraps (yt-dlp's exc_info and cause, Python's __cause__)."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        exc_info = getattr(item, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            todo.append(exc_info[1])
        todo.extend([getattr(item, "cause", None), item.__cause__, item.__context__])
    return seen


# Fallback only: YouTube's refusals arrive as ExtractorError with no status, just text.
_TEXT_KINDS: tuple[tuple[FailureKind, tuple[str, ...]], ...] = (
    # "Sign in to confirm you're not a bot": only cookies (--cookies, --cookies-from-browser) help.
    ("bot_check", ("not a bot",)),
    ("throttled", ("http error 429", "too many requests")),
    ("private", ("private video", "members-only", "sign in to confirm your age")),
    ("removed", ("removed", "terminated", "copyright", "violat")),
    ("unavailable", ("unavailable", "not available", "does not exist", "http error 404")),
)


def classify_error(exc: BaseException) -> tuple[FailureKind, float | None]:
    """(failure kind, Retry-After seconds) of a yt-dlp error, from types and HTTP status first."""
    from yt_dlp.networking.exceptions import HTTPError as YtHTTPError
    from yt_dlp.utils import GeoRestrictedError, UnavailableVideoError

    chain = _exception_chain(exc)
    for item in chain:
        status, headers = None, None
        if isinstance(item, YtHTTPError):
            status, headers = item.status, item.response.headers
        elif isinstance(item, urllib.error.HTTPError):
            status, headers = item.code, item.headers
        if status is None:
            continue
        if status == 429:
            return "throttled", parse_retry_after(headers.get("Retry-After") if headers else None)
        if status in (404, 410):
            return "unavailable", None
        if status in (401, 403):
            return "private", None
    for item in chain:
        if isinstance(item, (GeoRestrictedError, UnavailableVideoError)):
            return "unavailable", None
    text = " ".join(str(item) for item in chain).lower()
    for kind, needles in _TEXT_KINDS:
        if any(n in text for n in needles):
            return kind, None
    return "other", None


class _QuietLogger:
    """yt-dlp logger that routes its output to logging at debug level (warnings stay warnings)."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", msg)


FetchPath = Literal["range", "whole"]
# With keyframes forced at the cut, yt-dlp's ffmpeg re-encodes the section while it reads; trim_clip
# re-encodes it once more, so that pass is fast and nearly lossless.
_SECTION_ENCODE = ["-preset", "ultrafast", "-crf", "16"]


def fetch_video(url: str, *, work_dir: Path, name: str, policy: RetryPolicy, stop: threading.Event | None = None,
                auth: YoutubeAuth = YoutubeAuth(), section: tuple[float, float] | None = None,
                force_keyframes: bool = False, ffmpeg: str | None = None) -> Path:
    """Download a video with yt-dlp into `work_dir/name.<ext>`: only `section` (start, end s) if given; ClipFailure.

    A section is read through ffmpeg with HTTP range requests (yt-dlp's download_ranges); its time 0 is
    `start`. `force_keyframes`: re-encode it with a keyframe at `start` (yt-dlp's force_keyframes_at_cuts)
    instead of copying it from the keyframe before (then an edit list skips the lead-in). Copying reads
    less: ffmpeg reads ahead while it encodes (docs/download.md has the figures). `ffmpeg`: the program
    yt-dlp runs (None: videoprep.ffmpeg's choice).
    """
    from yt_dlp import YoutubeDL
    from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
    from yt_dlp.utils import DownloadCancelled, YoutubeDLError, download_range_func

    def abort_when_stopped(_status: dict[str, Any]) -> None:
        # yt-dlp calls this every block: the way to stop a transfer in flight on Ctrl-C
        if stop is not None and stop.is_set():
            raise DownloadCancelled("stopped")

    ffmpeg = ffmpeg or ffmpeg_exe()
    # yt-dlp asks "is ffmpeg there?" for section downloads without its options, through this context
    # variable (its own CLI sets it); set per call: each worker thread has its own context.
    FFmpegPostProcessor._ffmpeg_location.set(ffmpeg)
    work_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "outtmpl": str(work_dir / f"{name}.%(ext)s"), "format": "bv*[height<=720]+ba/b[height<=720]/bv*+ba/b",
        "merge_output_format": "mp4", "ffmpeg_location": ffmpeg, "quiet": True, "no_warnings": True,
        "noprogress": True, "noplaylist": True, "continuedl": True, "retries": 2, "extractor_retries": 0,
        "socket_timeout": policy.timeout_s, "cachedir": False, "logger": _QuietLogger(),
        "progress_hooks": [abort_when_stopped], **auth.ytdlp_options(),
    }
    if section is not None:
        options.update(download_ranges=download_range_func(None, [section]),
                       force_keyframes_at_cuts=force_keyframes,
                       external_downloader_args={"ffmpeg_o": _SECTION_ENCODE} if force_keyframes else {})
    try:
        with YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
    except YoutubeDLError as exc:
        if stop is not None and stop.is_set():
            raise ClipFailure("other", "stopped") from None
        kind, retry_after = classify_error(exc)
        raise ClipFailure(kind, _short(exc), retry_after_s=retry_after) from None
    paths = [d.get("filepath") for d in (info or {}).get("requested_downloads") or []]
    found = [Path(p) for p in paths if p and Path(p).is_file()]
    if not found:
        raise ClipFailure("other", "yt-dlp reported success but wrote no file")
    return found[0]


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return text.removeprefix("ERROR: ")[:300]
