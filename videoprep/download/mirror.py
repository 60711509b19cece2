"""The CVDF mirror route: URL lists of tarball parts, safe extraction, the replacement archive.

Mirror layout (ours or the CVDF S3 bucket):
    {base}/{split}/k400_{split}_path.txt   one part URL per line (absolute or relative)
    {base}/annotations/{split}.csv         the annotation CSV of the split
    {base}/replacement_for_corrupted_k400.tgz  re-encoded copies of corrupt clips
Extracted layout: `{out}/{split}/{clip}.mp4` (flat) and `{out}/annotations/{split}.csv`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import re
import shutil
import tarfile
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal
from urllib.parse import urljoin, urlsplit

from videoprep.atomic import atomic_path, atomic_write_text, open_temp
from videoprep.download.http import (
    DownloadFailed,
    RetryPolicy,
    StopSignal,
    fetch_bytes,
    fetch_file,
    head_size,
)
from videoprep.download.report import Failure, PlannedFile
from videoprep.download.state import EXTRACT_STAGE, DownloadState, as_completed_interruptible
from videoprep.errors import LayoutError, PathError
from videoprep.fingerprint import HashingWriter
from videoprep.formats import VIDEO_EXTENSIONS
from videoprep.kinetics import find_annotation_files
from videoprep.progress import ProgressFn
from videoprep.stage import Item, StageOptions, StageSpec, run_stage

try:  # ISA-L's inflate: the fastest measured (see _open_tar)
    from isal import igzip
    from isal.isal_zlib import error as _isal_error

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (_isal_error,)
except ImportError:
    igzip = None
    _INFLATE_ERRORS = ()

log = logging.getLogger(__name__)

CVDF_BASE_URL = "https://s3.amazonaws.com/kinetics/400"
REPLACEMENT_NAME = "replacement_for_corrupted_k400.tgz"
_COPY_CHUNK = 1 << 20

ArchiveFormat = Literal["gz", "bz2", "xz", "tar"]


def url_list_url(base_url: str, split: str) -> str:
    """URL of a split's list of part URLs."""
    return f"{base_url.rstrip('/')}/{split}/k400_{split}_path.txt"


def annotations_url(base_url: str, split: str) -> str:
    """URL of a split's annotation CSV on the mirror."""
    return f"{base_url.rstrip('/')}/annotations/{split}.csv"


def replacement_url(base_url: str) -> str:
    """URL of the archive of re-encoded copies of corrupt clips."""
    return f"{base_url.rstrip('/')}/{REPLACEMENT_NAME}"


# --- planning -------------------------------------------------------------------


@dataclass(frozen=True)
class PartPlan:
    """One tarball part of one split."""

    split: str
    url: str
    size_bytes: int | None = None

    @property
    def name(self) -> str:
        """File name of the part (last URL path component)."""
        return PurePosixPath(urlsplit(self.url).path).name or "part"

    @property
    def key(self) -> str:
        """Journal key: split and URL (two lists may reuse part names)."""
        return f"{self.split} {self.url}"


@dataclass
class MirrorPlan:
    """Everything the mirror route would fetch."""

    base_url: str
    parts: list[PartPlan]
    annotation_urls: dict[str, str]
    replacement_url: str
    replacement_size: int | None = None

    @property
    def total_bytes(self) -> int | None:
        """Sum of part sizes, None when any size is unknown."""
        sizes = [p.size_bytes for p in self.parts]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


def parse_url_list(text: str, *, list_url: str, base_url: str = CVDF_BASE_URL) -> list[str]:
    """Part URLs from a URL list file: one per line, blank lines and `#` comments skipped.

    Relative lines resolve against the list's URL. Absolute CVDF S3 URLs are
    moved under `base_url` when it differs, so a copy of the mirror (lists
    unchanged) is read from the copy and not from S3.
    """
    urls = []
    cvdf = CVDF_BASE_URL.rstrip("/") + "/"
    base = base_url.rstrip("/") + "/"
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url = urljoin(list_url, line)
        if base != cvdf and url.startswith(cvdf):
            url = base + url.removeprefix(cvdf)
        urls.append(url)
    return urls


