"""Resumable HTTP against a real 127.0.0.1 server that injects faults: every fault ends complete or failed."""

from __future__ import annotations

import email.utils
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.videoprep.httpfaults import Fault, FaultServer, serve_folder
from videoprep.atomic import part_path
from videoprep.download.http import (
    DownloadFailed,
    RetryPolicy,
    StopSignal,
    fetch_bytes,
    fetch_file,
    head_size,
    parse_retry_after,
)

FAST = RetryPolicy(retries=4, backoff_base_s=0.01, backoff_max_s=0.2, timeout_s=10)
PAYLOAD = os.urandom(200_000)


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "blob.bin").write_bytes(PAYLOAD)
    with serve_folder(root) as srv:
        yield srv


def _gets(server: FaultServer) -> list[tuple[str | None, int]]:
    return [(r.range, r.status) for r in server.requests_for("blob.bin")]


def test_plain_download_is_complete_and_leaves_no_part(server: FaultServer, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "blob.bin"
    result = fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD
    assert result.size_bytes == len(PAYLOAD) and result.attempts == 1 and not result.resumed
    assert not part_path(dest).exists()


def test_500_and_429_are_retried_until_complete(server: FaultServer, tmp_path: Path) -> None:
    server.add_fault("blob.bin", Fault("status", status=500), Fault("status", status=503),
                     Fault("status", status=429, retry_after="0"))
    dest = tmp_path / "blob.bin"
    result = fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD
    assert result.attempts == 4
    assert [s for _, s in _gets(server)] == [500, 503, 429, 200]


def test_retry_after_is_honoured(server: FaultServer, tmp_path: Path) -> None:
    server.add_fault("blob.bin", Fault("status", status=429, retry_after="1"))
    started = time.monotonic()
    fetch_file(f"{server.url}/blob.bin", tmp_path / "blob.bin", policy=FAST)
    # the backoff alone would wait ~0.01 s; the server asked for 1 s
    assert time.monotonic() - started >= 0.95


def test_dropped_connection_resumes_with_range(server: FaultServer, tmp_path: Path) -> None:
    server.add_fault("blob.bin", Fault("drop", after_bytes=70_000), Fault("drop", after_bytes=50_000))
    dest = tmp_path / "blob.bin"
    result = fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD
    assert _gets(server) == [(None, 200), ("bytes=70000-", 206), ("bytes=120000-", 206)]
    assert result.transferred_bytes == len(PAYLOAD)


def test_resume_from_part_left_by_an_earlier_run(server: FaultServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    part_path(dest).write_bytes(PAYLOAD[:12345])
    result = fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert result.resumed and result.transferred_bytes == len(PAYLOAD) - 12345
    assert dest.read_bytes() == PAYLOAD
    assert _gets(server) == [("bytes=12345-", 206)]


def test_server_ignoring_range_restarts_cleanly(server: FaultServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    part_path(dest).write_bytes(PAYLOAD[:5000])
    server.add_fault("blob.bin", Fault("ignore_range"))
    fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_by_416(server: FaultServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    part_path(dest).write_bytes(PAYLOAD)
    result = fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD and result.transferred_bytes == 0
    assert _gets(server) == [(f"bytes={len(PAYLOAD)}-", 416)]


def test_part_longer_than_the_file_is_thrown_away(server: FaultServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    part_path(dest).write_bytes(PAYLOAD + b"junk")
    fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD


def test_body_shorter_than_content_length_is_retried(server: FaultServer, tmp_path: Path) -> None:
    server.add_fault("blob.bin", Fault("long_length", extra_bytes=1000))
    dest = tmp_path / "blob.bin"
    fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD
    assert _gets(server)[-1] == (f"bytes={len(PAYLOAD)}-", 416)


def test_persistently_overstated_length_is_settled_by_content_range(server: FaultServer, tmp_path: Path) -> None:
    # every 200 claims 1000 bytes too many; the Range request's 416 states the true total
    server.set_always("blob.bin", Fault("long_length", extra_bytes=1000))
    dest = tmp_path / "blob.bin"
    fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert dest.read_bytes() == PAYLOAD


def test_persistently_truncated_body_fails_and_is_never_final(server: FaultServer, tmp_path: Path) -> None:
    server.set_always("blob.bin", Fault("drop", after_bytes=0))
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadFailed, match="gave up after 5 attempts: got 0 of 200000 bytes"):
        fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    assert not dest.exists()


def test_size_differing_from_the_expected_size_fails(server: FaultServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadFailed, match=f"server says {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        fetch_file(f"{server.url}/blob.bin", dest, policy=FAST, expected_size=len(PAYLOAD) + 1)
    assert not dest.exists()


def test_size_differing_from_head_is_not_done(server: FaultServer, tmp_path: Path) -> None:
    # the server now claims (and sends) fewer bytes than HEAD announced: never accepted as complete
    server.set_always("blob.bin", Fault("short_length", extra_bytes=100))
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadFailed, match=f"expected {len(PAYLOAD)}"):
        fetch_file(f"{server.url}/blob.bin", dest, policy=FAST, expected_size=len(PAYLOAD))
    assert not dest.exists()


def test_404_fails_at_once_as_permanent(server: FaultServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed) as info:
        fetch_file(f"{server.url}/nope.bin", tmp_path / "nope.bin", policy=FAST)
    assert info.value.permanent and info.value.status == 404
    assert len(server.requests_for("nope.bin")) == 1


def test_head_and_small_fetch(server: FaultServer) -> None:
    assert head_size(f"{server.url}/blob.bin", policy=FAST) == len(PAYLOAD)
    server.add_fault("blob.bin", Fault("long_length", extra_bytes=10))
    assert fetch_bytes(f"{server.url}/blob.bin", policy=FAST) == PAYLOAD


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = email.utils.formatdate(1000.0 + 30, usegmt=True)
    assert parse_retry_after(when, now=1000.0) == pytest.approx(30, abs=1)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=10.0)
    assert 1.0 <= policy.delay_s(0) <= 2.0
    assert 4.0 <= policy.delay_s(2) <= 5.0
    assert policy.delay_s(8) == 10.0
    assert policy.delay_s(5, retry_after_s=30) == 30.0  # the server's word beats the backoff cap
    assert policy.delay_s(0, retry_after_s=1e6) == policy.retry_after_max_s


def test_stop_signal_cuts_a_stalled_transfer_at_once(server: FaultServer, tmp_path: Path) -> None:
    # The second 4 KB chunk is 41 s away and the socket may stall 60 s: only the stop signal ends it within 20 s.
    server.set_always("blob.bin", Fault("slow", rate_bytes_s=100))
    dest = tmp_path / "blob.bin"
    stop = StopSignal()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fetch_file(f"{server.url}/blob.bin", dest, policy=replace(FAST, timeout_s=60), stop=stop)
        except DownloadFailed as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not (part_path(dest).exists() and part_path(dest).stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the stop signal did not end the stalled transfer"
    assert [e.reason for e in outcome] == ["stopped"]  # type: ignore[attr-defined]
    assert not dest.exists() and 0 < part_path(dest).stat().st_size < len(PAYLOAD)


def test_finished_file_is_not_fetched_again(server: FaultServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.bin"
    fetch_file(f"{server.url}/blob.bin", dest, policy=FAST)
    again = fetch_file(f"{server.url}/blob.bin", dest, policy=FAST, expected_size=len(PAYLOAD))
    assert again.transferred_bytes == 0 and len(_gets(server)) == 1
