"""run_isolated: results as items finish, each failure its own, and only a few items in flight."""

from __future__ import annotations

import os
import time
from pathlib import Path

from videoprep.parallel import _IN_FLIGHT_PER_WORKER, init_plain_worker, run_isolated


def note_and_return(item: tuple[str, int]) -> int:
    """Worker: append the item to a log file, then return it (fails on 13, crashes on 14)."""
    log_file, number = item
    with open(log_file, "a") as f:
        f.write(f"{number}\n")
    if number == 13:
        raise ValueError("unlucky")
    if number == 14:
        os._exit(3)
    return number


def started(log_file: Path) -> int:
    return len(log_file.read_text().splitlines()) if log_file.exists() else 0


def test_every_item_once_failures_recorded_and_few_in_flight(tmp_path):
    log_file = tmp_path / "started.txt"
    items = [(str(log_file), n) for n in range(60)]
    results = run_isolated(note_and_return, items, jobs=1, timeout_s=30, initializer=init_plain_worker)
    first = next(results)
    time.sleep(0.5)  # the caller is busy: the worker may run ahead only by the items already handed over
    assert started(log_file) <= 2 + _IN_FLIGHT_PER_WORKER
    rest = list(results)
    by_number = {r.item[1]: r for r in [first, *rest]}
    assert sorted(by_number) == list(range(60))
    assert by_number[13].error == "ValueError: unlucky"
    assert by_number[14].error == "worker died (exit code 3)"
    assert all(r.ok and r.value == n for n, r in by_number.items() if n not in (13, 14))