def plan_mirror(
    *, base_url: str, splits: Sequence[str], policy: RetryPolicy, jobs: int = 4, with_sizes: bool = True
) -> MirrorPlan:
    """Fetch the URL lists and (optionally, by HEAD) the size of every part."""
    parts: list[PartPlan] = []
    for split in splits:
        list_url = url_list_url(base_url, split)
        try:
            text = fetch_bytes(list_url, policy=policy).decode("utf-8")
        except DownloadFailed as exc:
            raise LayoutError(list_url, f"cannot fetch the part list of {split}: {exc.reason}") from None
        urls = parse_url_list(text, list_url=list_url, base_url=base_url)
        if not urls:
            raise LayoutError(list_url, "part list is empty")
        parts.extend(PartPlan(split, url) for url in urls)
    rep_url = replacement_url(base_url)
    rep_size = None
    if with_sizes:
        sizes = _head_sizes([p.url for p in parts] + [rep_url], policy=policy, jobs=jobs)
        parts = [PartPlan(p.split, p.url, sizes.get(p.url)) for p in parts]
        rep_size = sizes.get(rep_url)
    return MirrorPlan(
        base_url=base_url,
        parts=parts,
        annotation_urls={s: annotations_url(base_url, s) for s in splits},
        replacement_url=rep_url,
        replacement_size=rep_size,
    )


def _head_sizes(urls: Sequence[str], *, policy: RetryPolicy, jobs: int) -> dict[str, int | None]:
    """HEAD many URLs in parallel; a URL whose size cannot be learned maps to None."""
    def one(url: str) -> int | None:
        try:
            return head_size(url, policy=policy)
        except DownloadFailed as exc:
            log.info("HEAD %s failed: %s", url, exc.reason)
            return None

    # HEADs are tiny: use more connections than transfers, or 600 parts would take minutes
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(16, jobs)) as pool:
        return dict(zip(urls, pool.map(one, urls), strict=True))


# --- safe extraction ------------------------------------------------------------


@dataclass(frozen=True)
class RejectedMember:
    """An archive member that was not extracted because it is unsafe or not a clip."""

    archive: str
    member: str
    reason: str


@dataclass
class ExtractResult:
    """What one archive gave: clip files written, members refused, clips filtered out."""

    archive: str
    format: ArchiveFormat
    written: list[str] = field(default_factory=list)
    rejected: list[RejectedMember] = field(default_factory=list)
    filtered: int = 0
    replaced: list[str] = field(default_factory=list)
    hashes: dict[str, tuple[int, str]] = field(default_factory=dict)  # clip -> (size, sha256), hashed as written


