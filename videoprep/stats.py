"""Dataset statistics of an index manifest, and the comparison of two manifests, with pandas.

pandas is imported inside these functions only: `videoprep --help` and runs that never ask for
statistics do not pay its start-up (~0.3 s).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from videoprep.atomic import write_text_if_changed
from videoprep.errors import PathError

if TYPE_CHECKING:
    import pandas as pd

STATS_NAME = "dataset_stats.json"
CompareKey = Literal["relpath", "stem"]
COMPARE_KEYS: tuple[str, ...] = ("relpath", "stem")
_TEXT = ("relpath", "split", "label", "status")
_NUMBERS = ("frames", "duration_s", "size_bytes")


def read_manifest_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The manifest CSV `videoprep index` writes, as a DataFrame (text columns as str, numbers as floats)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PathError(path, f"cannot read it as a manifest CSV: {exc}") from exc
    missing = [c for c in (*_TEXT, *_NUMBERS) if c not in frame.columns]
    if missing:
        raise PathError(path, f"not a videoprep manifest: no {', '.join(missing)} column "
                              "(give the manifest.csv that `videoprep index` writes)")
    for column in _NUMBERS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _split_stats(rows: pd.DataFrame) -> dict[str, Any]:
    """Counts, clips per class, durations and sizes of one split's rows (durations and sizes of listed clips)."""
    ok = rows[rows["status"] == "ok"]
    per_class = ok.groupby("label").size()
    duration = ok["duration_s"].dropna()
    size = ok["size_bytes"].dropna()
    return {
        "videos": len(rows),
        "listed": len(ok),
        "unlabelled": int((rows["status"] == "unlabelled").sum()),
        "errors": int((rows["status"] == "error").sum()),
        "classes": int(len(per_class)),
        "clips_per_class": {"min": int(per_class.min()) if len(per_class) else 0,
                            "median": float(per_class.median()) if len(per_class) else 0.0,
                            "max": int(per_class.max()) if len(per_class) else 0},
        "duration_s": {"total": round(float(duration.sum()), 3), "mean": _rounded(duration.mean()),
                       "min": _rounded(duration.min()), "max": _rounded(duration.max())},
        "frames": int(ok["frames"].dropna().sum()),
        "size_bytes": {"total": int(size.sum()), "mean": _rounded(size.mean())},
        "per_class": {str(label): int(n) for label, n in per_class.items()},
    }


def _rounded(value: float) -> float | None:
    return None if value != value else round(float(value), 3)  # NaN (no rows): None


