"""Re-encode a video tree for fast loading: short side, constant rate, exact GOP; atomic and resumable.

Every output is written under a temporary name, probed, checked against the
settings and only then renamed; a completion journal in DST (keyed by source
path, size, mtime and a hash of the settings) lets an interrupted run resume
and a repeated run skip what is up to date. A video that fails is recorded
with ffmpeg's message in DST/transcode_report.json and costs only itself.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import ffmpeg

from videoprep import hwaccel
from videoprep.atomic import PART_SUFFIX, Journal, atomic_path, atomic_write_json, atomic_write_text
from videoprep.errors import PathError, VideoprepError
from videoprep.executors import ExecutorName, run_tasks
from videoprep.ffmpeg import run_ffmpeg
from videoprep.index import IndexConfig, IndexResult, run_index
from videoprep.layout import ANNOTATIONS_DIRNAME, Layout, discover, safe_relpath
from videoprep.probe import VideoInfo, probe_video
from videoprep.progress import ProgressFn, no_progress

log = logging.getLogger(__name__)

Codec = Literal["h264", "mjpeg", "vp9"]

STATE_DIR = ".videoprep"  # journals and the lock live here, inside DST, hidden from indexing
MAPPING_FILE = "mapping.csv"
LISTS_DIRNAME = "lists"  # run_index skips its out_dir when walking, so it cannot be DST itself
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class CodecSpec:
    """How one output codec is encoded, stored and recognised when probed."""

    encoder: str
    pix_fmt: str
    suffix: str
    muxer: str
    default_quality: int  # crf for h264/vp9, -q:v for mjpeg
    exact_gop: bool  # keyframes exactly every `gop` frames (False: every frame is a keyframe)


# mjpeg goes in .mp4: PyAV and DALI's CPU video reader both read it there (checked with DALI 2.4).
CODECS: dict[str, CodecSpec] = {
    "h264": CodecSpec("libx264", "yuv420p", ".mp4", "mp4", 23, exact_gop=True),
    "mjpeg": CodecSpec("mjpeg", "yuvj420p", ".mp4", "mp4", 3, exact_gop=False),
    "vp9": CodecSpec("libvpx-vp9", "yuv420p", ".webm", "webm", 32, exact_gop=True),
}
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)
# fastdecode (no CABAC, no deblocking): 2.7x the PyAV decode speed for 10% more bytes, see README
X264_TUNES = ("fastdecode", "film", "animation", "grain", "stillimage")
# The tune each codec gets unless told otherwise. fastdecode (no CABAC, no deblocking)
# won 1.61x clips/s with the pyav reader for 1.10x the bytes at the same PSNR on GOP 16
# (benchmarks/bench_loaders.py; README "Benchmark the loaders"), past the 1.3x / +30% rule.
DEFAULT_TUNES: dict[str, str] = {"h264": "fastdecode"}


class OutputCheckError(PathError):
    """An encoded output that does not match the settings it was encoded with."""


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides an output's bytes; its digest keys the completion journal."""

    codec: Codec = "h264"
    short_side: int = 256
    fps: float | None = None  # None: keep the source's (average) rate, made constant
    gop: int = 16
    crf: int | None = None  # h264/vp9; None: the codec's default
    preset: str = "veryfast"  # x264 preset (h264 only); 1.7x medium's speed, see benchmarks/bench_transcode.py
    quality: int | None = None  # mjpeg -q:v 2 (best) .. 31; None: the codec's default
    keep_audio: bool = False
    threads: int = 1  # ffmpeg threads per video; parallelism comes from running videos side by side
    # x264 --tune (h264 only). "default" picks the codec's default (DEFAULT_TUNES: fastdecode for
    # h264, which CPU loaders decode 1.6x faster for 1.1x the bytes); None: no tune.
    tune: str | None = "default"
    hwaccel: str | None = None  # "cuda": decode with NVDEC (videoprep.hwaccel); same frames, same checks
    encoder: str = "x264"  # h264: "x264" (libx264, CPU) or "nvenc" (h264_nvenc, GPU)

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise VideoprepError(f"codec {self.codec!r} is not one of: {', '.join(CODECS)}")
        if self.tune == "default":
            object.__setattr__(self, "tune", DEFAULT_TUNES.get(self.codec))
        if self.short_side < 2 or self.short_side % 2:
            raise VideoprepError(f"short_side ({self.short_side}) must be an even number >= 2")
        if self.fps is not None and not self.fps > 0:
            raise VideoprepError(f"fps ({self.fps}) must be > 0")
        if self.gop < 1:
            raise VideoprepError(f"gop ({self.gop}) must be >= 1")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise VideoprepError(f"crf ({self.crf}) must be in 0..51 (h264) or 0..63 (vp9)")
        if self.quality is not None and not 2 <= self.quality <= 31:
            raise VideoprepError(f"quality ({self.quality}) must be in 2..31 (lower is better)")
        if self.preset not in X264_PRESETS:
            raise VideoprepError(f"preset {self.preset!r} is not one of: {', '.join(X264_PRESETS)}")
        if self.threads < 0:
            raise VideoprepError(f"threads ({self.threads}) must be >= 0 (0: ffmpeg decides)")
        if self.tune is not None and self.tune not in X264_TUNES:
            raise VideoprepError(f"tune {self.tune!r} is not one of: {', '.join(X264_TUNES)}")
        if self.tune is not None and self.codec != "h264":
            raise VideoprepError(f"tune ({self.tune}) is an x264 option; codec {self.codec} has none")
        hwaccel.check_gpu_settings(codec=self.codec, hwaccel=self.hwaccel, encoder=self.encoder, tune=self.tune)

    @property
    def spec(self) -> CodecSpec:
        return CODECS[self.codec]

    def digest(self) -> str:
        """Short stable hash of the settings: a change re-encodes everything."""
        fields = asdict(self)
        if fields["tune"] is None:  # added later: outputs made before it keep their digest
            del fields["tune"]
        del fields["hwaccel"]  # NVDEC decodes the same frames (H.264 decoding is exact): outputs stay valid
        if fields["encoder"] == "x264":
            del fields["encoder"]
        return stable_digest(fields)