def archive_format(path: str | os.PathLike[str]) -> ArchiveFormat:
    """Compression of an archive from its magic bytes, whatever its name says."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b":
        return "gz"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) == 512 and head[:100].strip(b"\0") and _tar_checksum_ok(head):
        return "tar"  # old (v7) tar header without the ustar magic
    raise PathError(path, "not a tar archive (no gzip/bzip2/xz magic, no tar header)")


def _tar_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\0")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:])


def member_rejection(info: tarfile.TarInfo) -> str | None:
    """Why a member must not be extracted (None: a safe regular file or a folder).

    Refused: absolute paths, `..` components, links of either kind, devices,
    fifos. Even though members are written by base name only, unsafe names are
    refused and reported: they mean the archive is not what it claims.
    """
    name = info.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path escapes the destination (..)"
    if info.issym():
        return f"symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"hard link to {info.linkname!r}"
    if info.ischr() or info.isblk():
        return "device file"
    if info.isfifo():
        return "fifo"
    if not (info.isreg() or info.isdir()):
        return f"unsupported member type {info.type!r}"
    return None


def safe_extract(
    archive: str | os.PathLike[str],
    *,
    dest_dir: str | os.PathLike[str],
    keep: Callable[[str], bool] | None = None,
    replacements: Mapping[str, Path] | None = None,
    stop: threading.Event | None = None,
) -> ExtractResult:
    """Extract the video members of a tar(.gz) flat into `dest_dir` as `{dest}/{basename}`.

    Inner folders (`train/x.mp4`, `x.mp4`, `k400/train/x.mp4`) are dropped.
    Each member goes to a temporary name and is renamed once all its bytes are
    written. `keep(clip_id)` filters clips; `replacements` maps clip id ->
    a fixed copy written instead of the archived one. Unsafe members are
    skipped and listed in the result; a corrupt archive raises PathError.
    """
    source = Path(archive)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    fmt = archive_format(source)
    result = ExtractResult(str(source), fmt)
    try:
        with _open_tar(source, fmt) as tar:
            for info in tar:
                if stop is not None and stop.is_set():
                    raise PathError(source, "stopped")
                reason = member_rejection(info)
                if reason is not None:
                    log.warning("%s: refused member %r: %s", source, info.name, reason)
                    result.rejected.append(RejectedMember(str(source), info.name, reason))
                    continue
                if info.isdir():
                    continue
                base = PurePosixPath(info.name.replace("\\", "/")).name
                if base.startswith(".") or not base.lower().endswith(VIDEO_EXTENSIONS):
                    result.rejected.append(RejectedMember(str(source), info.name, "not a video file"))
                    continue
                clip = base.rsplit(".", 1)[0]
                if keep is not None and not keep(clip):
                    result.filtered += 1
                    continue
                target = dest / base
                fixed = (replacements or {}).get(clip)
                if fixed is not None:
                    result.hashes[clip] = _copy_file(fixed, target)
                    result.replaced.append(clip)
                else:
                    result.hashes[clip] = _write_member(tar, info, target)
                result.written.append(clip)
    except (tarfile.TarError, EOFError, zlib.error, OSError, *_INFLATE_ERRORS) as exc:
        raise PathError(source, f"corrupt or truncated archive after {len(result.written)} clips: "
                                f"{type(exc).__name__}: {exc}") from None
    return result


@contextlib.contextmanager
def _open_tar(source: Path, fmt: ArchiveFormat) -> Iterator[tarfile.TarFile]:
    """A forward-reading tar reader whose members are read straight from the inflater.

    gzip is inflated by ISA-L (`isal`) when installed: 2.4x zlib's speed on a
    Kinetics-like part, ahead of zlib-ng (2.1x) and `gzip -dc` (0.8x); README
    "Download" has the measurement. The seekable mode ("r:") is used and not
    the stream mode ("r|"): members are read in order, so every seek is to the
    current offset, and the stream mode's buffer copies the rest of its 1 MiB
    buffer on every read (0.64 s vs 0.32 s for a 500-clip part).
    """
    if fmt == "gz" and igzip is not None:
        with igzip.open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            yield tar
        return
    with tarfile.open(source, mode=f"r:{'' if fmt == 'tar' else fmt}") as tar:
        yield tar


def _write_member(tar: tarfile.TarFile, info: tarfile.TarInfo, target: Path) -> tuple[int, str]:
    """Copy one member to a temporary sibling, check its size, rename it into place; (size, sha256)."""
    stream = tar.extractfile(info)
    if stream is None:
        raise tarfile.ExtractError(f"{info.name}: no data")
    return _write_atomically(stream, target, expected_size=info.size)


def _copy_file(source: Path, target: Path) -> tuple[int, str]:
    """Atomically copy a file over `target`; (size, sha256)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as stream:
        return _write_atomically(stream, target)


def _write_atomically(stream: BinaryIO, target: Path, *, expected_size: int | None = None) -> tuple[int, str]:
    """Write a stream to a new temporary sibling of `target`, hashing it on the way, then rename it over `target`.

    One open and one rename per file (the parent folder exists); no fsync: the journal records a part only once all its clips are
    renamed, and a part not journaled is extracted again. (size, sha256).
    """
    tmp, fd = open_temp(target)
    try:
        with open(fd, "wb") as out:  # 1 MiB chunks bypass its buffer
            writer = HashingWriter(out)
            shutil.copyfileobj(stream, writer, _COPY_CHUNK)
        written, digest = writer.result()
        if expected_size is not None and written != expected_size:
            raise tarfile.ReadError(f"{target.name}: {written} of {expected_size} bytes")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written, digest


# --- the route ------------------------------------------------------------------


