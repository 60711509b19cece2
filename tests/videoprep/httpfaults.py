"""A real HTTP server on 127.0.0.1 that serves a folder and injects faults on request.

Used by the download tests (and reusable by the demo): `serve_folder(root)` is a
context manager yielding a `FaultServer` with `.url`, a request log, and
`.add_fault(path, Fault(...))` to make the next request(s) for a path fail in a chosen way.
Supports GET, HEAD and single `Range: bytes=N-` / `bytes=N-M` requests like a plain static host, and
counts the body bytes it sends (per path, and per request in `.transfers`).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

FaultKind = Literal["status", "drop", "long_length", "short_length", "ignore_range", "slow", "refuse_range"]

_CONTENT_TYPES = {
    ".mp4": "video/mp4", ".webm": "video/webm", ".csv": "text/csv", ".txt": "text/plain",
    ".gz": "application/gzip", ".tgz": "application/gzip", ".tar": "application/x-tar",
}


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for one request.

    status: answer `status` (e.g. 500, 429 with `retry_after`) instead of the file.
    drop: send headers and `after_bytes` of the body, then close the connection.
    long_length: claim `extra_bytes` more in Content-Length than is sent, then close.
    short_length: claim `extra_bytes` fewer in Content-Length and send only that many.
    ignore_range: answer 200 with the whole file even when a Range was asked for.
    slow: send the body at `rate_bytes_s` bytes per second.
    refuse_range: answer `status` to requests with a Range header (a host that cannot serve parts).
    """

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    after_bytes: int = 0
    extra_bytes: int = 0
    rate_bytes_s: int = 0


@dataclass(frozen=True)
class LoggedRequest:
    """What the server saw and answered."""

    method: str
    path: str
    range: str | None
    status: int
    cookie: str | None = None  # the Cookie header, if any


class FaultServer:
    """State shared by the handler threads: the folder, queued faults, persistent faults, the log."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.always: dict[str, Fault] = {}
        self.log: list[LoggedRequest] = []
        self.bytes_sent: dict[str, int] = defaultdict(int)  # path -> body bytes written to the socket
        self.transfers: list[tuple[str, str | None, int]] = []  # (path, Range header, body bytes sent) per GET
        self.lock = threading.Lock()
        self.httpd: http.server.HTTPServer | None = None
        self.packed: Any = None  # what pack_mirror returned, when serve_mirror made the folder

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add_fault(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests of `path` (one fault per request, in order)."""
        with self.lock:
            self.faults["/" + path.lstrip("/")].extend(faults)

    def set_always(self, path: str, fault: Fault | None) -> None:
        """Apply `fault` to every request of `path` until cleared with None."""
        key = "/" + path.lstrip("/")
        with self.lock:
            if fault is None:
                self.always.pop(key, None)
            else:
                self.always[key] = fault

    def take_fault(self, path: str, method: str) -> Fault | None:
        """The fault for this request, if any (queued faults are for GETs; HEADs see only `always`)."""
        with self.lock:
            queue = self.faults.get(path)
            if queue and method == "GET":
                return queue.popleft()
            return self.always.get(path)

    def requests_for(self, path: str, method: str = "GET") -> list[LoggedRequest]:
        """Logged requests of one path."""
        key = "/" + path.lstrip("/")
        with self.lock:
            return [r for r in self.log if r.path == key and r.method == method]


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: FaultServer  # set on the subclass made per server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class signature
        """Keep test output quiet; the FaultServer log records every request."""

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve(head=False)

    def _count(self, sent: int) -> None:
        """Add body bytes just written to the socket to this path's total and this request's transfer."""
        state, path = self.server_state, self.path.split("?")[0]
        with state.lock:
            state.bytes_sent[path] += sent
            if self._transfer is None:  # the first bytes of this request's body
                self._transfer = len(state.transfers)
                state.transfers.append((path, self.headers.get("Range"), 0))
            _, asked, done = state.transfers[self._transfer]
            state.transfers[self._transfer] = (path, asked, done + sent)

    def _record(self, status: int) -> None:
        state = self.server_state
        with state.lock:
            state.log.append(LoggedRequest(self.command, self.path.split("?")[0], self.headers.get("Range"), status,
                                           self.headers.get("Cookie")))

    def _serve(self, *, head: bool) -> None:
        self._transfer: int | None = None  # index in server_state.transfers once the body starts
        state = self.server_state
        path = self.path.split("?")[0]
        fault = state.take_fault(path, self.command)
        if fault is not None and fault.kind == "refuse_range" and self.headers.get("Range"):
            fault = Fault("status", status=fault.status)
        if fault is not None and fault.kind == "status":
            self._record(fault.status)
            body = f"injected {fault.status}\n".encode()
            self.send_response(fault.status)
            if fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        target = (state.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(state.root.resolve()) or not target.is_file():
            self._record(404)
            self.send_error(404, "not found")
            return
        data_size = target.stat().st_size
        start, end = 0, data_size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header and not (fault and fault.kind == "ignore_range"):
            spec = range_header.removeprefix("bytes=")
            first, _, last = spec.partition("-")
            start = int(first)
            end = int(last) if last else data_size - 1
            if start >= data_size:
                self._record(416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{data_size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, data_size - 1)
            status = 206
        length = end - start + 1
        claimed = length
        if fault and fault.kind == "long_length":
            claimed = length + fault.extra_bytes
        elif fault and fault.kind == "short_length":
            claimed = max(0, length - fault.extra_bytes)
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", _CONTENT_TYPES.get(target.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(claimed))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{data_size}")
        self.end_headers()
        if head:
            return
        to_send = min(length, claimed)
        if fault and fault.kind == "drop":
            to_send = min(to_send, fault.after_bytes)
        rate = fault.rate_bytes_s if fault and fault.kind == "slow" else 0
        with open(target, "rb") as f:
            f.seek(start)
            remaining = to_send
            while remaining > 0:
                chunk = f.read(min(remaining, 4096 if rate else 65536))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                self._count(len(chunk))
                remaining -= len(chunk)
                if rate:
                    time.sleep(len(chunk) / rate)
        if fault and fault.kind in ("drop", "long_length"):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)


