"""`videoprep stats`: what a dataset's manifest says, and what changed between two manifests.

Reads the `manifest.csv` (or `manifest.parquet`) that `videoprep index` writes, through pandas.
pandas is imported only here, so no other command pays its start-up cost.

- `manifest_stats`: videos per split and status, clips per class and split, duration, size
  and frame totals, the failures by reason.
- `compare_manifests`: videos added, removed and changed (frames, size, status or label)
  between two manifests, e.g. two copies of Kinetics or two runs a month apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from videoprep.errors import PathError, VideoprepError

KEY = "relpath"
COMPARED = ("split", "label", "frames", "size_bytes", "status")


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise VideoprepError("videoprep stats needs pandas: pip install pandas") from None
    return pd


def read_manifest_frame(path: str | os.PathLike[str]) -> Any:
    """A manifest (CSV, or Parquet by its suffix) as a pandas DataFrame with the manifest's columns."""
    pd = _pandas()
    source = Path(path)
    if not source.is_file():
        raise PathError(source, "manifest not found (videoprep index writes manifest.csv in its --out)")
    try:
        if source.suffix == ".parquet":
            frame = pd.read_parquet(source)
        else:
            frame = pd.read_csv(source, dtype={"label": str, "reason": str}, keep_default_na=False,
                                na_values={c: [""] for c in ("frames", "fps", "duration_s", "width", "height",
                                                             "label_index")})
    except (ValueError, OSError, ImportError) as exc:
        raise PathError(source, f"cannot read the manifest: {exc}") from None
    missing = [c for c in (KEY, *COMPARED, "reason", "duration_s") if c not in frame.columns]
    if missing:
        raise PathError(source, f"not a videoprep manifest: no column {', '.join(missing)}")
    return frame


def manifest_stats(frame: Any) -> dict[str, Any]:
    """The dataset's figures (plain dicts and numbers, ready for JSON)."""
    ok = frame[frame["status"] == "ok"]
    failed = frame[frame["status"] == "error"]
    per_class = ok.groupby(["label", "split"]).size().unstack(fill_value=0)
    return {
        "videos": int(len(frame)),
        "by_split_and_status": {split: {str(k): int(v) for k, v in group["status"].value_counts().items()}
                                for split, group in frame.groupby("split")},
        "clips_per_class": {str(label): {str(s): int(n) for s, n in row.items()} for label, row in per_class.iterrows()},
        "classes": int(ok["label"].nunique()),
        "duration_s": _summary(ok["duration_s"]),
        "size_bytes": _summary(ok["size_bytes"]),
        "frames": _summary(ok["frames"]),
        "total_hours": round(float(ok["duration_s"].sum()) / 3600, 3),
        "total_gb": round(float(frame["size_bytes"].sum()) / 1e9, 3),
        "failures_by_reason": {str(k): int(v) for k, v in failed["reason"].value_counts().items()},
    }


def _summary(column: Any) -> dict[str, float | None]:
    values = column.dropna()
    if values.empty:
        return {"min": None, "median": None, "mean": None, "max": None}
    return {"min": float(values.min()), "median": float(values.median()), "mean": round(float(values.mean()), 3),
            "max": float(values.max())}


def compare_manifests(old: Any, new: Any) -> dict[str, Any]:
    """Videos only in `old` (removed), only in `new` (added), and in both with a different COMPARED field."""
    old_keys, new_keys = set(old[KEY]), set(new[KEY])
    both = old.merge(new, on=KEY, suffixes=("_old", "_new"))
    changed = []
    for _, row in both.iterrows():
        fields = {c: [_plain(row[f"{c}_old"]), _plain(row[f"{c}_new"])] for c in COMPARED
                  if not _same(row[f"{c}_old"], row[f"{c}_new"])}
        if fields:
            changed.append({KEY: row[KEY], **fields})
    return {"removed": sorted(old_keys - new_keys), "added": sorted(new_keys - old_keys),
            "changed": sorted(changed, key=lambda c: c[KEY]), "unchanged": len(both) - len(changed)}


def _plain(value: Any) -> Any:
    """A pandas cell as JSON: None for missing, ints for whole numbers."""
    pd = _pandas()
    if pd.isna(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)