@dataclass
class MirrorOutcome:
    """What the mirror route did: failures, per-clip reasons for gaps, bytes moved, notes."""

    failures: list[Failure] = field(default_factory=list)
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    unfinished_parts: dict[str, int] = field(default_factory=dict)
    bytes_downloaded: int = 0
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # the extraction's --summary-json record


class _ByteProgress:
    """Thread-safe byte counter feeding on_progress(done_bytes, total_bytes)."""

    def __init__(self, total: int, on_progress: ProgressFn) -> None:
        self.done = 0
        self.total = total
        self.moved = 0
        self._fn = on_progress
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            if n > 0:
                self.moved += n
            self._fn(max(self.done, 0), max(self.total, self.done))


@dataclass(frozen=True)
class ExtractTask:
    """One downloaded part to extract in a worker process (paths on shared storage)."""

    split: str
    url: str
    archive: str
    dest_dir: str
    keep: frozenset[str] | None  # clip ids to keep; None: every clip


def extract_part(task: ExtractTask) -> dict[str, Any]:
    """Worker: extract one part safely; the journal record of what it gave."""
    keep = task.keep.__contains__ if task.keep is not None else None
    result = safe_extract(task.archive, dest_dir=task.dest_dir, keep=keep)
    return {
        "kind": "part", "split": task.split, "url": task.url, "bytes": os.path.getsize(task.archive),
        "format": result.format, "clips": result.written, "filtered": result.filtered, "hashes": result.hashes,
        "rejected": [{"member": r.member, "reason": r.reason} for r in result.rejected],
    }


def run_mirror(
    *,
    plan: MirrorPlan,
    out_dir: Path,
    state: DownloadState,
    keep_by_split: Mapping[str, Collection[str] | None],
    expected_by_split: Mapping[str, Collection[str]],
    policy: RetryPolicy,
    jobs: int,
    keep_archives: bool,
    on_progress: ProgressFn,
) -> MirrorOutcome:
    """Download every unfinished part while extracting those already fetched, then apply the replacement.

    Transfers run in `jobs` threads; each part is extracted on the stage
    engine (worker processes, one part each, journaled in
    `{state}/extract.jsonl`) as soon as its transfer ends, while the next
    parts download.
    """
    outcome = MirrorOutcome()
    done_parts = state.latest("part")
    todo = [p for p in plan.parts if p.key not in done_parts]
    for part in plan.parts:
        if part.key in done_parts and not keep_archives:
            state.archive_path(part.split, part.name).unlink(missing_ok=True)
    log.info("%d of %d parts already extracted; %d to go", len(plan.parts) - len(todo), len(plan.parts), len(todo))
    progress = _ByteProgress(sum(p.size_bytes or 0 for p in todo), on_progress)
    progress.add(0)
    by_key = {p.key: p for p in plan.parts}
    items = [Item(key=p.key, stamp={"split": p.split, "url": p.url}, task=ExtractTask(
        p.split, p.url, str(state.archive_path(p.split, p.name)), str(out_dir / p.split),
        _keep_set(keep_by_split.get(p.split)))) for p in plan.parts]
    fetcher = _Fetcher(state=state, policy=policy, jobs=jobs, progress=progress, outcome=outcome)

    def feed(ready: list[Item]) -> Iterator[Item | None]:
        """The parts to extract, each as soon as its transfer ends (extraction overlaps the next transfers)."""
        todo_items = {item.key: item for item in ready}
        return (None if key is None else todo_items[key] for key in fetcher.fetched([by_key[k] for k in todo_items]))

    def remove_archive(item: Item, entry: dict[str, Any]) -> None:
        """Once a part is journaled as extracted its archive is not needed: disk holds one copy, not two."""
        Path(item.task.archive).unlink(missing_ok=True)

    spec = EXTRACT_SPEC if keep_archives else dataclasses.replace(EXTRACT_SPEC, after_record=remove_archive)
    run = run_stage(spec, items, state_dir=state.root, options=StageOptions(), feed=feed)
    for failure in run.failures:
        part = by_key[failure.source]
        # the archive passed the size check but does not extract: fetch it anew next run
        state.archive_path(part.split, part.name).unlink(missing_ok=True)
        outcome.failures.append(Failure(part.url, "extract", failure.error, part.split))
    outcome.summary = run.summary(Counter([f.reason for f in run.failures] + [f.kind for f in outcome.failures]))
    outcome.bytes_downloaded = progress.moved
    done_parts = state.latest("part")
    for split in {p.split for p in plan.parts}:
        left = sum(1 for p in plan.parts if p.split == split and p.key not in done_parts)
        if left:
            outcome.unfinished_parts[split] = left
    for entry in done_parts.values():
        for rejected in entry.get("rejected", []):
            base = PurePosixPath(rejected["member"].replace("\\", "/")).name
            clip = base.rsplit(".", 1)[0]
            outcome.reasons.setdefault(entry["split"], {})[clip] = f"unsafe archive member: {rejected['reason']}"
    _apply_replacement(plan=plan, out_dir=out_dir, state=state, expected_by_split=expected_by_split, policy=policy,
                       keep_archives=keep_archives, outcome=outcome, progress=progress)
    outcome.bytes_downloaded = progress.moved
    return outcome


