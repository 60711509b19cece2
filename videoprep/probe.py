"""Learn what a video holds without decoding pixels: frame count, rate, size, codec."""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import av

from videoprep.errors import NoVideoStreamError, ProbeError

# Relative spread of frame durations tolerated before a stream counts as variable rate
# (container timestamps are rounded to the time base, so exact equality is too strict).
_VFR_TOLERANCE = 0.02


@dataclass(frozen=True)
class VideoInfo:
    """What probing learned about one video; `frames` is what a decoder yields."""

    path: str
    size_bytes: int
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    constant_frame_rate: bool
    keyframes: int
    max_gop: int

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for manifests and JSON reports."""
        return asdict(self)


def feeds_decoder(packet: av.Packet) -> bool:
    """True for a packet a decoder turns into a frame: not empty, not discarded by an edit list.

    The one rule behind every frame count: `frame_num` in our lists is the number of these.
    """
    return bool(packet.size) and not packet.is_discard


def _stream_rate(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


class PacketTally:
    """Frame count, keyframes, longest GOP and pts of the packets a decoder is fed, one packet at a time.

    Lets a caller that demuxes anyway (validate) learn what `probe_video` learns without a second read.
    """

    def __init__(self) -> None:
        self.frames = self.keyframes = self._gop = self.max_gop = 0
        self.pts: list[int] = []

    def add(self, packet: av.Packet) -> bool:
        """Count `packet`; False (and no frame counted) when it feeds no decoder."""
        if not feeds_decoder(packet):
            return False
        self.frames += 1
        if packet.pts is not None:
            self.pts.append(packet.pts)
        if packet.is_keyframe:
            self.keyframes += 1
            self.max_gop = max(self.max_gop, self._gop)
            self._gop = 1
        else:
            self._gop += 1
        return True

    def info(self, path: str, size: int, stream: av.video.stream.VideoStream) -> VideoInfo:
        """The VideoInfo of everything added; ProbeError when no packet fed a decoder."""
        if self.frames == 0:
            raise ProbeError(path, "video stream has no frames")
        ctx = stream.codec_context
        fps = _stream_rate(stream)
        time_base = stream.time_base or Fraction(1, 1)
        cfr, duration = _timing(self.pts, time_base, fps, self.frames)
        return VideoInfo(
            path=path,
            size_bytes=size,
            frames=self.frames,
            fps=round(fps, 6),
            duration_s=round(duration, 6),
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name or "unknown",
            pix_fmt=ctx.format.name if ctx.format else "unknown",
            constant_frame_rate=cfr,
            keyframes=self.keyframes,
            max_gop=max(self.max_gop, self._gop),
        )


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Demux every video packet (no decoding) to count frames and check timing.

    Container headers lie or are missing (webm, mpg, hand-edited avi), so the
    count comes from the packets a decoder would be fed: non-empty, not
    flagged as discarded by an edit list.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ProbeError(path, f"cannot stat: {exc.strerror}") from None
    if size == 0:
        raise ProbeError(path, "empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise ProbeError(path, f"cannot open: {ffmpeg_reason(exc)}") from None
    try:
        if not container.streams.video:
            raise NoVideoStreamError(path, "no video stream")
        stream = container.streams.video[0]
        tally = PacketTally()
        try:
            for packet in container.demux(stream):
                tally.add(packet)
        except av.error.FFmpegError as exc:
            raise ProbeError(path, f"demux failed after {tally.frames} frames: {ffmpeg_reason(exc)}") from None
        return tally.info(path, size, stream)
    finally:
        container.close()


def _timing(pts: list[int], time_base: Fraction, fps: float, frames: int) -> tuple[bool, float]:
    """(constant frame rate?, duration in seconds) from presentation timestamps."""
    if len(pts) < 2:
        return True, frames / fps if fps else 0.0
    ordered = sorted(pts)
    deltas = [b - a for a, b in itertools.pairwise(ordered)]
    mean = sum(deltas) / len(deltas)
    cfr = mean > 0 and all(abs(d - mean) <= max(1.0, _VFR_TOLERANCE * mean) for d in deltas)
    duration = float((ordered[-1] - ordered[0] + mean) * time_base)
    return cfr, duration


def ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    """FFmpeg's own message without PyAV's errno prefix."""
    return getattr(exc, "strerror", None) or str(exc)
