"""A user's list checked before the bench measures it, as the runners check theirs: labels, frame counts."""

from __future__ import annotations

import os
from pathlib import Path

from videoprep.errors import PathError, ProbeError
from videoprep.records import ListRecord, read_list

CHECKED_ENTRIES = 64  # entries spread over the list whose frame_num is checked against the video


def check_bench_list(list_file: str | os.PathLike[str], *, root_path: str) -> list[ListRecord]:
    """The list's records, or one PathError naming the list, the entry and the fix.

    Labels must be 0..N-1 (a loader drops nothing silently); frame_num must not exceed the
    frames of the video (or frame folder) for up to CHECKED_ENTRIES entries spread over the list.
    """
    records = read_list(list_file)
    negative = next((rec for rec in records if rec.label < 0), None)
    if negative is not None:
        raise PathError(list_file, f"label {negative.label} ({negative.path}) is negative; labels are 0..N-1: "
                                   "fix the list (or re-run `videoprep index`)")
    for rec in records[:: max(1, len(records) // CHECKED_ENTRIES)][:CHECKED_ENTRIES]:
        frames = count_frames(Path(root_path) / rec.path, list_file=list_file)
        if rec.frame_num > frames:
            raise PathError(list_file, f"frame_num {rec.frame_num} of {rec.path} is more than the {frames} frames "
                                       "it has; fix the list (or re-run `videoprep index`)")
    return records


def count_frames(path: Path, *, list_file: str | os.PathLike[str]) -> int:
    """Frames a decoder yields from a video file, or the JPEG files of a frame folder."""
    if path.is_dir():
        return sum(1 for name in os.listdir(path) if name.endswith(".jpg"))
    if not path.is_file():
        raise PathError(list_file, f"entry {str(path)!r} does not exist; check --root-path")
    from videoprep.probe import probe_video

    try:
        return probe_video(path).frames
    except ProbeError as exc:
        raise PathError(list_file, f"entry {str(path)!r} cannot be read ({exc.reason}); fix or drop it") from None
