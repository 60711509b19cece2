"""A tree of per-video outputs (transcode, frames): safe output names, engine items, mapping and report.

Both stages find SRC's videos, give each a safe output name under DST, run
their per-video function on the stage engine (`videoprep.stage`), then write
DST/mapping.csv (original -> output) and a JSON report of the run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from videoprep.atomic import atomic_path, atomic_write_json, atomic_write_text
from videoprep.errors import PathError, VideoprepError
from videoprep.ffmpeg import FFmpegBinary, select_ffmpeg
from videoprep.layout import (
    ANNOTATIONS_DIRNAME,
    Layout,
    discover,
    printable_path,
    raw_path,
    require_videos,
    safe_relpath,
)
from videoprep.locations import check_output_dir, check_output_file
from videoprep.probe import VideoInfo, probe_video
from videoprep.progress import ProgressFn
from videoprep.stage import STATE_DIR, Item, StageRun, StageSpec, load_records, run_stage
from videoprep.validate.containers import require_intact

log = logging.getLogger(__name__)

MAPPING_FILE = "mapping.csv"
DEFAULT_TIMEOUT_S = 600.0  # per ffmpeg run
PROBE_MARGIN_S = 120.0  # the pool's per-item limit: ffmpeg's own limit plus time to probe twice


@dataclass(frozen=True)
class PlannedVideo:
    """A source video (relpath and the stat fields that say it changed), its output under DST, split, class."""

    relpath: str
    size_bytes: int
    mtime_ns: int
    output: str
    split: str
    label: str | None


@dataclass(frozen=True)
class StageResult:
    """Counts and paths of a transcode or frames run; `failures` name every video that was not produced."""

    total: int
    done: int  # produced by this run
    skipped: int  # already up to date
    failures: list[Any]
    mapping_path: Path | None  # None in a --shard run (the plain run after the shards writes it)
    report_path: Path | None
    seconds: float
    summary: dict[str, Any]
    ffmpeg_version: str | None = None  # the ffmpeg this run used

    @property
    def ok(self) -> bool:
        return not self.failures


# --- pure rules -----------------------------------------------------------------------


def stable_digest(obj: Any) -> str:
    """Short hash of a JSON-able value, stable across runs and machines."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def scaled_size(width: int, height: int, *, short_side: int) -> tuple[int, int]:
    """Output (width, height): short side = `short_side`, the other side keeps the aspect, both even."""
    if width < 1 or height < 1:
        raise VideoprepError(f"frame size {width}x{height} must be positive")
    if width <= height:
        return short_side, max(2, 2 * round(height * short_side / width / 2))
    return max(2, 2 * round(width * short_side / height / 2)), short_side


def plan_outputs(relpaths: Iterable[str], *, suffix: str) -> dict[str, str]:
    """Source relpath -> safe output relpath (`layout.safe_relpath`, extension replaced by `suffix`).

    Two sources that would land on one name (`a b.mp4` and `a_b.avi`) both get
    a short hash of their original path, so the plan does not depend on order.
    """
    wanted: dict[str, list[str]] = {}
    for rel in relpaths:
        wanted.setdefault(_with_suffix(safe_relpath(rel), suffix), []).append(rel)
    plan: dict[str, str] = {}
    for name, originals in wanted.items():
        for rel in originals:
            if len(originals) == 1:
                plan[rel] = name
            else:
                p = PurePosixPath(name)
                plan[rel] = str(p.with_name(f"{p.name[: len(p.name) - len(suffix)]}-{stable_digest(rel)[:8]}{suffix}"))
    return plan


def ffmpeg_digest(settings_digest: str, version: str | None) -> str:
    """The settings hash with the ffmpeg version in it; None (outputs from before it was recorded): the settings' own."""
    return settings_digest if version is None else stable_digest({"settings": settings_digest, "ffmpeg": version})


def other_ffmpeg_outputs(
    entries: Mapping[str, Mapping[str, Any]], stamps: Mapping[str, Mapping[str, Any]], *, settings_digest: str,
    version: str,
) -> dict[str, str | None]:
    """key -> ffmpeg version (None: not recorded) of each journaled output made with these settings by another ffmpeg.

    `stamps` are this run's (with this ffmpeg's digest); an entry counts when
    its stamp equals that stamp with the digest of the ffmpeg that made it.
    """
    found: dict[str, str | None] = {}
    for key, stamp in stamps.items():
        entry = entries.get(key)
        if entry is None or entry.get("ffmpeg") == version or "output_size" not in entry:
            continue
        made_by = entry.get("ffmpeg")
        if entry.get("stamp") == {**stamp, "settings": ffmpeg_digest(settings_digest, made_by)}:
            found[key] = made_by
    return found


