"""The decode limit: how fast the decoder alone delivers a clip's frames, the ceiling for any loader."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from pipelines.bench.plan import Sample
from pipelines.decode import to_rgb
from videoprep.decode import Unplaceable, fed_packets, frames_at, h264_nonref_packets
from videoprep.errors import VideoprepError


class DecodeLimit:
    """How fast PyAV's decoder alone delivers the frames a clip needs (the ceiling for any loader).

    Packets are demuxed (and JPEG files read) before timing; timed is only the
    decoder, fed as the decode core feeds it (`pipelines.decode.frames_at`): for inter
    codecs from the keyframe before each needed frame, for intra-only codecs (MJPEG,
    JPEG folders) the needed frames alone. With `rgb` (the limit we compare against)
    the needed frames are also converted to RGB once each (the core's converter),
    since every loader must return RGB; without it the figure is the bare decoder
    (`decode_only`).
    """

    def __init__(self, *, frames_folder: bool, rgb: bool, skip_nonref: bool = False, collect: bool = False) -> None:
        self.frames_folder = frames_folder
        self.rgb = rgb
        self.skip_nonref = skip_nonref  # the stretch experiment: see h264_nonref_packets
        self.collect = collect  # keep the RGB frames (tests compare them with a full decode)
        self.collected: list[np.ndarray] = []
        self._files: dict[str, Any] = {}
        self._jpeg_ctx: Any = None
        self.decoded = 0
        self.delivered = 0

    def _open(self, path: str) -> Any:
        """Per file, once: its decoder context and packets (decode order) with presentation order."""
        if path in self._files:
            return self._files[path]
        container = av.open(path)
        stream = container.streams.video[0]
        packets = list(fed_packets(container, stream))
        pts = [p.pts for p in packets]
        if any(t is None for t in pts) or len(set(pts)) != len(pts):
            raise VideoprepError(f"{path}: packets lack unique timestamps; the decode limit cannot be measured")
        intra = bool(stream.codec_context.codec.intra_only)
        if intra:
            stream.thread_type = "NONE"
        ctx = stream.codec_context
        nonref = h264_nonref_packets(packets, ctx.extradata) if self.skip_nonref and ctx.name == "h264" else set()
        entry = {"container": container, "ctx": ctx, "packets": packets, "order": sorted(pts), "intra": intra,
                 "nonref": nonref}
        self._files[path] = entry
        return entry

    def close(self) -> None:
        """Close every container opened for the measurement."""
        for entry in self._files.values():
            entry["container"].close()
        self._files.clear()

    def prepare(self, samples: Sequence[Sample]) -> None:
        """Demux (or read) everything the samples need, outside the timed part."""
        if self.frames_folder:
            return
        for s in samples:
            self._open(s.path)

    def _deliver(self, frame: av.VideoFrame) -> None:
        if self.rgb:
            rgb = to_rgb(frame)
            if self.collect:
                self.collected.append(rgb.copy())

    def _one_video(self, s: Sample) -> None:
        entry = self._open(s.path)
        ctx, packets, order = entry["ctx"], entry["packets"], entry["order"]
        targets = [order[i] for i in sorted(set(s.indices))]
        ctx.flush_buffers()
        if entry["intra"]:
            by_pts = {p.pts: p for p in packets}
            for t in targets:
                for frame in ctx.decode(by_pts[t]):
                    self.decoded += 1
                    self._deliver(frame)
        else:
            nonref = entry["nonref"]
            try:
                for slot, frame in frames_at(ctx, packets, targets, skip=(lambda p: p.pts in nonref) if nonref else None):
                    self.decoded += 1
                    if slot is not None:
                        self._deliver(frame)
            except Unplaceable as exc:
                raise VideoprepError(f"{s.path}: {exc}; the decode limit cannot be measured") from None
        self.delivered += len(targets)

    def _one_folder(self, s: Sample, payloads: dict[str, list[bytes]]) -> None:
        if self._jpeg_ctx is None:  # one decoder for every file, as for a video's stream (opening one costs ms)
            self._jpeg_ctx = av.CodecContext.create("mjpeg", "r")
        ctx = self._jpeg_ctx
        for data in payloads[s.path + repr(s.indices)]:
            for frame in ctx.decode(av.Packet(data)):
                self.decoded += 1
                self._deliver(frame)
        self.delivered += len(set(s.indices))

    def run(self, samples: Sequence[Sample]) -> tuple[int, float]:
        """Time the decoder over the samples (demuxing and file reading happen before the clock starts)."""
        if self.frames_folder:
            payloads = {
                s.path + repr(s.indices): [
                    Path(s.path, f"img_{i:05d}.jpg").read_bytes() for i in sorted(set(s.indices))
                ]
                for s in samples
            }
            start = time.perf_counter()
            for s in samples:
                self._one_folder(s, payloads)
        else:
            self.prepare(samples)
            start = time.perf_counter()
            for s in samples:
                self._one_video(s)
        return sum(s.clips for s in samples), time.perf_counter() - start


class JpegLimit:
    """The decode limit of JPEG-coded frames (MJPEG packets, JPEG files) through libjpeg-turbo (PIL).

    PIL decodes straight to RGB (colour conversion fused in the decoder), which
    can beat libavcodec plus a separate RGB conversion; the decode limit of a
    JPEG-coded file set is the faster of the two. Payloads are read before timing.
    """

    def __init__(self, *, frames_folder: bool) -> None:
        self.frames_folder = frames_folder
        self._packets: dict[str, tuple[list[int], dict[int, bytes]]] = {}
        self.decoded = 0
        self.delivered = 0

    def _payloads(self, s: Sample) -> list[bytes]:
        nums = sorted(set(s.indices))
        if self.frames_folder:
            return [Path(s.path, f"img_{i:05d}.jpg").read_bytes() for i in nums]
        if s.path not in self._packets:
            with av.open(s.path) as container:
                stream = container.streams.video[0]
                data = {p.pts: bytes(p) for p in container.demux(stream) if p.size and not p.is_discard}
            self._packets[s.path] = (sorted(data), data)
        order, data = self._packets[s.path]
        return [data[order[i]] for i in nums]

    def close(self) -> None:
        """Drop the cached packets."""
        self._packets.clear()

    def run(self, samples: Sequence[Sample]) -> tuple[int, float]:
        """Time PIL decoding the needed frames to RGB arrays."""
        from PIL import Image

        payloads = [self._payloads(s) for s in samples]
        start = time.perf_counter()
        for frames in payloads:
            for data in frames:
                with Image.open(io.BytesIO(data)) as img:
                    np.asarray(img.convert("RGB"))
                self.decoded += 1
            self.delivered += len(frames)
        return sum(s.clips for s in samples), time.perf_counter() - start