@dataclass(frozen=True)
class TranscodeConfig:
    """One `videoprep transcode SRC DST` run."""

    src: Path
    dst: Path
    settings: EncodeSettings = field(default_factory=EncodeSettings)
    jobs: int | None = None  # parallel videos; None: every core
    executor: ExecutorName = "local"
    address: str | None = None  # an existing Ray cluster
    timeout_s: float | None = DEFAULT_TIMEOUT_S  # per ffmpeg run; None: no limit
    index: bool = True  # write the list files of DST afterwards (videoprep.index.run_index)
    annotations: Path | None = None  # annotation CSVs, for the index of a flat (CVDF) layout
    index_dir: Path | None = None  # where the lists go; None: DST/lists (paths in them relative to DST)


@dataclass(frozen=True)
class Failure:
    """A video that could not be processed, and why (ffmpeg's own message when it was ffmpeg)."""

    source: str
    error: str


@dataclass(frozen=True)
class StageResult:
    """Counts and paths of a transcode or frames run; `failures` name every video that was not produced."""

    total: int
    done: int  # produced by this run
    skipped: int  # already up to date
    failures: list[Failure]
    mapping_path: Path
    report_path: Path
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class TranscodeResult(StageResult):
    """A transcode run, with the lists of DST."""

    index: IndexResult | None = None  # the lists of DST, unless indexing was turned off

    @property
    def transcoded(self) -> int:
        """Videos encoded by this run."""
        return self.done


@dataclass(frozen=True)
class SourceVideo:
    """A video found under SRC: its relative path and the stat fields that say it changed."""

    relpath: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class TranscodeTask:
    """One video to encode: what a worker (local or Ray) needs, nothing more."""

    source: str
    output: str
    settings: EncodeSettings
    timeout_s: float | None


