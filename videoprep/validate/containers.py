"""The integrity check: is a file cut short or damaged, decided from its container's own structure."""

from __future__ import annotations

import io
import os

from videoprep.validate.reasons import Finding

_MP4_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}
_EBML_ID = 0x1A45DFA3
_SEGMENT_ID = 0x18538067


def container_findings(path: str | os.PathLike[str]) -> list[Finding]:
    """Structural problems seen in the container headers alone: missing moov, declared sizes past EOF.

    MP4/MOV (top-level boxes), Matroska/WebM (segment size) and AVI (RIFF
    sizes) declare how long they are; other containers yield nothing here.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) >= 8 and head[4:8] in _MP4_TOP_BOXES:
            return _mp4_findings(f, size)
        if head[:4] == b"RIFF":
            return _riff_findings(f, size)
        if int.from_bytes(head[:4], "big") == _EBML_ID:
            return _matroska_findings(f, size)
    return []


def _mp4_findings(f: io.BufferedReader, size: int) -> list[Finding]:
    findings = []
    names = []
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(16)
        box_size, name, header_len = int.from_bytes(header[:4], "big"), header[4:8], 8
        if box_size == 1 and len(header) == 16:
            box_size, header_len = int.from_bytes(header[8:16], "big"), 16
        elif box_size == 0:  # "extends to the end of the file"
            box_size = size - offset
        label = name.decode("latin-1")
        if box_size < header_len:
            findings.append(
                Finding("unreadable", f"box {label!r} at offset {offset} has invalid size {box_size}")
            )
            break
        names.append(name)
        if offset + box_size > size:
            findings.append(
                Finding(
                    "truncated",
                    f"box {label!r} at offset {offset} declares {box_size} bytes; the file ends "
                    f"{offset + box_size - size} bytes short",
                )
            )
            break
        offset += box_size
    if b"moov" not in names:
        findings.insert(0, Finding("moov_missing", "moov atom not found"))
    return findings


def _riff_findings(f: io.BufferedReader, size: int) -> list[Finding]:
    offset = 0
    while offset + 8 <= size:  # AVI files over 1 GB chain several RIFF chunks
        f.seek(offset)
        header = f.read(12)
        chunk_size = int.from_bytes(header[4:8], "little")
        end = offset + 8 + chunk_size + (chunk_size & 1)
        if end > size + (chunk_size & 1):
            return [
                Finding(
                    "truncated",
                    f"RIFF chunk {header[8:12].decode('latin-1')!r} at offset {offset} declares "
                    f"{chunk_size} bytes; the file ends {end - size} bytes short",
                )
            ]
        offset = end
    return []


def _read_vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, length, all value bits set) of an EBML variable-length integer at `pos`."""
    first = data[pos]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or pos + length > len(data):
        raise ValueError("bad EBML integer")
    value = int.from_bytes(data[pos : pos + length], "big")
    marker = 1 << (7 * length)
    payload = value - marker
    return (value if keep_marker else payload), length, payload == marker - 1


def _matroska_findings(f: io.BufferedReader, size: int) -> list[Finding]:
    f.seek(0)
    head = f.read(64)
    try:
        pos = 0
        _, id_len, _ = _read_vint(head, pos, keep_marker=True)
        ebml_size, size_len, _ = _read_vint(head, pos + id_len, keep_marker=False)
        pos += id_len + size_len + ebml_size
        f.seek(pos)
        seg = f.read(16)
        seg_id, id_len, _ = _read_vint(seg, 0, keep_marker=True)
        seg_size, size_len, unknown = _read_vint(seg, id_len, keep_marker=False)
    except (ValueError, IndexError):
        return [Finding("unreadable", "Matroska header is damaged")]
    if seg_id != _SEGMENT_ID or unknown:
        return []  # a live-style stream of unknown length: nothing to compare
    end = pos + id_len + size_len + seg_size
    if end > size:
        return [
            Finding(
                "truncated",
                f"Matroska segment declares {seg_size} bytes; the file ends {end - size} bytes short",
            )
        ]
    return []
