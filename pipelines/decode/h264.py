"""H.264 non-reference access units: frames no other frame refers to, safe to leave undecoded.

The byte-level rules live in videoprep.h264 (validate uses them too); this adds the packet-level view.
"""

from __future__ import annotations

from collections.abc import Sequence

import av

from videoprep.h264 import h264_is_nonref, h264_nal_length_size

__all__ = ["h264_is_nonref", "h264_nal_length_size", "h264_nonref_packets"]


def h264_nonref_packets(packets: Sequence[av.Packet], extradata: bytes | None) -> set[int]:
    """pts of the H.264 packets no frame refers to (see h264_is_nonref); empty for Annex B streams."""
    size = h264_nal_length_size(extradata)
    if size is None:
        return set()
    return {p.pts for p in packets if h264_is_nonref(p, length_size=size)}
