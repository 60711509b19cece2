"""Which annotated clips a download keeps: class subsets and per-class limits, deterministic."""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from videoprep.errors import VideoprepError
from videoprep.kinetics import Clip

log = logging.getLogger(__name__)


def parse_classes(value: str | None) -> tuple[str, ...] | None:
    """Class names from a file (one per line, `#` comments) or a comma-separated list; None = all."""
    if value is None or not value.strip():
        return None
    path = Path(value)
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        names = [part.strip() for part in value.split(",") if part.strip()]
    return tuple(dict.fromkeys(names))


def check_classes(classes: Sequence[str], *, known: Sequence[str]) -> None:
    """Raise with close matches when a requested class is not in the annotations."""
    known_set = set(known)
    unknown = [name for name in classes if name not in known_set]
    if not unknown:
        return
    hints = []
    for name in unknown[:5]:
        close = difflib.get_close_matches(name, list(known_set), n=3)
        hints.append(f"{name!r}" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
    raise VideoprepError(f"unknown class name(s): {'; '.join(hints)}; the annotations list {len(known_set)} classes")


def select_clips(
    clips: Sequence[Clip], *, classes: Sequence[str] | None = None, limit_per_class: int | None = None
) -> list[Clip]:
    """Clips kept by the filters, in annotation order; the first N rows of each class win.

    Unlabelled rows (the test split) cannot match --classes and are dropped
    when it is given; under --limit-per-class alone they count as one class.
    """
    if limit_per_class is not None and limit_per_class < 1:
        raise VideoprepError(f"limit_per_class ({limit_per_class}) must be >= 1")
    wanted = set(classes) if classes is not None else None
    if wanted is not None and any(c.label is None for c in clips):
        log.warning("--classes given: %d unlabelled rows (test split) are not selected",
                    sum(c.label is None for c in clips))
    taken: Counter[str | None] = Counter()
    kept: list[Clip] = []
    seen: set[str] = set()
    for clip in clips:
        if wanted is not None and clip.label not in wanted:
            continue
        if limit_per_class is not None and taken[clip.label] >= limit_per_class:
            continue
        if clip.clip_id in seen:
            continue  # the CSVs hold a few duplicate rows; one file per clip id
        seen.add(clip.clip_id)
        taken[clip.label] += 1
        kept.append(clip)
    return kept