def _with_suffix(relpath: str, suffix: str) -> str:
    """Replace the extension of a '/'-separated relpath (remove it when suffix is empty)."""
    p = PurePosixPath(relpath)
    return str(p.with_name(p.stem + suffix))


# --- planning -----------------------------------------------------------------------------


def check_roots(src: Path, dst: Path) -> tuple[Path, Path]:
    """Absolute SRC (must exist) and DST (checked before any work: a writable folder outside SRC)."""
    src = Path(src).resolve()
    if not src.is_dir():
        raise PathError(src, "source folder not found")
    return src, check_output_dir(dst, what="destination", source=src)


def source_annotations(src: Path, annotations: Path | None) -> Path | None:
    """The annotation folder that labels SRC: the one given, else `SRC/annotations` if present."""
    if annotations is not None:
        return Path(annotations).resolve()
    auto = src / ANNOTATIONS_DIRNAME
    return auto if auto.is_dir() else None


def plan_tree(src: Path, dst: Path, *, annotations: Path | None, suffix: str) -> tuple[Layout, list[PlannedVideo]]:
    """Find SRC's videos with split and label (`videoprep.layout.discover`) and name their outputs."""
    layout = discover(src, annotations=annotations, skip_dirs=[dst])
    require_videos(layout)
    names = plan_outputs([v.relpath for v in layout.videos], suffix=suffix)
    planned = []
    for video in layout.videos:
        st = (src / video.relpath).stat()
        planned.append(PlannedVideo(video.relpath, st.st_size, st.st_mtime_ns, names[video.relpath], video.split,
                                    video.label))
    return layout, planned


def pool_timeout(ffmpeg_timeout_s: float | None) -> float | None:
    """The executor's per-item limit: a backstop behind ffmpeg's own, never before it."""
    return ffmpeg_timeout_s + PROBE_MARGIN_S if ffmpeg_timeout_s else None


def probe_source(path: str) -> VideoInfo:
    """The one probe of a source (in the worker); a cut-short or damaged source is refused, never encoded short."""
    require_intact(path)
    return probe_video(path)


def output_record(item: Item, outcome: Any) -> dict[str, Any]:
    """The journal entry of a finished video: its outcome's fields and the output's size (None: a folder)."""
    fields = {k: v for k, v in asdict(outcome).items() if k != "output"}
    out = item.output
    return {**fields, "output": item.stamp["output"], "output_size": out.stat().st_size if out.is_file() else None}


def output_still_there(item: Item, entry: dict[str, Any]) -> bool:
    """Is the journaled output still on disk, unchanged?"""
    out = item.output
    if entry.get("output_size") is None:  # a folder of frames
        return out.is_dir()
    return out.is_file() and out.stat().st_size == entry["output_size"]


@dataclass(frozen=True)
class TreeRun:
    """A per-video stage run over SRC: roots, layout, each video's plan, the ffmpeg, and what the engine did."""

    src: Path
    dst: Path
    annotations: Path | None
    layout: Layout
    planned: list[PlannedVideo]
    run: StageRun
    ffmpeg: FFmpegBinary
    settings_hash: str  # the stage's settings with the ffmpeg version

    def done(self) -> list[PlannedVideo]:
        """The planned videos whose output is now there (cached or made by this run)."""
        return [p for p in self.planned if p.relpath in self.run.entries]

    def outputs_by_ffmpeg(self) -> dict[str, int]:
        """ffmpeg version -> outputs in DST it made ('unrecorded' for outputs older than the record)."""
        made = Counter(str(self.run.entries[p.relpath].get("ffmpeg") or "unrecorded") for p in self.done())
        return dict(sorted(made.items()))


