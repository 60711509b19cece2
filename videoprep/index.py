"""`videoprep index`: probe every video once and write BAT lists, the class map and a manifest.

Resumable: each probe result is appended to `{out}/.index-journal.jsonl`
keyed by (relpath, size, mtime_ns) as soon as it is known, so a killed run
re-run probes only what is left and an unchanged tree is not probed again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from videoprep.atomic import Journal, atomic_write_text
from videoprep.errors import ProbeError, VideoprepError
from videoprep.layout import (
    SAFE_VIEW_DIRNAME,
    Layout,
    discover,
    link_safe_view,
    plan_safe_view,
    printable_path,
)
from videoprep.parallel import init_plain_worker, run_isolated
from videoprep.probe import VIDEO_EXTENSIONS, probe_video
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import ListRecord, write_class_map, write_list

log = logging.getLogger(__name__)

JOURNAL_NAME = ".index-journal.jsonl"
MANIFEST_NAME = "manifest.csv"
CLASSES_NAME = "classes.txt"
Status = Literal["ok", "unlabelled", "error"]
# What the manifest keeps from a probe (VideoInfo minus path/size/GOP stats).
_INFO_KEYS = ("frames", "fps", "duration_s", "width", "height", "codec", "pix_fmt", "constant_frame_rate")


@dataclass(frozen=True)
class IndexConfig:
    """What to index and where the lists go."""

    video_root: Path
    out_dir: Path
    annotations: Path | None = None
    jobs: int | None = None
    split: str | None = None
    safe_dir: Path | None = None
    exports: tuple[str, ...] = ()
    timeout_s: float = 60.0  # per video; a probe that hangs past it is killed and recorded
    fresh: bool = False  # ignore (and replace) the journal: probe everything again
    # Set by stages that index their own outputs (transcode): relpath -> class name, and the class
    # list, so the lists keep the source's label indices and original class names.
    labels: Mapping[str, str] | None = None
    classes: Sequence[str] | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.exports if name not in EXPORTS]
        if unknown:
            raise VideoprepError(
                f"unknown export(s) {', '.join(unknown)}; supported values are {', '.join(EXPORTS)}"
            )
        if self.timeout_s <= 0:
            raise VideoprepError(f"timeout_s ({self.timeout_s}) must be > 0")


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


MANIFEST_COLUMNS = tuple(f.name for f in fields(ManifestRow))


@dataclass(frozen=True)
class SplitCounts:
    """How many videos of a split went into its list, and how many did not."""

    listed: int
    unlabelled: int
    errors: int


@dataclass
class IndexResult:
    """Per-split counts and every file written."""

    lists: dict[str, Path]
    counts: dict[str, SplitCounts]
    classes_path: Path
    manifest_path: Path
    exports: list[Path] = field(default_factory=list)
    probed: int = 0  # probed in this run
    reused: int = 0  # taken from the journal
    safe_links: int = 0  # videos listed through the safe-named symlink view

    @property
    def total(self) -> int:
        return sum(c.listed + c.unlabelled + c.errors for c in self.counts.values())

    @property
    def errors(self) -> int:
        return sum(c.errors for c in self.counts.values())


def run_index(config: IndexConfig, *, on_progress: ProgressFn | None = None) -> IndexResult:
    """Index every video under `config.video_root` into lists under `config.out_dir`."""
    progress = on_progress or no_progress
    root = Path(config.video_root)
    out = Path(config.out_dir)
    safe_dir = Path(config.safe_dir) if config.safe_dir is not None else root / SAFE_VIEW_DIRNAME
    layout = discover(root, annotations=config.annotations, split=config.split, skip_dirs=[safe_dir, out])
    layout = with_labels(layout, labels=config.labels, classes=config.classes)
    if not layout.videos:
        where = f" in split {config.split!r}" if config.split else ""
        log.warning("%s: no videos found%s (extensions: %s)", root, where, " ".join(VIDEO_EXTENSIONS))
    list_paths = link_safe_view(
        video_root=root, safe_dir=safe_dir, plan=plan_safe_view(v.relpath for v in layout.videos)
    )

    probes, probed, reused = _probe_all(layout, out / JOURNAL_NAME, config=config, progress=progress)
    rows = _manifest_rows(layout, probes, list_paths)

    out.mkdir(parents=True, exist_ok=True)
    classes_path = out / CLASSES_NAME
    write_class_map(classes_path, layout.classes)
    manifest_path = out / MANIFEST_NAME
    write_manifest(manifest_path, rows)
    lists, counts, exported = {}, {}, []
    for split in layout.splits:
        split_rows = [r for r in rows if r.split == split]
        good = [r for r in split_rows if r.status == "ok"]
        lists[split] = out / f"{split}.txt"
        write_list(lists[split], [_record(r) for r in good])
        counts[split] = SplitCounts(
            listed=len(good),
            unlabelled=sum(r.status == "unlabelled" for r in split_rows),
            errors=sum(r.status == "error" for r in split_rows),
        )
        if not good:
            log.warning("split %s: no labelled, readable video; %s is empty", split, lists[split])
        for name in config.exports:
            exported.append(EXPORTS[name](good, out, split))
    result = IndexResult(
        lists=lists,
        counts=counts,
        classes_path=classes_path,
        manifest_path=manifest_path,
        exports=exported,
        probed=probed,
        reused=reused,
        safe_links=len(list_paths),
    )
    log.info(
        "indexed %d videos (%d probed, %d from the journal, %d errors)",
        result.total,
        probed,
        reused,
        result.errors,
    )
    return result


def with_labels(
    layout: Layout, *, labels: Mapping[str, str] | None, classes: Sequence[str] | None
) -> Layout:
    """The layout with a given class list and per-video labels (they win over the layout's own); pure."""
    if labels is None and classes is None:
        return layout
    names = list(classes) if classes is not None else layout.classes
    known = set(names)
    videos = []
    for video in layout.videos:
        label = (labels or {}).get(video.relpath, video.label)
        if label is not None and label not in known:
            videos.append(replace(video, label=None, note=f"class {label!r} is not in the given class list"))
        else:
            videos.append(replace(video, label=label, note="" if label is not None else video.note))
    return replace(layout, videos=videos, classes=names)


def probe_for_index(path: str) -> dict[str, Any]:
    """Worker: the manifest fields of one video, or the reason it cannot be probed."""
    try:
        info = probe_video(path)
    except ProbeError as exc:
        return {"info": None, "error": exc.reason}
    return {"info": {k: getattr(info, k) for k in _INFO_KEYS}, "error": None}


class _JournalAppender(Journal):
    """The index journal, appended through one open handle.

    Each entry is flushed to the OS as it is written (survives kill -9); one
    fsync at close instead of one per entry keeps a 300 videos/s run cheap.
    """

    def __enter__(self) -> _JournalAppender:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        return self

    def write(self, entry: dict[str, Any]) -> None:
        """Append one finished item."""
        self._file.write(json.dumps(entry, sort_keys=True) + "\n")
        self._file.flush()

    def __exit__(self, *exc_info: object) -> None:
        os.fsync(self._file.fileno())
        self._file.close()


def _journal_key(entry: dict[str, Any]) -> tuple[str, int, int]:
    return entry["relpath"], entry["size"], entry["mtime_ns"]


def _probe_all(
    layout: Layout, journal_path: Path, *, config: IndexConfig, progress: ProgressFn
) -> tuple[dict[str, dict[str, Any]], int, int]:
    """relpath -> journal entry for every video; probes only those the journal lacks."""
    journal = _JournalAppender(journal_path)
    done: dict[tuple[str, int, int], dict[str, Any]] = {}
    if not config.fresh:
        for entry in journal.load():
            try:
                done[_journal_key(entry)] = entry
            except (KeyError, TypeError):
                log.warning("%s: skipping a malformed journal entry", journal_path)

    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, tuple[str, int, int]] = {}
    current: set[tuple[str, int, int]] = set()
    reused = 0
    for video in layout.videos:
        full = os.path.join(layout.root, video.relpath)
        try:
            st = os.stat(full)
        except OSError as exc:  # vanished since discovery: recorded, not journaled
            results[video.relpath] = {
                "relpath": video.relpath,
                "size": 0,
                "mtime_ns": 0,
                "info": None,
                "error": f"cannot stat: {exc.strerror}",
            }
            continue
        key = (video.relpath, st.st_size, st.st_mtime_ns)
        current.add(key)
        if key in done:
            results[video.relpath] = done[key]
            reused += 1
        else:
            todo[full] = key
    total = len(layout.videos)
    listed = {v.relpath for v in layout.videos}
    stale = [k for k in done if k[0] in listed and k not in current]
    if config.fresh or stale:
        # Rewrite without the entries of files that changed, so the journal does not grow forever;
        # entries of videos outside this run (another --split) are kept.
        kept = [e for k, e in done.items() if k not in stale]
        atomic_write_text(journal_path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
    progress(len(results), total)
    if not todo:
        return results, 0, reused

    log.info("probing %d videos (%d known from the journal)", len(todo), reused)
    with journal:
        tasks = run_isolated(
            probe_for_index, todo, jobs=config.jobs, timeout_s=config.timeout_s, initializer=init_plain_worker
        )
        for task in tasks:
            relpath, size, mtime_ns = todo[task.item]
            outcome = task.value if task.ok else {"info": None, "error": task.error}
            entry = {"relpath": relpath, "size": size, "mtime_ns": mtime_ns, **outcome}
            journal.write(entry)
            results[relpath] = entry
            progress(len(results), total)
    return results, len(todo), reused


def _manifest_rows(
    layout: Layout, probes: dict[str, dict[str, Any]], list_paths: dict[str, str]
) -> list[ManifestRow]:
    """One row per video, sorted by list path."""
    index = layout.class_index()
    rows = []
    for video in layout.videos:
        entry = probes[video.relpath]
        info = entry.get("info") or {}
        if entry.get("error"):
            status, reason = "error", entry["error"]
        elif video.label is None:
            status, reason = "unlabelled", video.note
        else:
            status, reason = "ok", ""
        rows.append(
            ManifestRow(
                relpath=video.relpath,
                list_path=list_paths.get(video.relpath, video.relpath),
                split=video.split,
                label=video.label or "",
                label_index=index[video.label] if video.label is not None else None,
                frames=info.get("frames"),
                fps=info.get("fps"),
                duration_s=info.get("duration_s"),
                width=info.get("width"),
                height=info.get("height"),
                codec=info.get("codec", ""),
                pix_fmt=info.get("pix_fmt", ""),
                constant_frame_rate=info.get("constant_frame_rate"),
                size_bytes=entry["size"],
                status=status,
                reason=reason,
            )
        )
    rows.sort(key=lambda r: r.list_path)
    return rows


def _record(row: ManifestRow) -> ListRecord:
    assert row.frames is not None and row.label_index is not None  # only "ok" rows get here
    return ListRecord(path=row.list_path, frame_num=row.frames, label=row.label_index)


def write_manifest(path: Path, rows: list[ManifestRow]) -> None:
    """Atomically write the manifest CSV (one row per video, empty cells for unknowns)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = asdict(row)
        cells["relpath"] = printable_path(row.relpath)
        writer.writerow({k: ("" if v is None else v) for k, v in cells.items()})
    atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The manifest rows as string dicts (for other stages and tests)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# --- exports: the same index in other tools' list formats ---------------------------


def _write_lines(path: Path, lines: list[str]) -> Path:
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def export_mmaction(rows: list[ManifestRow], out: Path, split: str) -> Path:
    """MMAction2 video list: `relpath label`."""
    return _write_lines(out / f"{split}_mmaction.txt", [f"{r.list_path} {r.label_index}" for r in rows])


def export_rawframes(rows: list[ManifestRow], out: Path, split: str) -> Path:
    """MMAction2 rawframes list: `dir total_frames label`, dir = the video path without extension."""
    lines = [
        ListRecord(path=os.path.splitext(r.list_path)[0], frame_num=r.frames, label=r.label_index).to_line()
        for r in rows
    ]
    return _write_lines(out / f"{split}_rawframes.txt", lines)


def export_slowfast(rows: list[ManifestRow], out: Path, split: str) -> Path:
    """PySlowFast Kinetics CSV: `path label` (space separated, no header)."""
    return _write_lines(out / "slowfast" / f"{split}.csv", [f"{r.list_path} {r.label_index}" for r in rows])


def export_dali(rows: list[ManifestRow], out: Path, split: str) -> Path:
    """DALI video reader file_list: `path label` (paths relative to the video root = DALI's file_root)."""
    return _write_lines(out / f"{split}_dali.txt", [f"{r.list_path} {r.label_index}" for r in rows])


EXPORTS: dict[str, Callable[[list[ManifestRow], Path, str], Path]] = {
    "mmaction": export_mmaction,
    "rawframes": export_rawframes,
    "slowfast": export_slowfast,
    "dali": export_dali,
}
