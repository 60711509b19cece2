"""Resumable HTTP downloads: Range resume from `.part` files, retries with backoff, size checks.

Standard library only (urllib). A file is renamed to its final name only when the
bytes on disk equal the total the server announced (Content-Range total or
Content-Length); anything else stays a `.part` file and is resumed next time.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from videoprep.atomic import part_path
from videoprep.errors import VideoprepError

log = logging.getLogger(__name__)

USER_AGENT = "videoprep-download/0.1 (+https://github.com/; resumable)"
_CHUNK_BYTES = 1 << 16
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# Statuses worth retrying: the server or a proxy is overloaded, not the request wrong.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# Called with the number of new bytes written (negative when a restart throws bytes away).
BytesFn = Callable[[int], None]


class DownloadFailed(VideoprepError):
    """A URL that could not be fetched completely; `permanent` says retrying will not help."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, permanent: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.status = status
        self.permanent = permanent
        super().__init__(f"{url}: {reason}")


class Transient(Exception):
    """One attempt failed in a way a retry may fix; carries the server's Retry-After if any.

    `unreachable`: nothing answered at all (connection refused, unknown host); such
    retries come quickly, so a dead or mistyped mirror fails within seconds.
    """

    def __init__(self, reason: str, *, retry_after_s: float | None = None, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
        self.unreachable = unreachable


def _network_transient(exc: Exception) -> Transient:
    """A network error as a retryable failure, with a plain reason for the ones users hit most."""
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, ConnectionRefusedError):
        return Transient("connection refused (nothing listens there: is the URL right?)", unreachable=True)
    if isinstance(cause, socket.gaierror):
        return Transient(f"unknown host ({cause.strerror})", unreachable=True)
    return Transient(f"{type(exc).__name__}: {exc}")