@dataclass(frozen=True)
class TranscodeOutcome:
    """What a finished output holds, from probing it."""

    output: str
    source_frames: int
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    seconds: float


# --- pure rules -----------------------------------------------------------------


def scaled_size(width: int, height: int, *, short_side: int) -> tuple[int, int]:
    """Output (width, height): short side = `short_side`, the other side keeps the aspect, both even."""
    if width < 1 or height < 1:
        raise VideoprepError(f"frame size {width}x{height} must be positive")
    if width <= height:
        return short_side, max(2, 2 * round(height * short_side / width / 2))
    return max(2, 2 * round(width * short_side / height / 2)), short_side


def output_rate(settings_fps: float | None, source_fps: float) -> Fraction:
    """The constant output rate as a fraction (29.97003 -> 30000/1001)."""
    fps = settings_fps if settings_fps is not None else source_fps
    if not fps or fps <= 0:
        raise VideoprepError(f"frame rate ({fps}) must be > 0; pass --fps for a stream without one")
    return Fraction(fps).limit_denominator(1001)


def transcode_args(
    source: str, output: str, *, settings: EncodeSettings, rate: Fraction, width: int, height: int
) -> list[str]:
    """The ffmpeg argument list (without the program name) for one video; no shell involved."""
    spec = settings.spec
    stream = ffmpeg.input(source, threads=settings.threads, **hwaccel.input_options(settings.hwaccel))
    video = stream.video.filter("fps", fps=str(rate)).filter("scale", width, height)
    opts: dict[str, Any] = {
        "c:v": spec.encoder, "pix_fmt": spec.pix_fmt, "fps_mode": "cfr",
        "threads": settings.threads, "f": spec.muxer, "map_metadata": -1,
    }
    if settings.encoder == "nvenc":
        quality = settings.crf if settings.crf is not None else spec.default_quality
        opts.update(hwaccel.nvenc_options(gop=settings.gop, quality=quality, tune=settings.tune))
    elif settings.codec == "h264":
        opts.update({
            "preset": settings.preset,
            **({"tune": settings.tune} if settings.tune else {}),
            "crf": settings.crf if settings.crf is not None else spec.default_quality,
            "g": settings.gop,
            # min-keyint = keyint and no scene cuts: keyframes exactly every `gop` frames
            "x264-params": f"keyint={settings.gop}:min-keyint={settings.gop}:scenecut=0",
        })
    elif settings.codec == "vp9":
        opts.update({
            "crf": settings.crf if settings.crf is not None else spec.default_quality, "b:v": 0,
            "g": settings.gop, "keyint_min": settings.gop,
            # realtime at cpu-used 6: 3.6x the speed of `good`/5 for 12% more bytes (720p -> 256p,
            # measured with benchmarks/bench_transcode.py's sources; README has the table)
            "deadline": "realtime", "cpu-used": 6, "row-mt": 1,
        })
    else:  # mjpeg: every frame is a JPEG, so every frame is a keyframe
        opts["q:v"] = settings.quality if settings.quality is not None else spec.default_quality
    if spec.muxer == "mp4":
        opts["movflags"] = "+faststart"
    streams = [video]
    if settings.keep_audio:
        streams.append(stream["a?"])
        opts.update({"c:a": "libopus" if spec.muxer == "webm" else "aac", "b:a": "128k"})
    else:
        opts["an"] = None
    compiled = ffmpeg.compile(ffmpeg.output(*streams, output, **opts), cmd="ffmpeg")
    return ["-y", "-filter_complex_threads", str(max(settings.threads, 1)), *compiled[1:]]


