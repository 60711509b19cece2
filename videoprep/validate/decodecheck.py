"""Decode checks: all of a video, or the spans that lead to the first, middle, last and a few random frames."""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable

import av

from videoprep.decode import Unplaceable, frames_at, nonref_skipper
from videoprep.errors import NoVideoStreamError, ProbeError
from videoprep.probe import PacketTally, VideoInfo, ffmpeg_reason
from videoprep.validate.reasons import Finding


def read_and_decode(
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
            raise NoVideoStreamError(path, "no video stream")
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
    """Decodes the spans that lead to the wanted frames, on the decode core's `frames_at`.

    Wanted frames that share a GOP share one forward pass from its keyframe, and the pass
    jumps to the next wanted frame's keyframe when one lies ahead; H.264 packets that no
    frame refers to and nobody wants are left out (the core's `nonref_skipper`). A damaged
    packet costs the frame being decoded; the others are decoded on from their keyframes.
    A wanted H.264 frame more than `window` packets past its keyframe (and past what the
    pass decodes anyway) is first tried alone: a second decoder is given the keyframe, then
    the `window` packets before the frame. It conceals the references it skipped; what is
    checked is that every packet of the short span decodes. With B-frames, strict error
    detection would reject the gap (reference lists name skipped frames), so there that
    decoder only fails on damaged data (CABAC catches most damage; CAVLC streams rarely
    have B-frames). If it fails, or the frame does not come out, the pass decides, strictly.
    """

    window = 12

    def __init__(self, ctx: av.CodecContext, packets: list[av.Packet]) -> None:
        self.ctx, self.packets = ctx, packets
        self.keyframes = [i for i, p in enumerate(packets) if p.is_keyframe] or [0]
        self.skip = nonref_skipper(ctx)  # None unless length-prefixed H.264
        self._gap_ctx: av.CodecContext | None = None
        self.wanted: dict[int, int] = {}
        self.seen: set[int] = set()

    def check(self, wanted: dict[int, int]) -> list[Finding]:
        """Findings for the wanted frames (pts -> frame number) that fail to decode or never come out."""
        self.wanted, self.seen = wanted, set()
        self._short_spans()
        errors: dict[int, str] = {}
        strict = sorted(t for t in wanted if t not in self.seen)
        while strict:
            try:
                for _, frame in frames_at(self.ctx, self.packets, strict, skip=self.skip):
                    self._note([frame])
                strict = []
            except (av.error.FFmpegError, Unplaceable) as exc:
                lost = next(t for t in strict if t not in self.seen)  # the frame being decoded
                errors[lost] = ffmpeg_reason(exc) if isinstance(exc, av.error.FFmpegError) else str(exc)
                strict = [t for t in strict if t not in self.seen and t != lost]
            finally:
                self.ctx.flush_buffers()
        return [
            Finding("undecodable", f"frame {wanted[pts]}: {errors.get(pts, 'not reached before the end of the stream')}")
            for pts in sorted(wanted, key=wanted.__getitem__)
            if pts not in self.seen
        ]

    def _short_spans(self) -> None:
        """Try each far H.264 frame alone on the gap decoder first; those that come out need no strict pass."""
        if self.skip is None:
            return
        index = {p.pts: i for i, p in enumerate(self.packets) if not p.is_discard}
        passed = -1  # the last packet the strict pass will decode before the next wanted frame
        for target in sorted(self.wanted, key=index.__getitem__):
            end = index[target]
            if end <= passed or target in self.seen:
                continue
            keyframe = self.keyframes[bisect.bisect_right(self.keyframes, end) - 1]
            if not (end - max(keyframe, passed) > self.window and self._short_span(keyframe, end, target)):
                passed = end

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
                if self.skip is not None and packet.pts not in self.wanted and self.skip(packet):
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

    def _note(self, frames: list[av.VideoFrame]) -> None:
        self.seen.update(f.pts for f in frames if f.pts in self.wanted)