def dataset_stats(manifest: str | os.PathLike[str], *,
                  failed: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Per split and overall: videos, listed/unlabelled/error counts, clips per class, durations, sizes.

    `failed` (reason -> videos not listed, as the stage engine counts them) is recorded as is.
    """
    return _stats(read_manifest_frame(manifest), manifest, failed=failed)


def _stats(frame: pd.DataFrame, manifest: str | os.PathLike[str], *,
           failed: Mapping[str, int] | None = None) -> dict[str, Any]:
    splits = {str(split): _split_stats(rows) for split, rows in frame.groupby("split", sort=True)}
    # the file's name only: the same tree indexed into two folders gives the same statistics file
    return {"manifest": Path(manifest).name, "splits": splits, "all": _split_stats(frame),
            "failed_by_reason": dict(sorted((failed or {}).items()))}


def read_dataset_stats(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The statistics an earlier run wrote, or None when they are missing or unreadable (then recompute)."""
    try:
        stats = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stats if isinstance(stats, dict) and "splits" in stats else None


def write_dataset_stats(manifest: str | os.PathLike[str], out: str | os.PathLike[str], *,
                        failed: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Compute the statistics of a manifest and write them atomically as JSON to `out`."""
    stats = dataset_stats(manifest, failed=failed)
    # a re-run with nothing changed rewrites nothing, this file included
    write_text_if_changed(out, json.dumps(stats, indent=2, sort_keys=True, default=str) + "\n")
    return stats


@dataclass
class ManifestDiff:
    """How two manifests differ, clip by clip (keys as compared), and each side's statistics."""

    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    label: list[tuple[str, str, str]] = field(default_factory=list)  # (key, label in A, label in B)
    frames: list[tuple[str, float, float]] = field(default_factory=list)
    status: list[tuple[str, str, str]] = field(default_factory=list)
    stats_a: dict[str, Any] = field(default_factory=dict)
    stats_b: dict[str, Any] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not (self.only_a or self.only_b or self.label or self.frames or self.status)

    def record(self) -> dict[str, Any]:
        """A JSON-ready record of the differences and both sides' statistics."""
        return {"identical": self.identical, "only_a": self.only_a, "only_b": self.only_b,
                "label": [list(t) for t in self.label], "frames": [list(t) for t in self.frames],
                "status": [list(t) for t in self.status], "stats_a": self.stats_a, "stats_b": self.stats_b}


def _keyed(frame: pd.DataFrame, path: str | os.PathLike[str], key: CompareKey) -> pd.DataFrame:
    """The manifest indexed by `split/relpath without extension` (or `split/file stem`); keys must be unique."""
    name = frame["relpath"].str.replace(r"\.[^./]*$", "", regex=True)
    if key == "stem":
        name = name.str.rsplit("/", n=1).str[-1]
    frame = frame.assign(key=frame["split"] + "/" + name if key == "stem" else name)
    repeated = frame["key"][frame["key"].duplicated()]
    if len(repeated):
        raise PathError(path, f"{len(repeated)} clip(s) share a {key} key (e.g. {repeated.iloc[0]!r}); "
                              "compare with --key relpath")
    return frame.set_index("key")


def compare_manifests(a: str | os.PathLike[str], b: str | os.PathLike[str], *,
                      key: CompareKey = "relpath") -> ManifestDiff:
    """Clips only in A, only in B, and in both with another label, frame count or status.

    key "relpath" matches clips by their path without extension (a transcoded copy keeps its paths);
    "stem" by split and file name (a flat mirror copy against a class-folder copy).
    """
    if key not in COMPARE_KEYS:
        raise ValueError(f"key {key!r} must be one of {', '.join(COMPARE_KEYS)}")
    frame_a, frame_b = read_manifest_frame(a), read_manifest_frame(b)
    left, right = _keyed(frame_a, a, key), _keyed(frame_b, b, key)
    both = left.merge(right, how="inner", left_index=True, right_index=True, suffixes=("_a", "_b"))
    frames_a, frames_b = both["frames_a"], both["frames_b"]
    frames_differ = (frames_a != frames_b) & ~(frames_a.isna() & frames_b.isna())
    return ManifestDiff(
        only_a=sorted(left.index.difference(right.index)),
        only_b=sorted(right.index.difference(left.index)),
        label=sorted(zip(both.index[both["label_a"] != both["label_b"]],
                         both["label_a"][both["label_a"] != both["label_b"]],
                         both["label_b"][both["label_a"] != both["label_b"]], strict=True)),
        frames=sorted((k, _number(x), _number(y)) for k, x, y in zip(
            both.index[frames_differ], frames_a[frames_differ], frames_b[frames_differ], strict=True)),
        status=sorted(zip(both.index[both["status_a"] != both["status_b"]],
                          both["status_a"][both["status_a"] != both["status_b"]],
                          both["status_b"][both["status_a"] != both["status_b"]], strict=True)),
        stats_a=_stats(frame_a, a), stats_b=_stats(frame_b, b),
    )


def _number(value: float) -> float | None:
    return None if value != value else float(value)


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """A manifest given as the file or as the lists folder holding manifest.csv."""
    given = Path(path)
    return given / "manifest.csv" if given.is_dir() else given


def parquet_problem() -> str | None:
    """Why a Parquet manifest cannot be written here (pyarrow missing), or None; imports nothing."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        return "a Parquet manifest needs pyarrow: pip install 'videoprep[parquet]'"
    return None
