"""videoprep frames: JPEG folders that match the source frame for frame, lists from the files, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.backends.frames import FramesReader
from tests.videoprep.helpers import write_tree
from videoprep.errors import PathError
from videoprep.frames import FramesConfig, FramesSettings, count_frames, run_frames
from videoprep.probe import probe_video
from videoprep.records import read_class_map, read_list
from videoprep.synth import decode_all
from videoprep.transcode import read_mapping, scaled_size

SOURCES = {
    # relpath: (width, height, fps, frames)
    "train/passing American football (in game)/clip 1.mp4": (64, 48, 25, 23),
    "train/abseiling/clip2.mp4": (48, 64, 30, 17),
    "val/abseiling/v 3.mp4": (64, 48, 24, 12),
}


@pytest.fixture
def src_tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", SOURCES)


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_frames_on_disk_match_the_source_and_the_rawframe_list(src_tree, tmp_path):
    dst = tmp_path / "frames"
    result = run_frames(FramesConfig(src=src_tree, dst=dst, settings=FramesSettings(short_side=32), jobs=2))
    assert result.ok and result.extracted == len(SOURCES)
    assert read_class_map(dst / "classes.txt") == ["abseiling", "passing American football (in game)"]
    mapping = {row["source"]: row["output"] for row in read_mapping(dst / "mapping.csv")}
    records = {}
    for split in ("train", "val"):
        assert result.lists[split] == dst / f"{split}.txt"
        records.update({r.path: r for r in read_list(result.lists[split], root=dst, check_files=True)})
    reader = FramesReader()
    for rel, (w, h, _, n) in SOURCES.items():
        folder = dst / mapping[rel]
        assert not any(ch.isspace() or ch in "()" for ch in mapping[rel])
        on_disk = sorted(p.name for p in folder.iterdir())
        assert on_disk == [f"img_{i:05d}.jpg" for i in range(n)]
        assert n == probe_video(src_tree / rel).frames == reader.frame_count(folder)
        record = records[mapping[rel]]
        assert record.frame_num == n
        assert record.label == (1 if "football" in rel else 0)

        frames = reader.read(str(folder), [0, n - 1, 0])
        width, height = scaled_size(w, h, short_side=32)
        assert frames.shape == (3, height, width, 3) and frames.dtype == np.uint8
        # 0-based and in order: img_00000 is the source's first frame, the last file its last frame
        source = [np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in decode_all(
            src_tree / rel)]
        assert _mean_abs(frames[0], source[0]) < _mean_abs(frames[0], source[1])
        assert _mean_abs(frames[1], source[n - 1]) < _mean_abs(frames[1], source[n - 2])
        assert np.array_equal(frames[0], frames[2])


def test_rerun_skips_done_folders_and_records_a_corrupt_video(src_tree, tmp_path):
    (src_tree / "val" / "abseiling" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    dst = tmp_path / "frames"
    stale = dst / "train" / ".clip2.abc123.part"  # left by a killed run
    stale.mkdir(parents=True)
    (stale / "img_00000.jpg").write_bytes(b"partial")
    config = FramesConfig(src=src_tree, dst=dst, settings=FramesSettings(short_side=32), jobs=2)
    first = run_frames(config)
    assert first.extracted == len(SOURCES)
    assert [f.source for f in first.failures] == ["val/abseiling/broken.mp4"]
    report = json.loads((dst / "frames_report.json").read_text())
    assert report["failures"][0]["source"] == "val/abseiling/broken.mp4" and report["failures"][0]["error"]
    assert not stale.exists()
    assert not (dst / "val" / "abseiling" / "broken").exists()
    assert [r.path for r in read_list(dst / "val.txt")] == ["val/abseiling/v_3"]

    second = run_frames(config)
    assert (second.extracted, second.skipped, len(second.failures)) == (0, len(SOURCES), 1)
    assert [r.frame_num for r in read_list(dst / "train.txt")] == [17, 23]

    changed = run_frames(FramesConfig(src=src_tree, dst=dst, settings=FramesSettings(short_side=32, quality=10),
                                      jobs=2))
    assert changed.extracted == len(SOURCES)  # a new quality re-extracts everything


def test_count_frames_rejects_gaps(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    for i in (0, 1, 3):
        (folder / f"img_{i:05d}.jpg").write_bytes(b"x")
    with pytest.raises(PathError, match=r"not numbered 0\.\.2 \(missing e\.g\. \[2\]\)"):
        count_frames(folder)
    (folder / "img_00002.jpg").write_bytes(b"x")
    assert count_frames(folder) == 4


def test_one_based_frames_for_mmaction_hold_the_same_images(src_tree, tmp_path):
    """--one-based: img_00001.jpg is the first frame; the images equal the 0-based run's, shifted by one."""
    from click.testing import CliRunner

    from cli import cli

    zero, one = tmp_path / "zero", tmp_path / "one"
    run_frames(FramesConfig(src=src_tree, dst=zero, settings=FramesSettings(short_side=32), jobs=1))
    result = CliRunner().invoke(cli, ["frames", str(src_tree), str(one), "--short-side", "32", "--one-based",
                                      "-j", "1"])
    assert result.exit_code == 0, result.output
    assert (one / "train.txt").read_text() == (zero / "train.txt").read_text()
    rel, (_, _, _, n) = next(iter(SOURCES.items()))
    folder = {row["source"]: row["output"] for row in read_mapping(zero / "mapping.csv")}[rel]
    assert sorted(p.name for p in (one / folder).iterdir()) == [f"img_{i:05d}.jpg" for i in range(1, n + 1)]
    for i in range(n):
        assert (one / folder / f"img_{i + 1:05d}.jpg").read_bytes() == (zero / folder / f"img_{i:05d}.jpg").read_bytes()
    assert count_frames(one / folder, first=1) == n
    with pytest.raises(PathError, match="not numbered 0.."):
        count_frames(one / folder)
    # 0-based settings keep their digest: frames written before the option existed are still done
    assert FramesSettings(short_side=32).digest() != FramesSettings(short_side=32, first_number=1).digest()
