"""`videoprep index` end to end on real videos: lists, manifest, exports, resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.races import signal_mid_run
from videoprep.errors import VideoprepError
from videoprep.index import JOURNAL_NAME, MANIFEST_COLUMNS, IndexConfig, read_manifest, run_index
from videoprep.records import read_class_map, read_list
from videoprep.synth import decode_all, write_video

AMFOOT = "passing American football (in game)"
SAFE_AMFOOT = "passing_American_football_in_game"
CSV_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


@pytest.fixture
def class_tree(tmp_path) -> Path:
    """{split}/{label}/clip with a whitespace class, a webm, a broken file and a stray text file."""
    root = tmp_path / "k400"
    write_video(root / "train" / "abseiling" / "aaaaaaaaaaa_000001_000011.mp4", num_frames=30)
    write_video(root / "train" / AMFOOT / "bbbbbbbbbbb_000002_000012.mp4", num_frames=31, bframes=2)
    write_video(root / "train" / AMFOOT / "-ccccccccc_000003_000013.mkv", num_frames=32, codec="hevc")
    write_video(root / "val" / "abseiling" / "ddddddddddd_000004_000014.webm", num_frames=33, codec="vp9")
    write_video(root / "val" / AMFOOT / "eeeeeeeeeee_000005_000015.avi", num_frames=34, codec="mjpeg")
    (root / "val" / "abseiling" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    (root / "val" / "abseiling" / "README.txt").write_text("not a video")
    return root


def test_index_class_folders(class_tree, tmp_path):
    out = tmp_path / "lists"
    progress = []
    result = run_index(
        IndexConfig(
            video_root=class_tree, out_dir=out, jobs=2, exports=("mmaction", "rawframes", "slowfast", "dali")
        ),
        on_progress=lambda done, total: progress.append((done, total)),
    )
    safe = f"_videoprep_safe/train/{SAFE_AMFOOT}"
    assert (out / "train.txt").read_text() == (
        f"{safe}/-ccccccccc_000003_000013.mkv 32 1\n"
        f"{safe}/bbbbbbbbbbb_000002_000012.mp4 31 1\n"
        "train/abseiling/aaaaaaaaaaa_000001_000011.mp4 30 0\n"
    )
    assert (out / "val.txt").read_text() == (
        f"_videoprep_safe/val/{SAFE_AMFOOT}/eeeeeeeeeee_000005_000015.avi 34 1\n"
        "val/abseiling/ddddddddddd_000004_000014.webm 33 0\n"
    )
    assert read_class_map(out / "classes.txt") == ["abseiling", AMFOOT]
    for split in ("train", "val"):  # every listed path opens, as the loaders will open it
        read_list(out / f"{split}.txt", num_classes=2, root=class_tree, check_files=True)
    assert result.counts["train"].listed == 3 and result.counts["val"].errors == 1
    assert result.safe_links == 3 and result.probed == 6 and result.reused == 0
    assert progress[-1] == (6, 6) and [d for d, _ in progress] == sorted(d for d, _ in progress)

    rows = {r["relpath"]: r for r in read_manifest(out / "manifest.csv")}
    assert list(read_manifest(out / "manifest.csv")[0]) == list(MANIFEST_COLUMNS)
    assert len(rows) == 6
    amfoot = rows[f"train/{AMFOOT}/bbbbbbbbbbb_000002_000012.mp4"]
    assert amfoot["list_path"] == f"{safe}/bbbbbbbbbbb_000002_000012.mp4"
    assert (amfoot["status"], amfoot["label"], amfoot["label_index"], amfoot["frames"]) == (
        "ok",
        AMFOOT,
        "1",
        "31",
    )
    assert (amfoot["codec"], amfoot["width"], amfoot["height"], amfoot["constant_frame_rate"]) == (
        "h264",
        "64",
        "48",
        "True",
    )
    assert float(amfoot["duration_s"]) == pytest.approx(31 / 25)
    broken = rows["val/abseiling/broken.mp4"]
    assert broken["status"] == "error" and broken["reason"] and broken["frames"] == ""
    assert rows["val/abseiling/ddddddddddd_000004_000014.webm"]["pix_fmt"] == "yuv420p"
    for row in rows.values():  # what the lists say is what a decoder yields, through the symlinks too
        if row["status"] == "ok":
            assert int(row["frames"]) == len(decode_all(class_tree / row["list_path"]))

    assert (out / "val_mmaction.txt").read_text().splitlines()[
        1
    ] == "val/abseiling/ddddddddddd_000004_000014.webm 0"
    assert (out / "val_rawframes.txt").read_text().splitlines()[
        1
    ] == "val/abseiling/ddddddddddd_000004_000014 33 0"
    assert (out / "slowfast" / "train.csv").read_text().splitlines()[
        2
    ] == "train/abseiling/aaaaaaaaaaa_000001_000011.mp4 0"
    assert (out / "train_dali.txt").read_text().splitlines()[0] == f"{safe}/-ccccccccc_000003_000013.mkv 1"
    assert len(result.exports) == 8
    for path in out.rglob("*.txt"):
        assert not any(len(line.split(" ")) != len(line.split()) for line in path.read_text().splitlines())


def test_index_flat_cvdf_with_annotations(tmp_path):
    root = tmp_path / "cvdf"
    ann = root / "annotations"
    ann.mkdir(parents=True)
    (ann / "train.csv").write_text(
        CSV_HEADER + f'"{AMFOOT}",aaaaaaaaaaa,1,11,train,0\nzumba,bbbbbbbbbbb,2,12,train,0\n'
    )
    (ann / "validate.csv").write_text(CSV_HEADER + "abseiling,ccccccccccc,3,13,val,0\n")
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\nddddddddddd,4,14,test\n")
    write_video(root / "train" / "aaaaaaaaaaa_000001_000011.mp4", num_frames=26)
    write_video(root / "train" / "bbbbbbbbbbb_000002_000012.mp4", num_frames=27)
    write_video(root / "train" / "zzzzzzzzzzz_000000_000010.mp4", num_frames=28)  # not annotated
    write_video(root / "validation" / "ccccccccccc_000003_000013.mp4", num_frames=29)
    write_video(root / "test" / "ddddddddddd_000004_000014.mp4", num_frames=30)

    out = tmp_path / "lists"
    result = run_index(IndexConfig(video_root=root, out_dir=out, jobs=1))
    assert read_class_map(out / "classes.txt") == ["abseiling", AMFOOT, "zumba"]
    assert (out / "train.txt").read_text() == (
        "train/aaaaaaaaaaa_000001_000011.mp4 26 1\ntrain/bbbbbbbbbbb_000002_000012.mp4 27 2\n"
    )
    assert (out / "val.txt").read_text() == "validation/ccccccccccc_000003_000013.mp4 29 0\n"
    assert (out / "test.txt").read_text() == ""
    assert result.counts["test"].unlabelled == 1 and result.counts["train"].unlabelled == 1
    rows = {r["relpath"]: r for r in read_manifest(out / "manifest.csv")}
    assert rows["test/ddddddddddd_000004_000014.mp4"]["status"] == "unlabelled"
    assert rows["test/ddddddddddd_000004_000014.mp4"]["frames"] == "30"
    assert rows["train/zzzzzzzzzzz_000000_000010.mp4"]["reason"] == "clip not in the annotation CSVs"

    # --split with an explicit annotations folder indexes just that split.
    only = run_index(
        IndexConfig(video_root=root, out_dir=tmp_path / "val_only", annotations=ann, split="val")
    )
    assert list(only.lists) == ["val"] and only.counts["val"].listed == 1


def test_every_common_container_is_indexed_with_its_decoded_frame_count(tmp_path):
    root = tmp_path / "plain"
    made = {
        "a.mp4": ("h264", 21), "b.webm": ("vp9", 22), "c.mkv": ("hevc", 23), "d.avi": ("mpeg4", 24),
        "e.mov": ("h264", 25), "f.mpg": ("mpeg1video", 26), "g.ogv": ("vp8", 27),
    }
    for name, (codec, frames) in made.items():
        write_video(root / "zumba" / name, num_frames=frames, codec=codec)
    run_index(IndexConfig(video_root=root, out_dir=tmp_path / "lists", jobs=2))
    records = read_list(tmp_path / "lists" / "all.txt", num_classes=1, root=root, check_files=True)
    assert [(r.path, r.frame_num) for r in records] == [(f"zumba/{n}", f) for n, (_, f) in made.items()]
    for record in records:
        assert record.frame_num == len(decode_all(root / record.path))


def test_index_safe_dir_outside_root(class_tree, tmp_path):
    out = tmp_path / "lists"
    run_index(IndexConfig(video_root=class_tree, out_dir=out, safe_dir=tmp_path / "safe-view", jobs=1))
    lines = (out / "train.txt").read_text().splitlines()
    assert lines[0].startswith(f"../safe-view/train/{SAFE_AMFOOT}/")
    assert not (class_tree / "_videoprep_safe").exists()
    read_list(out / "train.txt", root=class_tree, check_files=True)


def test_non_utf8_file_name_is_listed_and_written(tmp_path):
    """A Latin-1 byte in a file name (os keeps it as a surrogate) must not crash writing the outputs."""
    root = tmp_path / "root"
    source = write_video(root / "a" / "plain.mp4", num_frames=30)
    odd_name = os.fsdecode(b"caf\xe9 clip.mp4")
    os.link(source, root / "a" / odd_name)
    out = tmp_path / "lists"
    run_index(IndexConfig(video_root=root, out_dir=out, jobs=1))
    lines = (out / "all.txt").read_text().splitlines()
    assert lines == ["_videoprep_safe/a/caf_clip.mp4 30 0", "a/plain.mp4 30 0"]
    assert "a/caf\ufffd clip.mp4" in {r["relpath"] for r in read_manifest(out / "manifest.csv")}
    assert (root / "_videoprep_safe" / "a" / "caf_clip.mp4").read_bytes() == source.read_bytes()


def test_rerun_reuses_journal_and_reprobes_only_changed_files(class_tree, tmp_path):
    out = tmp_path / "lists"
    config = IndexConfig(video_root=class_tree, out_dir=out, jobs=2)
    first = run_index(config)
    listed = (out / "train.txt").read_text()
    second = run_index(config)
    assert (second.probed, second.reused) == (0, 6)
    assert (out / "train.txt").read_text() == listed

    changed = class_tree / "train" / "abseiling" / "aaaaaaaaaaa_000001_000011.mp4"
    write_video(changed, num_frames=44)
    third = run_index(config)
    assert (third.probed, third.reused) == (1, 5)
    assert (
        "train/abseiling/aaaaaaaaaaa_000001_000011.mp4 44 0" in (out / "train.txt").read_text().splitlines()
    )
    entries = [json.loads(line) for line in (out / JOURNAL_NAME).read_text().splitlines()]
    assert len(entries) == 6 and len({e["key"] for e in entries}) == 6  # the stale entry is gone
    assert first.total == third.total == 6

    fresh = run_index(IndexConfig(video_root=class_tree, out_dir=out, jobs=2, fresh=True))
    assert (fresh.probed, fresh.reused) == (6, 0)


def test_kill_9_mid_run_then_rerun_finishes_the_rest(tmp_path):
    """A real `videoprep index` process group killed with SIGKILL; the re-run probes only what is left."""
    source = write_video(tmp_path / "source.mp4", num_frames=250)
    root = tmp_path / "many"
    total = 800
    for i in range(total):
        dst = root / "train" / f"class{i % 4}" / f"v{i:04d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, dst)
    out = tmp_path / "lists"
    journal = out / JOURNAL_NAME
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cli import main; main()",
            "index",
            str(root),
            "--out",
            str(out),
            "-j",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    status = signal_mid_run(proc, lambda: journal.exists() and journal.read_bytes().count(b"\n") >= 40,
                            what="index killed after 40 of 800 probes", timeout_s=60, group=True)
    assert status == -signal.SIGKILL
    assert not (out / "train.txt").exists()  # nothing looks finished
    done_before = sum(1 for line in journal.read_text().split("\n")[:-1] if line.endswith("}"))
    assert 40 <= done_before < total

    result = run_index(IndexConfig(video_root=root, out_dir=out, jobs=2))
    assert result.reused == done_before and result.probed == total - done_before
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines() if line.strip()]
    assert len(keys) == len(set(keys)) == total
    assert len(read_list(out / "train.txt")) == total
    assert {r.frame_num for r in read_list(out / "train.txt")} == {250}


def test_a_probe_past_its_time_limit_costs_only_its_video(tmp_path):
    """An MPEG-PS file with a 1 GiB sparse zero tail keeps the demuxer scanning far past the limit."""
    root = tmp_path / "root"
    write_video(root / "a" / "fine.mp4", num_frames=30)
    slow = write_video(root / "a" / "slow.mpg", num_frames=30, codec="mpeg1video")
    os.truncate(slow, 1 << 30)  # sparse: no disk used
    config = IndexConfig(video_root=root, out_dir=tmp_path / "lists", jobs=2, timeout_s=1.0)
    started = time.monotonic()
    result = run_index(config)
    assert time.monotonic() - started < 20
    assert (tmp_path / "lists" / "all.txt").read_text() == "a/fine.mp4 30 0\n"
    rows = {r["relpath"]: r for r in read_manifest(result.manifest_path)}
    assert (rows["a/slow.mpg"]["status"], rows["a/slow.mpg"]["reason"]) == ("error", "timed out after 1 s")
    assert run_index(config).probed == 0  # the verdict is journaled like any other


def test_bad_export_name_is_refused(tmp_path):
    with pytest.raises(VideoprepError, match="supported values are mmaction, rawframes, slowfast, dali, hf, parquet"):
        IndexConfig(video_root=tmp_path, out_dir=tmp_path / "o", exports=("csv",))


def test_cli_index(class_tree, tmp_path):
    runner = CliRunner()
    out = tmp_path / "lists"
    ok = runner.invoke(
        cli, ["index", str(class_tree), "--out", str(out), "-j", "2", "--export", "mmaction,dali"]
    )
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.split() == [str(out / "train.txt"), str(out / "val.txt")]
    assert "1 video(s) could not be probed" in ok.stderr
    assert (out / "train_dali.txt").exists() and not (out / "train_rawframes.txt").exists()

    bad_export = runner.invoke(cli, ["index", str(class_tree), "--out", str(out), "--export", "mmaction,foo"])
    assert bad_export.exit_code == 2 and "foo: supported values are" in bad_export.output
    missing_root = runner.invoke(cli, ["index", str(tmp_path / "nope"), "--out", str(out)])
    assert missing_root.exit_code == 2
    (tmp_path / "empty_ann").mkdir()
    no_csv = runner.invoke(
        cli, ["index", str(class_tree), "--out", str(out), "--annotations", str(tmp_path / "empty_ann")]
    )
    assert no_csv.exit_code == 1 and "no annotation CSV" in no_csv.output
    no_split = runner.invoke(cli, ["index", str(class_tree), "--out", str(out), "--split", "test"])
    assert no_split.exit_code == 1 and "no videos found in split 'test'" in no_split.output
