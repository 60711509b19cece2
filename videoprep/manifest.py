"""The manifest of `videoprep index`: one row per video (status, reason, probe figures), as CSV.

One home for the format: index writes it, the exports, stats, compare and shard read it.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from videoprep.atomic import write_text_if_changed
from videoprep.layout import printable_path

Status = Literal["ok", "unlabelled", "error"]


@dataclass(frozen=True)
class ManifestRow:
    """One video as the manifest records it; `list_path` is what the lists hold."""

    relpath: str
    list_path: str
    split: str
    label: str
    label_index: int | None
    frames: int | None
    fps: float | None
    duration_s: float | None
    width: int | None
    height: int | None
    codec: str
    pix_fmt: str
    constant_frame_rate: bool | None
    size_bytes: int
    status: Status
    reason: str
    relpath_raw: str = ""  # the original bytes of a non-UTF-8 name, percent-encoded (layout.raw_path)


MANIFEST_COLUMNS = tuple(f.name for f in fields(ManifestRow))


def write_manifest(path: Path, rows: list[ManifestRow]) -> None:
    """Atomically write the manifest CSV (one row per video, empty cells for unknowns)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {name: getattr(row, name) for name in MANIFEST_COLUMNS}  # asdict deep-copies: 10x slower
        cells["relpath"] = printable_path(row.relpath)
        cells["label"] = printable_path(row.label)
        writer.writerow({k: ("" if v is None else v) for k, v in cells.items()})
    write_text_if_changed(path, buf.getvalue())


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The manifest rows as string dicts (for other stages and tests)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
