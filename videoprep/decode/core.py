"""The frame-exact decoding core: sorted unique indices in, decoded frames into a sink, exact whatever the codec.

Frame n is the n-th frame (0-based) that decoding the whole stream yields, the same
numbering as `videoprep.synth.decode_all` and the `frame_num` column of our lists.
Three ways, fastest first, each stepping aside (returning None) when the file does not
let it prove which frame is which:

- intra-only codecs (MJPEG): seek straight to each needed packet through the
  container's index (`videoprep.decode.index`), else demux and decode only those packets;
- other codecs, seeking: demux up to the last needed frame, decode from the keyframe
  before each needed frame, jump ahead to a later keyframe when no needed frame lies
  before it, and leave out H.264 packets no frame refers to;
- otherwise decode from the start and count frames (the definition of frame n).

What becomes of a frame is the sink's business (`FrameSink`): the readers of `pipelines`
convert it to RGB; validate's checks only need it decoded.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from bisect import bisect_right, insort
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, Protocol, TypeVar

import av

from videoprep.decode.errors import DecodeError, past_end_error
from videoprep.decode.h264 import h264_is_nonref, h264_nal_length_size
from videoprep.decode.index import fed_packets, read_entry, sample_index, seek_entry
from videoprep.probe import ffmpeg_reason

log = logging.getLogger(__name__)

# Threads each decoder this process opens may use; 0 leaves it to FFmpeg (about one per core).
# Loader workers set 1 (`pipelines.loader.worker_init`): N workers x N-core decoders oversubscribe.
_decoder_threads = 0


class FrameSink(Protocol):
    """Where the core delivers each needed frame: its slot (position in the request) and the frame."""

    def put(self, slot: int, frame: av.VideoFrame) -> None: ...


Sink = TypeVar("Sink", bound=FrameSink)


# Opening a file probes its streams, and FFmpeg's probe decodes frames to learn what the
# decoder will say anyway (pixel format, colours): VP9 in WebM 1.5 ms, H.264 in MKV 1.2 ms per
# open, at 340x256. These options reach only the probe's own decoder (ours is opened apart,
# with defaults), which then decodes nothing: an open costs 0.1-0.2 ms, and every frame we
# decode is unchanged (full decodes hash equal: VP9, H.264 with and without B-frames, AV1,
# MPEG-4, MJPEG). Container-level fields the probe reads from packets (rate, duration, size,
# extradata, B-frame delay) are unchanged too; only the pixel format is unknown until a decode.
_PROBE_OPTIONS = {"skip_frame": "nonkey"}


def set_decoder_threads(count: int) -> None:
    """Threads each PyAV decoder opened by this process may use (0: FFmpeg's automatic choice)."""
    global _decoder_threads
    if count < 0:
        raise ValueError(f"count ({count}) must be >= 0")
    _decoder_threads = count


def decoder_threads() -> int:
    """The per-decoder thread count set by `set_decoder_threads` (0: FFmpeg's automatic choice)."""
    return _decoder_threads


def decode_frames(source: str | BinaryIO, nums: list[int], sink: Sink, *, should_seek: bool, label: str) -> Sink:
    """Decode the frames at strictly increasing `nums` (checked by the caller) into `sink`.

    Intra-only codecs (MJPEG) decode just the needed packets. Other codecs decode
    forward from the start, or with `should_seek` from the last keyframe at or before
    each needed frame; frames are identified by their presentation timestamps, so both
    ways give the frames a full decode gives.
    """
    container = open_video(source, label)
    try:
        stream = container.streams.video[0]
        if stream.codec_context.codec.intra_only:
            if decode_intra_indexed(container, stream, nums, label, sink, source) is not None:
                return sink
            container.close()  # no trustworthy index: demux the packets instead
            container = open_video(source, label)
            return decode_intra_only(container, container.streams.video[0], nums, label, sink)
        if should_seek and nums[0] > 0:
            if decode_from_keyframe(container, stream, nums, label, sink) is not None:
                return sink
            container.close()  # timestamps cannot place frames: decode from the start instead
            container = open_video(source, label)
            stream = container.streams.video[0]
        return decode_sequential(container, stream, nums, label, sink)
    except av.error.FFmpegError as exc:
        raise DecodeError(label, f"decoding failed: {ffmpeg_reason(exc)}") from None
    finally:
        container.close()


def open_video(source: str | BinaryIO, label: str) -> av.container.InputContainer:
    """Open `source` from its beginning with this process's thread settings; no video stream is an error."""
    if not isinstance(source, str):
        source.seek(0)
    try:
        container = av.open(source, metadata_errors="ignore", options=_PROBE_OPTIONS)
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


def _single_thread(stream) -> None:
    """No decoder threads for intra-only streams: one packet in, its frame out, no pool to start."""
    stream.thread_type = "NONE"
    stream.thread_count = 1


def _decode_one(ctx, packet: av.Packet, index: int, label: str) -> av.VideoFrame:
    """The single frame an intra-only packet decodes to."""
    decoded = ctx.decode(packet)
    if len(decoded) != 1:
        raise DecodeError(label, f"packet of frame {index} decoded to {len(decoded)} frames, expected 1")
    return decoded[0]


def decode_intra_only(container, stream, nums: list[int], label: str, sink: Sink) -> Sink:
    """Intra-only streams: every packet is a whole frame, so decode only the needed ones."""
    _single_thread(stream)
    packets = list(fed_packets(container, stream))
    if all(p.pts is not None for p in packets):
        packets.sort(key=lambda p: p.pts)
    if nums[-1] >= len(packets):
        raise past_end_error(label, nums[-1], len(packets))
    ctx = stream.codec_context
    for slot, index in enumerate(nums):
        sink.put(slot, _decode_one(ctx, packets[index], index, label))
    return sink


def decode_intra_indexed(container, stream, nums: list[int], label: str, sink: Sink,
                         source: str | BinaryIO | None = None) -> Sink | None:
    """Intra-only streams with a complete index: reach each needed packet straight through it, demux nothing else.

    MP4 and AVI packets are read from the file at the index's offsets (`read_entry`: no
    FFmpeg seek or demux per frame); MKV, or a `source` that is not given, seeks to each
    entry. A packet that is not the entry asked for returns None, and the caller demuxes.
    """
    index = sample_index(container, stream)
    if index is None:
        return None
    if nums[-1] >= len(index):
        raise past_end_error(label, nums[-1], len(index))
    _single_thread(stream)
    ctx = stream.codec_context
    direct = source is not None and index.format in ("mp4", "avi")
    with open(source, "rb") if isinstance(source, str) and direct else contextlib.nullcontext(source) as raw:
        for slot, n in enumerate(nums):
            packet = read_entry(raw, index, n) if direct else seek_entry(container, stream, index, n)
            if packet is None:
                log.debug("%s: sample %d not where the %s index says; demuxing instead", label, n, index.format)
                return None
            sink.put(slot, _decode_one(ctx, packet, n, label))
    return sink


def _demux_until(demuxer, last: int) -> tuple[list[av.Packet], list[int]] | None:
    """Packets (decode order) up to the one that proves the `last`-th smallest pts is known, and every pts seen.

    Demuxing stops as soon as no later packet can have a smaller pts than frame `last`:
    decode timestamps strictly increase and a packet is never presented before it is
    decoded (pts >= dts), so once a packet's dts reaches that pts every later packet
    comes after it. Packets that break either rule disable the early stop. None when a
    packet has no pts.
    """
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
    return packets, order


class Unplaceable(Exception):
    """Timestamps cannot place a needed frame (missing pts, or a keyframe start overshot it)."""


class KeyframeStarts:
    """Decode-order position of the last keyframe presented at or before a pts."""

    def __init__(self, packets: Sequence[av.Packet]) -> None:
        keys = sorted((p.pts, i) for i, p in enumerate(packets) if p.is_keyframe)
        self._pts = [k[0] for k in keys]
        # Running maximum of positions: a later-presented keyframe never starts before an earlier one.
        self._pos = list(itertools.accumulate((k[1] for k in keys), max))

    def before(self, pts: int) -> int | None:
        """Position of the keyframe to start from for the frame presented at `pts`; None when none."""
        at = bisect_right(self._pts, pts)
        return self._pos[at - 1] if at else None


def frames_at(
    ctx: av.CodecContext,
    packets: Sequence[av.Packet],
    targets: Sequence[int],
    *,
    more: Iterator[av.Packet] = iter(()),
    skip: Callable[[av.Packet], bool] | None = None,
) -> Iterator[tuple[int | None, av.VideoFrame]]:
    """Decode the frames presented at increasing `targets` pts: (slot, frame) for each decoded frame.

    slot is the target's position, or None for a frame decoded on the way. Decoding
    starts at the keyframe before the first target and, once every target before it
    is out, jumps ahead to the keyframe before the next target when one lies ahead (a
    keyframe starts an independent run of frames). `packets` (decode order) must reach
    the last target; `more` continues them for the decoder's delay. Packets that are
    not targets and for which `skip` is true are not fed. Raises Unplaceable when a
    frame has no pts or comes out past a target that is still missing.
    """
    starts = KeyframeStarts(packets)
    pos = starts.before(targets[0])
    if pos is None:
        raise Unplaceable("no keyframe before the first needed frame")
    wanted = {pts: slot for slot, pts in enumerate(targets)}
    got = [False] * len(targets)
    pending = 0  # the first slot not delivered yet
    while True:
        packet = packets[pos] if pos < len(packets) else next(more, None)
        pos += 1
        if packet is not None and skip is not None and packet.pts not in wanted and skip(packet):
            continue  # nobody asked for it and no frame refers to it
        for frame in ctx.decode(packet):
            if frame.pts is None or frame.pts > targets[pending]:
                raise Unplaceable(f"frame at pts {frame.pts} came out while pts {targets[pending]} is missing")
            slot = wanted.get(frame.pts)
            if slot is None or got[slot]:
                yield None, frame
                continue
            got[slot] = True
            while pending < len(got) and got[pending]:
                pending += 1
            yield slot, frame
            if pending == len(got):
                return
        if packet is None:
            raise Unplaceable("the stream ended before every needed frame came out")
        jump = starts.before(targets[pending])
        if jump is not None and jump > pos:
            ctx.flush_buffers()  # frames still inside the decoder are not needed: all before are out
            pos = jump


def nonref_skipper(ctx: av.CodecContext) -> Callable[[av.Packet], bool] | None:
    """For length-prefixed H.264: the test that a packet is referred to by no frame; else None."""
    length_size = h264_nal_length_size(ctx.extradata) if ctx.name == "h264" else None
    if length_size is None:
        return None
    return lambda packet: h264_is_nonref(packet, length_size=length_size)


def decode_from_keyframe(container, stream, nums: list[int], label: str, sink: Sink) -> Sink | None:
    """Decode from the keyframe before each needed frame, skipping what no needed frame depends on.

    Frame n has the n-th smallest pts. Packets are demuxed up to the last needed frame
    (see _demux_until), then decoded by `frames_at`, less the H.264 packets that are
    neither asked for nor referred to (h264_is_nonref). Returns None when timestamps
    cannot identify frames (missing or repeated pts, or a keyframe start that overshoots
    a needed frame): the caller then decodes from the start.
    """
    demuxer = fed_packets(container, stream)
    demuxed = _demux_until(demuxer, nums[-1])
    if demuxed is None:
        return None
    packets, order = demuxed
    last = nums[-1]
    if last >= len(order):
        raise past_end_error(label, last, len(order))
    needed = order[: last + 1]
    if len(set(needed)) != len(needed) or (len(order) > last + 1 and order[last + 1] == order[last]):
        return None  # repeated pts: frames cannot be told apart by timestamp
    ctx = stream.codec_context
    try:
        for slot, frame in frames_at(ctx, packets, [needed[i] for i in nums], more=demuxer,
                                     skip=nonref_skipper(ctx)):
            if slot is not None:
                sink.put(slot, frame)
    except Unplaceable as exc:
        log.debug("%s: %s; decoding from the start instead", label, exc)
        return None
    return sink


def decode_sequential(container, stream, nums: list[int], label: str, sink: Sink) -> Sink:
    """Decode from the start and count frames: the definition of frame n."""
    wanted = iter(enumerate(nums))
    slot, target = next(wanted)
    count = 0
    for frame in container.decode(stream):
        if count == target:
            sink.put(slot, frame)
            slot, target = next(wanted, (None, None))
            if target is None:
                return sink
        count += 1
    raise past_end_error(label, target, count)