def check_output(
    info: VideoInfo, *, settings: EncodeSettings, width: int, height: int
) -> list[str]:
    """What is wrong with an encoded output (empty when it matches the settings)."""
    spec = settings.spec
    problems = []
    if info.frames < 1:
        problems.append("no frames")
    if info.codec != settings.codec:
        problems.append(f"codec {info.codec}, expected {settings.codec}")
    if info.pix_fmt != spec.pix_fmt:
        problems.append(f"pixel format {info.pix_fmt}, expected {spec.pix_fmt}")
    if (info.width, info.height) != (width, height):
        problems.append(f"size {info.width}x{info.height}, expected {width}x{height}")
    if not info.constant_frame_rate:
        problems.append("variable frame rate")
    if spec.exact_gop and info.frames >= 1:
        want = math.ceil(info.frames / settings.gop)
        if info.max_gop > settings.gop or info.keyframes != want:
            problems.append(
                f"{info.keyframes} keyframes (longest GOP {info.max_gop}), expected {want} "
                f"(one every {settings.gop} frames)"
            )
    elif not spec.exact_gop and info.max_gop != 1:
        problems.append(f"longest GOP {info.max_gop}, expected intra-only (1)")
    return problems


def plan_outputs(relpaths: Sequence[str], *, suffix: str) -> dict[str, str]:
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


def _with_suffix(relpath: str, suffix: str) -> str:
    """Replace the extension of a '/'-separated relpath (remove it when suffix is empty)."""
    p = PurePosixPath(relpath)
    return str(p.with_name(p.stem + suffix))


def stable_digest(obj: Any) -> str:
    """Short hash of a JSON-able value, stable across runs and machines."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- the task function (runs in a worker process, local or Ray) -------------------


def transcode_one(task: TranscodeTask) -> TranscodeOutcome:
    """Encode one video to a temporary name, probe and check it, then rename it into place."""
    started = time.perf_counter()
    settings = task.settings
    source_info = probe_video(task.source)
    rate = output_rate(settings.fps, source_info.fps)
    width, height = scaled_size(source_info.width, source_info.height, short_side=settings.short_side)
    with atomic_path(task.output) as tmp:
        args = transcode_args(task.source, str(tmp), settings=settings, rate=rate, width=width, height=height)
        run_ffmpeg(args, target=task.source, timeout_s=task.timeout_s, exe=hwaccel.ffmpeg_for(settings))
        info = probe_video(tmp)
        problems = check_output(info, settings=settings, width=width, height=height)
        if problems:
            raise OutputCheckError(task.source, "encoded output is wrong: " + "; ".join(problems))
    return TranscodeOutcome(
        output=task.output, source_frames=source_info.frames, frames=info.frames, fps=info.fps,
        width=info.width, height=info.height, codec=info.codec, seconds=time.perf_counter() - started,
    )


# --- the stage ------------------------------------------------------------------


def run_transcode(config: TranscodeConfig, *, on_progress: ProgressFn = no_progress) -> TranscodeResult:
    """Transcode every video under config.src into config.dst; see the module docstring."""
    started = time.perf_counter()
    settings = config.settings
    hwaccel.require_gpu(hwaccel=settings.hwaccel, encoder=settings.encoder)  # refuse before any work
    src, dst = check_roots(config.src, config.dst)
    annotations = source_annotations(src, config.annotations)
    with stage_lock(dst, "transcode"):
        layout, planned = plan_stage(src, dst, annotations=annotations, suffix=settings.spec.suffix)
        tasks = {
            p.source.relpath: TranscodeTask(str(src / p.source.relpath), str(dst / p.output), settings,
                                            config.timeout_s)
            for p in planned
        }
        run = run_stage(
            "transcode", transcode_one, planned, tasks, dst=dst, digest=settings.digest(),
            executor=config.executor, jobs=config.jobs, address=config.address,
            timeout_s=pool_timeout(config.timeout_s), on_progress=on_progress,
        )
        mapping_path = write_mapping(dst, [p for p in planned if p.source.relpath in run.entries])
        report_path = write_report(dst / "transcode_report.json", settings=asdict(settings), run=run)
        copy_annotations(layout.annotation_files.values(), dst=dst)
    index_result = None
    if config.index and run.entries:
        index_result = _index_outputs(dst, config, annotations=annotations, layout=layout, planned=planned)
    return TranscodeResult(
        total=len(planned), done=run.done, skipped=run.skipped, failures=run.failures,
        mapping_path=mapping_path, report_path=report_path, seconds=time.perf_counter() - started,
        index=index_result,
    )


PROBE_MARGIN_S = 120.0  # the pool's per-item limit: ffmpeg's own limit plus time to probe twice


def pool_timeout(ffmpeg_timeout_s: float | None) -> float | None:
    """The executor's per-item limit: a backstop behind ffmpeg's own, never before it."""
    return ffmpeg_timeout_s + PROBE_MARGIN_S if ffmpeg_timeout_s else None


def _index_outputs(
    dst: Path, config: TranscodeConfig, *, annotations: Path | None, layout: Layout, planned: list[PlannedVideo]
) -> IndexResult:
    """Write the list files of the transcoded tree with the index stage (no second listing code).

    The source's class list and each video's original label go along, so the
    lists of DST have the label indices and class names of SRC (safe folder
    names, renamed clips and a flat CVDF tree labelled by annotations included).
    """
    return run_index(IndexConfig(
        video_root=dst, out_dir=config.index_dir or dst / LISTS_DIRNAME, annotations=annotations, jobs=config.jobs,
        labels={p.output: p.label for p in planned if p.label is not None}, classes=tuple(layout.classes),
    ))


# --- shared by transcode and frames ---------------------------------------------------


@dataclass(frozen=True)
class PlannedVideo:
    """A source video, where its output goes (relative to DST), and its split and class name."""

    source: SourceVideo
    output: str
    split: str
    label: str | None


@dataclass
class StageRun:
    """What a batch run did: journal entries of every output now present, failures, counts."""

    entries: dict[str, dict[str, Any]]
    failures: list[Failure]
    done: int
    skipped: int
    total: int


def check_roots(src: Path, dst: Path) -> tuple[Path, Path]:
    """Absolute SRC (must exist) and DST (created); they must differ."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise PathError(src, "source folder not found")
    if dst == src:
        raise PathError(dst, "destination must differ from the source folder")
    dst.mkdir(parents=True, exist_ok=True)
    return src, dst


