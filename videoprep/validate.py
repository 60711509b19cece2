"""`videoprep validate`: find the videos a trainer would choke on, before training does.

Each video is checked in its own worker with a time limit (a decoder that
hangs or crashes costs only that video), on the stage engine
(`videoprep.stage`): verdicts are journaled in `{state_dir}` (default
`VIDEO_ROOT/.videoprep`), so a re-run checks only new or changed videos and
`--shard I/N` splits the work. A bad video gets every reason found and one
primary reason, the first of `REASONS` in order.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import functools
import io
import logging
import os
import random
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import av

from videoprep.atomic import atomic_write_json, atomic_write_text, move_file
from videoprep.errors import ProbeError, VideoprepError
from videoprep.h264 import h264_is_nonref, h264_nal_length_size
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
from videoprep.probe import PacketTally, VideoInfo, ffmpeg_reason
from videoprep.progress import ProgressFn, no_progress
from videoprep.stage import STATE_DIR, Item, StageOptions, StageSpec, run_stage, write_summary
from videoprep.stage import Failure as StageFailure

log = logging.getLogger(__name__)

Reason = Literal[
    "empty",
    "moov_missing",
    "truncated",
    "unreadable",
    "no_video_stream",
    "check_failed",
    "undecodable",
    "too_short",
    "variable_frame_rate",
    "not_420",
    "odd_dimensions",
    "missing",
]
# Worst first: the primary reason of a bad video is the first of these it has.
REASONS: dict[str, str] = {
    "empty": "0-byte file",
    "moov_missing": "MP4/MOV without its moov atom (download cut short)",
    "truncated": "file ends before its container says it does",
    "unreadable": "cannot be opened or demuxed",
    "no_video_stream": "no video stream (audio-only or other)",
    "check_failed": "the check itself timed out or its worker died",
    "undecodable": "frames fail to decode",
    "too_short": "fewer frames than one training clip needs",
    "variable_frame_rate": "variable frame rate",
    "not_420": "pixel format is not 4:2:0",
    "odd_dimensions": "odd width or height",
    "missing": "annotated clip with no file on disk",
}
# What a finding means for the video: unusable as it is, fixed by `transcode`, or too short to train on.
UNUSABLE = frozenset(
    {"empty", "moov_missing", "truncated", "unreadable", "no_video_stream", "check_failed", "undecodable", "missing"}
)
FIXABLE = frozenset({"variable_frame_rate", "not_420", "odd_dimensions"})
FindingClass = Literal["unusable", "fixable", "too_short"]


def finding_class(reason: str) -> FindingClass:
    """The class of a reason: unusable, fixable (by transcode) or too_short."""
    if reason in UNUSABLE:
        return "unusable"
    return "fixable" if reason in FIXABLE else "too_short"


def parse_reasons(text: str) -> frozenset[str]:
    """Comma-separated reasons or class names (unusable, fixable, too_short) -> the reasons they name."""
    by_class = {"unusable": UNUSABLE, "fixable": FIXABLE, "too_short": frozenset({"too_short"})}
    out: set[str] = set()
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word not in by_class and word not in REASONS:
            raise VideoprepError(
                f"reason {word!r} is unknown; use class names ({', '.join(by_class)}) or reasons ({', '.join(REASONS)})"
            )
        out |= by_class.get(word, {word})
    return frozenset(out)


REPORT_FORMATS = (".csv", ".json")
_MP4_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}
_EBML_ID = 0x1A45DFA3
_SEGMENT_ID = 0x18538067
_NO_VIDEO = "no video stream"
_MAX_HELD_BYTES = 1 << 30  # larger files are decoded in full as they are read (bounded memory)


@dataclass(frozen=True)
class Finding:
    """One problem with one video."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class VideoCheck:
    """What checking one video found (empty `findings`: the video is good)."""

    findings: list[Finding]
    frames: int | None = None


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
                "seed": config.seed}
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


# --- checks of one video (these run in worker processes) ---------------------------------


