"""run_isolated: results as items finish, each failure its own, and only a few items in flight."""

from __future__ import annotations

import os
from pathlib import Path

from tests.videoprep.helpers import wait_until
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


class CountingList(list):
    """A list that counts the items taken from it: how far ahead of its caller run_isolated reads."""

    taken = 0

    def __iter__(self):
        for item in super().__iter__():
            self.taken += 1
            yield item


def test_every_item_once_failures_recorded_and_few_in_flight(tmp_path):
    log_file = tmp_path / "started.txt"
    items = CountingList((str(log_file), n) for n in range(60))
    results = run_isolated(note_and_return, items, jobs=1, timeout_s=30, initializer=init_plain_worker)
    first = next(results)
    # The caller is busy now: only the items already handed over may run, however long it waits.
    handed_over = items.taken
    assert 1 <= handed_over <= _IN_FLIGHT_PER_WORKER
    assert wait_until(lambda: started(log_file) >= handed_over, timeout_s=30), "the worker stalled"
    assert items.taken == handed_over and started(log_file) == handed_over
    rest = list(results)
    by_number = {r.item[1]: r for r in [first, *rest]}
    assert sorted(by_number) == list(range(60))
    assert by_number[13].error == "ValueError: unlucky"
    assert by_number[14].error == "worker died (exit code 3)"
    assert all(r.ok and r.value == n for n, r in by_number.items() if n not in (13, 14))
