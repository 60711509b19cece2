"""A tiny labelled video list (real H.264 clips in class folders) for the shard writer and reader tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from videoprep.records import ListRecord, write_class_map, write_list
from videoprep.synth import write_video

CLASSES = ["abseiling", "air drumming"]


@dataclass(frozen=True)
class ClipList:
    """Where the videos are and the list over them (classes.txt beside it)."""

    root: Path
    list_file: Path
    records: list[ListRecord]


def make_clip_list(base: Path, *, count: int = 6, frames: int = 20, name: str = "train",
                   width: int = 64, height: int = 48) -> ClipList:
    """`count` clips, label i % 2, a .mkv among them (its extension must survive), a list and classes.txt."""
    root = base / "videos"
    records = []
    for i in range(count):
        ext = "mkv" if i == 1 else "mp4"
        rel = f"{CLASSES[i % 2].replace(' ', '_')}/clip.{i:03d}.{ext}"  # a dot in the stem: keys must not have one
        write_video(root / rel, num_frames=frames + i, width=width, height=height, seed=i, gop=4)
        records.append(ListRecord(path=rel, frame_num=frames + i, label=i % 2))
    lists = base / "lists"
    write_list(lists / f"{name}.txt", records)
    write_class_map(lists / "classes.txt", CLASSES)
    return ClipList(root=root, list_file=lists / f"{name}.txt", records=records)
