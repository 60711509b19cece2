"""The integrity check every stage shares: is a file cut short or damaged, decided from its container's structure.

Only what the container itself declares is compared with the bytes on disk:
MP4/MOV box sizes and sample-table offsets, RIFF/AVI chunk sizes and the idx1
index, EBML/Matroska/WebM element sizes and cues, MPEG-TS packet sync and
MPEG-PS pack/packet lengths. A declared frame count that differs from the
packets is never a verdict: AVI writes empty "drop" chunks for variable frame
rate, edit lists hide frames, VP9 superframes hide alt-ref frames.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from videoprep.errors import DamagedError, ProbeError, TruncatedError
from videoprep.validate.boxes import mp4_problem
from videoprep.validate.ebml import matroska_problem
from videoprep.validate.reasons import Finding, Problem, Verdict

CHECK_VERSION = 2  # bumped when a verdict rule changes: journaled verdicts of another version are redone
_MP4_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_TS_SYNC = 0x47
_ZEROS = bytes(1 << 20)


@dataclass(frozen=True)
class Integrity:
    """The verdict on one file: intact, truncated (cut short) or damaged, and why."""

    verdict: Verdict
    container: str  # mp4, avi, matroska, mpeg-ts, mpeg-ps; '' when no structure check applies
    reason: str = ""  # validate's reason: truncated, moov_missing or damaged ('' when intact)
    message: str = ""

    @property
    def intact(self) -> bool:
        return self.verdict == "intact"

    def findings(self) -> list[Finding]:
        """validate's findings: none when intact, else one."""
        return [] if self.intact else [Finding(self.reason, self.message)]  # type: ignore[arg-type]

    def require(self, path: str | os.PathLike[str]) -> None:
        """Raise TruncatedError or DamagedError (path + reason) unless the file is intact."""
        if self.verdict == "truncated":
            raise TruncatedError(path, f"truncated: {self.message}")
        if self.verdict == "damaged":
            raise DamagedError(path, f"damaged: {self.message}")


def check_integrity(path: str | os.PathLike[str]) -> Integrity:
    """The integrity verdict on one file (OSError when it cannot be read at all)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(200)
        container, parser = _container_of(head)
        if parser is None or size == 0:
            return Integrity("intact", container)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            problem = parser(data)
    if problem is None:
        return Integrity("intact", container)
    verdict, reason, message = problem
    return Integrity(verdict, container, reason, message)


def require_intact(path: str | os.PathLike[str]) -> None:
    """The check index, transcode and frames run first: TruncatedError / DamagedError unless intact.

    ProbeError (unreadable) when the file cannot be read at all.
    """
    try:
        integrity = check_integrity(path)
    except OSError as exc:
        raise ProbeError(path, f"cannot read: {exc.strerror}") from None
    integrity.require(path)


def container_findings(path: str | os.PathLike[str]) -> list[Finding]:
    """validate's view of the integrity check: [] when intact, else the one finding."""
    return check_integrity(path).findings()


def _container_of(head: bytes) -> tuple[str, Callable[[mmap.mmap], Problem] | None]:
    """(container name, its parser) from the first bytes; ('', None) for containers not checked."""
    if len(head) >= 8 and head[4:8] in _MP4_TOP_BOXES:
        return "mp4", mp4_problem
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi", _avi_problem
    if head[:4] == _EBML_MAGIC:
        return "matroska", matroska_problem
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg-ps", _ps_problem
    if head[0:189:188] == b"GG" or head[4:197:192] == b"GG":
        return "mpeg-ts", _ts_problem
    return "", None


# --- RIFF / AVI ------------------------------------------------------------------------------