def source_annotations(src: Path, annotations: Path | None) -> Path | None:
    """The annotation folder that labels SRC: the one given, else `SRC/annotations` if present."""
    if annotations is not None:
        return Path(annotations).resolve()
    auto = src / ANNOTATIONS_DIRNAME
    return auto if auto.is_dir() else None


def plan_stage(src: Path, dst: Path, *, annotations: Path | None, suffix: str) -> tuple[Layout, list[PlannedVideo]]:
    """Find SRC's videos with split and label (`videoprep.layout.discover`) and name their outputs."""
    layout = discover(src, annotations=annotations, skip_dirs=[dst])
    names = plan_outputs([v.relpath for v in layout.videos], suffix=suffix)
    planned = []
    for video in layout.videos:
        st = (src / video.relpath).stat()
        planned.append(PlannedVideo(
            SourceVideo(video.relpath, st.st_size, st.st_mtime_ns), names[video.relpath], video.split, video.label,
        ))
    return layout, planned


def run_stage(
    stage: str,
    task_fn: Callable[[Any], Any],
    planned: list[PlannedVideo],
    tasks: dict[str, Any],
    *,
    dst: Path,
    digest: str,
    executor: ExecutorName,
    jobs: int | None,
    address: str | None,
    timeout_s: float | None,
    on_progress: ProgressFn,
) -> StageRun:
    """Run `task_fn` over the tasks of videos not up to date; journal each success as it lands.

    `tasks` maps source relpath -> the task object (with an `output` path);
    the outcome's fields (bar `output`) go into the journal entry.
    """
    journal = Journal(dst / STATE_DIR / f"{stage}.jsonl")
    latest = _latest_entries(journal)
    entries: dict[str, dict[str, Any]] = {}
    todo = []
    by_output: dict[str, PlannedVideo] = {}
    for p in planned:
        entry = latest.get(p.source.relpath)
        if _up_to_date(entry, p.source, output=p.output, digest=digest, dst=dst):
            entries[p.source.relpath] = entry
        else:
            todo.append(tasks[p.source.relpath])
            by_output[tasks[p.source.relpath].output] = p
    total, skipped = len(planned), len(entries)
    log.info("%s: %d videos, %d up to date, %d to do", stage, total, skipped, len(todo))
    on_progress(skipped, total)
    failures: list[Failure] = []
    done = 0
    results = run_tasks(task_fn, todo, executor=executor, jobs=jobs, address=address, timeout_s=timeout_s)
    for count, result in enumerate(results, start=skipped + 1):
        p = by_output[result.item.output]
        if result.ok:
            extra = {k: v for k, v in asdict(result.value).items() if k != "output"}
            entry = _journal_entry(p.source, output=p.output, digest=digest, dst=dst, extra=extra)
            journal.append(entry)
            entries[p.source.relpath] = entry
            done += 1
        else:
            failures.append(Failure(p.source.relpath, result.error or "unknown error"))
            log.warning("%s failed: %s: %s", stage, p.source.relpath, result.error)
        on_progress(count, total)
    failures.sort(key=lambda f: f.source)
    return StageRun(entries=entries, failures=failures, done=done, skipped=skipped, total=total)


