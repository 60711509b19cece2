"""Byte-level facts about H.264 packets, read without a decoder (which frames nothing refers to)."""

from __future__ import annotations

from collections.abc import Sequence

import av


def h264_nal_length_size(extradata: bytes | None) -> int | None:
    """Bytes of each NAL length prefix of a length-prefixed (avcC: mp4, mkv) H.264 stream; None for Annex B."""
    if not extradata or extradata[0] != 1 or len(extradata) < 5:
        return None
    return (extradata[4] & 3) + 1


def h264_is_nonref(data: bytes | memoryview, *, length_size: int) -> bool:
    """True for an H.264 access unit whose slices all have nal_ref_idc 0: no other frame refers to it.

    Leaving such a packet out changes no other frame (frame_num only counts reference
    pictures and only reference pictures carry memory management), so skipping the
    ones nobody asked for keeps every delivered frame exact.
    """
    view = memoryview(data)
    pos, slices, refs, end = 0, 0, 0, len(view)
    while pos + length_size < end:
        length = int.from_bytes(view[pos : pos + length_size], "big")
        header = view[pos + length_size]
        if header & 0x1F in (1, 5):  # coded slice (non-IDR / IDR)
            slices += 1
            refs += 1 if header & 0x60 else 0
        pos += length_size + length
    return slices > 0 and refs == 0


def h264_nonref_packets(packets: Sequence[av.Packet], extradata: bytes | None) -> set[int]:
    """pts of the H.264 packets no frame refers to (see h264_is_nonref); empty for Annex B streams."""
    size = h264_nal_length_size(extradata)
    if size is None:
        return set()
    return {p.pts for p in packets if h264_is_nonref(p, length_size=size)}
