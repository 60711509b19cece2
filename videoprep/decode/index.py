"""Intra-only sample access through the container's own index: MP4 sample table, AVI idx1, MKV cues.

An intra-only decoder yields one frame per fed packet, in packet order, so frame n is the
n-th packet, and the n-th entry of an index that lists every packet. Each format lists
its packets differently; `sample_index` says whether this container's index can be
trusted to list every one, and `is_entry` whether a packet read after a seek is the
entry asked for. Anything doubtful returns None and the caller demuxes instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import av

from videoprep.probe import feeds_decoder

# AVI indexes point at the chunk header ('00dc' + size, 8 bytes) before the packet's data.
_AVI_CHUNK_HEADER = 8


@dataclass(frozen=True)
class SampleIndex:
    """Seekable entries of every packet a decoder is fed, in decode order, and how to recognise them."""

    format: str  # "mp4", "avi" or "mkv"
    timestamps: list[int]
    positions: list[int]
    sizes: list[int]  # 0 where the index gives no size (MKV cue points)

    def __len__(self) -> int:
        return len(self.timestamps)

    def is_entry(self, packet: av.Packet | None, n: int) -> bool:
        """True when `packet` (read after seeking to entry n) is entry n itself."""
        if packet is None:
            return False
        if self.format == "mkv":  # cue points give the cluster, not the block: the timestamp decides
            return packet.pts == self.timestamps[n]
        offset = packet.pos - self.positions[n]
        slack = _AVI_CHUNK_HEADER if self.format == "avi" else 0
        return 0 <= offset <= slack and packet.size == self.sizes[n]


def fed_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.Packet]:
    """Packets a decoder is fed (non-empty, not discarded), in decode order."""
    return (p for p in container.demux(stream) if feeds_decoder(p))


def read_entry(raw: BinaryIO, index: SampleIndex, n: int) -> av.Packet | None:
    """Entry n's bytes read straight from the file (MP4, AVI): no seek or demux in FFmpeg; None where unsure.

    An MP4 sample table gives each sample's offset and size; an AVI index entry points at
    the chunk header, which must name a video chunk ('..dc'/'..db') of the indexed size.
    MKV cues point at clusters, not blocks: None.
    """
    pos, size = index.positions[n], index.sizes[n]
    if size <= 0 or index.format not in ("mp4", "avi"):
        return None
    if index.format == "avi":
        raw.seek(pos)
        header = raw.read(_AVI_CHUNK_HEADER)
        if len(header) < _AVI_CHUNK_HEADER or header[2:4] not in (b"dc", b"db") or \
                int.from_bytes(header[4:], "little") != size:
            return None
        pos += _AVI_CHUNK_HEADER
    raw.seek(pos)
    data = raw.read(size)
    return av.Packet(data) if len(data) == size else None


def seek_entry(container, stream, index: SampleIndex, n: int) -> av.Packet | None:
    """The packet of entry n, read after seeking straight to it; None when the seek lands elsewhere."""
    container.seek(index.timestamps[n], stream=stream, backward=True, any_frame=True)
    packet = next(fed_packets(container, stream), None)
    return packet if index.is_entry(packet, n) else None


def _kind(container: av.container.InputContainer) -> str | None:
    names = container.format.name.split(",")
    if "mov" in names or "mp4" in names:
        return "mp4"
    if "avi" in names:
        return "avi"
    if "matroska" in names:
        return "mkv"
    return None


def sample_index(container, stream) -> SampleIndex | None:
    """The index of every fed packet of an intra-only stream, when the container carries a complete one."""
    kind = _kind(container)
    if kind is None:
        return None
    if kind == "mkv":
        container.seek(0, stream=stream, backward=True, any_frame=True)  # Matroska parses its cues on a seek
    everything = list(stream.index_entries)
    entries = [e for e in everything if not e.is_discard and (e.size > 0 or kind == "mkv")]
    if not entries:
        return None
    stamps = [e.timestamp for e in entries]
    if any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
        return None  # an intra-only stream's packets have strictly increasing timestamps
    index = SampleIndex(kind, stamps, [e.pos for e in entries], [e.size for e in entries])
    if kind == "mp4":  # the ISO sample table lists every sample: it must agree with the header's count
        return index if not stream.frames or len(everything) == stream.frames else None
    if kind == "avi" and len(entries) == len(everything) == stream.frames:
        return index  # idx1 read whole: one entry per chunk the header counts, none empty (no drop chunk)
    return index if covers_stream(container, stream, index) else None


def covers_stream(container, stream, index: SampleIndex) -> bool:
    """AVI idx1 / MKV cues: the last entry is a real packet and nothing follows it; MKV: no gap between cues.

    AVI's idx1 lists every chunk by definition; its end is checked anyway, since a file
    without one gets an index built while reading. Matroska cues need not list every block: they
    are trusted only where consecutive cue points lie at most one frame duration apart
    (plus one tick of rounding), so no packet fits between two of them.
    """
    if index.format == "mkv":
        first = seek_entry(container, stream, index, 0)
        step = first.duration if first is not None else 0
        if not step:
            return False
        stamps = index.timestamps
        if any(b - a > step + 1 for a, b in zip(stamps, stamps[1:], strict=False)):
            return False
    last = seek_entry(container, stream, index, len(index) - 1)
    if last is None:
        return False
    return next(fed_packets(container, stream), None) is None
