"""Content fingerprints of a dataset copy: every clip's id, size and sha256, and one hash over them all.

Two copies with the same clip ids but different bytes (a replaced clip, a re-encode)
get different fingerprints; `compare` says which clips differ. The records come from
reading the clip files (in parallel threads, at disk speed). A download report's
`clips` list (hashed while the archives were extracted) is a claim: `verify_copy`
checks it against the files, `claimed_records` takes it as it is, for the clips
found on disk, without reading any. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from videoprep.errors import PathError
from videoprep.formats import video_files
from videoprep.progress import ProgressFn, no_progress

REPORT_NAME = "download_report.json"  # what `videoprep download` writes at the dataset root
_CHUNK = 1 << 20
DEFAULT_JOBS = 4  # files read at once: enough to keep an SSD or a network filesystem busy (see docs)

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
    """(size, hex sha256) of a file, read in 1 MiB chunks into one reused buffer."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def hash_files(files: Mapping[str, Path], *, jobs: int = DEFAULT_JOBS,
               on_progress: ProgressFn = no_progress) -> list[ClipRecord]:
    """Records of clip id -> file, hashed by `jobs` threads (hashlib and reads release the GIL).

    on_progress(bytes hashed, bytes planned). A file that cannot be read raises PathError naming it.
    """
    total = sum(_stat_size(path) for path in files.values())
    todo = iter(files.items())
    lock = threading.Lock()
    stop = threading.Event()  # a file failed, or Ctrl-C: the other threads finish their file and end
    records: list[ClipRecord] = []
    errors: list[PathError] = []
    done = {"bytes": 0}

    def worker() -> None:
        while not stop.is_set():
            with lock:
                nxt = next(todo, None)
            if nxt is None:
                return
            cid, path = nxt
            try:
                size, digest = hash_file(path)
            except OSError as exc:
                errors.append(PathError(path, f"cannot read: {exc.strerror}"))
                stop.set()
                return
            with lock:
                records.append(ClipRecord(cid, size, digest))
                done["bytes"] += size
                on_progress(done["bytes"], total)

    on_progress(0, total)
    threads = [threading.Thread(target=worker, name=f"hash-{i}", daemon=True) for i in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        stop.set()
        raise
    if errors:
        raise errors[0]
    return sorted(records)


def _stat_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise PathError(path, f"cannot read: {exc.strerror}") from None


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
    """clip id -> file of every video under `root`, hidden names and symlinks (class-folder views) left out.

    A copy holds each clip once: an id found twice (two class folders) is an error naming both paths.
    """
    found: dict[str, Path] = {}
    twice: list[tuple[Path, Path]] = []
    for path in video_files(root):
        if path.is_symlink():
            continue
        if path.stem in found:
            twice.append((found[path.stem], path))
            continue
        found[path.stem] = path
    if twice:
        first, second = twice[0]
        more = f" ({len(twice)} ids are found twice)" if len(twice) > 1 else ""
        raise PathError(root, f"clip id {first.stem!r} is there twice: {first} and {second}{more}; a copy holds "
                              "each clip once: remove or move one of them")
    return found


def folder_files(root: Path) -> dict[str, Path]:
    """clip_files of a dataset folder that must hold clips: a missing or empty folder is an error."""
    root = Path(root)
    if root.is_file():
        raise PathError(root, "is a file; fingerprint reads a dataset folder's clips (a download report's hashes "
                              "are a claim: --verify checks them against the files, --from-report takes them as "
                              "they are)")
    if not root.is_dir():
        raise PathError(root, "no such folder")
    files = clip_files(root)
    if not files:
        raise PathError(root, "no video files here: nothing to fingerprint (is it the dataset folder?)")
    return files


def hash_folder(root: Path, *, jobs: int = DEFAULT_JOBS, on_progress: ProgressFn = no_progress) -> list[ClipRecord]:
    """Records of every clip file under `root` (each file read), hashed `jobs` files at a time."""
    return hash_files(folder_files(root), jobs=jobs, on_progress=on_progress)


def report_of(source: Path) -> tuple[Path, Path]:
    """(report file, dataset folder) of a dataset folder or a download report given by path."""
    source = Path(source)
    if source.is_file():
        return source, source.parent
    if not source.is_dir():
        raise PathError(source, "no such file or folder")
    report = source / REPORT_NAME
    if not report.is_file():
        raise PathError(source, f"has no {REPORT_NAME}: nothing to verify or take hashes from (only "
                                "`videoprep download` from the mirror writes clip hashes)")
    return report, source


def report_claims(report: Path) -> list[ClipRecord]:
    """The clip records a download report claims; an error when it has none."""
    records = records_from_report(report)
    if records is None:
        raise PathError(report, "this report has no clips list (made before content hashes, or by the YouTube "
                                "route): fingerprint the folder's files instead")
    return records


@dataclass
class Claimed:
    """A report's records of the clips that are on disk (no file read), and the clip ids it lists that are not."""

    report: Path
    records: list[ClipRecord]
    missing: list[str]


def claimed_records(source: Path) -> Claimed:
    """The report's hashes for the clips on disk (found by name, none read); the report's other clips are missing."""
    report, folder = report_of(source)
    claims = report_claims(report)
    on_disk = clip_files(folder)
    return Claimed(report, [r for r in claims if r.id in on_disk], sorted(r.id for r in claims if r.id not in on_disk))


@dataclass
class Verification:
    """A report checked against the files (like `sha256sum -c`): clip ids changed, missing and added since."""

    report: Path
    checked: int  # clips the report lists
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # clip id -> file on disk

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.added)


def verify_copy(source: Path, *, jobs: int = DEFAULT_JOBS, on_progress: ProgressFn = no_progress) -> Verification:
    """Read every clip file of a downloaded copy and compare it with its report's hashes."""
    report, folder = report_of(source)
    claims = report_claims(report)
    files = clip_files(folder)
    diff = compare(claims, hash_files(files, jobs=jobs, on_progress=on_progress))
    return Verification(report, len(claims), changed=diff.different, missing=diff.missing, added=diff.extra,
                        files=files)


