"""The one home of the BAT list format (`path frame_num label`) and the class map."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from videoprep.atomic import atomic_write_text
from videoprep.errors import ListFormatError, PathError


@dataclass(frozen=True)
class ListRecord:
    """One video of a BAT list: path (relative to the list root), frame count, class index."""

    path: str
    frame_num: int
    label: int

    def __post_init__(self) -> None:
        if self.path.split() != [self.path]:  # empty, or whitespace in it (str.split is the fast test)
            raise ValueError(f"path {self.path!r} is empty or contains whitespace")
        if self.frame_num < 0:
            raise ValueError(f"frame_num ({self.frame_num}) must be >= 0")

    def to_line(self) -> str:
        """The record as the official parser reads it."""
        return f"{self.path} {self.frame_num} {self.label}"


def parse_list_line(line: str, *, source: str | os.PathLike[str] = "<list>", line_no: int = 0) -> ListRecord:
    """Parse one line as the official code does (split on single spaces), with clear errors."""
    text = line.rstrip("\r\n")
    if not text.strip():
        raise ListFormatError(source, line_no, "empty line")
    if "\t" in text or text != text.strip() or "  " in text:
        raise ListFormatError(
            source, line_no,
            "fields must be separated by single spaces (the official parser splits on ' '); "
            "a path with whitespace cannot be written in this format",
        )
    fields = text.split(" ")
    if len(fields) < 3:
        raise ListFormatError(source, line_no, f"expected 'path frame_num label', got {len(fields)} field(s)")
    if len(fields) > 3 and not (fields[1].lstrip("-").isdigit() and fields[2].lstrip("-").isdigit()):
        raise ListFormatError(
            source, line_no, f"expected 3 fields, got {len(fields)}: does the path contain a space?"
        )
    path, frame_field, label_field = fields[:3]
    try:
        frame_num = int(frame_field)
    except ValueError:
        raise ListFormatError(source, line_no, f"frame_num {frame_field!r} is not an integer") from None
    try:
        label = int(label_field)
    except ValueError:
        raise ListFormatError(source, line_no, f"label {label_field!r} is not an integer") from None
    if frame_num < 1:
        raise ListFormatError(source, line_no, f"frame_num ({frame_num}) must be >= 1")
    return ListRecord(path=path, frame_num=frame_num, label=label)


def read_list(
    path: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    root: str | os.PathLike[str] | None = None,
    check_files: bool = False,
) -> list[ListRecord]:
    """Read a BAT list, failing fast with the file and line of the first bad entry."""
    source = Path(path)
    if not source.is_file():
        raise PathError(source, "list file not found")
    records = []
    with open(source, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rec = parse_list_line(line, source=source, line_no=line_no)
            if num_classes is not None and not 0 <= rec.label < num_classes:
                raise ListFormatError(
                    source, line_no, f"label ({rec.label}) must be in 0..{num_classes - 1}"
                )
            if check_files:
                full = os.path.join(str(root) if root is not None else "", rec.path)
                if not os.path.exists(full):
                    raise ListFormatError(source, line_no, f"video {full!r} does not exist")
            records.append(rec)
    if not records:
        raise PathError(source, "list file has no entries")
    return records


def write_list(path: str | os.PathLike[str], records: Iterable[ListRecord]) -> int:
    """Atomically write records in the BAT format; returns how many were written."""
    lines = [rec.to_line() for rec in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def list_text(records: Iterable[ListRecord]) -> str:
    """The BAT list file's text of these records."""
    return "".join(rec.to_line() + "\n" for rec in records)


def class_map_text(names: Sequence[str]) -> str:
    """The class map file's text: one name per line, index = line number (0-based)."""
    return "".join(f"{n}\n" for n in names)


def read_class_map(path: str | os.PathLike[str]) -> list[str]:
    """Class names in index order (line number = class index)."""
    source = Path(path)
    if not source.is_file():
        raise PathError(source, "class map not found")
    names = [line.rstrip("\r\n") for line in source.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


def write_class_map(path: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Atomically write one class name per line; index = line number (0-based)."""
    atomic_write_text(path, "".join(f"{n}\n" for n in names))