def check_video(
    path: str | os.PathLike[str],
    *,
    full: bool = False,
    min_frames: int = 57,
    sample_frames: int = 3,
    seed: int = 0,
) -> VideoCheck:
    """Every problem of one video: container structure, then one read that probes and decodes, then rules."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return VideoCheck([Finding("unreadable", f"cannot stat: {exc.strerror}")])
    if size == 0:
        return VideoCheck([Finding("empty", "0 bytes")])
    findings = container_findings(path)
    if any(f.reason == "moov_missing" for f in findings):
        return VideoCheck(findings)  # nothing is readable without the moov atom
    # Past this size the packets are not held in memory for the quick check: decode as they come.
    full = full or size > _MAX_HELD_BYTES
    rng = random.Random(seed ^ zlib.crc32(path.encode("utf-8", "surrogateescape")))
    try:
        info, decoded = _read_and_decode(path, size, full=full, sample_frames=sample_frames, rng=rng)
    except ProbeError as exc:
        return VideoCheck([*findings, _probe_finding(path, exc)])
    findings += decoded
    if info.frames < min_frames:
        findings.append(Finding("too_short", f"{info.frames} frames < --min-frames {min_frames}"))
    if not info.constant_frame_rate:
        findings.append(Finding("variable_frame_rate", f"frame durations vary (average {info.fps:g} fps)"))
    if not is_420(info.pix_fmt):
        findings.append(Finding("not_420", f"pixel format {info.pix_fmt} (trainers and NVDEC expect 4:2:0)"))
    if info.width % 2 or info.height % 2:
        findings.append(Finding("odd_dimensions", f"{info.width}x{info.height}"))
    return VideoCheck(findings, frames=info.frames)


def _probe_finding(path: str, exc: ProbeError) -> Finding:
    """Classify a probe failure: a readable container without video, or an unreadable file."""
    if exc.reason == _NO_VIDEO:
        try:
            with av.open(path, metadata_errors="ignore") as container:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                return Finding("no_video_stream", f"streams: {', '.join(kinds)}")
        except av.error.FFmpegError:
            pass  # opened once already; if not now, the probe's reason below stands
    return Finding("unreadable", exc.reason)


def is_420(pix_fmt: str) -> bool:
    """True for pixel formats with 4:2:0 chroma (yuv420p, yuvj420p, nv12, 10-bit 4:2:0, ...)."""
    try:
        fmt = av.VideoFormat(pix_fmt, 16, 16)
    except ValueError:
        return False
    comps = fmt.components
    return len(comps) >= 3 and comps[0].width == 16 and comps[1].width == 8 and comps[1].height == 8


def container_findings(path: str | os.PathLike[str]) -> list[Finding]:
    """Structural problems seen in the container headers alone: missing moov, declared sizes past EOF.

    MP4/MOV (top-level boxes), Matroska/WebM (segment size) and AVI (RIFF
    sizes) declare how long they are; other containers yield nothing here.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) >= 8 and head[4:8] in _MP4_TOP_BOXES:
            return _mp4_findings(f, size)
        if head[:4] == b"RIFF":
            return _riff_findings(f, size)
        if int.from_bytes(head[:4], "big") == _EBML_ID:
            return _matroska_findings(f, size)
    return []


def _mp4_findings(f: io.BufferedReader, size: int) -> list[Finding]:
    findings = []
    names = []
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(16)
        box_size, name, header_len = int.from_bytes(header[:4], "big"), header[4:8], 8
        if box_size == 1 and len(header) == 16:
            box_size, header_len = int.from_bytes(header[8:16], "big"), 16
        elif box_size == 0:  # "extends to the end of the file"
            box_size = size - offset
        label = name.decode("latin-1")
        if box_size < header_len:
            findings.append(
                Finding("unreadable", f"box {label!r} at offset {offset} has invalid size {box_size}")
            )
            break
        names.append(name)
        if offset + box_size > size:
            findings.append(
                Finding(
                    "truncated",
                    f"box {label!r} at offset {offset} declares {box_size} bytes; the file ends "
                    f"{offset + box_size - size} bytes short",
                )
            )
            break
        offset += box_size
    if b"moov" not in names:
        findings.insert(0, Finding("moov_missing", "moov atom not found"))
    return findings


def _riff_findings(f: io.BufferedReader, size: int) -> list[Finding]:
    offset = 0
    while offset + 8 <= size:  # AVI files over 1 GB chain several RIFF chunks
        f.seek(offset)
        header = f.read(12)
        chunk_size = int.from_bytes(header[4:8], "little")
        end = offset + 8 + chunk_size + (chunk_size & 1)
        if end > size + (chunk_size & 1):
            return [
                Finding(
                    "truncated",
                    f"RIFF chunk {header[8:12].decode('latin-1')!r} at offset {offset} declares "
                    f"{chunk_size} bytes; the file ends {end - size} bytes short",
                )
            ]
        offset = end
    return []


