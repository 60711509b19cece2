"""Matroska/WebM structure for the integrity check: element sizes within the file, cues pointing at clusters."""

from __future__ import annotations

import mmap

from videoprep.validate.reasons import Problem

_SEGMENT = 0x18538067
_CLUSTER = 0x1F43B675
_CUES = 0x1C53BB6B
_CUE_POINT, _CUE_TRACK_POSITIONS, _CUE_CLUSTER_POSITION = 0xBB, 0xB7, 0xF1
# Elements that sit directly in the segment: one of them ends a cluster of unknown size.
_TOP_LEVEL = {0x114D9B74, 0x1549A966, 0x1654AE6B, _CLUSTER, _CUES, 0x1043A770, 0x1254C367, 0x1941A469}
_NAMES = {0x114D9B74: "SeekHead", 0x1549A966: "Info", 0x1654AE6B: "Tracks", _CLUSTER: "Cluster", _CUES: "Cues",
          0x1043A770: "Chapters", 0x1254C367: "Tags", 0x1941A469: "Attachments", 0xEC: "Void"}


class _Short(Exception):
    """An element header that the file ends inside of."""


class _Bad(Exception):
    """Bytes that cannot be an EBML element header."""


def _vint(data: mmap.mmap, pos: int, *, marker: bool) -> tuple[int, int, bool]:
    """(value, length, unknown size) of an EBML variable-length integer at `pos`."""
    if pos >= len(data):
        raise _Short
    first = data[pos]
    length = 9 - first.bit_length() if first else 9
    if length > 8:
        raise _Bad(f"no EBML integer at offset {pos}")
    if pos + length > len(data):
        raise _Short
    value = int.from_bytes(data[pos : pos + length], "big")
    payload = value - (1 << (7 * length))
    return (value if marker else payload), length, payload == (1 << (7 * length)) - 1


def _element(data: mmap.mmap, pos: int) -> tuple[int, int, int | None]:
    """(id, body start, body end or None for an unknown size) of the element at `pos`."""
    ident, id_len, _ = _vint(data, pos, marker=True)
    size, size_len, unknown = _vint(data, pos + id_len, marker=False)
    body = pos + id_len + size_len
    return ident, body, None if unknown else body + size


def matroska_problem(data: mmap.mmap) -> Problem:
    """EBML header, segment, every top-level element and every cue point against the bytes on disk."""
    size = len(data)
    try:
        _, header_body, header_end = _element(data, 0)
        seg_id, seg_body, seg_end = _element(data, header_end or header_body)
    except _Short:
        return "truncated", "truncated", "the file ends inside the Matroska header"
    except _Bad:
        return "damaged", "damaged", "Matroska header is damaged"
    if seg_id != _SEGMENT:
        return "damaged", "damaged", f"no Matroska segment after the EBML header (id 0x{seg_id:X})"
    if seg_end is not None and seg_end > size:
        return "truncated", "truncated", (f"Matroska segment declares {seg_end - seg_body} bytes; the file ends "
                                          f"{seg_end - size} bytes short")
    try:
        return _walk(data, seg_body, seg_end if seg_end is not None else size)
    except _Short:
        return "truncated", "truncated", "the file ends inside an element header"
    except _Bad as exc:
        return "damaged", "damaged", str(exc)


def _walk(data: mmap.mmap, seg_body: int, seg_end: int) -> Problem:
    """The segment's top-level elements in order; clusters of unknown size are walked through."""
    size, pos = len(data), seg_body
    while pos < seg_end:
        ident, body, end = _element(data, pos)
        if end is None:
            pos = _unknown_size_end(data, body, seg_end)
            continue
        if end > size:
            name = _NAMES.get(ident, f"0x{ident:X}")
            return "truncated", "truncated", (f"{name} at offset {pos} declares {end - body} bytes; the file ends "
                                              f"{end - size} bytes short")
        if end > seg_end:
            return "damaged", "damaged", f"element at offset {pos} runs past the end of its segment"
        if ident == _CUES:
            problem = _cues_problem(data, body, end, seg_body)
            if problem is not None:
                return problem
        pos = end
    return None


def _unknown_size_end(data: mmap.mmap, pos: int, limit: int) -> int:
    """Where an element of unknown size (a live-written cluster) ends: at the next top-level element."""
    while pos < limit:
        ident, body, end = _element(data, pos)
        if ident in _TOP_LEVEL:
            return pos
        if end is None:
            raise _Bad(f"element of unknown size at offset {pos} inside an element of unknown size")
        if end > len(data):
            raise _Short
        pos = end
    return pos


def _cues_problem(data: mmap.mmap, pos: int, end: int, seg_body: int) -> Problem:
    """A cue point that names a cluster past the end of the file: cut short."""
    size = len(data)
    for number, (ident, body, point_end) in enumerate(_kids(data, pos, end)):
        if ident != _CUE_POINT:
            continue
        for track_id, track_body, track_end in _kids(data, body, point_end):
            if track_id != _CUE_TRACK_POSITIONS:
                continue
            for field_id, field_body, field_end in _kids(data, track_body, track_end):
                if field_id != _CUE_CLUSTER_POSITION:
                    continue
                cluster = seg_body + int.from_bytes(data[field_body:field_end], "big")
                if cluster >= size:
                    return "truncated", "truncated", (f"cue point {number} names a cluster at offset {cluster}; "
                                                      f"the file ends at {size}")
    return None  # a cue that names the wrong place inside the file: the clusters still hold the data


def _kids(data: mmap.mmap, pos: int, end: int) -> list[tuple[int, int, int]]:
    """The (id, body, end) of each child element between `pos` and `end`."""
    out = []
    while pos < end:
        ident, body, child_end = _element(data, pos)
        if child_end is None or child_end > end:
            raise _Bad(f"element at offset {pos} runs past its parent")
        out.append((ident, body, child_end))
        pos = child_end
    return out
