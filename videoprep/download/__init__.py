"""`videoprep download kinetics400|kinetics600|kinetics700-2020`: get a Kinetics release onto disk, resumably.

`run_download(DownloadConfig(...))` owns the whole run: it answers from the
completion record when the same download already finished and nothing changed,
else fetches what is not finished (every finished item is journaled by the stage
engine in `{out}/.videoprep-download/extract.jsonl`), writes
`{out}/annotations/{split}.csv` and `classes.txt`, and ends with a DownloadReport
(also `{out}/download_report.json`): expected rows vs clips on disk per split,
missing clips with reasons, and a dataset fingerprint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from videoprep.atomic import atomic_path, atomic_write_json, atomic_write_text
from videoprep.completion import DownloadRecord
from videoprep.download.http import DownloadFailed, RetryPolicy
from videoprep.download.mirror import (
    CVDF_BASE_URL,
    MirrorJob,
    annotations_url,
    clip_hashes,
    fetch_annotations,
    plan_mirror,
    planned_files,
    run_mirror,
    safe_extract,
    write_annotations,
)
from videoprep.download.releases import RELEASES, Release
from videoprep.download.report import (
    REPORT_NAME,
    DownloadReport,
    Failure,
    PlannedFile,
    SplitReport,
    dataset_fingerprint,
    format_bytes,
    scan_clips,
    split_report,
    summary_table,
)
from videoprep.download.selection import check_classes, parse_classes, select_clips
from videoprep.download.state import STATE_DIRNAME, DownloadState
from videoprep.download.youtube import (
    YOUTUBE_URL_TEMPLATE,
    YoutubeAuth,
    YoutubeJob,
    clip_destination,
    run_youtube,
)
from videoprep.errors import LayoutError, VideoprepError
from videoprep.ffmpeg import select_ffmpeg
from videoprep.fingerprint import content_fingerprint, records_from_clips
from videoprep.kinetics import SPLITS, Clip, class_names, find_annotation_files, read_annotations
from videoprep.layout import build_class_view
from videoprep.locations import check_output_dir, check_output_file
from videoprep.progress import ProgressFn, no_progress
from videoprep.stage import write_summary
from videoprep.urls import check_url

__all__ = [
    "CVDF_BASE_URL", "DATASETS", "REPORT_NAME", "STATE_DIRNAME", "YOUTUBE_URL_TEMPLATE", "DownloadConfig",
    "DownloadFailed", "DownloadReport", "Failure", "YoutubeAuth", "PlannedFile", "SplitReport", "dataset_fingerprint",
    "format_bytes", "parse_classes", "run_download", "safe_extract", "summary_table",
]

log = logging.getLogger(__name__)

DATASETS = tuple(RELEASES)
Source = Literal["mirror", "youtube"]
SOURCES: tuple[str, ...] = ("mirror", "youtube")


@dataclass(frozen=True)
class DownloadConfig:
    """Everything `videoprep download` needs; defaults match the CLI."""

    out_dir: Path
    dataset: str = "kinetics400"
    source: Source = "mirror"
    splits: tuple[str, ...] = SPLITS
    base_url: str | None = None  # None: the release's folder on the CVDF mirror
    jobs: int = 4
    classes: tuple[str, ...] | None = None
    limit_per_class: int | None = None
    dry_run: bool = False
    keep_archives: bool = False
    class_folders: bool = False
    url_template: str = YOUTUBE_URL_TEMPLATE
    annotations_dir: Path | None = None
    retry_failed: bool = False
    retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 60.0
    report_path: Path | None = None
    summary_json: Path | None = None  # the download stage's summary (videoprep.stage); skips the record
    auth: YoutubeAuth = YoutubeAuth()  # YouTube route: cookies for yt-dlp
    ffmpeg: str | None = None  # YouTube route: the ffmpeg that reads and cuts the clips; None: videoprep.ffmpeg's

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(dict.fromkeys(self.splits)))  # "train,train" once
        if self.dataset not in DATASETS:
            raise VideoprepError(f"dataset {self.dataset!r} is not supported; supported: {', '.join(DATASETS)}")
        if self.base_url is None:
            object.__setattr__(self, "base_url", self.release.base_url)
        if self.source not in SOURCES:
            raise VideoprepError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise VideoprepError(f"splits {list(self.splits)} must be a non-empty subset of {', '.join(SPLITS)}")
        if self.jobs < 1:
            raise VideoprepError(f"jobs ({self.jobs}) must be >= 1")
        problem = check_url(self.mirror_url)
        if problem:
            raise VideoprepError(f"base_url {problem}; give the mirror root, e.g. {self.release.base_url}")
        if "{youtube_id}" not in self.url_template:
            raise VideoprepError(f"url_template {self.url_template!r} must contain {{youtube_id}}")

    @property
    def release(self) -> Release:
        """The Kinetics release asked for (its mirror layout and class count)."""
        return RELEASES[self.dataset]

    @property
    def mirror_url(self) -> str:
        """The mirror root of the release (given, or the CVDF folder)."""
        return self.base_url or self.release.base_url

    @property
    def policy(self) -> RetryPolicy:
        """Retry and backoff settings of every request, HTTP and yt-dlp (a dry run asks once: it only looks)."""
        return RetryPolicy(retries=0 if self.dry_run else self.retries, backoff_base_s=self.backoff_base_s,
                           backoff_max_s=self.backoff_max_s, timeout_s=self.timeout_s)

    def record(self) -> DownloadRecord:
        """The completion record of this download: every option that shapes the result is its key."""
        return DownloadRecord(self.out_dir, self.splits, report=self.report_path, class_folders=self.class_folders,
                              annotations_dir=self.annotations_dir, options={
            "dataset": self.dataset, "source": self.source, "base_url": self.mirror_url,
            "classes": list(self.classes) if self.classes is not None else None,
            "limit_per_class": self.limit_per_class, "url_template": self.url_template,
            "keep_archives": self.keep_archives})


def run_download(config: DownloadConfig, *, on_progress: ProgressFn | None = None) -> DownloadReport:
    """Fetch what is missing, resume what was interrupted, and report what is on disk.

    Mirror: on_progress(bytes done, bytes total). YouTube: on_progress(clips done, clips total).
    Dry run: fetches only the small part lists / annotation CSVs and HEADs the
    parts; writes nothing. When the completion record says this very download
    finished and nothing changed, returns at once with `report.unchanged` set.
    """
    started = time.monotonic()
    out_dir = Path(config.out_dir)
    report = DownloadReport(config.dataset, config.source, str(out_dir), config.dry_run)
    if config.dry_run:
        report.plan = _dry_run_plan(config, out_dir)
        report.elapsed_s = round(time.monotonic() - started, 3)
        return report
    record = config.record()
    # --summary-json asks for the stage's counts, --retry-failed for the clips the record counts as settled.
    known = None if config.summary_json or config.retry_failed else record.current()
    if known is not None:
        earlier = _read_report(Path(known["report"]))
        if earlier is not None:
            earlier.unchanged = {**known, "record": str(record.path)}
            return earlier
    check_output_dir(out_dir, what="--out")
    for path, what in ((config.report_path, "--report"), (config.summary_json, "--summary-json")):
        if path is not None:
            check_output_file(path, what=what)
    state = DownloadState(out_dir)
    with state.locked():
        state.remove_stale_temp_files([out_dir / s for s in config.splits] + [out_dir / "by_class"])
        if config.source == "youtube":  # the pinned (or chosen) ffmpeg reads and cuts the clips: recorded
            binary = select_ffmpeg(config.ffmpeg)
            report.ffmpeg = {"path": binary.path, "version": binary.version}
            config = dataclasses.replace(config, ffmpeg=binary.path)
        selected, outcome, default = _run_route(config, out_dir, state, on_progress or no_progress)
        _finish_report(report, config, state=state, selected=selected, outcome=outcome, default=default)
        report.elapsed_s = round(time.monotonic() - started, 3)
        target = config.report_path or out_dir / REPORT_NAME
        report.report_path = str(target)
        atomic_write_json(target, report.as_dict())
        write_summary(config.summary_json, outcome.summary)
        if not report.failures:
            record.write(on_disk=sum(s.on_disk for s in report.splits.values()),
                         expected=sum(s.expected for s in report.splits.values()),
                         fingerprint=report.fingerprint.get("content_sha256") or report.fingerprint.get("sha256", ""),
                         report=report.report_path)
    return report


def _run_route(config: DownloadConfig, out_dir: Path, state: DownloadState,
               progress: ProgressFn) -> tuple[dict[str, list[Clip]], Any, dict[str, str]]:
    """Annotations, then the chosen route: (clips selected per split, the route's outcome, default reasons)."""
    if config.source == "youtube":
        _write_local_or_remote_annotations(config, out_dir)
        selected = _selected_clips(config, out_dir)
        outcome = run_youtube(YoutubeJob(
            clips=[c for clips in selected.values() for c in clips], out_dir=out_dir, url_template=config.url_template,
            policy=config.policy, jobs=config.jobs, retry_failed=config.retry_failed, auth=config.auth,
            ffmpeg=config.ffmpeg),
            state=state, on_progress=progress)
        return selected, outcome, dict.fromkeys(config.splits, "not downloaded yet")
    plan = plan_mirror(base_url=config.mirror_url, splits=config.splits, policy=config.policy, jobs=config.jobs,
                       release=config.release)
    write_annotations(plan=plan, out_dir=out_dir, policy=config.policy)
    selected = _selected_clips(config, out_dir)
    filtering = config.classes is not None or config.limit_per_class is not None
    expected = {s: [c.clip_id for c in clips] for s, clips in selected.items()}
    outcome = run_mirror(MirrorJob(
        plan=plan, out_dir=out_dir, keep_by_split={s: (set(ids) if filtering else None) for s, ids in expected.items()},
        expected_by_split={s: set(v) for s, v in expected.items()}, policy=config.policy, jobs=config.jobs,
        keep_archives=config.keep_archives), state=state, on_progress=progress)
    default = {s: (f"not extracted: {outcome.unfinished_parts[s]} part(s) of {s} failed or unfinished"
                   if outcome.unfinished_parts.get(s) else "not in the mirror's archives") for s in config.splits}
    if config.class_folders:
        for split, clips in selected.items():
            linked = build_class_view(out_dir=out_dir, split=split, labels={c.clip_id: c.label for c in clips})
            outcome.notes.append(f"class-folder view: {linked} {split} links under {out_dir / 'by_class'}")
    return selected, outcome, default


def _finish_report(report: DownloadReport, config: DownloadConfig, *, state: DownloadState,
                   selected: dict[str, list[Clip]], outcome: Any, default: dict[str, str]) -> None:
    """Fill the report from the route's outcome and a scan of the split folders."""
    report.failures = outcome.failures
    report.notes = outcome.notes + _class_list(config, selected)
    report.bytes_downloaded = outcome.bytes_downloaded
    on_disk_ids: dict[str, list[str]] = {}
    for split, clips in selected.items():
        found = scan_clips(Path(config.out_dir) / split)
        on_disk_ids[split] = [cid for cid, p in found.items() if p.stat().st_size > 0]
        report.splits[split] = split_report(split, expected_ids=[c.clip_id for c in clips], on_disk=found,
                                            reasons=outcome.reasons.get(split, {}), default_reason=default[split])
    report.fingerprint = dataset_fingerprint(on_disk_ids)
    if config.source == "youtube":
        report.clips = outcome.clips
        return
    report.clips = _clip_records(state, on_disk_ids)
    if len(report.clips) == report.fingerprint["count"]:  # every clip's bytes hashed: the content too
        report.fingerprint["content_sha256"] = content_fingerprint(records_from_clips(report.clips))


def _class_list(config: DownloadConfig, selected: dict[str, list[Clip]]) -> list[str]:
    """Write `{out}/annotations/classes.txt` (the labelled splits' class names, sorted); a note when incomplete."""
    names = class_names([c for clips in selected.values() for c in clips])
    if not names:
        return []
    atomic_write_text(Path(config.out_dir) / "annotations" / "classes.txt", "".join(n + "\n" for n in names))
    wanted = config.release.num_classes
    if config.classes is None and len(names) != wanted:
        return [f"the annotations name {len(names)} classes; {config.dataset} has {wanted}"]
    return []


def _read_report(path: Path) -> DownloadReport | None:
    """The report an earlier run wrote, None when it is gone or not one (then the run checks everything)."""
    try:
        return DownloadReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.info("%s: earlier report unreadable (%s); checking again", path, exc)
        return None


def _clip_records(state: DownloadState, on_disk: dict[str, list[str]]) -> list[dict[str, object]]:
    """{"id", "split", "size", "sha256"} of every clip on disk whose bytes were hashed as they were extracted."""
    hashes = clip_hashes(state)
    records = []
    for split in sorted(on_disk):
        known = hashes.get(split, {})
        for clip in sorted(on_disk[split]):
            if clip in known:
                size, sha = known[clip]
                records.append({"id": clip, "split": split, "size": size, "sha256": sha})
    return records


def _selected_clips(config: DownloadConfig, out_dir: Path) -> dict[str, list[Clip]]:
    """The annotated clips each split should end up with, after --classes / --limit-per-class."""
    per_split = {}
    for split in config.splits:
        clips = [dataclasses.replace(c, split=split) for c in read_annotations(out_dir / "annotations" / f"{split}.csv")]
        per_split[split] = clips
    if config.classes is not None:
        check_classes(config.classes, known=class_names([c for v in per_split.values() for c in v]))
    return {s: select_clips(v, classes=config.classes, limit_per_class=config.limit_per_class)
            for s, v in per_split.items()}


def _write_local_or_remote_annotations(config: DownloadConfig, out_dir: Path) -> None:
    """Annotation CSVs for the YouTube route: from --annotations if given, else from the mirror."""
    for split in config.splits:
        target = out_dir / "annotations" / f"{split}.csv"
        if config.annotations_dir is not None:
            found = find_annotation_files(config.annotations_dir)
            if split not in found:
                raise LayoutError(config.annotations_dir, f"no annotation CSV for split {split!r}")
            if found[split].resolve() != target.resolve():
                with atomic_path(target) as tmp:
                    shutil.copyfile(found[split], tmp)
            continue
        body = fetch_annotations(annotations_url(config.mirror_url, split), split, policy=config.policy)
        atomic_write_text(target, body.decode("utf-8"))


def _dry_run_plan(config: DownloadConfig, out_dir: Path) -> list[PlannedFile]:
    """What a real run would fetch and where it would go; nothing is written."""
    if config.source == "mirror":
        plan = plan_mirror(base_url=config.mirror_url, splits=config.splits, policy=config.policy, jobs=config.jobs,
                           release=config.release)
        return planned_files(plan, out_dir=out_dir)
    files: list[PlannedFile] = []
    for split in config.splits:
        if config.annotations_dir is not None:
            source = find_annotation_files(config.annotations_dir).get(split)
            if source is None:
                raise LayoutError(config.annotations_dir, f"no annotation CSV for split {split!r}")
            clips = read_annotations(source)
        else:
            body = fetch_annotations(annotations_url(config.mirror_url, split), split, policy=config.policy)
            with tempfile.TemporaryDirectory() as scratch:  # outside out_dir: a dry run writes nothing there
                tmp = Path(scratch) / f"{split}.csv"
                tmp.write_bytes(body)
                clips = read_annotations(tmp)
        clips = [dataclasses.replace(c, split=split) for c in clips]
        if config.classes is not None:
            check_classes(config.classes, known=class_names(clips) or list(config.classes))
        chosen = select_clips(clips, classes=config.classes, limit_per_class=config.limit_per_class)
        files += [PlannedFile(config.url_template.format(youtube_id=c.youtube_id), None,
                              str(clip_destination(out_dir, c)), split) for c in chosen]
    return files
