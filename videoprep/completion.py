"""Completion records: a finished run notes what it covered, so the same run again can stop at once.

Standard library only: the check runs before the command imports anything heavy.
A record holds the options that define the result (`key`), a stamp (mtime in ns,
size) of every folder and file the result lives in, and a short summary to print.
Any change under those folders that adds, removes or renames a file changes a
folder's mtime and voids the record; so does a different option. Deleting the
record forces the full check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from videoprep.atomic import atomic_write_json

RECORD_VERSION = 1


def stamps(paths: Iterable[Path]) -> dict[str, list[int] | None]:
    """path -> [mtime_ns, size] of each path (None when absent); what a record compares."""
    out: dict[str, list[int] | None] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out[str(path)] = None
            continue
        out[str(path)] = [st.st_mtime_ns, st.st_size]
    return out


def folders(root: Path) -> list[Path]:
    """`root` and every folder under it, hidden ones left out: where files of a result are added or removed."""
    out = [root]
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / d for d in dirnames]
    return out


def write_record(path: Path, *, key: Mapping[str, Any], watched: Iterable[Path], summary: Mapping[str, Any]) -> None:
    """Record that the run described by `key` finished; `watched` hold its result as it is now."""
    watched = list(watched)
    atomic_write_json(path, {"version": RECORD_VERSION, "key": dict(key), "stamps": stamps(watched),
                             "summary": dict(summary)})


def current_summary(path: Path, *, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recorded summary when `path` records this very run and nothing it watched has changed, else None."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION or record.get("key") != dict(key):
        return None
    recorded = record.get("stamps")
    if not isinstance(recorded, dict) or stamps(Path(p) for p in recorded) != recorded:
        return None
    summary = record.get("summary")
    return summary if isinstance(summary, dict) else None


class DownloadRecord:
    """The completion record of a download (OUT/.videoprep-download/complete.json, in download's state folder).

    Written and checked by `run_download` alone. Watches the split folders (and their class folders), the
    annotations, the class-folder view, the report and the annotations folder; its key is every option
    that shapes the result.
    """

    def __init__(self, out_dir: Path, splits: Iterable[str], *, report: Path | None, annotations_dir: Path | None,
                 class_folders: bool, options: Mapping[str, Any]) -> None:
        self.out_dir, self.splits = Path(out_dir), list(splits)
        self.path = self.out_dir / ".videoprep-download" / "complete.json"
        self.key = {"command": "download", "splits": self.splits, "report": str(report) if report else None,
                    "annotations_dir": str(annotations_dir) if annotations_dir else None,
                    "class_folders": class_folders, **options}
        inputs = [report or self.out_dir / "download_report.json", annotations_dir]
        self.inputs = [Path(p) for p in inputs if p]
        roots = [self.out_dir / s for s in self.splits] + [self.out_dir / "annotations"]
        self.roots = roots + ([self.out_dir / "by_class" / s for s in self.splits] if class_folders else [])

    def current(self) -> dict[str, Any] | None:
        """The recorded summary when this very download finished before and nothing changed since."""
        return current_summary(self.path, key=self.key)

    def write(self, *, on_disk: int, expected: int, fingerprint: str, report: str | None) -> None:
        """Record a download that ended without failures, with what to print next time."""
        watched = [f for root in self.roots for f in folders(root)] + self.inputs
        write_record(self.path, key=self.key, watched=watched,
                     summary={"on_disk": on_disk, "expected": expected, "fingerprint": fingerprint, "report": report})
