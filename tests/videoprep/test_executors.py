"""Executors: per-item results and errors, and no ffmpeg outliving the worker that started it."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.races import signal_mid_run
from tests.videoprep.helpers import live_pids, wait_until
from videoprep.errors import VideoprepError
from videoprep.executors import run_tasks
from videoprep.ffmpeg import run_ffmpeg
from videoprep.probe import probe_video


def _long_ffmpeg_args(marker: str) -> list[str]:
    """An ffmpeg run of 100 s (real time: -re) whose command line carries a unique marker (the metadata title)."""
    return ["-re", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "100", "-metadata", f"title={marker}",
            "-f", "null", "-"]


def run_long_ffmpeg(marker: str) -> None:
    """Task function (module level so pool workers can import it)."""
    run_ffmpeg(_long_ffmpeg_args(marker), target=marker)


def test_unknown_executor_lists_the_valid_names():
    with pytest.raises(VideoprepError, match="executor 'dask' is not one of: local, ray"):
        list(run_tasks(probe_video, ["x"], executor="dask"))  # type: ignore[arg-type]
    with pytest.raises(VideoprepError, match="only used by the ray executor"):
        list(run_tasks(probe_video, ["x"], address="auto"))


def test_local_pool_returns_each_items_value_or_error(make_video, tmp_path):
    good = make_video("a.mp4", num_frames=12)
    missing = tmp_path / "missing.mp4"
    results = {r.item: r for r in run_tasks(probe_video, [good, missing], jobs=2)}
    assert results[good].ok and results[good].value.frames == 12
    assert not results[missing].ok
    assert results[missing].error.startswith("ProbeError: ") and "cannot stat" in results[missing].error
    assert list(run_tasks(probe_video, [], jobs=2)) == []


def test_timed_out_task_takes_its_ffmpeg_with_it():
    marker = f"videoprep-test-{uuid.uuid4().hex}"
    started = time.monotonic()
    [result] = list(run_tasks(run_long_ffmpeg, [marker], jobs=1, timeout_s=1.5))
    assert not result.ok and "timed out after 1.5 s" in result.error
    assert time.monotonic() - started < 30
    assert wait_until(lambda: not live_pids("ffmpeg", marker), timeout_s=30)


def test_ffmpeg_dies_when_the_process_that_started_it_is_killed(tmp_path):
    marker = f"videoprep-test-{uuid.uuid4().hex}"
    script = f"from videoprep.ffmpeg import run_ffmpeg; run_ffmpeg({_long_ffmpeg_args(marker)!r}, target='x')"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    # SIGKILL: no Python cleanup runs, only the kernel can stop ffmpeg now
    signal_mid_run(proc, lambda: bool(live_pids("ffmpeg", marker)), what="the parent of a running ffmpeg killed",
                   timeout_s=30, wait_s=10)
    assert wait_until(lambda: not live_pids("ffmpeg", marker), timeout_s=30)


def _half(n: int) -> int:
    if n % 2:
        raise ValueError(f"{n} is odd")
    return n // 2


def test_threads_return_each_items_value_or_error_and_skip_none_from_a_lazy_feed():
    def feed():
        for n in range(10):
            yield None  # "nothing ready yet", as the download's feeds say
            yield n

    results = {r.item: r for r in run_tasks(_half, feed(), executor="threads", jobs=3)}
    assert sorted(results) == list(range(10))
    assert all(results[n].value == n // 2 for n in range(0, 10, 2))
    assert results[3].error == "ValueError: 3 is odd" and results[3].error_type == "ValueError"


def test_interrupting_a_threads_run_sets_its_stop_event_and_cancels_queued_items():
    import threading

    stop = threading.Event()
    started: list[int] = []

    def wait_for_stop(n: int) -> int:
        started.append(n)
        stop.wait(timeout=120)  # a transfer that only a stop ends
        return n

    def feed():
        yield from (0, 1, 2)  # two threads: 2 waits in the queue
        if not wait_until(lambda: sorted(started) == [0, 1], timeout_s=60):
            stop.set()
            pytest.skip("machine too slow: two threads did not start within 60 s")
        raise KeyboardInterrupt  # Ctrl-C while the run waits for its next item

    with pytest.raises(KeyboardInterrupt):
        list(run_tasks(wait_for_stop, feed(), executor="threads", jobs=2, stop=stop))
    assert stop.is_set() and sorted(started) == [0, 1]  # the running tasks saw the stop; the queued one never ran