# Extraction has no time limit of its own: a 10 GB part on a slow disk takes what it takes.
EXTRACT_SPEC = StageSpec(EXTRACT_STAGE, extract_part, None)


def _keep_set(wanted: Collection[str] | None) -> frozenset[str] | None:
    return None if wanted is None else frozenset(wanted)


class _Fetcher:
    """Downloads parts in threads, resumably, stopping at the next chunk on Ctrl-C."""

    def __init__(self, *, state: DownloadState, policy: RetryPolicy, jobs: int, progress: _ByteProgress,
                 outcome: MirrorOutcome) -> None:
        self.state, self.policy, self.jobs = state, policy, jobs
        self.progress, self.outcome = progress, outcome
        self.stop = StopSignal()

    def _fetch(self, part: PartPlan) -> None:
        fetch_file(part.url, self.state.archive_path(part.split, part.name), policy=self.policy,
                   expected_size=part.size_bytes, on_bytes=self.progress.add, stop=self.stop)

    def fetched(self, parts: list[PartPlan]) -> Iterator[str | None]:
        """Download the parts in threads; yield each part's key as it lands on disk (failed transfers recorded).

        None is yielded every 0.2 s while no transfer ends, so finished extractions are journaled meanwhile.
        Lazy: the transfers start at the first `next()`, so the extraction pool forks its
        workers before these threads exist, and each part is extracted while the next downloads.
        """
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.jobs), thread_name_prefix="part") as pool:
            futures = {pool.submit(self._fetch, part): part for part in parts}
            try:
                for future in as_completed_interruptible(futures, idle=True):
                    if future is None:  # nothing landed: let the extraction journal what it finished
                        yield None
                        continue
                    part = futures[future]
                    try:
                        future.result()
                    except DownloadFailed as exc:
                        self.outcome.failures.append(Failure(part.url, "download", exc.reason, part.split))
                        continue
                    except OSError as exc:  # disk full, permissions: this part's failure, reported
                        log.error("%s: %s", part.url, exc)
                        self.outcome.failures.append(
                            Failure(part.url, "io", f"{type(exc).__name__}: {exc}", part.split))
                        continue
                    yield part.key
            except BaseException:  # Ctrl-C, or the extraction stopped early (GeneratorExit)
                log.warning("interrupted: stopping transfers (partial downloads are kept for resume)")
                self.stop.set()  # transfers stop at their next chunk; .part files stay for resume
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def _apply_replacement(
    *,
    plan: MirrorPlan,
    out_dir: Path,
    state: DownloadState,
    expected_by_split: Mapping[str, Collection[str]],
    policy: RetryPolicy,
    keep_archives: bool,
    outcome: MirrorOutcome,
    progress: _ByteProgress,
) -> None:
    """Copy the re-encoded clips over their corrupt originals in every requested split.

    Runs whenever parts were extracted since it last ran (a part extracted
    later would bring the corrupt original back).
    """
    parts_done = len(state.latest("part"))
    applied = state.latest("replacement").get(plan.replacement_url)
    if applied is not None and applied.get("parts_done") == parts_done:
        return
    archive = state.root / "archives" / REPLACEMENT_NAME
    cache = state.root / "replacement"
    try:
        fetch_file(plan.replacement_url, archive, policy=policy, expected_size=plan.replacement_size,
                   on_bytes=progress.add)
        if cache.exists():
            shutil.rmtree(cache)
        safe_extract(archive, dest_dir=cache)
    except DownloadFailed as exc:
        if exc.status == 404:
            outcome.notes.append(f"no replacement archive at {plan.replacement_url}; corrupt originals kept")
            return
        outcome.failures.append(Failure(plan.replacement_url, "replacement", exc.reason))
        return
    except PathError as exc:
        archive.unlink(missing_ok=True)
        outcome.failures.append(Failure(plan.replacement_url, "replacement", exc.reason))
        return
    fixed = {p.stem: p for p in sorted(cache.iterdir()) if p.is_file() and not p.name.startswith(".")}
    replaced = 0
    hashes: dict[str, tuple[int, str]] = {}
    for split, expected in expected_by_split.items():
        split_dir = out_dir / split
        for clip, source in fixed.items():
            target = split_dir / source.name
            if target.exists() or clip in expected:
                hashes[clip] = _copy_file(source, target)
                replaced += 1
    state.record({"kind": "replacement", "key": plan.replacement_url, "parts_done": parts_done,
                  "replaced": replaced, "available": len(fixed), "hashes": hashes})
    outcome.notes.append(f"replacement archive: {replaced} clip(s) replaced ({len(fixed)} in the archive)")
    if not keep_archives:
        archive.unlink(missing_ok=True)
    shutil.rmtree(cache, ignore_errors=True)


