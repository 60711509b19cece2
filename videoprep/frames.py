"""`videoprep frames`: JPEG frame folders (`img_{:05d}.jpg`, 0-based) for BAT's `--read_mode img`.

`--one-based` numbers them from img_00001.jpg instead, the default of MMAction2's rawframe dataset.

Each video's frames are written into a hidden temporary folder, counted and
checked, and the folder is renamed into place only then, so a frame folder that
exists is complete. Resume, journal, failures and parallelism are those of
`videoprep.transcode`. The rawframe lists `dir frame_count label` are written
from the frames on disk.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg

from videoprep import videotree
from videoprep.atomic import atomic_dir
from videoprep.errors import PathError, VideoprepError
from videoprep.ffmpeg import OUTPUT_STANDIN, SOURCE_STANDIN, run_ffmpeg, with_paths
from videoprep.layout import Layout
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import ListRecord, write_class_map, write_list
from videoprep.stage import StageOptions, StageRun, StageSpec, write_summary
from videoprep.videotree import DEFAULT_TIMEOUT_S, PlannedVideo, StageResult

log = logging.getLogger(__name__)

FRAME_TEMPLATE = "img_{:05d}.jpg"  # what BAT's img mode opens; index 0 is the first frame
_FFMPEG_PATTERN = "img_%05d.jpg"
_FRAME_RE = re.compile(r"^img_(\d{5,})\.jpg$")


@dataclass(frozen=True)
class FramesSettings:
    """What decides the frames' bytes; its digest keys the completion journal."""

    short_side: int = 256
    quality: int = 2  # ffmpeg -q:v for JPEG: 2 (best) .. 31
    threads: int = 1
    first_number: int = 0  # 0: img_00000.jpg first (BAT); 1: img_00001.jpg first (MMAction2's rawframes)

    def __post_init__(self) -> None:
        if self.short_side < 2 or self.short_side % 2:
            raise VideoprepError(f"short_side ({self.short_side}) must be an even number >= 2")
        if not 2 <= self.quality <= 31:
            raise VideoprepError(f"quality ({self.quality}) must be in 2..31 (lower is better)")
        if self.threads < 1:
            raise VideoprepError(f"threads ({self.threads}) must be >= 1: a fixed setting, never the core count")
        if self.first_number not in (0, 1):
            raise VideoprepError(f"first_number ({self.first_number}) must be 0 (BAT) or 1 (MMAction2)")

    def digest(self) -> str:
        """Short stable hash of the settings: a change re-extracts everything.

        first_number 0 is left out, so frames written before the option existed stay done.
        """
        fields = asdict(self)
        if not self.first_number:
            del fields["first_number"]
        return videotree.stable_digest({"stage": "frames", **fields})


@dataclass(frozen=True)
class FramesConfig(StageOptions):
    """One `videoprep frames SRC DST` run (the engine's options: `StageOptions`)."""

    src: Path
    dst: Path
    settings: FramesSettings = field(default_factory=FramesSettings)
    timeout_s: float | None = DEFAULT_TIMEOUT_S  # per ffmpeg run; None: no limit
    annotations: Path | None = None
    lists: bool = True  # write {DST}/{split}.txt and {DST}/classes.txt
    ffmpeg: str | None = None  # the ffmpeg program; None: the pinned one (videoprep.ffmpeg.ffmpeg_exe)
    reencode_other_ffmpeg: bool = False  # extract again the folders another ffmpeg made (else: kept, counted)


@dataclass(frozen=True)
class FramesResult(StageResult):
    """A frames run, with the rawframe lists written."""

    lists: dict[str, Path] = field(default_factory=dict)  # split -> {DST}/{split}.txt

    @property
    def extracted(self) -> int:
        """Videos cut into frames by this run."""
        return self.done


@dataclass(frozen=True)
class FramesTask:
    """One video to cut into JPEG frames."""

    source: str
    output: str  # the final folder
    settings: FramesSettings
    timeout_s: float | None
    ffmpeg: str | None = None  # the program to run; None: videoprep.ffmpeg.ffmpeg_exe()


@dataclass(frozen=True)
class FramesOutcome:
    """What a finished frame folder holds."""

    output: str
    frames: int
    source_frames: int
    width: int
    height: int
    seconds: float


