"""Exports of an index: the same videos in other tools' list formats (MMAction2, PySlowFast, DALI, HF), or Parquet."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from videoprep.atomic import atomic_path, write_text_if_changed
from videoprep.errors import VideoprepError
from videoprep.layout import printable_path
from videoprep.manifest import MANIFEST_COLUMNS, ManifestRow
from videoprep.records import ListRecord


@dataclass(frozen=True)
class ExportTarget:
    """Where an export goes: the --out folder, the split (empty for whole-manifest exports), the video root."""

    out: Path
    split: str
    video_root: Path


@dataclass(frozen=True)
class Export:
    """One export format: its writer, and whether it gets each split's listed rows or the whole manifest."""

    write: Callable[[list[ManifestRow], ExportTarget], Path]
    per_split: bool = True


def _write_lines(path: Path, lines: list[str]) -> Path:
    write_text_if_changed(path, "".join(line + "\n" for line in lines))
    return path


def export_mmaction(rows: list[ManifestRow], target: ExportTarget) -> Path:
    """MMAction2 video list: `relpath label`."""
    return _write_lines(target.out / f"{target.split}_mmaction.txt", [f"{r.list_path} {r.label_index}" for r in rows])


def export_rawframes(rows: list[ManifestRow], target: ExportTarget) -> Path:
    """MMAction2 rawframes list: `dir total_frames label`, dir = the video path without extension."""
    lines = [
        ListRecord(path=os.path.splitext(r.list_path)[0], frame_num=r.frames, label=r.label_index).to_line()
        for r in rows
    ]
    return _write_lines(target.out / f"{target.split}_rawframes.txt", lines)


def export_slowfast(rows: list[ManifestRow], target: ExportTarget) -> Path:
    """PySlowFast Kinetics CSV: `path label` (space separated, no header)."""
    return _write_lines(target.out / "slowfast" / f"{target.split}.csv",
                        [f"{r.list_path} {r.label_index}" for r in rows])


def export_dali(rows: list[ManifestRow], target: ExportTarget) -> Path:
    """DALI video reader file_list: `path label` (paths relative to the video root = DALI's file_root)."""
    return _write_lines(target.out / f"{target.split}_dali.txt", [f"{r.list_path} {r.label_index}" for r in rows])


def export_hf(rows: list[ManifestRow], target: ExportTarget) -> Path:
    """Hugging Face `videofolder` metadata: `{out}/hf/{split}/metadata.jsonl`, file_name relative to that folder.

    `load_dataset("videofolder", data_dir=OUT/hf/SPLIT)` then finds each video through
    file_name and gets label (the class index), label_name, frames and fps as columns.
    """
    folder = target.out / "hf" / target.split
    lines = []
    for r in rows:
        video = os.path.abspath(os.path.join(target.video_root, r.list_path))
        lines.append(json.dumps({"file_name": os.path.relpath(video, os.path.abspath(folder)),
                                 "label": r.label_index, "label_name": r.label, "frames": r.frames, "fps": r.fps},
                                ensure_ascii=False))
    return _write_lines(folder / "metadata.jsonl", lines)


def export_parquet(rows: list[ManifestRow], target: ExportTarget) -> Path:
    """The whole manifest (every video, status and reason included) as `{out}/manifest.parquet`.

    Written by pandas through pyarrow, both imported only here: every other command starts without them.
    """
    try:
        import pandas as pd
        import pyarrow  # noqa: F401 - pandas' Parquet engine; a missing one is named here, not deep inside pandas
    except ImportError as exc:
        raise VideoprepError(f"--export parquet needs pandas and pyarrow ({exc.name} is missing): "
                             "pip install 'videoprep[parquet]'") from None
    cells = [{**asdict(r), "relpath": printable_path(r.relpath), "label": printable_path(r.label)} for r in rows]
    frame = pd.DataFrame(cells, columns=list(MANIFEST_COLUMNS))
    for column in ("label_index", "frames", "width", "height"):
        frame[column] = frame[column].astype("Int64")
    frame["constant_frame_rate"] = frame["constant_frame_rate"].astype("boolean")
    path = target.out / "manifest.parquet"
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", index=False)
    return path


EXPORTS: dict[str, Export] = {
    "mmaction": Export(export_mmaction),
    "rawframes": Export(export_rawframes),
    "slowfast": Export(export_slowfast),
    "dali": Export(export_dali),
    "hf": Export(export_hf),
    "parquet": Export(export_parquet, per_split=False),
}
