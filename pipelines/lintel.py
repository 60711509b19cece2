"""Lintel's decoding API (`loadvid_frame_nums`, `loadvid`) on our own frame-exact PyAV core.

The BAT `read_mode video` path reads a whole video into memory and calls Lintel's
`loadvid_frame_nums` on the bytes. The real Lintel is a C extension that no longer
builds against FFmpeg >= 5 or Python >= 3.11, and it is not frame-exact (index n gives
frame n+1 without seeking, it loops at end of file, it drifts on webm when seeking).
This module keeps its call contract and returns the frames a full decode yields at
exactly the requested indices; `should_seek` changes only the speed.

Frame n is the n-th frame (0-based) that decoding the whole stream yields, the same
numbering as `videoprep.synth.decode_all` and the `frame_num` column of our lists.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import BinaryIO, Literal

import av
import numpy as np

from videoprep.errors import PathError
from videoprep.probe import feeds_decoder, ffmpeg_reason

log = logging.getLogger(__name__)

Implementation = Literal["ours", "native"]
IMPLEMENTATIONS: tuple[str, ...] = ("ours", "native")

# Name used in error messages when the caller decodes bytes that have no path.
MEMORY_SOURCE = "<memory>"

# Threads each decoder this process opens may use; 0 leaves it to FFmpeg (about one per core).
# Loader workers set 1 (`pipelines.loader.worker_init`): N workers x N-core decoders oversubscribe.
_decoder_threads = 0


def set_decoder_threads(count: int) -> None:
    """Threads each PyAV decoder opened by this process may use (0: FFmpeg's automatic choice)."""
    global _decoder_threads
    if count < 0:
        raise ValueError(f"count ({count}) must be >= 0")
    _decoder_threads = count


def decoder_threads() -> int:
    """The per-decoder thread count set by `set_decoder_threads` (0: FFmpeg's automatic choice)."""
    return _decoder_threads


class DecodeError(PathError):
    """A video (file or in-memory bytes) that cannot be decoded at the requested frames."""


class FrameIndexError(DecodeError):
    """Requested frame indices that break the contract or lie past the end of the video."""


def native_lintel() -> ModuleType | None:
    """The genuine Lintel C extension when installed, else None.

    The PyPI package named `lintel` is an unrelated docstring checker; the real
    one is recognised by its `loadvid_frame_nums` function.
    """
    if importlib.util.find_spec("lintel") is None:
        return None
    try:
        module = importlib.import_module("lintel")
    except ImportError as exc:  # a broken build of the extension: report, use ours
        log.warning("a `lintel` package is installed but does not import: %s", exc)
        return None
    return module if callable(getattr(module, "loadvid_frame_nums", None)) else None


def check_frame_nums(frame_nums: Sequence[int], *, source: str = MEMORY_SOURCE) -> list[int]:
    """Lintel's rule: a non-empty list of strictly increasing, 0-based frame indices."""
    nums = [int(n) for n in frame_nums]
    if not nums:
        raise FrameIndexError(source, "frame_nums is empty: ask for at least one frame")
    if nums[0] < 0:
        raise FrameIndexError(source, f"frame_nums must be 0-based, got {nums[0]} at position 0")
    for pos in range(1, len(nums)):
        if nums[pos] <= nums[pos - 1]:
            raise FrameIndexError(
                source,
                f"frame_nums must be strictly increasing (sort and de-duplicate them), "
                f"got {nums[pos - 1]} then {nums[pos]} at position {pos}",
            )
    return nums


# --------------------------------------------------------------------------------------
# The decoding core: sorted unique indices in, RGB frames out, exact whatever the codec.
# --------------------------------------------------------------------------------------


def decode_indices(
    source: str | BinaryIO,
    indices: Sequence[int],
    *,
    should_seek: bool = True,
    name: str | None = None,
) -> np.ndarray:
    """Decode frames at strictly increasing `indices` -> uint8 [len(indices), H, W, 3] RGB.

    Intra-only codecs (MJPEG) decode just the needed packets. Other codecs decode
    forward from the start, or with `should_seek` from the last keyframe at or before
    the first index; frames are identified by their presentation timestamps, so both
    ways give the frames a full decode gives.
    """
    label = name or (source if isinstance(source, str) else MEMORY_SOURCE)
    nums = check_frame_nums(indices, source=label)
    container = _open(source, label)
    try:
        stream = container.streams.video[0]
        if stream.codec_context.codec.intra_only:
            return _decode_intra_only(container, stream, nums, label)
        if should_seek and nums[0] > 0:
            frames = _decode_with_seek(container, stream, nums, label)
            if frames is not None:
                return frames
            container.close()  # timestamps cannot place frames: decode from the start instead
            container = _open(source, label)
            stream = container.streams.video[0]
        return _decode_sequential(container, stream, nums, label)
    except av.error.FFmpegError as exc:
        raise DecodeError(label, f"decoding failed: {ffmpeg_reason(exc)}") from None
    finally:
        container.close()


def _open(source: str | BinaryIO, label: str) -> av.container.InputContainer:
    """Open `source` from its beginning; a container without a video stream is an error."""
    if not isinstance(source, str):
        source.seek(0)
    try:
        container = av.open(source, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise DecodeError(label, f"cannot open: {ffmpeg_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise DecodeError(label, "no video stream")
    if _decoder_threads:
        container.streams.video[0].thread_count = _decoder_threads
    return container


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    # The same conversion a full decode uses (synth.decode_all): bit-identical pixels.
    return frame.to_ndarray(format="rgb24")


def past_end_error(label: str, index: int, count: int) -> FrameIndexError:
    """The error for an index at or past the real frame count (a list frame_num larger than the video)."""
    return FrameIndexError(
        label,
        f"frame {index} requested but the video has only {count} frames "
        f"(is the list's frame_num larger than the real count? re-run `videoprep index`)",
    )


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack(frames) if len(frames) > 1 else frames[0][None]


def _video_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> list:
    """Every packet a decoder is fed (non-empty, not discarded), in decode order."""
    return [p for p in container.demux(stream) if feeds_decoder(p)]


def _decode_intra_only(container, stream, nums: list[int], label: str) -> np.ndarray:
    """Intra-only streams: every packet is a whole frame, so decode only the needed ones."""
    stream.thread_type = "NONE"  # no frame threading: one packet in, its frame out
    packets = _video_packets(container, stream)
    if all(p.pts is not None for p in packets):
        packets.sort(key=lambda p: p.pts)
    if nums[-1] >= len(packets):
        raise past_end_error(label, nums[-1], len(packets))
    ctx = stream.codec_context
    out = []
    for index in nums:
        decoded = ctx.decode(packets[index])
        if len(decoded) != 1:
            raise DecodeError(label, f"packet of frame {index} decoded to {len(decoded)} frames, expected 1")
        out.append(_rgb(decoded[0]))
    return _stack(out)


def _decode_sequential(container, stream, nums: list[int], label: str) -> np.ndarray:
    """Decode from the start and count frames: the definition of frame n."""
    wanted = iter(nums)
    target = next(wanted)
    out: list[np.ndarray] = []
    count = 0
    for frame in container.decode(stream):
        if count == target:
            out.append(_rgb(frame))
            target = next(wanted, None)
            if target is None:
                return _stack(out)
        count += 1
    raise past_end_error(label, target, count)


def _decode_with_seek(container, stream, nums: list[int], label: str) -> np.ndarray | None:
    """Seek to the keyframe before the first index and decode forward, frames found by pts.

    Returns None when timestamps cannot identify frames (missing or repeated pts, or
    the seek landed after the first needed frame): the caller then decodes from the start.
    """
    packets = _video_packets(container, stream)
    pts = [p.pts for p in packets]
    if any(t is None for t in pts) or len(set(pts)) != len(pts):
        return None
    order = sorted(pts)
    if nums[-1] >= len(order):
        raise past_end_error(label, nums[-1], len(order))
    index_of = {t: i for i, t in enumerate(order)}
    first_pts = order[nums[0]]
    keyframes = [p.pts for p in packets if p.is_keyframe and p.pts <= first_pts]
    if not keyframes:
        return None
    container.seek(max(keyframes), stream=stream, backward=True)
    wanted = {order[i]: slot for slot, i in enumerate(nums)}
    out: list[np.ndarray | None] = [None] * len(nums)
    remaining = len(nums)
    for frame in container.decode(stream):
        if frame.pts is None or frame.pts not in index_of:
            return None
        if index_of[frame.pts] > nums[0] and out[0] is None:
            return None  # the seek overshot the first needed frame
        slot = wanted.get(frame.pts)
        if slot is not None and out[slot] is None:
            out[slot] = _rgb(frame)
            remaining -= 1
            if remaining == 0:
                return _stack(out)
    return None


# --------------------------------------------------------------------------------------
# Lintel's public API.
# --------------------------------------------------------------------------------------


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


def _check_size(frames: np.ndarray, width: int, height: int, name: str) -> None:
    got_h, got_w = frames.shape[1:3]
    if (width, height) != (got_w, got_h):
        raise DecodeError(
            name,
            f"width={width} height={height} given but the video is {got_w}x{got_h}: Lintel never "
            f"resizes; pass width=0 height=0 to get the native size back",
        )


def loadvid_frame_nums(
    encoded: bytes,
    *,
    frame_nums: Sequence[int],
    width: int = 0,
    height: int = 0,
    should_seek: bool = False,
    name: str = MEMORY_SOURCE,
) -> bytes | tuple[bytes, int, int]:
    """Lintel's `loadvid_frame_nums`: RGB24 frames at strictly increasing indices, decoded from bytes.

    Returns the buffer (len(frame_nums) * height * width * 3 bytes, frame after frame)
    or, when width and height are both 0, `(buffer, width, height)` at native size.
    Given sizes must equal the native size (Lintel decodes at native size and never
    resizes). `name` only labels errors.
    """
    frames = decode_indices(io.BytesIO(encoded), frame_nums, should_seek=should_seek, name=name)
    if width == 0 and height == 0:
        return frames.tobytes(), int(frames.shape[2]), int(frames.shape[1])
    _check_size(frames, width, height, name)
    return frames.tobytes()


def loadvid(
    encoded: bytes,
    *,
    should_random_seek: bool = True,
    width: int = 0,
    height: int = 0,
    num_frames: int = 32,
    rng: np.random.Generator | None = None,
    name: str = MEMORY_SOURCE,
) -> tuple[bytes, float] | tuple[bytes, int, int, float]:
    """Lintel's `loadvid`: `num_frames` consecutive frames from a random (or the first) position.

    Returns `(buffer, seek_distance)`, or `(buffer, width, height, seek_distance)` when
    width and height are both 0; seek_distance is the start as a fraction of the video.
    Unlike Lintel there is no fps cap, and a video shorter than `num_frames` repeats
    its last frame instead of looping back to the start.
    """
    if num_frames <= 0:
        raise FrameIndexError(name, f"num_frames ({num_frames}) must be > 0")
    total = count_frames(encoded, name=name)
    start = 0
    if should_random_seek and total > num_frames:
        start = int((rng or np.random.default_rng()).integers(0, total - num_frames + 1))
    wanted = [min(start + i, total - 1) for i in range(num_frames)]
    unique = sorted(set(wanted))
    frames = decode_indices(io.BytesIO(encoded), unique, should_seek=True, name=name)
    frames = frames[[unique.index(i) for i in wanted]] if len(unique) != len(wanted) else frames
    seek_distance = start / total
    if width == 0 and height == 0:
        return frames.tobytes(), int(frames.shape[2]), int(frames.shape[1]), seek_distance
    _check_size(frames, width, height, name)
    return frames.tobytes(), seek_distance


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
            frames = len(_video_packets(container, stream))
    except av.error.FFmpegError as exc:
        raise DecodeError(label, f"cannot demux: {ffmpeg_reason(exc)}") from None
    if frames == 0:
        raise DecodeError(label, "video stream has no frames")
    return StreamSummary(codec=ctx.name or "unknown", frames=frames, width=ctx.width, height=ctx.height)


def count_frames(source: bytes | str, *, name: str | None = None) -> int:
    """Frames a full decode yields (encoded bytes or a file path), counted from packets, no decoding."""
    return stream_summary(source, name=name).frames


def frames_from_buffer(buffer: bytes, *, num_frames: int, width: int, height: int) -> np.ndarray:
    """View a Lintel RGB24 buffer as uint8 [num_frames, height, width, 3]."""
    expected = num_frames * width * height * 3
    if len(buffer) != expected:
        raise DecodeError(
            MEMORY_SOURCE, f"buffer holds {len(buffer)} bytes, expected {num_frames}x{height}x{width}x3 = {expected}"
        )
    return np.frombuffer(buffer, dtype=np.uint8).reshape(num_frames, height, width, 3)