class StopSignal(threading.Event):
    """A stop flag that also cuts the connections of transfers in flight when set (prompt Ctrl-C).

    A worker blocked reading a slow or stalled socket would otherwise only
    notice the flag when the next bytes (or the timeout) arrive.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sockets: dict[int, int] = {}
        self._guard = threading.Lock()

    def watch(self, response: http.client.HTTPResponse) -> int | None:
        """Remember a response's socket so set() can shut it down; returns a token for unwatch."""
        try:
            fd = response.fileno()
        except (OSError, ValueError, AttributeError):
            return None
        with self._guard:
            token = id(response)
            self._sockets[token] = fd
        if self.is_set():
            self._shutdown(fd)
        return token

    def unwatch(self, token: int | None) -> None:
        """Forget a response that is finished."""
        if token is not None:
            with self._guard:
                self._sockets.pop(token, None)

    def set(self) -> None:
        """Raise the flag and shut down every watched connection (the fds stay owned by their responses)."""
        super().set()
        with self._guard:
            fds = list(self._sockets.values())
        for fd in fds:
            self._shutdown(fd)

    @staticmethod
    def _shutdown(fd: int) -> None:
        try:
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            return
        try:
            dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            dup.close()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, exponential backoff with jitter, per-request timeout."""

    retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 60.0
    retry_after_max_s: float = 600.0
    unreachable_max_s: float = 0.5  # longest wait between retries when nothing answered at all

    def delay_s(self, attempt: int, *, retry_after_s: float | None = None, unreachable: bool = False) -> float:
        """Seconds to wait before attempt `attempt + 1`: Retry-After wins, else base*2^n plus jitter.

        Unreachable hosts (refused, unknown) are retried at most `unreachable_max_s` apart:
        at the default 6 retries a dead mirror is reported within seconds.
        """
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.retry_after_max_s)
        exp = self.backoff_base_s * (2**attempt)
        delay = min(exp + random.uniform(0, self.backoff_base_s), self.backoff_max_s)
        return min(delay, self.unreachable_max_s) if unreachable else delay


@dataclass(frozen=True)
class FetchResult:
    """A finished download: where it is, its size, and how much of it this call transferred."""

    path: Path
    size_bytes: int
    transferred_bytes: int
    attempts: int
    resumed: bool


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _request(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> urllib.request.Request:
    all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
    return urllib.request.Request(url, method=method, headers=all_headers)


def _classify_http_error(url: str, exc: urllib.error.HTTPError) -> Exception:
    """Retryable statuses become Transient (with Retry-After); the rest a permanent DownloadFailed."""
    if exc.code in RETRY_STATUSES:
        return Transient(f"HTTP {exc.code}", retry_after_s=parse_retry_after(exc.headers.get("Retry-After")))
    return DownloadFailed(url, f"HTTP {exc.code} {exc.reason}", status=exc.code, permanent=True)


def with_retries(url: str, policy: RetryPolicy, attempt_fn: Callable[[int], object],
                 *, stop: threading.Event | None = None) -> tuple[object, int]:
    """Call attempt_fn(attempt) until it returns; sleep between Transient failures. (value, attempts).

    The one retry loop of the download: HTTP requests and yt-dlp fetches alike. Gives up
    with DownloadFailed after `policy.retries` retries, or at once when `stop` is set.
    """
    last = "no attempt made"
    for attempt in range(policy.retries + 1):
        if stop is not None and stop.is_set():
            raise DownloadFailed(url, "stopped")
        try:
            return attempt_fn(attempt), attempt + 1
        except Transient as exc:
            last = str(exc)
            if attempt == policy.retries:
                break
            delay = policy.delay_s(attempt, retry_after_s=exc.retry_after_s, unreachable=exc.unreachable)
            log.warning("%s: %s; retry %d/%d in %.1f s", url, last, attempt + 1, policy.retries, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise DownloadFailed(url, "stopped") from None
            else:
                time.sleep(delay)
    raise DownloadFailed(url, f"gave up after {policy.retries + 1} attempts: {last}")


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)


def fetch_bytes(url: str, *, policy: RetryPolicy = RetryPolicy(), max_bytes: int = 64 << 20) -> bytes:
    """GET a small resource (URL list, CSV) whole, with retries; the body must match Content-Length."""

    def attempt(_: int) -> bytes:
        try:
            with urllib.request.urlopen(_request(url), timeout=policy.timeout_s) as resp:
                body = resp.read(max_bytes + 1)
                declared = resp.headers.get("Content-Length")
        except urllib.error.HTTPError as exc:
            raise _classify_http_error(url, exc) from None
        except _NETWORK_ERRORS as exc:
            raise _network_transient(exc) from None
        if len(body) > max_bytes:
            raise DownloadFailed(url, f"larger than {max_bytes} bytes", permanent=True)
        if declared is not None and int(declared) != len(body):
            raise Transient(f"body has {len(body)} bytes, Content-Length said {declared}")
        return body

    value, _ = with_retries(url, policy, attempt)
    assert isinstance(value, bytes)
    return value


def head_size(url: str, *, policy: RetryPolicy = RetryPolicy()) -> int | None:
    """Content-Length of `url` from a HEAD request, None when the server does not say."""

    def attempt(_: int) -> int | None:
        try:
            with urllib.request.urlopen(_request(url, method="HEAD"), timeout=policy.timeout_s) as resp:
                value = resp.headers.get("Content-Length")
        except urllib.error.HTTPError as exc:
            raise _classify_http_error(url, exc) from None
        except _NETWORK_ERRORS as exc:
            raise _network_transient(exc) from None
        return int(value) if value is not None and value.isdigit() else None

    value, _ = with_retries(url, policy, attempt)
    return value if isinstance(value, int) else None


def fetch_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    policy: RetryPolicy = RetryPolicy(),
    expected_size: int | None = None,
    on_bytes: BytesFn | None = None,
    stop: threading.Event | None = None,
) -> FetchResult:
    """Download `url` to `dest`, resuming `dest.part`, renaming only when complete.

    A `dest` already there (and of `expected_size`, when given) is a finished
    download and is not fetched again.

    Retries connection errors, short bodies and 5xx/429 with exponential
    backoff (honouring Retry-After). Complete means the bytes on disk equal the
    total the server announced, and `expected_size` when the caller knows it.
    """
    final = Path(dest)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = part_path(final)
    report = on_bytes or (lambda _n: None)
    if final.is_file() and (expected_size is None or final.stat().st_size == expected_size):
        # only a verified download is ever renamed to the final name (e.g. killed before extraction)
        size = final.stat().st_size
        report(size)
        return FetchResult(final, size, 0, 0, False)
    resumed = partial.exists() and partial.stat().st_size > 0
    counters = {"transferred": 0}

    def attempt(_: int) -> int:
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = urllib.request.urlopen(_request(url, headers=headers), timeout=policy.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                total = _total_from_416(exc)
                exc.close()
                if total is not None and total == have:
                    return have  # already complete on disk
                log.warning("%s: server refused resume at %d bytes (total %s); restarting", url, have, total)
                partial.unlink()
                report(-have)
                raise Transient("range not satisfiable; restarted") from None
            raise _classify_http_error(url, exc) from None
        except _NETWORK_ERRORS as exc:
            raise _network_transient(exc) from None
        token = stop.watch(resp) if isinstance(stop, StopSignal) else None
        with resp:
            start, total = _response_span(url, resp, have)
            if start == 0 and have:
                log.info("%s: server ignored Range; restarting from 0", url)
                report(-have)
            if expected_size is not None and total is not None and total != expected_size:
                raise Transient(f"server says {total} bytes, expected {expected_size}")
            mode = "ab" if start else "wb"
            written = start
            try:
                with open(partial, mode) as out:
                    while True:
                        if stop is not None and stop.is_set():
                            raise DownloadFailed(url, "stopped")
                        chunk = resp.read1(_CHUNK_BYTES)  # what has arrived: progress and .part advance steadily
                        if not chunk:
                            break
                        out.write(chunk)
                        out.flush()  # the .part size on disk tracks what was received
                        written += len(chunk)
                        counters["transferred"] += len(chunk)
                        report(len(chunk))
                    out.flush()
                    os.fsync(out.fileno())
            except _NETWORK_ERRORS as exc:
                raise Transient(f"connection lost at {written} bytes: {type(exc).__name__}") from None
            finally:
                if isinstance(stop, StopSignal):
                    stop.unwatch(token)
        if stop is not None and stop.is_set():
            raise DownloadFailed(url, "stopped")
        target = total if total is not None else expected_size
        if target is None:
            raise DownloadFailed(url, "server announced no length; cannot verify completeness", permanent=True)
        if written != target:
            raise Transient(f"got {written} of {target} bytes")
        return written

    size, attempts = with_retries(url, policy, attempt, stop=stop)
    assert isinstance(size, int)
    on_disk = partial.stat().st_size
    if on_disk != size or (expected_size is not None and on_disk != expected_size):
        raise DownloadFailed(url, f"{on_disk} bytes on disk, expected {expected_size or size}")
    os.replace(partial, final)
    return FetchResult(final, size, counters["transferred"], attempts, resumed)


def _total_from_416(exc: urllib.error.HTTPError) -> int | None:
    match = re.match(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range") or "")
    return int(match.group(1)) if match else None


def _response_span(url: str, resp: http.client.HTTPResponse, have: int) -> tuple[int, int | None]:
    """(offset the body starts at, total file size or None) from a 200/206 response."""
    if resp.status == 206:
        match = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range") or "")
        if not match:
            raise Transient("206 without a usable Content-Range")
        start = int(match.group(1))
        if start != have:
            raise Transient(f"asked for bytes from {have}, server sent from {start}")
        total = None if match.group(3) == "*" else int(match.group(3))
        return start, total
    if resp.status != 200:
        raise Transient(f"unexpected HTTP {resp.status}")
    length = resp.headers.get("Content-Length")
    return 0, int(length) if length is not None and length.isdigit() else None
