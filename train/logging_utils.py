"""Run output of the BAT runners: official log lines on stdout, metrics as JSONL, optional TensorBoard.

Only rank 0 writes; other ranks get a RunLog with enabled=False that drops everything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from videoprep.progress import ProgressFn, no_progress, rich_bar

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"


class RunLog:
    """Official-format lines to a stream and `{log_dir}/log.txt`; metric records to `{log_dir}/metrics.jsonl`."""

    def __init__(
        self,
        *,
        log_dir: str | os.PathLike[str] | None,
        enabled: bool = True,
        stream: TextIO | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.stream = stream
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer = None
        if enabled and self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self._writer = _tensorboard_writer(self.log_dir)

    def line(self, text: str) -> None:
        """One human-readable line (the official formats), flushed at once for `tail -f`."""
        if not self.enabled:
            return
        print(text, file=self.stream or sys.stdout, flush=True)
        if self.log_dir is not None:
            with open(self.log_dir / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(text + "\n")

    def metrics(self, kind: str, *, step: int | None = None, **values: Any) -> None:
        """One JSON record (kind=train|val|epoch|test) appended to metrics.jsonl; scalars also to TensorBoard."""
        if not self.enabled or self.log_dir is None:
            return
        record = {"kind": kind, **({"step": step} if step is not None else {}), **values}
        with open(self.log_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
        if self._writer is not None and step is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        """Flush and close TensorBoard (if it was used)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _tensorboard_writer(log_dir: Path):
    """A SummaryWriter when the tensorboard package is installed, else None (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("tensorboard is not installed; metrics go to %s only", log_dir / METRICS_FILE)
        return None
    return SummaryWriter(str(log_dir / "tensorboard"))


def read_metrics(log_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete record of `{log_dir}/metrics.jsonl` (a torn last line is skipped)."""
    path = Path(log_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def progress_wanted(mode: str, *, enabled: bool) -> bool:
    """--progress auto|on|off: auto shows a bar only when stderr is a terminal."""
    if not enabled or mode == "off":
        return False
    return mode == "on" or sys.stderr.isatty()


@contextlib.contextmanager
def epoch_progress(description: str, *, show: bool) -> Iterator[ProgressFn]:
    """A rich bar on stderr for one epoch, driven by on_progress(done, total); a no-op when not shown."""
    if not show:
        yield no_progress
        return
    with rich_bar(description, transient=True) as update:
        yield update