def clip_hashes(state: DownloadState) -> dict[str, dict[str, tuple[int, str]]]:
    """Split -> clip id -> (size, sha256) as extracted (the replacement's copies win), from the journals."""
    found: dict[str, dict[str, tuple[int, str]]] = {}
    for entry in state.latest("part").values():
        found.setdefault(entry["split"], {}).update({k: tuple(v) for k, v in entry.get("hashes", {}).items()})
    for entry in state.latest("replacement").values():
        for clips in found.values():
            clips.update({k: tuple(v) for k, v in entry.get("hashes", {}).items() if k in clips})
    return found


def write_annotations(*, plan: MirrorPlan, out_dir: Path, policy: RetryPolicy) -> dict[str, Path]:
    """Fetch each split's annotation CSV to `{out}/annotations/{split}.csv` (atomically)."""
    written = {}
    for split, url in plan.annotation_urls.items():
        try:
            body = fetch_bytes(url, policy=policy)
        except DownloadFailed as exc:
            raise LayoutError(url, f"cannot fetch the annotations of {split}: {exc.reason}") from None
        target = out_dir / "annotations" / f"{split}.csv"
        atomic_write_text(target, body.decode("utf-8"))
        written[split] = target
    return written


def planned_files(plan: MirrorPlan, *, out_dir: Path) -> list[PlannedFile]:
    """The dry-run listing: every file with its size when known and where it ends up."""
    files = [PlannedFile(url, None, str(out_dir / "annotations" / f"{split}.csv"), split)
             for split, url in plan.annotation_urls.items()]
    files += [PlannedFile(p.url, p.size_bytes, str(out_dir / p.split) + "/", p.split) for p in plan.parts]
    files.append(PlannedFile(plan.replacement_url, plan.replacement_size, "(copied over corrupt clips)"))
    return files


# --- class-folder view -----------------------------------------------------------


