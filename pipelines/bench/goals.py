"""The speed goals as data: which measure, against the fastest of which, what ratio is enough.

`evaluate` takes lookups (a measure's runs, an encoding's bytes per second), not the report, so
the goals know nothing of how a report stores its figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# (encoding, kind, backend, workers) -> the timed runs of that measure in the view judged (empty: not measured)
RunsLookup = Callable[[str, str, str, "int | None"], Sequence[float]]
# encoding -> bytes of video per second of it (None: unknown)
BytesLookup = Callable[[str], "float | None"]

TORCHCODEC = ("peer:torchcodec", "peer:torchcodec_approx")
LIMIT = ("limit:decode", "limit:decode_pil")  # the decode limit: the faster RGB decoder (PyAV or, for JPEG, PIL)
# The five formats of the loader table: each goal against torchcodec is taken on all of them.
LOADER_FORMATS = ("h264_gop16", "h264_gop250", "vp9_gop32", "mjpeg", "mjpeg_avi")
PER_CORE = "per core: one decoder thread each, as in each DataLoader worker of a many-core machine"


@dataclass(frozen=True)
class Goal:
    """`measure` over the fastest of `against` (measures "kind:backend[:workers]") reaches `target`.

    Both are taken on `encoding` (or `against_encoding`) in the train view of one run. With
    `max_bytes_ratio` the encoding must also cost at most that many times the bytes of the
    other one.
    """

    name: str
    encoding: str
    measure: str
    against: tuple[str, ...]
    target: float
    detail: str
    against_encoding: str | None = None
    max_bytes_ratio: float | None = None


GOALS: tuple[Goal, ...] = (
    *(Goal(f"pyav >= faster torchcodec, {enc}", enc, "reader:pyav", TORCHCODEC, 1.0,
           "torchcodec 0.13 exact or approximate, whichever is faster, as its users call it")
      for enc in LOADER_FORMATS),
    Goal("lintel >= faster torchcodec, h264_gop16", "h264_gop16", "reader:lintel", TORCHCODEC, 1.0,
         "the BAT video-mode reader (whole file in memory)"),
    *(Goal(f"pyav 1 thread >= torchcodec 1 thread, {enc}", enc, "reader:pyav_1t", TORCHCODEC, 1.0, PER_CORE)
      for enc in LOADER_FORMATS),
    *(Goal(f"{b} >= 2x official Lintel usage, h264_gop16", "h264_gop16", f"reader:{b}",
           ("reference:lintel_official",), 2.0, "official usage = decode from frame 0 without seeking")
      for b in ("pyav", "lintel")),
    *(Goal(f"{b} >= 0.9x decode limit, {enc}", enc, f"reader:{b}", LIMIT, 0.9,
           "the decode limit includes the RGB conversion of the needed frames")
      for b, enc in (("pyav", "h264_gop16"), ("lintel", "h264_gop16"), ("pyav", "mjpeg"), ("frames", "jpeg"))),
    *(Goal(f"DataLoader {b} 2 workers >= 1.8x 0 workers, h264_gop16", "h264_gop16", f"loader:{b}:2",
           (f"loader:{b}:0",), 1.8, "single process = the same loader with workers=0")
      for b in ("pyav", "lintel")),
    *(Goal(f"DataLoader {b} 2 workers >= 1.8x reader, h264_gop16", "h264_gop16", f"loader:{b}:2",
           (f"reader:{b}",), 1.8, "stricter: the reader alone does no crops, the loader does")
      for b in ("pyav", "lintel")),
    Goal("stretch: skip unneeded nonref >= 1.3x decode limit, h264_gop16", "h264_gop16",
         "limit:decode_skip_nonref", ("limit:decode",), 1.3,
         "exact: the skipped frames are referenced by no other frame; same bytes"),
    *(Goal(f"stretch: {enc} >= 1.3x h264_gop16 (pyav), <= 1.3x bytes", enc, "reader:pyav", ("reader:pyav",),
           1.3, "a cheaper-to-decode encoding for about the same bytes", against_encoding="h264_gop16",
           max_bytes_ratio=1.3)
      for enc in ("h264_gop16_nob", "h264_gop16_fastdecode", "h264_gop8")),
)


def _coords(ref: str) -> tuple[str, str, int | None]:
    kind, backend, *workers = ref.split(":")
    return kind, backend, int(workers[0]) if workers else None


def _median(runs: RunsLookup, encoding: str, ref: str) -> float | None:
    found = runs(encoding, *_coords(ref))
    return statistics.median(found) if found else None


def evaluate(runs: RunsLookup, bytes_per_s: BytesLookup, goals: tuple[Goal, ...] = GOALS) -> list[dict[str, Any]]:
    """Each goal with its ratio of medians (None when this run lacks either side) and whether it is met."""
    out = []
    for goal in goals:
        value = _median(runs, goal.encoding, goal.measure)
        other = goal.against_encoding or goal.encoding
        against = [v for ref in goal.against if (v := _median(runs, other, ref))]
        ratio = None if value is None or not against else value / max(against)
        row = {"goal": goal.name, "value": None if ratio is None else round(ratio, 3), "target": goal.target,
               "met": None if ratio is None else ratio >= goal.target, "detail": goal.detail}
        if goal.max_bytes_ratio is not None:
            mine, base = bytes_per_s(goal.encoding), bytes_per_s(other)
            size = mine / base if mine and base else None
            row["bytes_ratio"] = None if size is None else round(size, 3)
            row["met"] = None if ratio is None or size is None else ratio >= goal.target and size <= goal.max_bytes_ratio
        out.append(row)
    return out