def frames_args(source: str, folder: str, *, settings: FramesSettings, width: int, height: int) -> list[str]:
    """ffmpeg arguments writing every decoded frame (no rate change) as folder/img_00000.jpg, ..."""
    stream = ffmpeg.input(SOURCE_STANDIN, threads=settings.threads)
    video = stream.video.filter("scale", width, height)
    out = ffmpeg.output(
        video, OUTPUT_STANDIN,
        **{"f": "image2", "start_number": settings.first_number, "q:v": settings.quality, "fps_mode": "passthrough",
           "pix_fmt": "yuvj420p", "threads": settings.threads, "an": None},
    )
    compiled = ffmpeg.compile(out, cmd="ffmpeg")
    args = ["-y", "-filter_complex_threads", str(max(settings.threads, 1)), *compiled[1:]]
    return with_paths(args, source=source, output=os.path.join(folder, _FFMPEG_PATTERN))


def count_frames(folder: str | os.PathLike[str], *, first: int = 0) -> int:
    """Number of frame files; raises when they are not exactly img_{first} .. img_{first + n - 1}."""
    indices = sorted(int(m.group(1)) for name in os.listdir(folder) if (m := _FRAME_RE.match(name)))
    expected = list(range(first, first + len(indices)))
    if indices != expected:
        gaps = sorted(set(expected) - set(indices))[:5]
        raise PathError(folder, f"frame files are not numbered {first}..{first + len(indices) - 1} "
                        f"(missing e.g. {gaps})")
    return len(indices)


def frames_one(task: FramesTask) -> FramesOutcome:
    """Extract one video's frames into a temporary folder, check them, rename the folder into place."""
    started = time.perf_counter()
    info = videotree.probe_source(task.source)
    width, height = videotree.scaled_size(info.width, info.height, short_side=task.settings.short_side)
    with atomic_dir(task.output) as tmp:
        run_ffmpeg(frames_args(task.source, str(tmp), settings=task.settings, width=width, height=height),
                   target=task.source, timeout_s=task.timeout_s, exe=task.ffmpeg)
        count = count_frames(tmp, first=task.settings.first_number)
        if count == 0:
            raise PathError(task.source, "ffmpeg wrote no frames")
        if count != info.frames:  # the list is written from the files, so it stays consistent
            log.warning("%s: %d frames written, %d packets in the stream", task.source, count, info.frames)
    return FramesOutcome(
        output=task.output, frames=count, source_frames=info.frames, width=width, height=height,
        seconds=time.perf_counter() - started,
    )


def run_frames(config: FramesConfig, *, on_progress: ProgressFn = no_progress) -> FramesResult:
    """Extract frames of every video under config.src into folders under config.dst, then the lists."""
    spec = StageSpec("frames", frames_one, videotree.pool_timeout(config.timeout_s))
    tree = videotree.run_tree_stage(
        config, spec, suffix="", digest=config.settings.digest(), on_progress=on_progress,
        task_of=lambda p, src, dst, exe: FramesTask(str(src / p.relpath), str(dst / p.output), config.settings,
                                                    config.timeout_s, exe),
    )
    run, dst = tree.run, tree.dst
    mapping_path = report_path = None
    lists: dict[str, Path] = {}
    if config.shard is None:  # the plain run after all shards writes what covers the whole tree
        mapping_path = videotree.write_mapping(dst, tree.done())
        report_path = videotree.write_report(dst / "frames_report.json", settings=asdict(config.settings), tree=tree)
        lists = write_rawframe_lists(dst, tree.layout, tree.planned, run) if config.lists else {}
    write_summary(config.summary_json, run.summary())
    return FramesResult(**videotree.stage_result(run, mapping=mapping_path, report=report_path), lists=lists,
                        ffmpeg_version=tree.ffmpeg.version)


def rawframe_records(
    layout: Layout, planned: list[PlannedVideo], entries: dict[str, dict[str, Any]]
) -> dict[str, list[ListRecord]]:
    """Split -> `dir frame_count label` records of the labelled videos whose frames exist (pure)."""
    index = layout.class_index()
    records: dict[str, list[ListRecord]] = {split: [] for split in layout.splits}
    for p in sorted(planned, key=lambda p: p.output):
        entry = entries.get(p.relpath)
        if entry is None or p.label is None:
            continue
        records[p.split].append(ListRecord(path=p.output, frame_num=int(entry["frames"]), label=index[p.label]))
    return records


def write_rawframe_lists(
    dst: Path, layout: Layout, planned: list[PlannedVideo], run: StageRun
) -> dict[str, Path]:
    """{DST}/{split}.txt (paths relative to DST: BAT's --root_path) and {DST}/classes.txt."""
    lists = {}
    for split, records in rawframe_records(layout, planned, run.entries).items():
        lists[split] = dst / f"{split}.txt"
        write_list(lists[split], records)
        unlabelled = sum(1 for p in planned if p.split == split and p.label is None)
        if unlabelled:
            log.warning("split %s: %d videos have no label and are not listed (pass --annotations?)",
                        split, unlabelled)
    write_class_map(dst / "classes.txt", layout.classes)
    return lists
