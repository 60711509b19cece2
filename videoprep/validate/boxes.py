"""MP4/MOV structure for the integrity check: box sizes, and every sample of every track inside the file."""

from __future__ import annotations

import itertools
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from videoprep.validate.reasons import Problem

_SAMPLE_PATH = (b"mdia", b"minf", b"stbl")


class _Damaged(Exception):
    """A box whose declared size cannot be right (smaller than its header, past its parent)."""


@dataclass(frozen=True)
class Box:
    """One box: its type, where it starts, where its body starts and where it ends (as declared)."""

    name: bytes
    start: int
    body: int
    end: int

    @property
    def label(self) -> str:
        return self.name.decode("latin-1")


def _box_at(data: mmap.mmap, offset: int, limit: int) -> Box:
    """The box header at `offset`; a size of 0 runs to `limit`."""
    size, name, header = int.from_bytes(data[offset : offset + 4], "big"), bytes(data[offset + 4 : offset + 8]), 8
    if size == 1:
        size, header = int.from_bytes(data[offset + 8 : offset + 16], "big"), 16
    elif size == 0:
        size = limit - offset
    if size < header:
        raise _Damaged(f"box {name.decode('latin-1')!r} at offset {offset} has invalid size {size}")
    return Box(name, offset, offset + header, offset + size)


def _children(data: mmap.mmap, parent: Box) -> Iterator[Box]:
    """The boxes inside `parent`; _Damaged when one runs past it."""
    offset = parent.body
    while offset + 8 <= parent.end:
        box = _box_at(data, offset, parent.end)
        if box.end > parent.end:
            raise _Damaged(f"box {box.label!r} at offset {offset} runs past its parent {parent.label!r}")
        yield box
        offset = box.end


def mp4_problem(data: mmap.mmap) -> Problem:
    """Top-level boxes and the sample tables: is the moov there and whole, and is every sample in the file?"""
    size, offset = len(data), 0
    boxes: list[Box] = []
    invalid = ""
    while offset + 8 <= size:
        try:
            box = _box_at(data, offset, size)
        except _Damaged as exc:
            invalid = str(exc)
            break
        boxes.append(box)
        offset = box.end
    moov = next((b for b in boxes if b.name == b"moov"), None)
    overrun = next((b for b in boxes if b.end > size), None)
    short = f"box {overrun.label!r} at offset {overrun.start} declares {overrun.end - overrun.start} bytes; " \
        f"the file ends {overrun.end - size} bytes short" if overrun else ""
    if moov is None:
        if invalid:
            return "damaged", "damaged", invalid
        return "truncated", "moov_missing", "moov atom not found" + (f" ({short})" if short else "")
    if moov.end > size:
        return "truncated", "truncated", short
    try:
        problem = _samples_problem(data, moov, size)
    except _Damaged as exc:
        return "damaged", "damaged", str(exc)
    if problem is None and any(b.name == b"moof" for b in boxes):  # fragmented: the fragments carry the samples
        if overrun is not None:
            return "truncated", "truncated", short
        if invalid:
            return "damaged", "damaged", invalid
    return problem


def _samples_problem(data: mmap.mmap, moov: Box, size: int) -> Problem:
    """The first track with samples past the end of the file (cut short with the moov in front)."""
    for number, trak in enumerate((b for b in _children(data, moov) if b.name == b"trak"), start=1):
        stbl = _descend(data, trak, _SAMPLE_PATH)
        if stbl is None:
            continue
        ends = _sample_ends(data, stbl)
        lost = sum(end > size for end in ends)
        if lost:
            return "truncated", "truncated", (f"{lost} of {len(ends)} samples of track {number} lie past the end "
                                              f"of the file (the last ends {max(ends) - size} bytes past it)")
    return None


def _descend(data: mmap.mmap, box: Box, path: tuple[bytes, ...]) -> Box | None:
    """The box reached from `box` through the child types in `path`, if every step exists."""
    for name in path:
        box = next((b for b in _children(data, box) if b.name == name), None)  # type: ignore[assignment]
        if box is None:
            return None
    return box


def _sample_ends(data: mmap.mmap, stbl: Box) -> list[int]:
    """Where each sample of a sample table ends: chunk offsets (stco/co64), samples per chunk (stsc), sizes."""
    tables = {b.name: b for b in _children(data, stbl)}
    sizes = _sample_sizes(data, tables)
    offsets = _table(data, tables.get(b"co64"), ">Q") or _table(data, tables.get(b"stco"), ">I")
    runs = _table(data, tables.get(b"stsc"), ">III")
    if not sizes or not offsets or not runs:
        return []
    ends: list[int] = []
    sample = 0
    for i, (first, per_chunk, _) in enumerate(runs):
        last = runs[i + 1][0] - 1 if i + 1 < len(runs) else len(offsets)
        for chunk in range(first, min(last, len(offsets)) + 1):
            take = sizes[sample : sample + per_chunk]
            ends.extend(offsets[chunk - 1][0] + end for end in itertools.accumulate(take))
            sample += per_chunk
            if sample >= len(sizes):
                return ends
    return ends


def _sample_sizes(data: mmap.mmap, tables: dict[bytes, Box]) -> list[int]:
    """Every sample's size, from stsz (one size for all, or a table) or the compact stz2."""
    if b"stsz" in tables:
        box = tables[b"stsz"]
        uniform, count = struct.unpack(">II", data[box.body + 4 : box.body + 12])
        if uniform:
            return [uniform] * count
        return [s for (s,) in _table(data, box, ">I", header=12)]
    if b"stz2" in tables:
        box = tables[b"stz2"]
        bits, count = data[box.body + 7], int.from_bytes(data[box.body + 8 : box.body + 12], "big")
        raw = bytes(data[box.body + 12 : box.end])
        if bits == 4:
            return [v for byte in raw for v in (byte >> 4, byte & 15)][:count]
        return [int.from_bytes(raw[i : i + bits // 8], "big") for i in range(0, count * bits // 8, bits // 8)]
    return []


def _table(data: mmap.mmap, box: Box | None, fmt: str, *, header: int = 8) -> list[tuple[int, ...]]:
    """The entries of a full box laid out as (version/flags, count, entries...); [] when absent."""
    if box is None:
        return []
    count = int.from_bytes(data[box.body + header - 4 : box.body + header], "big")
    width = struct.calcsize(fmt)
    count = min(count, (box.end - box.body - header) // width)  # a count the box cannot hold is clamped
    start = box.body + header
    return list(struct.iter_unpack(fmt, data[start : start + count * width]))
