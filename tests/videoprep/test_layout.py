"""Layout rules: safe names, split/label assignment, discovery, the symlink view."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from videoprep.errors import LayoutError
from videoprep.kinetics import Clip
from videoprep.layout import (
    SAFE_VIEW_DIRNAME,
    discover,
    find_video_files,
    is_safe_relpath,
    link_safe_view,
    missing_clips,
    plan_safe_view,
    resolve_layout,
    safe_name,
)

AMFOOT = "passing American football (in game)"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (AMFOOT, "passing_American_football_in_game"),
        ("massaging person's head", "massaging_person_s_head"),
        ("tai chi", "tai_chi"),
        ("clip name (1).mp4", "clip_name_1.mp4"),
        ("a\tb\nc.webm", "a_b_c.webm"),
        ("$(rm -rf x);.mp4", "rm_-rf_x.mp4"),
        ("   ", "_"),
        ("dots.in.name", "dots.in.name"),
    ],
)
def test_safe_name(name, expected):
    assert safe_name(name) == expected
    assert not any(ch.isspace() for ch in safe_name(name))


@pytest.mark.parametrize("name", ["abseiling", "-dyNq7Ay0Nk_000010_000020.mp4", "_x_", "val_256", "a+b.mkv"])
def test_safe_name_keeps_safe_names(name):
    assert safe_name(name) == name


def test_plan_only_unsafe_paths_and_resolve_collisions():
    plan = plan_safe_view(["train/a/x.mp4", "train/a b/x.mp4", "train/a(b/x.mp4", f"val/{AMFOOT}/y.mp4"])
    assert "train/a/x.mp4" not in plan
    assert plan[f"val/{AMFOOT}/y.mp4"] == "val/passing_American_football_in_game/y.mp4"
    collided = [plan["train/a b/x.mp4"], plan["train/a(b/x.mp4"]]
    assert len(set(collided)) == 2
    assert all(p.startswith("train/a_b/x-") and p.endswith(".mp4") and is_safe_relpath(p) for p in collided)
    # The plan does not depend on input order.
    assert plan_safe_view(reversed(list(plan))) == plan


def test_resolve_class_folders_without_annotations():
    layout = resolve_layout(
        Path("/data/k400"),
        [
            "train/b class/x.mp4",
            "train/a/y.mp4",
            "validation/a/z.webm",
            "test/c/w.mkv",
        ],
    )
    assert layout.classes == ["a", "b class", "c"]
    got = {v.relpath: (v.split, v.label) for v in layout.videos}
    assert got == {
        "train/b class/x.mp4": ("train", "b class"),
        "train/a/y.mp4": ("train", "a"),
        "validation/a/z.webm": ("val", "a"),
        "test/c/w.mkv": ("test", "c"),
    }
    assert layout.splits == ["test", "train", "val"]


def test_resolve_flat_cvdf_with_annotations():
    clips = [
        Clip("aaaaaaaaaaa", 1, 11, "train", "zumba"),
        Clip("bbbbbbbbbbb", 5, 15, "train", AMFOOT),
        Clip("ccccccccccc", 0, 10, "val", "abseiling"),
        Clip("ddddddddddd", 0, 10, "test", None),
        Clip("eeeeeeeeeee", 0, 10, "train", "yoga"),  # no file: classes still include it
    ]
    layout = resolve_layout(
        Path("/k"),
        [
            "train/aaaaaaaaaaa_000001_000011.mp4",
            "train/bbbbbbbbbbb_000005_000015.mp4",
            "val/ccccccccccc_000000_000010.mp4",
            "test/ddddddddddd_000000_000010.mp4",
            "train/zzzzzzzzzzz_000000_000010.mp4",
        ],
        clips=clips,
    )
    assert layout.classes == ["abseiling", AMFOOT, "yoga", "zumba"]
    by = {v.relpath.split("/")[1][:3]: v for v in layout.videos}
    assert by["aaa"].label == "zumba" and by["bbb"].label == AMFOOT and by["ccc"].split == "val"
    assert by["ddd"].label is None and "no label in the annotations (test split)" in by["ddd"].note
    assert by["zzz"].label is None and by["zzz"].note == "clip not in the annotation CSVs"


def test_resolve_class_folders_matched_loosely_to_annotation_classes():
    clips = [Clip("aaaaaaaaaaa", 1, 11, "train", AMFOOT), Clip("bbbbbbbbbbb", 1, 11, "train", "yoga")]
    layout = resolve_layout(
        Path("/k"),
        [
            "train/passing_American_football_in_game/zzzzzzzzzzz_000000_000010.mp4",
            "train/not a class/yyyyyyyyyyy_000000_000010.mp4",
        ],
        clips=clips,
    )
    labels = {v.relpath.split("/")[1]: (v.label, v.note) for v in layout.videos}
    assert labels["passing_American_football_in_game"] == (AMFOOT, "")
    assert (
        labels["not a class"][0] is None and "not one of the 2 annotated classes" in labels["not a class"][1]
    )


def test_resolve_plain_tree_and_split_option():
    plain = resolve_layout(Path("/d/myset"), ["x/1.mp4", "y/2.mp4"])
    assert {(v.split, v.label) for v in plain.videos} == {("all", "x"), ("all", "y")}
    named = resolve_layout(Path("/d/myset"), ["x/1.mp4"], split="val")
    assert named.videos[0].split == "val"
    root_is_split = resolve_layout(Path("/d/k400/validation"), ["x/1.mp4"])
    assert root_is_split.videos[0].split == "val"
    only_val = resolve_layout(Path("/d"), ["train/x/1.mp4", "validation/x/2.mp4"], split="validation")
    assert [(v.relpath, v.split) for v in only_val.videos] == [("validation/x/2.mp4", "val")]
    # One class map whichever split is indexed: a class missing from val keeps its index.
    tree = ["train/a/1.mp4", "train/b/2.mp4", "validation/b/3.mp4"]
    val_only = resolve_layout(Path("/d"), tree, split="val")
    assert val_only.classes == resolve_layout(Path("/d"), tree, split="train").classes == ["a", "b"]
    assert val_only.class_index()[val_only.videos[0].label] == 1
    assert resolve_layout(Path("/d"), ["train/x/1.mp4"], split="test").videos == []
    flat_unannotated = resolve_layout(Path("/d"), ["train/aaaaaaaaaaa_000001_000011.mp4"])
    assert flat_unannotated.videos[0].label is None
    assert "--annotations" in flat_unannotated.videos[0].note


def test_find_video_files_skips_views_hidden_and_non_videos(tmp_path):
    for rel in [
        "train/a/x.mp4",
        "train/a/y.MKV",
        "train/a/notes.txt",
        "train/.hidden/z.mp4",
        "train/a/.partial.mp4",
        f"{SAFE_VIEW_DIRNAME}/train/a/x.mp4",
        "view2/x.mp4",
        "skipme/q.mp4",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "view2" / ".videoprep-safe-view").write_text("")
    os.symlink(tmp_path / "train", tmp_path / "loop")  # reachable twice: listed once, by its real path
    os.symlink(tmp_path, tmp_path / "train" / "up")  # a cycle is not followed forever
    found = find_video_files(tmp_path, skip_dirs=[tmp_path / "skipme"])
    assert found == ["train/a/x.mp4", "train/a/y.MKV"]
    with pytest.raises(LayoutError, match="not a folder"):
        find_video_files(tmp_path / "nope")


def test_link_safe_view_relative_links_inside_and_outside_root(tmp_path):
    root = tmp_path / "k400"
    original = root / "train" / AMFOOT / "v.mp4"
    original.parent.mkdir(parents=True)
    original.write_bytes(b"video bytes")
    plan = plan_safe_view(["train/a/ok.mp4", f"train/{AMFOOT}/v.mp4"])
    for safe_dir, prefix in [(root / SAFE_VIEW_DIRNAME, SAFE_VIEW_DIRNAME), (tmp_path / "safe", "../safe")]:
        paths = link_safe_view(video_root=root, safe_dir=safe_dir, plan=plan)
        list_path = paths[f"train/{AMFOOT}/v.mp4"]
        assert list_path == f"{prefix}/train/passing_American_football_in_game/v.mp4"
        link = root / list_path
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.read_bytes() == b"video bytes"
        # Idempotent: a second run keeps the same link.
        assert link_safe_view(video_root=root, safe_dir=safe_dir, plan=plan) == paths
    with pytest.raises(LayoutError, match="not whitespace-free"):
        link_safe_view(video_root=root, safe_dir=tmp_path / "my safe", plan=plan)


def test_discover_auto_detects_annotations_and_missing_clips(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "val.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,aaaaaaaaaaa,1,11,val,0\n"
        "yoga,bbbbbbbbbbb,2,12,val,0\n"
    )
    (tmp_path / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\nzumba,ccccccccccc,0,10,train,0\n"
    )
    video = tmp_path / "val" / "aaaaaaaaaaa_000001_000011.mp4"
    video.parent.mkdir()
    video.write_bytes(b"x")
    layout = discover(tmp_path)
    assert layout.classes == ["abseiling", "yoga", "zumba"]
    assert [(v.split, v.label) for v in layout.videos] == [("val", "abseiling")]
    # Only splits present on disk count: the train clip is not "missing" from a val-only copy.
    assert [c.clip_id for c in missing_clips(layout)] == ["bbbbbbbbbbb_000002_000012"]