def run_tree_stage(
    config: Any, spec: StageSpec, *, suffix: str, digest: str,
    task_of: Callable[[PlannedVideo, Path, Path, str], Any], on_progress: ProgressFn,
) -> TreeRun:
    """Check the outputs and the ffmpeg, plan SRC's videos and run `spec` over them on the engine.

    `config` has src, dst, annotations, ffmpeg, reencode_other_ffmpeg and the
    engine's options (StageOptions); `digest` is the settings' own hash;
    `task_of(planned, src, dst, ffmpeg_path)` makes a video's task.
    """
    src, dst = check_roots(config.src, config.dst)
    if config.summary_json is not None:
        check_output_file(config.summary_json, what="--summary-json")
    binary = select_ffmpeg(config.ffmpeg)
    annotations = source_annotations(src, config.annotations)
    layout, planned = plan_tree(src, dst, annotations=annotations, suffix=suffix)
    settings_hash = ffmpeg_digest(digest, binary.version)
    stamps = {p.relpath: {"size": p.size_bytes, "mtime_ns": p.mtime_ns, "settings": settings_hash, "output": p.output}
              for p in planned}
    _keep_other_ffmpeg_outputs(config, spec.name, dst, stamps, digest=digest, version=binary.version)
    items = [Item(key=p.relpath, stamp=stamps[p.relpath], task=task_of(p, src, dst, binary.path),
                  output=dst / p.output) for p in planned]

    def record(item: Item, outcome: Any) -> dict[str, Any]:
        return {**output_record(item, outcome), "ffmpeg": binary.version}

    spec = replace(spec, record=record, still_valid=output_still_there)
    run = run_stage(spec, items, state_dir=dst / STATE_DIR, options=config, on_progress=on_progress, sweep_root=dst)
    return TreeRun(src, dst, annotations, layout, planned, run, binary, settings_hash)


def _keep_other_ffmpeg_outputs(
    config: Any, stage: str, dst: Path, stamps: dict[str, dict[str, Any]], *, digest: str, version: str
) -> None:
    """Say how many outputs another ffmpeg made; keep them (their stamps) unless config.reencode_other_ffmpeg."""
    entries, _ = load_records(dst / STATE_DIR, stage)
    older = other_ffmpeg_outputs(entries, stamps, settings_digest=digest, version=version)
    if not older:
        return
    counts = Counter(v or "an unrecorded version" for v in older.values())
    made = ", ".join(f"{n} by ffmpeg {v}" for v, n in sorted(counts.items()))
    if config.reencode_other_ffmpeg:
        log.warning("%s: %d output(s) in %s were made by another ffmpeg (%s): making them again with ffmpeg %s",
                    stage, len(older), dst, made, version)
        return
    log.warning("%s: %d output(s) in %s were made by another ffmpeg (%s), not this run's %s: kept as they are; "
                "--reencode-other-ffmpeg makes them again with this one", stage, len(older), dst, made, version)
    for key, made_by in older.items():
        stamps[key] = {**stamps[key], "settings": ffmpeg_digest(digest, made_by)}


# --- what the stages write ------------------------------------------------------------------


def copy_annotations(files: Iterable[Path], *, dst: Path) -> list[Path]:
    """Copy SRC's annotation CSVs to DST/annotations, so DST is indexed or validated on its own."""
    copied = []
    for source in sorted(set(files)):
        target = dst / ANNOTATIONS_DIRNAME / source.name
        if not (target.exists() and target.samefile(source)):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        copied.append(target)
    return copied


def write_mapping(dst: Path, planned: list[PlannedVideo]) -> Path:
    """DST/mapping.csv: original relpath -> output relpath, split, class; `source_raw` for non-UTF-8 names.

    `source` is always valid UTF-8 (undecodable bytes shown as U+FFFD);
    `source_raw` is empty unless the name is not UTF-8, then it holds the
    original bytes percent-encoded (lossless: urllib.parse.unquote_to_bytes).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["source", "output", "split", "label", "source_raw"])
    for p in sorted(planned, key=lambda p: p.output):
        writer.writerow([printable_path(p.relpath), p.output, p.split, printable_path(p.label or ""),
                         raw_path(p.relpath)])
    path = dst / MAPPING_FILE
    atomic_write_text(path, buf.getvalue())
    return path


def read_mapping(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a mapping.csv as string dicts (source, output, split, label, source_raw)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_report(path: Path, *, settings: dict[str, Any], tree: TreeRun) -> Path:
    """A JSON report of the run: settings, ffmpeg, every failure (ffmpeg's error included) and the counts."""
    run = tree.run
    atomic_write_json(path, {
        "settings": settings, "settings_hash": tree.settings_hash,
        "ffmpeg": {"path": tree.ffmpeg.path, "version": tree.ffmpeg.version},
        "outputs_by_ffmpeg": tree.outputs_by_ffmpeg(), "total": run.planned, "done": run.done, "skipped": run.cached,
        "failed": len(run.failures), "summary": run.summary(),
        "failures": [{**asdict(f), "source": printable_path(f.source), "source_raw": raw_path(f.source)}
                     for f in run.failures],
    })
    return path


def stage_result(run: StageRun, *, mapping: Path | None, report: Path | None) -> dict[str, Any]:
    """The StageResult fields shared by transcode and frames."""
    return {"total": run.planned, "done": run.done, "skipped": run.cached, "failures": run.failures,
            "mapping_path": mapping, "report_path": report, "seconds": run.wall_s, "summary": run.summary()}
