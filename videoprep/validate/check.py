"""The check of one video (runs in a worker): container structure, one read that probes and decodes, rules."""

from __future__ import annotations

import os
import random
import zlib
from dataclasses import dataclass

import av

from videoprep.errors import NoVideoStreamError, ProbeError
from videoprep.validate.containers import container_findings
from videoprep.validate.decodecheck import read_and_decode
from videoprep.validate.reasons import Finding

_MAX_HELD_BYTES = 1 << 30  # larger files are decoded in full as they are read (bounded memory)


@dataclass(frozen=True)
class VideoCheck:
    """What checking one video found (empty `findings`: the video is good)."""

    findings: list[Finding]
    frames: int | None = None


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
    try:
        findings = container_findings(path)
    except OSError as exc:
        return VideoCheck([Finding("unreadable", f"cannot read: {exc.strerror}")])
    if any(f.reason == "moov_missing" for f in findings):
        return VideoCheck(findings)  # nothing is readable without the moov atom
    # Past this size the packets are not held in memory for the quick check: decode as they come.
    full = full or size > _MAX_HELD_BYTES
    rng = random.Random(seed ^ zlib.crc32(path.encode("utf-8", "surrogateescape")))
    try:
        info, decoded = read_and_decode(path, size, full=full, sample_frames=sample_frames, rng=rng)
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
    if isinstance(exc, NoVideoStreamError):
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
