"""The one place that knows Kinetics: annotation CSVs, clip file names, class order."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from videoprep.errors import LayoutError

SPLITS = ("train", "val", "test")
# Folder names used for each split by the common distributions.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val",
    "test": "test", "testing": "test",
}
_CLIP_RE = re.compile(r"^(?P<ytid>.{11})_(?P<start>\d{6})_(?P<end>\d{6})$")
_TRAIN_VAL_COLUMNS = ["label", "youtube_id", "time_start", "time_end", "split"]
_TEST_COLUMNS = ["youtube_id", "time_start", "time_end", "split"]


@dataclass(frozen=True)
class Clip:
    """One annotated 10-second window of a YouTube video."""

    youtube_id: str
    time_start: int
    time_end: int
    split: str
    label: str | None

    @property
    def clip_id(self) -> str:
        """The file stem every Kinetics distribution uses: `{ytid}_{start:06d}_{end:06d}`."""
        return clip_id(self.youtube_id, self.time_start, self.time_end)


def clip_id(youtube_id: str, time_start: int, time_end: int) -> str:
    """File stem of a clip, as the crawler and the CVDF mirror name it."""
    return f"{youtube_id}_{int(time_start):06d}_{int(time_end):06d}"


def parse_clip_id(stem: str) -> tuple[str, int, int] | None:
    """(youtube_id, start, end) from a clip file stem, or None when it is not one."""
    m = _CLIP_RE.match(stem)
    if not m:
        return None
    return m["ytid"], int(m["start"]), int(m["end"])


def split_name(folder: str) -> str | None:
    """Canonical split for a folder name (`validation` -> `val`), None if it is not one."""
    name = folder.lower()
    for suffix in ("_256", "_320", "_288", "-256"):
        name = name.removesuffix(suffix)
    name = name.removeprefix("videos_").removeprefix("kinetics400_").removeprefix("k400_")
    return SPLIT_ALIASES.get(name)


def read_annotations(path: str | os.PathLike[str]) -> list[Clip]:
    """Read one DeepMind/CVDF annotation CSV (train/val with labels, test with or without).

    The csv module, not pandas: every row becomes a Clip in Python either way, and
    importing pandas alone cost 0.23 s of every download's and index's start.
    """
    source = Path(path)
    try:
        with open(source, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LayoutError(source, f"cannot read annotation CSV: {exc}") from None
    if not rows:
        raise LayoutError(source, "cannot read annotation CSV: the file is empty")
    header = [name.strip() for name in rows[0]]
    has_label = "label" in header
    missing = [c for c in (_TRAIN_VAL_COLUMNS if has_label else _TEST_COLUMNS) if c not in header]
    if missing:
        raise LayoutError(source, f"missing column(s) {', '.join(missing)}; header is {header}")
    at = {name: header.index(name) for name in (*_TRAIN_VAL_COLUMNS, *_TEST_COLUMNS) if name in header}
    clips = []
    for row_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue  # a blank line
        if len(row) != len(header):
            raise LayoutError(f"{source}:{row_no}", f"{len(row)} fields where the header has {len(header)}")
        try:
            start, end = int(row[at["time_start"]]), int(row[at["time_end"]])
        except ValueError:
            raise LayoutError(f"{source}:{row_no}", "time_start/time_end must be integers") from None
        split = split_name(row[at["split"]]) or row[at["split"]]
        label = (row[at["label"]] or None) if has_label else None
        clips.append(Clip(row[at["youtube_id"]], start, end, split, label))
    return clips


def find_annotation_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Map split -> annotation CSV in a folder (`train.csv`, `kinetics_400_val.csv`, ...)."""
    root = Path(folder)
    if not root.is_dir():
        raise LayoutError(root, "annotations folder not found")
    found: dict[str, Path] = {}
    for table in sorted(root.glob("*.csv")):
        stem = table.stem.lower()
        for token in re.split(r"[^a-z]+", stem):
            split = split_name(token)
            if split:
                found.setdefault(split, table)
                break
    if not found:
        raise LayoutError(root, "no annotation CSV named after a split (train.csv, val.csv, test.csv)")
    return found


def class_names(clips: list[Clip]) -> list[str]:
    """Our class order: the sorted original names (spaces and punctuation kept)."""
    return sorted({c.label for c in clips if c.label is not None})
