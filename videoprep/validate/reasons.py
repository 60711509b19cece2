"""What validate can find wrong with a video: the reasons, worst first, and their classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videoprep.errors import VideoprepError

Reason = Literal[
    "empty",
    "moov_missing",
    "truncated",
    "damaged",
    "unreadable",
    "no_video_stream",
    "check_failed",
    "undecodable",
    "too_short",
    "variable_frame_rate",
    "not_420",
    "odd_dimensions",
    "missing",
]
# Worst first: the primary reason of a bad video is the first of these it has.
REASONS: dict[str, str] = {
    "empty": "0-byte file",
    "moov_missing": "MP4/MOV without its moov atom (download cut short)",
    "truncated": "file ends before its container says it does",
    "damaged": "the container's structure cannot be read on (box or element sizes, stream sync)",
    "unreadable": "cannot be opened or demuxed",
    "no_video_stream": "no video stream (audio-only or other)",
    "check_failed": "the check itself timed out or its worker died",
    "undecodable": "frames fail to decode",
    "too_short": "fewer frames than one training clip needs",
    "variable_frame_rate": "variable frame rate",
    "not_420": "pixel format is not 4:2:0",
    "odd_dimensions": "odd width or height",
    "missing": "annotated clip with no file on disk",
}
# What a finding means for the video: unusable as it is, fixed by `transcode`, or too short to train on.
UNUSABLE = frozenset(
    {"empty", "moov_missing", "truncated", "damaged", "unreadable", "no_video_stream", "check_failed", "undecodable", "missing"}
)
FIXABLE = frozenset({"variable_frame_rate", "not_420", "odd_dimensions"})
FindingClass = Literal["unusable", "fixable", "too_short"]
# The integrity check's verdict classes, and what one container parser finds: (verdict, reason, message).
Verdict = Literal["intact", "truncated", "damaged"]
Problem = tuple[Verdict, str, str] | None


def finding_class(reason: str) -> FindingClass:
    """The class of a reason: unusable, fixable (by transcode) or too_short."""
    if reason in UNUSABLE:
        return "unusable"
    return "fixable" if reason in FIXABLE else "too_short"


def parse_reasons(text: str) -> frozenset[str]:
    """Comma-separated reasons or class names (unusable, fixable, too_short) -> the reasons they name."""
    by_class = {"unusable": UNUSABLE, "fixable": FIXABLE, "too_short": frozenset({"too_short"})}
    out: set[str] = set()
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word not in by_class and word not in REASONS:
            raise VideoprepError(
                f"reason {word!r} is unknown; use class names ({', '.join(by_class)}) or reasons ({', '.join(REASONS)})"
            )
        out |= by_class.get(word, {word})
    return frozenset(out)


@dataclass(frozen=True)
class Finding:
    """One problem with one video."""

    reason: Reason
    message: str