class _QuietServer(http.server.ThreadingHTTPServer):
    """A threading server that does not print tracebacks when a client hangs up early (tests do that)."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients dropping connections is expected here; anything else is still printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextlib.contextmanager
def serve_folder(root: str | os.PathLike[str]) -> Iterator[FaultServer]:
    """Serve `root` on 127.0.0.1 (a free port) in a background thread for the block's duration."""
    state = FaultServer(Path(root))
    handler = type("Handler", (_Handler,), {"server_state": state})
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    state.httpd = httpd
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-server",
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def serve_mirror(source_root: Path, root: Path, **pack_options: Any) -> Iterator[FaultServer]:
    """Pack `{source_root}/videos` + `annotations` (make_kinetics_folder) as a CVDF mirror in root and serve it."""
    from videoprep.synth import pack_mirror

    root.mkdir(parents=True, exist_ok=True)
    with serve_folder(root) as server:
        server.packed = pack_mirror(videos_dir=source_root / "videos", annotations_dir=source_root / "annotations",
                                    out_dir=root, base_url=server.url, **pack_options)
        yield server


# --- a tiny Kinetics-like dataset on disk (videos + annotation CSVs) ---------------------


@dataclass(frozen=True)
class SourceClip:
    """One generated clip: its id parts, label and split, and the file written for it."""

    youtube_id: str
    time_start: int
    time_end: int
    split: str
    label: str | None
    path: Path

    @property
    def clip_id(self) -> str:
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}"


def make_kinetics_folder(
    root: str | os.PathLike[str],
    *,
    classes: tuple[str, ...] = ("abseiling", "passing American football (in game)"),
    per_class: dict[str, int] | None = None,
    test_count: int = 2,
    window: tuple[int, int] = (10, 20),
    num_frames: int = 20,
    fps: float = 10,
) -> dict[str, list[SourceClip]]:
    """Write `{root}/videos/{split}/{clip}.mp4` (real H.264) and `{root}/annotations/{split}.csv`."""
    from videoprep.synth import write_video

    base = Path(root)
    counts = per_class if per_class is not None else {"train": 3, "val": 1}
    made: dict[str, list[SourceClip]] = {}
    seed = 0
    for split, n in counts.items():
        rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
        for ci, label in enumerate(classes):
            for i in range(n):
                ytid = f"{split[:2]}{ci:03d}{i:03d}abc"
                clip = SourceClip(ytid, window[0], window[1], split, label, base / "videos" / split / "x.mp4")
                path = base / "videos" / split / f"{clip.clip_id}.mp4"
                write_video(path, num_frames=num_frames, fps=fps, seed=seed)
                seed += 1
                made.setdefault(split, []).append(SourceClip(ytid, window[0], window[1], split, label, path))
                rows.append(f'"{label}",{ytid},{window[0]},{window[1]},{split},0')
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{split}.csv").write_text("\n".join(rows) + "\n")
    if test_count:
        rows = ["youtube_id,time_start,time_end,split"]
        for i in range(test_count):
            ytid = f"te000{i:03d}abc"
            path = base / "videos" / "test" / f"{ytid}_{window[0]:06d}_{window[1]:06d}.mp4"
            write_video(path, num_frames=num_frames, fps=fps, seed=seed)
            seed += 1
            made.setdefault("test", []).append(SourceClip(ytid, window[0], window[1], "test", None, path))
            rows.append(f"{ytid},{window[0]},{window[1]},test")
        (base / "annotations" / "test.csv").write_text("\n".join(rows) + "\n")
    return made
