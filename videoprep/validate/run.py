"""`videoprep validate`: find the videos a trainer would choke on, before training does.

Each video is checked in its own worker with a time limit (a decoder that
hangs or crashes costs only that video), on the stage engine
(`videoprep.stage`): verdicts are journaled in `{state_dir}` (default
`VIDEO_ROOT/.videoprep`), so a re-run checks only new or changed videos and
`--shard I/N` splits the work. A bad video gets every reason found and one
primary reason, the first of `REASONS` in order.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from videoprep.atomic import atomic_write_json, atomic_write_text, move_file
from videoprep.errors import VideoprepError
from videoprep.layout import (
    Layout,
    VideoFile,
    discover,
    missing_clips,
    printable_path,
    raw_path,
    require_videos,
)
from videoprep.locations import check_output_dir, check_output_file, check_source_writable
from videoprep.progress import ProgressFn, no_progress
from videoprep.stage import STATE_DIR, Item, StageOptions, StageSpec, run_stage, write_summary
from videoprep.stage import Failure as StageFailure
from videoprep.validate.check import check_video
from videoprep.validate.containers import CHECK_VERSION
from videoprep.validate.reasons import REASONS, UNUSABLE, Finding, FindingClass, Reason, finding_class

log = logging.getLogger(__name__)

REPORT_FORMATS = (".csv", ".json")


@dataclass(frozen=True)
class ValidateConfig(StageOptions):
    """What to check and how hard (the engine's options: `StageOptions`)."""

    video_root: Path
    annotations: Path | None = None
    full: bool = False  # decode every frame instead of the first, middle, last and a few random ones
    min_frames: int = 57  # one 8x8 clip: 8 frames at rate 8 span 57 frames
    report: Path | None = None
    quarantine: Path | None = None
    quarantine_reasons: frozenset[str] = UNUSABLE  # which findings --quarantine moves
    state_dir: Path | None = None  # journal and lock; None: VIDEO_ROOT/.videoprep when writable
    timeout_s: float = 120.0  # per video
    sample_frames: int = 3  # random frames decoded per video in quick mode, besides first and last
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_frames < 1:
            raise VideoprepError(f"min_frames ({self.min_frames}) must be >= 1")
        unknown = sorted(set(self.quarantine_reasons) - set(REASONS))
        if unknown:
            raise VideoprepError(
                f"quarantine reasons {', '.join(unknown)}: not a reason; known reasons are {', '.join(REASONS)}"
            )
        if self.timeout_s <= 0:
            raise VideoprepError(f"timeout_s ({self.timeout_s}) must be > 0")
        if self.report is not None and Path(self.report).suffix.lower() not in REPORT_FORMATS:
            raise VideoprepError(
                f"report {str(self.report)!r}: the extension picks the format; supported values are "
                + ", ".join(REPORT_FORMATS)
            )


@dataclass(frozen=True)
class BadVideo:
    """One row of the report: a bad (or missing) video, its primary reason and all the others."""

    relpath: str
    reason: Reason
    finding_class: FindingClass  # of the primary reason: unusable, fixable or too_short
    message: str
    all_reasons: str  # ';'-separated reasons, primary first
    details: str  # every finding as 'reason (class): message', ' | '-separated
    quarantined_to: str = ""

    @property
    def unusable(self) -> bool:
        return self.finding_class == "unusable"


# relpath_raw: the original bytes of a non-UTF-8 name, percent-encoded (layout.raw_path); else empty
REPORT_COLUMNS = (*(f.name for f in fields(BadVideo)), "relpath_raw")


@dataclass
class ValidateResult:
    """How many videos were checked, which were bad and why, and where the report went."""

    checked: int
    bad: list[BadVideo] = field(default_factory=list)
    report_path: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # the --summary-json record
    classes_without_usable: list[str] = field(default_factory=list)  # training classes left with none

    @property
    def unusable(self) -> list[BadVideo]:
        """The bad videos nothing can fix (the ones that fail the run unless --strict counts all)."""
        return [b for b in self.bad if b.unusable]

    @property
    def class_counts(self) -> dict[str, int]:
        """Finding class -> number of bad videos whose primary reason is of that class."""
        out = {"unusable": 0, "fixable": 0, "too_short": 0}
        for b in self.bad:
            out[b.finding_class] += 1
        return out

    @property
    def counts(self) -> dict[str, int]:
        """Primary reason -> number of bad videos, in `REASONS` order."""
        out = {r: 0 for r in REASONS}
        for b in self.bad:
            out[b.reason] += 1
        return {r: n for r, n in out.items() if n}

    @property
    def quarantined(self) -> int:
        return sum(bool(b.quarantined_to) for b in self.bad)


def run_validate(config: ValidateConfig, *, on_progress: ProgressFn | None = None) -> ValidateResult:
    """Check every video under `config.video_root`; write the report; quarantine if asked.

    A --shard run checks and journals its share only (no report, no
    quarantine); the plain run after all shards reports the whole tree.
    """
    root = Path(config.video_root)
    _check_outputs(config)
    skip = [config.quarantine] if config.quarantine is not None else []
    layout = discover(root, annotations=config.annotations, skip_dirs=skip)
    require_videos(layout)
    check = functools.partial(
        check_video, full=config.full, min_frames=config.min_frames, sample_frames=config.sample_frames,
        seed=config.seed,
    )
    settings = {"full": config.full, "min_frames": config.min_frames, "sample_frames": config.sample_frames,
                "seed": config.seed, "check": CHECK_VERSION}
    items = [Item(key=v.relpath, stamp={**_stat_stamp(root / v.relpath), **settings}, task=str(root / v.relpath))
             for v in layout.videos]
    spec = StageSpec("validate", check, config.timeout_s, record=lambda item, value: asdict(value),
                     plain_workers=True, failure_record=_check_failed)
    with _state_dir(config) as state:
        run = run_stage(spec, items, state_dir=state, options=config, on_progress=on_progress or no_progress)
    bad = [_bad_video(key, [Finding(**f) for f in entry["findings"]])
           for key, entry in run.entries.items() if entry["findings"]]
    if config.shard is None:
        bad += _missing(layout)
    bad.sort(key=lambda b: b.relpath)
    if config.quarantine is not None and config.shard is None:
        bad = [
            _quarantine(b, root=root, quarantine=Path(config.quarantine))
            if set(b.all_reasons.split(";")) & config.quarantine_reasons else b
            for b in bad
        ]
    result = ValidateResult(checked=run.planned, bad=bad)
    if config.shard is None:  # a shard sees only its share of each class
        result.classes_without_usable = classes_without_usable(layout.videos, {b.relpath for b in result.unusable})
    for label in result.classes_without_usable:
        log.warning("class %r has no usable training video left", label)
    result.summary = run.summary(Counter(b.reason for b in bad))
    if config.report is not None and config.shard is None:
        result.report_path = write_report(Path(config.report), result, video_root=root)
    write_summary(config.summary_json, result.summary)
    log.info("checked %d videos: %d bad", run.planned, len(bad))
    return result


def _check_outputs(config: ValidateConfig) -> None:
    """Every place validate writes, checked before any video is."""
    if config.report is not None:
        check_output_file(config.report, what="--report")
    if config.summary_json is not None:
        check_output_file(config.summary_json, what="--summary-json")
    if config.quarantine is not None:
        check_output_dir(config.quarantine, what="--quarantine")
        check_source_writable(config.video_root, what="--quarantine")
    if config.state_dir is not None:
        check_output_dir(config.state_dir, what="--state-dir")


def _stat_stamp(path: Path) -> dict[str, int]:
    """(size, mtime_ns) of a file: what says it changed since it was checked."""
    try:
        st = path.stat()
    except OSError:
        return {"size": -1, "mtime_ns": -1}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _check_failed(failure: StageFailure) -> dict[str, Any]:
    """The journal record of a check that timed out or whose worker died: that video's verdict."""
    return {"findings": [{"reason": "check_failed", "message": failure.error}], "frames": None}


@contextlib.contextmanager
def _state_dir(config: ValidateConfig) -> Iterator[Path]:
    """The journal folder: --state-dir, else VIDEO_ROOT/.videoprep, else (read-only tree) a throwaway one."""
    if config.state_dir is not None:
        yield Path(config.state_dir)
        return
    default = Path(config.video_root) / STATE_DIR
    if os.access(default if default.exists() else config.video_root, os.W_OK):
        yield default
        return
    if config.shard is not None:
        raise VideoprepError(f"{config.video_root} is read-only: a --shard run needs --state-dir on shared storage")
    log.info("%s is read-only: no journal kept (pass --state-dir to resume later runs)", config.video_root)
    with tempfile.TemporaryDirectory(prefix="videoprep-validate-") as scratch:
        yield Path(scratch) / STATE_DIR


def _missing(layout: Layout) -> list[BadVideo]:
    """A bad-video row for every annotated clip with no file on disk."""
    rows = []
    for clip in missing_clips(layout):
        csv_path = layout.annotation_files.get(clip.split)
        where = f" in {csv_path.name}" if csv_path else ""
        rows.append(_bad_video(
            f"{clip.split}/{clip.clip_id}",
            [Finding("missing", f"annotated{where} ({clip.label or 'no label'}) but no file on disk")],
        ))
    return rows


def _bad_video(relpath: str, findings: list[Finding]) -> BadVideo:
    """Order findings worst first; the first is the primary reason."""
    order = list(REASONS)
    ranked = sorted(findings, key=lambda f: order.index(f.reason))
    return BadVideo(
        relpath=relpath,
        reason=ranked[0].reason,
        finding_class=finding_class(ranked[0].reason),
        message=ranked[0].message,
        all_reasons=";".join(dict.fromkeys(f.reason for f in ranked)),
        details=" | ".join(f"{f.reason} ({finding_class(f.reason)}): {f.message}" for f in ranked),
    )


def classes_without_usable(videos: list[VideoFile], unusable: set[str]) -> list[str]:
    """Labels whose training videos (split 'train', else every split) are all unusable."""
    training = [v for v in videos if v.split == "train"] or videos
    usable: dict[str, int] = {}
    for video in training:
        if video.label is not None:
            usable[video.label] = usable.get(video.label, 0) + (video.relpath not in unusable)
    return sorted(label for label, count in usable.items() if count == 0)


def _quarantine(bad: BadVideo, *, root: Path, quarantine: Path) -> BadVideo:
    """Move a bad file under the quarantine folder (same relative path; never overwrites, never deletes)."""
    source = root / bad.relpath
    if bad.reason == "missing" or not os.path.lexists(source):
        return bad
    dest = quarantine / bad.relpath
    n = 1
    while os.path.lexists(dest):
        dest = quarantine / f"{bad.relpath}.{n}"
        n += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    move_file(source, dest)
    log.info("quarantined %s -> %s", source, dest)
    return BadVideo(**{**asdict(bad), "quarantined_to": str(dest)})


def write_report(path: Path, result: ValidateResult, *, video_root: Path) -> Path:
    """Atomically write one row per bad video: CSV or JSON, picked by the extension."""
    rows = [{**asdict(b), "relpath": printable_path(b.relpath), "quarantined_to": printable_path(b.quarantined_to),
             "relpath_raw": raw_path(b.relpath)} for b in result.bad]
    if path.suffix.lower() == ".json":
        atomic_write_json(
            path,
            {
                "video_root": str(video_root),
                "checked": result.checked,
                "bad_count": len(rows),
                "counts": result.counts,
                "class_counts": result.class_counts,
                "classes_without_usable": result.classes_without_usable,
                "bad": rows,
            },
        )
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())
    return path