def _u32le(data: mmap.mmap, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little")


def _avi_problem(data: mmap.mmap) -> Problem:
    """RIFF chunks (AVI, then AVIX past 1 GB) and the chunks in them end inside the file; so do idx1's entries.

    AVI can only prove a file cut short: a chunk that runs past its RIFF chunk but not past the
    file is a writer's slip that demuxers read through, so the walk of that RIFF chunk just stops.
    """
    size, offset, movi = len(data), 0, None
    idx1: tuple[int, int] | None = None
    while offset + 12 <= size and data[offset : offset + 4] == b"RIFF":
        declared = _u32le(data, offset + 4)
        end = offset + 8 + declared
        if end > size:
            return ("truncated", "truncated", f"RIFF chunk {data[offset + 8 : offset + 12].decode('latin-1')!r} "
                    f"at offset {offset} declares {declared} bytes; the file ends {end - size} bytes short")
        pos = offset + 12
        while pos + 8 <= end:
            tag, length = bytes(data[pos : pos + 4]), _u32le(data, pos + 4)
            if pos + 8 + length > size:
                return ("truncated", "truncated", f"chunk {tag.decode('latin-1')!r} at offset {pos} declares "
                        f"{length} bytes; the file ends {pos + 8 + length - size} bytes short")
            if pos + 8 + length > end:
                break
            if tag == b"LIST" and data[pos + 8 : pos + 12] == b"movi" and movi is None:
                movi = (pos + 8, pos + 8 + length)
            elif tag == b"idx1":
                idx1 = (pos + 8, length)
            pos += 8 + length + (length & 1)
        offset = end + (declared & 1)
    if idx1 is None or movi is None:
        return None  # no legacy index (OpenDML or none): the chunk sizes are the whole story
    return _idx1_problem(data, movi, *idx1)


def _idx1_problem(data: mmap.mmap, movi: tuple[int, int], start: int, length: int) -> Problem:
    """An idx1 entry (id, flags, offset, size) that names bytes past the end of the file: cut short.

    Offsets count from the 'movi' tag or from the file's start, as the first entry shows. An
    index that is wrong inside the file is not a refusal: the chunks hold the data, and
    demuxers (and our readers) check an entry before they trust it.
    """
    entries, size = length // 16, len(data)
    if not entries:
        return None
    first_id, first_offset = bytes(data[start : start + 4]), _u32le(data, start + 8)
    expected = {first_id, b"LIST"} if first_id == b"rec " else {first_id}  # a 'rec ' entry names its LIST
    base = movi[0]  # the 'movi' tag: the usual origin of idx1 offsets
    if data[base + first_offset : base + first_offset + 4] not in expected:
        base = 0  # some writers use file offsets
        if data[first_offset : first_offset + 4] not in expected:
            return None  # an index that names no chunk we can find: nothing it says can be checked
    for n, (_, _, offset, chunk_size) in enumerate(struct.iter_unpack("<4sIII", data[start : start + 16 * entries])):
        if base + offset + 8 + chunk_size > size:
            return ("truncated", "truncated", f"idx1 entry {n} names {chunk_size} bytes at offset {base + offset}; "
                    f"the file ends {base + offset + 8 + chunk_size - size} bytes short")
    return None


# --- MPEG transport and program streams ------------------------------------------------------


def _ts_problem(data: mmap.mmap) -> Problem:
    """Every 188-byte packet (192 with the M2TS time code) starts with the sync byte; the last one is whole."""
    size = len(data)
    packet, lead = (188, 0) if data[0] == _TS_SYNC and data[188] == _TS_SYNC else (192, 4)
    whole = size // packet
    syncs = data[lead : whole * packet : packet]
    good = len(syncs) - len(syncs.lstrip(bytes([_TS_SYNC])))
    if good < whole:
        return ("damaged", "damaged", f"transport stream loses sync at packet {good} (offset {good * packet})")
    if size % packet:
        return ("truncated", "truncated", f"the last {packet}-byte transport packet holds only {size % packet} bytes")
    return None


def _ps_problem(data: mmap.mmap) -> Problem:
    """Packs and PES packets follow each other by their declared lengths up to the end code or the file's end."""
    size, pos = len(data), 0
    while pos + 4 <= size:
        if data[pos : pos + 3] != b"\x00\x00\x01":
            if _zeros_only(data, pos):
                return None  # zero padding after the last pack
            return ("damaged", "damaged", f"program stream loses sync at offset {pos}")
        code = data[pos + 3]
        if code == 0xB9:  # program end code
            return None
        if code == 0xBA:
            if pos + 14 > size:
                length = 14
            else:
                length = 14 + (data[pos + 13] & 7) if data[pos + 4] >> 6 == 1 else 12  # MPEG-2 or MPEG-1 pack
        elif code >= 0xBB and pos + 6 <= size:
            length = 6 + int.from_bytes(data[pos + 4 : pos + 6], "big")
        elif code >= 0xBB:
            length = 6
        else:
            return ("damaged", "damaged", f"program stream has start code 0x{code:02X} at offset {pos} between packets")
        if pos + length > size:
            return ("truncated", "truncated", f"the packet at offset {pos} declares {length} bytes; the file ends "
                    f"{pos + length - size} bytes short")
        pos += length
    if not _zeros_only(data, pos):
        return ("truncated", "truncated", f"the file ends inside a packet header at offset {pos}")
    return None


def _zeros_only(data: mmap.mmap, start: int) -> bool:
    """True when every byte from `start` on is zero (compared a MiB at a time, never copied whole)."""
    step = len(_ZEROS)
    return all(data[at : at + step] == _ZEROS[: len(data) - at] for at in range(start, len(data), step))