def _read_vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, length, all value bits set) of an EBML variable-length integer at `pos`."""
    first = data[pos]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or pos + length > len(data):
        raise ValueError("bad EBML integer")
    value = int.from_bytes(data[pos : pos + length], "big")
    marker = 1 << (7 * length)
    payload = value - marker
    return (value if keep_marker else payload), length, payload == marker - 1


def _matroska_findings(f: io.BufferedReader, size: int) -> list[Finding]:
    f.seek(0)
    head = f.read(64)
    try:
        pos = 0
        _, id_len, _ = _read_vint(head, pos, keep_marker=True)
        ebml_size, size_len, _ = _read_vint(head, pos + id_len, keep_marker=False)
        pos += id_len + size_len + ebml_size
        f.seek(pos)
        seg = f.read(16)
        seg_id, id_len, _ = _read_vint(seg, 0, keep_marker=True)
        seg_size, size_len, unknown = _read_vint(seg, id_len, keep_marker=False)
    except (ValueError, IndexError):
        return [Finding("unreadable", "Matroska header is damaged")]
    if seg_id != _SEGMENT_ID or unknown:
        return []  # a live-style stream of unknown length: nothing to compare
    end = pos + id_len + size_len + seg_size
    if end > size:
        return [
            Finding(
                "truncated",
                f"Matroska segment declares {seg_size} bytes; the file ends {end - size} bytes short",
            )
        ]
    return []


def _read_and_decode(
    path: str, size: int, *, full: bool, sample_frames: int, rng: random.Random
) -> tuple[VideoInfo, list[Finding]]:
    """Demux the video once: probe it (as probe_video does) and decode all of it or the picked spans.

    ProbeError when it cannot be opened, holds no video stream, or its demuxing fails.
    """
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise ProbeError(path, f"cannot open: {ffmpeg_reason(exc)}") from None
    with container:
        if not container.streams.video:
            raise ProbeError(path, _NO_VIDEO)
        stream = container.streams.video[0]
        ctx = stream.codec_context
        # Damaged bitstreams are reported instead of concealed; pixels are never looked at, so the
        # deblocking filter (a fifth of H.264 decoding) is skipped, and one thread per worker suffices.
        ctx.options = {"err_detect": "explode", "skip_loop_filter": "all"}
        ctx.thread_count = 1
        tally = PacketTally()
        held: list[av.Packet] = []
        full_decode = _FullDecode(ctx)
        try:
            for packet in container.demux(stream):
                tally.add(packet)
                if packet.size:  # edit-list discarded packets too: later frames may refer to them
                    if full:
                        full_decode.feed(packet)
                    else:
                        held.append(packet)
        except av.error.FFmpegError as exc:
            raise ProbeError(path, f"demux failed after {tally.frames} frames: {ffmpeg_reason(exc)}") from None
        info = tally.info(path, size, stream)
        if full:
            return info, full_decode.finish(info.frames)
        return info, quick_findings(ctx, held, tally.pts, frames=info.frames, sample_frames=sample_frames, rng=rng)


class _FullDecode:
    """Decode every packet, going on after errors; then compare the frame count with the probe's."""

    def __init__(self, ctx: av.CodecContext) -> None:
        self.ctx, self.packets, self.decoded, self.failed, self.first_error = ctx, 0, 0, 0, ""

    def feed(self, packet: av.Packet | None) -> None:
        try:
            self.decoded += len(self.ctx.decode(packet))
        except av.error.FFmpegError as exc:
            self.failed += 1
            self.first_error = self.first_error or f"packet {self.packets}: {ffmpeg_reason(exc)}"
        self.packets += 1

    def finish(self, expected: int) -> list[Finding]:
        """Flush the decoder and say what went wrong, if anything."""
        self.feed(None)
        findings = []
        if self.failed:
            findings.append(
                Finding("undecodable", f"{self.failed} packet(s) failed to decode; first at {self.first_error}")
            )
        if self.decoded < expected:
            findings.append(Finding("undecodable", f"decoder yielded {self.decoded} of {expected} frames"))
        return findings


def decode_all_findings(ctx: av.CodecContext, packets: list[av.Packet], *, frames: int) -> list[Finding]:
    """What a full decode of `packets` (expected to yield `frames`) from a fresh decoder state finds."""
    ctx.flush_buffers()
    full = _FullDecode(ctx)
    for packet in packets:
        full.feed(packet)
    return full.finish(frames)


