"""What demuxing (no decoding) tells about a video: codec, frame count, size."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av

from videoprep.decode import MEMORY_SOURCE, DecodeError, fed_packets
from videoprep.probe import ffmpeg_reason


@dataclass(frozen=True)
class StreamSummary:
    """What demuxing (no decoding) tells about the first video stream of a video."""

    codec: str
    frames: int
    width: int
    height: int


def stream_summary(source: bytes | str, *, name: str | None = None) -> StreamSummary:
    """Codec, frame count (packets a decoder is fed) and size of encoded bytes or a file path."""
    label = name or (source if isinstance(source, str) else MEMORY_SOURCE)
    opened = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    try:
        with av.open(opened, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise DecodeError(label, "no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            frames = sum(1 for _ in fed_packets(container, stream))
    except av.error.FFmpegError as exc:
        raise DecodeError(label, f"cannot demux: {ffmpeg_reason(exc)}") from None
    if frames == 0:
        raise DecodeError(label, "video stream has no frames")
    return StreamSummary(codec=ctx.name or "unknown", frames=frames, width=ctx.width, height=ctx.height)


def count_frames(source: bytes | str, *, name: str | None = None) -> int:
    """Frames a full decode yields (encoded bytes or a file path), counted from packets, no decoding."""
    return stream_summary(source, name=name).frames


def native_size(encoded: bytes, *, name: str = MEMORY_SOURCE) -> tuple[int, int]:
    """(width, height) of the first video stream of an encoded video, without decoding."""
    try:
        with av.open(io.BytesIO(encoded), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise DecodeError(name, "no video stream")
            ctx = container.streams.video[0].codec_context
            return ctx.width, ctx.height
    except av.error.FFmpegError as exc:
        raise DecodeError(name, f"cannot open: {ffmpeg_reason(exc)}") from None
