"""Helpers shared by the stage tests (transcode, frames, executors): source trees and live processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from videoprep.synth import write_video


def write_tree(root: Path, sources: Mapping[str, tuple[int, int, float, int]]) -> Path:
    """Write relpath -> (width, height, fps, frames) as real H.264 videos under root (seeded by frames)."""
    for rel, (width, height, fps, frames) in sources.items():
        write_video(root / rel, num_frames=frames, width=width, height=height, fps=fps, seed=frames)
    return root


def live_pids(*needles: str) -> list[int]:
    """Live (not zombie) processes, this one excepted, whose command line contains every needle."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if all(needle in cmd for needle in needles) and state != "Z":
            pids.append(int(entry))
    return pids


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll until predicate() is true or timeout_s passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
