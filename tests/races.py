"""Stopping a real process in the middle of its run, or skipping when the machine cannot set that up.

A test that must kill a run before it ends depends on the machine's speed: too fast and the run
is over before the signal, too slow and it never reaches the point worth killing. Neither is a
failure of the code under test, so both skip with the reason; a run that dies of an error on its
own still fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest


def _stop(proc: subprocess.Popen, *, group: bool) -> None:
    """SIGKILL the process (or its process group) if it still runs, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it ended between the check and the kill
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
    proc.wait()


def _ended_by_itself(proc: subprocess.Popen, what: str) -> None:
    """Skip when the run finished cleanly before the race was set up; fail when it died of an error."""
    if proc.returncode == 0:
        pytest.skip(f"{what}: the run finished before it could be stopped (this machine is too fast to set up the race)")
    detail = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
    pytest.fail(f"{what}: the run ended on its own with exit status {proc.returncode}\n{detail}")


def signal_mid_run(proc: subprocess.Popen, ready: Callable[[], bool], *, what: str, timeout_s: float,
                   sig: int = signal.SIGKILL, group: bool = False, wait_s: float = 30.0) -> int:
    """Poll until `ready()` says `proc` is mid-run, send it `sig`, wait for it and return its exit status.

    `group=True` signals the process group (start the process with `start_new_session=True`).
    Skips when the run finished before `ready()` or before the signal landed, or when `ready()`
    is still false after `timeout_s`; fails when the run died of an error first. The process is
    always reaped, whatever happens.
    """
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                _ended_by_itself(proc, what)
            if time.monotonic() > deadline:
                pytest.skip(f"{what}: not reached within {timeout_s:g} s (this machine is too slow to set up the race)")
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError):  # ended in between: the status below says how
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        status = proc.wait(timeout=wait_s)
    except BaseException:
        _stop(proc, group=group)
        raise
    if status == 0:
        pytest.skip(f"{what}: the run finished before the signal landed (this machine is too fast to set up the race)")
    return status
