"""Re-encode a video tree for fast loading: short side, constant rate, exact GOP; atomic and resumable.

Every output is written under a temporary name, probed, checked against the
settings and only then renamed; a completion journal in DST (keyed by source
path, size, mtime and a hash of the settings) lets an interrupted run resume
and a repeated run skip what is up to date. A video that fails is recorded
with ffmpeg's message in DST/transcode_report.json and costs only itself.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import ffmpeg

from videoprep import hwaccel
from videoprep.atomic import atomic_path
from videoprep.errors import PathError, VideoprepError
from videoprep.ffmpeg import OUTPUT_STANDIN, SOURCE_STANDIN, run_ffmpeg, with_paths
from videoprep.index import IndexConfig, IndexResult, run_index
from videoprep.locations import check_output_dir
from videoprep.probe import VideoInfo, probe_video
from videoprep.progress import ProgressFn, no_progress
from videoprep.stage import StageOptions, StageSpec, write_summary
from videoprep.videotree import (  # noqa: F401 - plan_outputs, read_mapping, scaled_size: this module's API too
    DEFAULT_TIMEOUT_S,
    StageResult,
    TreeRun,
    copy_annotations,
    plan_outputs,
    pool_timeout,
    probe_source,
    read_mapping,
    run_tree_stage,
    scaled_size,
    stable_digest,
    stage_result,
    write_mapping,
    write_report,
)

log = logging.getLogger(__name__)

Codec = Literal["h264", "mjpeg", "vp9"]

LISTS_DIRNAME = "lists"  # run_index skips its out_dir when walking, so it cannot be DST itself


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
# fastdecode (no CABAC, no deblocking): 2.7x the PyAV decode speed for 10% more bytes, see docs/benchmarks.md
X264_TUNES = ("fastdecode", "film", "animation", "grain", "stillimage")
# The tune each codec gets unless told otherwise. fastdecode (no CABAC, no deblocking)
# won 1.61x clips/s with the pyav reader for 1.10x the bytes at the same PSNR on GOP 16
# (benchmarks/bench_loaders.py; docs/benchmarks.md "Loaders"), past the 1.3x / +30% rule.
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
    # ffmpeg threads per video, the encoder's included: x264's bytes depend on it, so it is a setting (in the
    # digest), never derived from the cores or -j; parallelism comes from running videos side by side
    threads: int = 1
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
        if self.threads < 1:  # x264 writes other bytes with other thread counts: never the machine's core count
            raise VideoprepError(f"threads ({self.threads}) must be >= 1: the encoder's thread count changes "
                                 "its output, so it is a fixed setting")
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
class TranscodeConfig(StageOptions):
    """One `videoprep transcode SRC DST` run (the engine's options: `StageOptions`)."""

    src: Path
    dst: Path
    settings: EncodeSettings = field(default_factory=EncodeSettings)
    timeout_s: float | None = DEFAULT_TIMEOUT_S  # per ffmpeg run; None: no limit
    index: bool = True  # write the list files of DST afterwards (videoprep.index.run_index)
    annotations: Path | None = None  # annotation CSVs, for the index of a flat (CVDF) layout
    index_dir: Path | None = None  # where the lists go; None: DST/lists (paths in them relative to DST)
    ffmpeg: str | None = None  # the ffmpeg program; None: the pinned one (videoprep.ffmpeg.ffmpeg_exe)
    reencode_other_ffmpeg: bool = False  # encode again the outputs another ffmpeg made (else: kept, counted)


@dataclass(frozen=True)
class TranscodeResult(StageResult):
    """A transcode run, with the lists of DST."""

    index: IndexResult | None = None  # the lists of DST, unless indexing was turned off

    @property
    def transcoded(self) -> int:
        """Videos encoded by this run."""
        return self.done


@dataclass(frozen=True)
class TranscodeTask:
    """One video to encode: what a worker (local or Ray) needs, nothing more."""

    source: str
    output: str
    settings: EncodeSettings
    timeout_s: float | None
    ffmpeg: str | None = None  # the program to run; None: videoprep.ffmpeg.ffmpeg_exe()


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
    duration_s: float = 0.0
    pix_fmt: str = ""
    constant_frame_rate: bool = True


# What an outcome tells the index of DST, so the index does not probe the outputs a second time.
OUTPUT_FACTS = ("frames", "fps", "duration_s", "width", "height", "codec", "pix_fmt", "constant_frame_rate")


# --- pure rules -----------------------------------------------------------------


def output_rate(settings_fps: float | None, source_fps: float) -> Fraction:
    """The constant output rate as a fraction (29.97003 -> 30000/1001)."""
    fps = settings_fps if settings_fps is not None else source_fps
    if not fps or fps <= 0:
        raise VideoprepError(f"frame rate ({fps}) must be > 0; pass --fps for a stream without one")
    return Fraction(fps).limit_denominator(1001)


def transcode_args(
    source: str, output: str, *, settings: EncodeSettings, rate: Fraction, width: int, height: int,
    full_range: bool = False,
) -> list[str]:
    """The ffmpeg argument list (without the program name) for one video; no shell involved.

    `full_range`: the source is full-range (yuvj*, e.g. MJPEG): converted to the limited range
    that yuv420p outputs promise (else x264 keeps full range and the output decodes as yuvj420p).
    """
    spec = settings.spec
    stream = ffmpeg.input(SOURCE_STANDIN, threads=settings.threads, **hwaccel.input_options(settings.hwaccel))
    to_limited = {"out_range": "tv"} if full_range and not spec.pix_fmt.startswith("yuvj") else {}
    video = stream.video.filter("fps", fps=str(rate)).filter("scale", width, height, **to_limited)
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
            # measured with benchmarks/bench_transcode.py's sources; docs/benchmarks.md has the table)
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
    compiled = ffmpeg.compile(ffmpeg.output(*streams, OUTPUT_STANDIN, **opts), cmd="ffmpeg")
    args = ["-y", "-filter_complex_threads", str(max(settings.threads, 1)), *compiled[1:]]
    return with_paths(args, source=source, output=output)


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


# --- the task function (runs in a worker process, local or Ray) -------------------


def transcode_one(task: TranscodeTask) -> TranscodeOutcome:
    """Encode one video to a temporary name, probe and check it, then rename it into place."""
    started = time.perf_counter()
    settings = task.settings
    source_info = probe_source(task.source)
    rate = output_rate(settings.fps, source_info.fps)
    width, height = scaled_size(source_info.width, source_info.height, short_side=settings.short_side)
    with atomic_path(task.output) as tmp:
        args = transcode_args(task.source, str(tmp), settings=settings, rate=rate, width=width, height=height,
                              full_range=source_info.pix_fmt.startswith("yuvj"))
        run_ffmpeg(args, target=task.source, timeout_s=task.timeout_s, exe=task.ffmpeg)
        info = probe_video(tmp)
        problems = check_output(info, settings=settings, width=width, height=height)
        if problems:
            raise OutputCheckError(task.source, "encoded output is wrong: " + "; ".join(problems))
    return TranscodeOutcome(
        output=task.output, source_frames=source_info.frames, frames=info.frames, fps=info.fps,
        width=info.width, height=info.height, codec=info.codec, seconds=time.perf_counter() - started,
        duration_s=info.duration_s, pix_fmt=info.pix_fmt, constant_frame_rate=info.constant_frame_rate,
    )


# --- the stage ------------------------------------------------------------------


def run_transcode(config: TranscodeConfig, *, on_progress: ProgressFn = no_progress) -> TranscodeResult:
    """Transcode every video under config.src into config.dst; see the module docstring."""
    settings = config.settings
    hwaccel.require_gpu(hwaccel=settings.hwaccel, encoder=settings.encoder)  # refuse before any work (DST too)
    if config.index_dir is not None:
        check_output_dir(config.index_dir, what="--lists-dir")
    spec = StageSpec("transcode", transcode_one, pool_timeout(config.timeout_s))
    tree = run_tree_stage(config, spec, suffix=settings.spec.suffix, digest=settings.digest(), on_progress=on_progress,
                          task_of=lambda p, src, dst, exe: TranscodeTask(str(src / p.relpath), str(dst / p.output),
                                                                         settings, config.timeout_s, exe))
    run, dst = tree.run, tree.dst
    mapping_path = report_path = index_result = None
    if config.shard is None:  # the plain run after all shards writes what covers the whole tree
        mapping_path = write_mapping(dst, tree.done())
        report_path = write_report(dst / "transcode_report.json", settings=asdict(settings), tree=tree)
        copy_annotations(tree.layout.annotation_files.values(), dst=dst)
        if config.index and tree.done():
            index_result = _index_outputs(tree, config)
    write_summary(config.summary_json, run.summary())
    return TranscodeResult(**stage_result(run, mapping=mapping_path, report=report_path), index=index_result,
                           ffmpeg_version=tree.ffmpeg.version)


def _index_outputs(tree: TreeRun, config: TranscodeConfig) -> IndexResult:
    """Write the list files of the transcoded tree with the index stage (no second listing code).

    The source's class list and each video's original label go along, so the
    lists of DST have the label indices and class names of SRC (safe folder
    names, renamed clips and a flat CVDF tree labelled by annotations included).
    Each output was probed once when it was checked: those facts go along too,
    so indexing probes nothing again.
    """
    done = tree.done()
    known = {p.output: {k: tree.run.entries[p.relpath].get(k) for k in OUTPUT_FACTS} for p in done}
    return run_index(IndexConfig(
        video_root=tree.dst, out_dir=config.index_dir or tree.dst / LISTS_DIRNAME, annotations=tree.annotations,
        jobs=config.jobs, labels={p.output: p.label for p in done if p.label is not None},
        classes=tuple(tree.layout.classes), known=known,
    ))
