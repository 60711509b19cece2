"""Content fingerprints of a dataset copy: every clip's id, size and sha256, and one hash over them all.

Two copies with the same clip ids but different bytes (a replaced clip, a re-encode)
get different fingerprints; `compare` says which clips differ. The records come from
a download report's `clips` list (hashed while the archives were extracted, no extra
read) or, for a folder without such a report, from hashing its video files.
Standard library only.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from videoprep.errors import PathError
from videoprep.formats import video_files

REPORT_NAME = "download_report.json"  # what `videoprep download` writes at the dataset root
_CHUNK = 1 << 20
# Container suffixes a clip can have (as in videoprep.probe, without importing PyAV).
@dataclass(frozen=True, order=True)
class ClipRecord:
    """One clip of a copy: its id (the file name without extension), size in bytes and sha256."""

    id: str
    size: int
    sha256: str


class HashingWriter:
    """Wraps a writable binary file: bytes written through it are hashed on the way (size, sha256).

    The extraction hook: `w = HashingWriter(f); shutil.copyfileobj(src, w); size, digest = w.result()`.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def result(self) -> tuple[int, str]:
        """(bytes written, hex sha256 of them) so far."""
        return self.size, self._hash.hexdigest()


def hash_file(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size, hex sha256) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def content_fingerprint(records: Iterable[ClipRecord]) -> str:
    """sha256 over the sorted `id size sha256` lines: equal exactly when the copies hold the same bytes."""
    digest = hashlib.sha256()
    for record in sorted(records):
        digest.update(f"{record.id}\t{record.size}\t{record.sha256}\n".encode())
    return digest.hexdigest()


@dataclass
class Comparison:
    """How copy B differs from copy A, clip ids sorted: missing from B, extra in B, different bytes."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.missing or self.extra or self.different)


def compare(a: Iterable[ClipRecord], b: Iterable[ClipRecord]) -> Comparison:
    """Which clips of copy `a` are missing from `b`, which `b` has in addition, which differ in size or hash."""
    left = {r.id: r for r in a}
    right = {r.id: r for r in b}
    return Comparison(
        missing=sorted(left.keys() - right.keys()),
        extra=sorted(right.keys() - left.keys()),
        different=sorted(i for i in left.keys() & right.keys() if left[i] != right[i]),
    )


def records_from_report(path: Path) -> list[ClipRecord] | None:
    """The `clips` of a download report; None when the report has no such list (hash the folder instead)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PathError(path, f"cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise PathError(path, f"not a JSON download report ({exc})") from None
    clips = data.get("clips") if isinstance(data, dict) else None
    if clips is None:
        return None
    try:
        return records_from_clips(clips)
    except (TypeError, KeyError, ValueError):
        raise PathError(path, "its clips list needs an id, size and sha256 per clip") from None


def records_from_clips(clips: Iterable[Mapping[str, Any]]) -> list[ClipRecord]:
    """ClipRecords of a report's `clips` entries ({"id", "size", "sha256"}, other keys ignored)."""
    return [ClipRecord(str(c["id"]), int(c["size"]), str(c["sha256"])) for c in clips]


def clip_files(root: Path) -> dict[str, Path]:
    """clip id -> file of every video under `root`, hidden names and symlinks (class-folder views) left out."""
    found: dict[str, Path] = {}
    duplicates: list[str] = []
    for path in video_files(root):
        if path.is_symlink():
            continue
        if path.stem in found:
            duplicates.append(str(path))
            continue
        found[path.stem] = path
    if duplicates:
        raise PathError(root, f"{len(duplicates)} clip id(s) appear twice, e.g. {duplicates[0]}; "
                              "fingerprint one copy (one folder) at a time")
    return found


def hash_folder(root: Path, *, jobs: int = 4) -> list[ClipRecord]:
    """Records of every clip file under `root`, hashed `jobs` files at a time."""
    files = clip_files(root)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # hashlib releases the GIL
        hashed = pool.map(hash_file, files.values())
        return [ClipRecord(cid, size, digest) for cid, (size, digest) in zip(files, hashed, strict=True)]


def load_records(source: Path, *, jobs: int = 4) -> tuple[list[ClipRecord], str]:
    """(records, where they came from) of a copy: a report file, a folder's report, or the folder's files."""
    source = Path(source)
    if source.is_file():
        records = records_from_report(source)
        if records is None:
            raise PathError(source, "this report has no clips list (made before content hashes); "
                                    "fingerprint its dataset folder instead")
        return records, f"report {source}"
    if not source.is_dir():
        raise PathError(source, "no such file or folder")
    report = source / REPORT_NAME
    if report.is_file():
        records = records_from_report(report)
        if records is not None:
            return records, f"report {report}"
    return hash_folder(source, jobs=jobs), f"hashed the files under {source}"