def build_class_view(*, out_dir: Path, split: str, labels: Mapping[str, str | None]) -> int:
    """Symlinks `{out}/by_class/{split}/{label}/{clip}.mp4` -> `{out}/{split}/{clip}.mp4`; return count.

    `{out}/by_class` is then a dataset root in class-folder layout (with
    `annotations` linked), for tools that expect label folders. Unlabelled
    clips (test) are linked directly under `by_class/{split}/`.
    """
    split_dir = out_dir / split
    view_root = out_dir / "by_class"
    made = 0
    if not split_dir.is_dir():
        return 0
    for video in sorted(split_dir.iterdir()):
        if video.name.startswith(".") or not video.is_file() or video.stat().st_size == 0:
            continue
        clip = video.stem
        if clip not in labels:
            continue
        label = labels[clip]
        folder = view_root / split / label if label else view_root / split
        link = folder / video.name
        folder.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(video, folder)
        if link.is_symlink() and os.readlink(link) == target:
            made += 1
            continue
        tmp = folder / f".{video.name}.link.part"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        made += 1
    annotations_link = view_root / "annotations"
    if not annotations_link.exists() and (out_dir / "annotations").is_dir():
        view_root.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(out_dir / "annotations", view_root), annotations_link)
    return made


# --- packing a local dataset into the mirror layout (tests, demo, private mirrors) ---


@dataclass
class PackedMirror:
    """A folder laid out like the CVDF mirror, and what went into each part."""

    root: Path
    base_url: str
    parts: dict[str, list[Path]]
    clips: dict[str, list[str]]
    part_clips: dict[str, list[list[str]]]
    replacement: Path


def pack_mirror(
    *,
    videos_dir: str | os.PathLike[str],
    annotations_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    base_url: str,
    splits: Sequence[str] | None = None,
    clips_per_part: int = 4,
    plain_tar_parts: Collection[int] = (),
    member_prefixes: Sequence[str] = ("{split}/",),
    replacements_dir: str | os.PathLike[str] | None = None,
) -> PackedMirror:
    """Pack `{videos}/{split}/**/{clip}.mp4` and annotation CSVs into the mirror layout.

    Writes `{out}/{split}/part_N.tar.gz`, `{out}/{split}/k400_{split}_path.txt`
    (URLs under `base_url`), `{out}/annotations/{split}.csv` and
    `{out}/replacement_for_corrupted_k400.tgz` (from `replacements_dir`, else
    empty). Part N is a plain tar if N is in `plain_tar_parts`; member names
    use `member_prefixes[N % len]` (e.g. "{split}/", "", "k400/{split}/").
    """
    videos = Path(videos_dir)
    root = Path(out_dir)
    base = base_url.rstrip("/")
    csvs = find_annotation_files(annotations_dir)
    chosen = list(splits) if splits is not None else [s for s in ("train", "val", "test") if s in csvs]
    packed = PackedMirror(root, base, {}, {}, {}, root / REPLACEMENT_NAME)
    for split in chosen:
        if split not in csvs:
            raise LayoutError(annotations_dir, f"no annotation CSV for split {split!r}")
        with atomic_path(root / "annotations" / f"{split}.csv") as tmp:
            shutil.copyfile(csvs[split], tmp)
        files = sorted((p for p in (videos / split).rglob("*")
                        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")),
                       key=lambda p: p.name)
        groups = [files[i:i + clips_per_part] for i in range(0, len(files), max(1, clips_per_part))] or [[]]
        urls, paths, part_clips = [], [], []
        for index, group in enumerate(groups):
            name = f"part_{index}.tar.gz"
            prefix = member_prefixes[index % len(member_prefixes)].format(split=split)
            target = root / split / name
            with atomic_path(target) as tmp, tarfile.open(tmp, "w" if index in plain_tar_parts else "w:gz") as tar:
                for video in group:
                    tar.add(video, arcname=prefix + video.name, recursive=False)
            urls.append(f"{base}/{split}/{name}")
            paths.append(target)
            part_clips.append([v.stem for v in group])
        atomic_write_text(root / split / f"k400_{split}_path.txt", "".join(u + "\n" for u in urls))
        packed.parts[split] = paths
        packed.part_clips[split] = part_clips
        packed.clips[split] = [c for group in part_clips for c in group]
    with atomic_path(packed.replacement) as tmp, tarfile.open(tmp, "w:gz") as tar:
        if replacements_dir is not None:
            for video in sorted(Path(replacements_dir).iterdir()):
                if video.is_file() and video.suffix.lower() in VIDEO_EXTENSIONS:
                    tar.add(video, arcname=f"replacement/replacement_for_corrupted_k400/{video.name}",
                            recursive=False)
    return packed

