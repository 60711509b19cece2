"""`videoprep index`: probe every video once and write BAT lists, the class map and a manifest.

Runs on the stage engine (`videoprep.stage`): each probe result is journaled in
`{out}/.videoprep/index.jsonl` keyed by relpath and stamped with (size, mtime_ns),
so a killed run re-run probes only what is left and an unchanged tree is not
probed again; `--shard I/N` probes a share and a plain run afterwards merges.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from videoprep.atomic import atomic_write_json, write_text_if_changed
from videoprep.errors import OutputLocationError, PathError, VideoprepError, failure_reason
from videoprep.exports import EXPORTS, Export, ExportTarget  # noqa: F401  (re-exported)
from videoprep.layout import (
    SAFE_VIEW_DIRNAME,
    Layout,
    discover,
    link_safe_view,
    plan_safe_view,
    printable_path,
    raw_path,
    require_videos,
)
from videoprep.locations import check_output_dir, check_output_file
from videoprep.manifest import MANIFEST_COLUMNS, ManifestRow, Status, read_manifest, write_manifest  # noqa: F401
from videoprep.probe import probe_video
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import ListRecord, class_map_text, list_text
from videoprep.stage import STATE_DIR, Item, StageOptions, StageRun, StageSpec, run_stage, write_summary
from videoprep.validate.containers import CHECK_VERSION, require_intact

log = logging.getLogger(__name__)

JOURNAL_NAME = f"{STATE_DIR}/index.jsonl"  # under --out
MANIFEST_NAME = "manifest.csv"
CLASSES_NAME = "classes.txt"
# What the manifest keeps from a probe (VideoInfo minus path/size/GOP stats).
_INFO_KEYS = ("frames", "fps", "duration_s", "width", "height", "codec", "pix_fmt", "constant_frame_rate")


@dataclass(frozen=True)
class IndexConfig(StageOptions):
    """What to index and where the lists go (the engine's options: `StageOptions`)."""

    video_root: Path
    out_dir: Path
    annotations: Path | None = None
    split: str | None = None
    safe_dir: Path | None = None
    exports: tuple[str, ...] = ()
    timeout_s: float = 60.0  # per video; a probe that hangs past it is killed and recorded
    fresh: bool = False  # ignore (and replace) the journal: probe everything again
    # Set by stages that index their own outputs (transcode): relpath -> class name, and the class
    # list, so the lists keep the source's label indices and original class names.
    labels: Mapping[str, str] | None = None
    classes: Sequence[str] | None = None
    # relpath -> the manifest fields (_INFO_KEYS) already known from probing it (transcode's own check)
    known: Mapping[str, Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.exports if name not in EXPORTS]
        if unknown:
            raise VideoprepError(
                f"unknown export(s) {', '.join(unknown)}; supported values are {', '.join(EXPORTS)}"
            )
        if self.timeout_s <= 0:
            raise VideoprepError(f"timeout_s ({self.timeout_s}) must be > 0")




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
    summary: dict[str, Any] = field(default_factory=dict)  # the --summary-json record
    unchanged: bool = False  # nothing changed since the last run: no output was rewritten

    @property
    def total(self) -> int:
        return sum(c.listed + c.unlabelled + c.errors for c in self.counts.values())

    @property
    def errors(self) -> int:
        return sum(c.errors for c in self.counts.values())


def run_index(config: IndexConfig, *, on_progress: ProgressFn | None = None) -> IndexResult | None:
    """Index every video under `config.video_root` into lists under `config.out_dir`.

    A --shard run only probes and journals its share (returns None); the
    plain run after it writes the lists of the whole tree.
    """
    progress = on_progress or no_progress
    root = Path(config.video_root)
    out = check_output_dir(config.out_dir, what="--out")
    if config.summary_json is not None:
        check_output_file(config.summary_json, what="--summary-json")
    safe_dir = Path(config.safe_dir) if config.safe_dir is not None else root / SAFE_VIEW_DIRNAME
    layout = discover(root, annotations=config.annotations, split=config.split, skip_dirs=[safe_dir, out])
    layout = with_labels(layout, labels=config.labels, classes=config.classes)
    require_videos(layout, where=f" in split {config.split!r}" if config.split else "")
    plan = plan_safe_view(v.relpath for v in layout.videos)
    _check_safe_dir(safe_dir, plan)
    probes, run = _probe_all(layout, out, config=config, progress=progress)
    if config.shard is not None:
        write_summary(config.summary_json, run.summary(_failed_counts(probes)))
        return None
    key = _outputs_key(config, layout, plan, journal=out / JOURNAL_NAME, safe_dir=safe_dir)
    result = _unchanged_outputs(out, key, safe_dir, plan) if run.done == 0 and not run.failures else None
    if result is not None:
        result.unchanged = True
    else:  # something changed (or the first run): link, build the rows, write what differs
        list_paths = link_safe_view(video_root=root, safe_dir=safe_dir, plan=plan)
        rows = _manifest_rows(layout, probes, list_paths)
        result = _write_index(config, layout, rows, out=out)
        _record_outputs(out, key, result)
    result.probed, result.reused, result.safe_links = run.done + len(run.failures), run.cached, len(plan)
    result.summary = run.summary(_failed_counts(probes))
    write_summary(config.summary_json, result.summary)
    log.info("indexed %d videos (%d probed, %d from the journal, %d errors)",
             result.total, result.probed, result.reused, result.errors)
    return result


OUTPUTS_RECORD = f"{STATE_DIR}/index.outputs.json"  # under --out: what the last run wrote, from which inputs


def _outputs_key(config: IndexConfig, layout: Layout, plan: Mapping[str, str], *, journal: Path,
                 safe_dir: Path) -> str | None:
    """A digest of everything the outputs follow from: the layout, the journal file, the options; None: no shortcut."""
    if config.labels is not None or config.classes is not None or config.known is not None:
        return None  # a stage indexing its own outputs (transcode): always written
    try:
        st = os.stat(journal)
    except FileNotFoundError:
        return None
    digest = hashlib.sha1(repr((str(config.video_root), str(safe_dir), config.split, config.exports,
                                str(config.annotations), st.st_size, st.st_mtime_ns, st.st_ino, layout.classes,
                                sorted(plan.items()))).encode("utf-8", "surrogateescape"))
    for video in layout.videos:
        digest.update(f"{video.relpath}\t{video.split}\t{video.label}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _record_outputs(out: Path, key: str | None, result: IndexResult) -> None:
    """Record what this run wrote (paths, sizes, mtimes, counts) and from which inputs (`_outputs_key`)."""
    if key is None:
        return
    files = [result.classes_path, result.manifest_path, *result.lists.values(), *result.exports]
    atomic_write_json(out / OUTPUTS_RECORD, {
        "key": key, "files": {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in files},
        "lists": {split: str(p) for split, p in result.lists.items()},
        "counts": {split: asdict(c) for split, c in result.counts.items()},
        "classes": str(result.classes_path), "manifest": str(result.manifest_path),
        "exports": [str(p) for p in result.exports],
    })


def _unchanged_outputs(out: Path, key: str | None, safe_dir: Path, plan: Mapping[str, str]) -> IndexResult | None:
    """The last run's result when its inputs are these and its outputs and links are still there untouched."""
    try:
        record = json.loads((out / OUTPUTS_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if key is None or record.get("key") != key:
        return None
    for path, (size, mtime_ns) in record["files"].items():
        try:
            st = os.stat(path)
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return None
    if not all(os.path.islink(safe_dir / safe) for safe in plan.values()):
        return None
    return IndexResult(lists={s: Path(p) for s, p in record["lists"].items()},
                       counts={s: SplitCounts(**c) for s, c in record["counts"].items()},
                       classes_path=Path(record["classes"]), manifest_path=Path(record["manifest"]),
                       exports=[Path(p) for p in record["exports"]])


def _check_safe_dir(safe_dir: Path, plan: Mapping[str, str]) -> None:
    """Before any probe: the symlink view that lists names with whitespace can be made (--safe-dir)."""
    if not plan:
        return
    try:
        check_output_dir(safe_dir, what="--safe-dir")
    except OutputLocationError as exc:
        example = printable_path(next(iter(plan)))
        raise OutputLocationError(safe_dir, f"{len(plan)} video path(s) with whitespace (e.g. {example!r}) are "
                                            f"listed through a symlink view here, but {exc.reason}") from None


def _write_index(config: IndexConfig, layout: Layout, rows: list[ManifestRow], *, out: Path) -> IndexResult:
    """Write classes.txt, manifest.csv, each split's list and the exports."""
    out.mkdir(parents=True, exist_ok=True)
    classes_path = out / CLASSES_NAME
    write_text_if_changed(classes_path, class_map_text(layout.classes))  # a re-run rewrites nothing
    manifest_path = out / MANIFEST_NAME
    write_manifest(manifest_path, rows)
    lists, counts, exported = {}, {}, []
    for split in layout.splits:
        split_rows = [r for r in rows if r.split == split]
        good = [r for r in split_rows if r.status == "ok"]
        lists[split] = out / f"{split}.txt"
        write_text_if_changed(lists[split], list_text(_record(r) for r in good))
        counts[split] = SplitCounts(
            listed=len(good),
            unlabelled=sum(r.status == "unlabelled" for r in split_rows),
            errors=sum(r.status == "error" for r in split_rows),
        )
        if not good:
            log.warning("split %s: no labelled, readable video; %s is empty", split, lists[split])
        target = ExportTarget(out=out, split=split, video_root=Path(config.video_root))
        exported += [EXPORTS[name].write(good, target) for name in config.exports if EXPORTS[name].per_split]
    whole = ExportTarget(out=out, split="", video_root=Path(config.video_root))
    exported += [EXPORTS[name].write(rows, whole) for name in config.exports if not EXPORTS[name].per_split]
    return IndexResult(lists=lists, counts=counts, classes_path=classes_path, manifest_path=manifest_path,
                       exports=exported)


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
    """Worker: the manifest fields of one video, or why it cannot be listed (the integrity check, the probe)."""
    try:
        require_intact(path)
        info = probe_video(path)
    except PathError as exc:
        return {"info": None, "error": exc.reason, "reason": failure_reason(exc)}
    return {"info": {k: getattr(info, k) for k in _INFO_KEYS}, "error": None}


def _probe_all(
    layout: Layout, out: Path, *, config: IndexConfig, progress: ProgressFn
) -> tuple[dict[str, dict[str, Any]], StageRun]:
    """relpath -> probe entry for every video of this run; the engine probes only what its journal lacks."""
    results: dict[str, dict[str, Any]] = {}
    items = []
    known = config.known or {}
    for video in layout.videos:
        full = os.path.join(layout.root, video.relpath)
        try:
            st = os.stat(full)
        except OSError as exc:  # vanished since discovery: recorded, not journaled
            results[video.relpath] = {"size": 0, "info": None, "error": f"cannot stat: {exc.strerror}",
                                      "reason": "unreadable"}
            continue
        if video.relpath in known:
            results[video.relpath] = {"size": st.st_size, "info": dict(known[video.relpath]), "error": None}
            continue
        # the check's version: verdicts of an older integrity check are made again
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "check": CHECK_VERSION}
        items.append(Item(key=video.relpath, stamp=stamp, task=full))
    spec = StageSpec("index", probe_for_index, config.timeout_s, plain_workers=True,
                     failure_record=lambda f: {"info": None, "error": f.error, "reason": f.reason})
    run = run_stage(spec, items, state_dir=out / STATE_DIR, options=config, on_progress=progress, fresh=config.fresh)
    for key, entry in run.entries.items():
        results[key] = {**entry, "size": entry["stamp"]["size"]}
    return results, run


def _failed_counts(probes: dict[str, dict[str, Any]]) -> Counter[str]:
    """Reason class -> videos that cannot be listed (summary-json's `failed`), from each failure's type."""
    return Counter(entry.get("reason") or "unreadable" for entry in probes.values() if entry.get("error"))


def _manifest_rows(
    layout: Layout, probes: dict[str, dict[str, Any]], list_paths: dict[str, str]
) -> list[ManifestRow]:
    """One row per video, sorted by list path."""
    index = layout.class_index()
    rows = []
    for video in layout.videos:
        entry = probes.get(video.relpath)
        if entry is None:  # another shard's video, not probed by anyone yet
            continue
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
                relpath_raw=raw_path(video.relpath),
            )
        )
    rows.sort(key=lambda r: r.list_path)
    return rows


def _record(row: ManifestRow) -> ListRecord:
    assert row.frames is not None and row.label_index is not None  # only "ok" rows get here
    return ListRecord(path=row.list_path, frame_num=row.frames, label=row.label_index)
