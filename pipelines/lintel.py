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
import itertools
import logging
import os
import threading
from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import BinaryIO, Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from videoprep.errors import PathError
from videoprep.h264 import h264_is_nonref, h264_nal_length_size
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
            frames = _decode_intra_indexed(container, stream, nums, label)
            if frames is not None:
                return frames
            container.close()  # no trustworthy sample table: demux the packets instead
            container = _open(source, label)
            stream = container.streams.video[0]
            return _decode_intra_only(container, stream, nums, label)
        if should_seek and nums[0] > 0:
            frames = _decode_from_keyframe(container, stream, nums, label)
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
    stream = container.streams.video[0]
    if _decoder_threads != 1:
        # Frame and slice threads (what the ffmpeg CLI does). PyAV's default, slice threads
        # only, starts a thread pool per open yet gains nothing on one-slice frames (x264's
        # default): frame threads measured 39.7 -> 50 clips/s on H.264 (2 cores, workers=0).
        stream.thread_type = "AUTO"
    if _decoder_threads:
        stream.thread_count = _decoder_threads
    return container


class _RGB:
    """Frame -> RGB24 array through one reused swscale context (the same pixels as to_ndarray)."""

    def __init__(self) -> None:
        # frame.to_ndarray(format=...) may set up a new swscale context per frame; one
        # reformatter keeps it (tests/pipelines/test_lintel.py checks the pixels are identical).
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        # One swscale thread: its automatic pool stays alive with the reformatter, gains little
        # at these sizes, and forking while it exists hung child processes (ffmpeg's preexec_fn).
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()


# One per thread: a reformatter holds a swscale context, which is not safe to share across threads.
_rgb_local = threading.local()
# Reformatters a forked child inherited: their swscale worker threads did not survive the fork,
# so using or freeing them would wait forever (a DataLoader worker hung that way). Kept, unused.
_inherited: list[_RGB] = []


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB24 pixels of a frame, bit-identical to the full decode of synth.decode_all."""
    convert = getattr(_rgb_local, "convert", None)
    if convert is None or _rgb_local.pid != os.getpid():
        if convert is not None:
            _inherited.append(convert)
        convert = _rgb_local.convert = _RGB()
        _rgb_local.pid = os.getpid()
    return convert(frame)


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


# Container formats whose demuxer index (`stream.index_entries`) lists every sample in
# decode order, with its byte position (the ISO/QuickTime sample table).
_SAMPLE_TABLE_FORMATS = ("mov", "mp4")


def _sample_table(container, stream) -> list | None:
    """The index entries of the packets a decoder is fed, when the format lists every sample; else None."""
    if not any(name in _SAMPLE_TABLE_FORMATS for name in container.format.name.split(",")):
        return None
    everything = stream.index_entries
    entries = [e for e in everything if e.size > 0 and not e.is_discard]
    if not entries or (stream.frames and len(everything) != stream.frames):
        return None  # the table and the header disagree: do not trust either
    return entries


def _decode_intra_indexed(container, stream, nums: list[int], label: str) -> np.ndarray | None:
    """Intra-only streams in mp4/mov: seek straight to each needed sample, no demuxing of the rest.

    Frame n is the n-th fed packet (an intra-only decoder yields one frame per packet, in
    packet order), which is the n-th sample of the table. Each packet read after a seek
    must be that sample (same byte position and size); anything else (a seek that lands
    elsewhere, e.g. on repeated timestamps) returns None, and the caller demuxes instead.
    """
    entries = _sample_table(container, stream)
    if entries is None:
        return None
    if nums[-1] >= len(entries):
        raise past_end_error(label, nums[-1], len(entries))
    stream.thread_type = "NONE"  # no frame threading: one packet in, its frame out
    ctx = stream.codec_context
    out = []
    for index in nums:
        entry = entries[index]
        container.seek(entry.timestamp, stream=stream, backward=True, any_frame=True)
        packet = next((p for p in container.demux(stream) if feeds_decoder(p)), None)
        if packet is None or packet.pos != entry.pos or packet.size != entry.size:
            log.debug("%s: sample %d not where the index says; demuxing instead", label, index)
            return None
        decoded = ctx.decode(packet)
        if len(decoded) != 1:
            raise DecodeError(label, f"packet of frame {index} decoded to {len(decoded)} frames, expected 1")
        out.append(_rgb(decoded[0]))
    return _stack(out)


def h264_nonref_packets(packets: Sequence[av.Packet], extradata: bytes | None) -> set[int]:
    """pts of the H.264 packets no frame refers to (see h264_is_nonref); empty for Annex B streams."""
    size = h264_nal_length_size(extradata)
    if size is None:
        return set()
    return {p.pts for p in packets if h264_is_nonref(p, length_size=size)}


def _decode_from_keyframe(container, stream, nums: list[int], label: str) -> np.ndarray | None:
    """Demux up to the last needed frame once, then decode from the keyframe before the first.

    Frame n has the n-th smallest pts. Demuxing stops as soon as no later packet can
    have a smaller pts than the last needed frame: decode timestamps strictly increase
    and a packet is never presented before it is decoded (pts >= dts), so once a packet's
    dts reaches that pts every later packet comes after it. Packets that break either
    rule disable the early stop (the whole stream is demuxed, as before). The decoder
    is fed the demuxed packets from the keyframe on, then the rest of the demuxer, less
    the H.264 packets that are neither asked for nor referred to (h264_is_nonref).
    Returns None when timestamps cannot identify frames (missing or repeated pts, or
    decoding from the keyframe overshoots the first needed frame): the caller then
    decodes from the start.
    """
    last = nums[-1]
    demuxer = (p for p in container.demux(stream) if feeds_decoder(p))
    packets: list[av.Packet] = []
    order: list[int] = []  # pts seen so far, sorted
    can_stop, prev_dts = True, None
    for packet in demuxer:
        pts, dts = packet.pts, packet.dts
        if pts is None:
            return None
        packets.append(packet)
        insort(order, pts)
        if dts is None or pts < dts or (prev_dts is not None and dts <= prev_dts):
            can_stop = False
        prev_dts = dts
        if can_stop and len(order) > last and dts >= order[last]:
            break
    if last >= len(order):
        raise past_end_error(label, last, len(order))
    needed = order[: last + 1]
    if len(set(needed)) != len(needed) or (len(order) > last + 1 and order[last + 1] == order[last]):
        return None  # repeated pts: frames cannot be told apart by timestamp
    first_pts = needed[nums[0]]
    start = next((i for i in range(len(packets) - 1, -1, -1)
                  if packets[i].is_keyframe and packets[i].pts <= first_pts), None)
    if start is None:
        return None
    wanted = {needed[i]: slot for slot, i in enumerate(nums)}
    out: list[np.ndarray | None] = [None] * len(nums)
    remaining = len(nums)
    ctx = stream.codec_context
    length_size = h264_nal_length_size(ctx.extradata) if ctx.name == "h264" else None
    for packet in itertools.chain(packets[start:], demuxer, [None]):
        if (length_size is not None and packet is not None and packet.pts not in wanted
                and h264_is_nonref(packet, length_size=length_size)):
            continue  # nobody asked for it and no frame refers to it
        for frame in ctx.decode(packet):
            if frame.pts is None:
                return None
            if out[0] is None and frame.pts > first_pts:
                return None  # decoding from the keyframe skipped the first needed frame
            slot = wanted.get(frame.pts)
            if slot is not None and out[slot] is None:
                out[slot] = _rgb(frame)
                remaining -= 1
                if remaining == 0:
                    return _stack(out)
    return None


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