@contextmanager
def stage_lock(dst: Path, stage: str) -> Iterator[None]:
    """One run per DST and stage at a time; then clear temporaries a killed run left behind."""
    state = dst / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    # A POSIX record lock, not flock: forked pool workers do not inherit it, so a worker
    # still unwinding after its parent was killed does not block the next run.
    with open(state / f"{stage}.lock", "w") as lock:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PathError(dst, f"another {stage} run is writing here") from None
        try:
            removed = sweep_partials(dst)
            if removed:
                log.info("removed %d temporary file(s) left by an interrupted run", removed)
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)


def sweep_partials(root: Path) -> int:
    """Delete `.NAME.XXXX.part` files and folders (our temporaries) under root; returns how many."""
    removed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            if name.startswith(".") and name.endswith(PART_SUFFIX):
                path = Path(dirpath) / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
        dirnames[:] = [d for d in dirnames if not (d.startswith(".") and d.endswith(PART_SUFFIX))]
    return removed


def _latest_entries(journal: Journal) -> dict[str, dict[str, Any]]:
    """Source relpath -> its newest completion entry."""
    return {e["source"]: e for e in journal.load() if "source" in e}


def _journal_entry(
    video: SourceVideo, *, output: str, digest: str, dst: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    out = dst / output
    return {
        "source": video.relpath, "size": video.size_bytes, "mtime_ns": video.mtime_ns, "settings": digest,
        "output": output, "output_size": out.stat().st_size if out.is_file() else None, **extra,
    }


def _up_to_date(
    entry: dict[str, Any] | None, video: SourceVideo, *, output: str, digest: str, dst: Path
) -> bool:
    """Was this exact source done with these settings, and is that output still there, unchanged?"""
    if not entry:
        return False
    if (entry.get("size"), entry.get("mtime_ns"), entry.get("settings"), entry.get("output")) != (
        video.size_bytes, video.mtime_ns, digest, output,
    ):
        return False
    out = dst / output
    if entry.get("output_size") is None:  # a folder of frames
        return out.is_dir()
    return out.is_file() and out.stat().st_size == entry["output_size"]


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
    """DST/mapping.csv: original relpath -> output relpath, with split and original class name."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["source", "output", "split", "label"])
    for p in sorted(planned, key=lambda p: p.output):
        writer.writerow([p.source.relpath, p.output, p.split, p.label or ""])
    path = dst / MAPPING_FILE
    atomic_write_text(path, buf.getvalue())
    return path


def read_mapping(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a mapping.csv as string dicts (source, output, split, label)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_report(path: Path, *, settings: dict[str, Any], run: StageRun) -> Path:
    """A JSON summary of the run with every failure and ffmpeg's error."""
    atomic_write_json(path, {
        "settings": settings, "total": run.total, "done": run.done, "skipped": run.skipped,
        "failed": len(run.failures), "failures": [asdict(f) for f in run.failures],
    })
    return path