def quick_findings(
    ctx: av.CodecContext, packets: list[av.Packet], pts: list[int], *, frames: int, sample_frames: int,
    rng: random.Random,
) -> list[Finding]:
    """Decode the first, the middle, the last and a few random frames, each span once and in order.

    `packets`: every non-empty packet in decode order; `pts`: those of the `frames` that count.
    A problem seen this way is confirmed by a full decode of the same packets before it is
    reported, so the quick check never reports a video that `--full` passes.
    """
    if len(pts) != frames or len(set(pts)) != frames:
        return decode_all_findings(ctx, packets, frames=frames)  # frames cannot be told apart by timestamp
    order = sorted(pts)
    picks = {0, frames // 2, frames - 1, *(rng.randrange(frames) for _ in range(sample_frames))}
    findings = SpanDecoder(ctx, packets).check({order[i]: i for i in picks})
    if findings and not decode_all_findings(ctx, packets, frames=frames):
        return []
    return findings


class SpanDecoder:
    """Decodes the spans that lead to the wanted frames, walking the packets once in decode order.

    Wanted frames that share a GOP share one forward pass from its keyframe. H.264 packets
    that no frame refers to and nobody wants are left out (h264_is_nonref). A wanted H.264
    frame more than `window` packets past its keyframe (and past what was decoded already)
    is first tried alone: a second decoder is given the keyframe, then the `window` packets
    before the frame. It conceals the references it skipped; what is checked is that every
    packet of the short span decodes. With B-frames, strict error detection would reject the
    gap (reference lists name skipped frames), so there that decoder only fails on damaged
    data (CABAC catches most damage; CAVLC streams rarely have B-frames). If it fails, or the
    frame does not come out, the whole span from the keyframe decides, strictly.
    """

    window = 12

    def __init__(self, ctx: av.CodecContext, packets: list[av.Packet]) -> None:
        self.ctx, self.packets = ctx, packets
        self.keyframes = [i for i, p in enumerate(packets) if p.is_keyframe] or [0]
        self.length_size = h264_nal_length_size(ctx.extradata) if ctx.name == "h264" else None
        self._gap_ctx: av.CodecContext | None = None
        self.wanted: dict[int, int] = {}
        self.seen: set[int] = set()

    def check(self, wanted: dict[int, int]) -> list[Finding]:
        """Findings for the wanted frames (pts -> frame number) that fail to decode or never come out."""
        index = {p.pts: i for i, p in enumerate(self.packets) if not p.is_discard}
        self.wanted, self.seen = wanted, set()
        errors: dict[int, str] = {}
        fed = -1  # the last packet fed to the strict decoder since it was last reset
        for target in sorted(wanted, key=index.__getitem__):
            end = index[target]
            if end <= fed or target in self.seen:
                continue  # fed already; the frame comes out when later packets or the drain push it
            keyframe = self.keyframes[bisect.bisect_right(self.keyframes, end) - 1]
            if (self.length_size is not None and end - max(keyframe, fed) > self.window
                    and self._short_span(keyframe, end, target)):
                continue
            if keyframe > fed + 1:  # a new span: push out what the last one holds, then start afresh
                self._lose(errors, self._drain(self.ctx), index, upto=fed)
                fed = keyframe - 1
            error = self._feed(self.ctx, range(fed + 1, end + 1))
            fed = end
            if error:
                errors[target] = error
                self.ctx.flush_buffers()
                fed = -1  # the next wanted frame starts its own span
        self._lose(errors, self._drain(self.ctx), index, upto=len(self.packets))
        return [
            Finding("undecodable", f"frame {wanted[pts]}: {errors.get(pts, 'not reached before the end of the stream')}")
            for pts in sorted(wanted, key=wanted.__getitem__)
            if pts not in self.seen
        ]

    def _short_span(self, keyframe: int, end: int, target: int) -> bool:
        """Decode the keyframe and the `window` packets up to `end` on the gap decoder; True if all went well."""
        if self._gap_ctx is None:
            self._gap_ctx = av.CodecContext.create(self.ctx.name, "r")
            self._gap_ctx.extradata = self.ctx.extradata
            # With B-frames, "explode" also rejects the references skipped on purpose: data errors only.
            reorders = any(p.pts != p.dts for p in self.packets)
            detect = "crccheck+bitstream+buffer" if reorders else "explode"
            self._gap_ctx.options = {"err_detect": detect, "skip_loop_filter": "all"}
            self._gap_ctx.thread_count = 1
        gap = self._gap_ctx
        error = self._feed(gap, [keyframe, *range(end - self.window, end + 1)])
        error = self._drain(gap) or error  # the drain also resets it for the next short span
        return not error and target in self.seen

    def _feed(self, ctx: av.CodecContext, numbers: Iterable[int]) -> str:
        """Decode packets by number, noting wanted frames that come out; '' or the decoder's error."""
        try:
            for number in numbers:
                packet = self.packets[number]
                if (self.length_size is not None and packet.pts not in self.wanted
                        and h264_is_nonref(packet, length_size=self.length_size)):
                    continue  # nobody wants it and no frame refers to it
                self._note(ctx.decode(packet))
        except av.error.FFmpegError as exc:
            return ffmpeg_reason(exc)
        return ""

    def _drain(self, ctx: av.CodecContext) -> str:
        """Flush out the frames the decoder still holds, then reset it for a new span."""
        try:
            self._note(ctx.decode(None))
        except av.error.FFmpegError as exc:
            return ffmpeg_reason(exc)
        finally:
            ctx.flush_buffers()
        return ""

    def _lose(self, errors: dict[int, str], error: str, index: dict[int, int], *, upto: int) -> None:
        """Blame `error` (if any) on the wanted frames fed up to packet `upto` that never came out."""
        if error:
            errors.update({t: error for t in self.wanted if index[t] <= upto and t not in self.seen})

    def _note(self, frames: list[av.VideoFrame]) -> None:
        self.seen.update(f.pts for f in frames if f.pts in self.wanted)
