"""`videoprep download kinetics400` through click's CliRunner against a real 127.0.0.1 mirror."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.videoprep.httpfaults import FaultServer, SourceClip, make_kinetics_folder, serve_mirror


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[SourceClip]]]:
    root = tmp_path_factory.mktemp("clisrc")
    return root, make_kinetics_folder(root, per_class={"train": 2, "val": 1}, test_count=1, window=(0, 1),
                                      num_frames=20, fps=10)


@pytest.fixture
def mirror(tmp_path: Path, source):
    """The source packed as a mirror; videos also served as `videos/{ytid}.mp4` for the YouTube route."""
    src, made = source
    root = tmp_path / "mirror"
    with serve_mirror(src, root, clips_per_part=3) as server:
        (root / "videos").mkdir()
        for clips in made.values():
            for clip in clips:
                shutil.copyfile(clip.path, root / "videos" / f"{clip.youtube_id}.mp4")
        yield server


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["download", "kinetics400", *args, "--backoff", "0.01", "--timeout", "10"])


def test_dry_run_prints_the_plan_and_downloads_nothing(mirror: FaultServer, tmp_path: Path) -> None:
    out = tmp_path / "k400"
    result = _invoke("--out", str(out), "--base-url", mirror.url, "--split", "train,val", "--dry-run")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    parts = [r for r in rows if r[0].endswith(".tar.gz")]
    assert [Path(r[0]).name for r in parts] == ["part_0.tar.gz", "part_1.tar.gz", "part_0.tar.gz"]
    assert all(int(r[1]) > 0 and r[2].startswith(str(out)) for r in parts)
    assert "nothing downloaded" in result.stderr
    assert not out.exists()


def test_mirror_download_reports_and_writes_json(mirror: FaultServer, tmp_path: Path) -> None:
    out = tmp_path / "k400"
    result = _invoke("--out", str(out), "--base-url", mirror.url, "--split", "train,test", "-j", "2",
                     "--class-folders", "--summary-json", str(tmp_path / "summary.json"))
    assert result.exit_code == 0, result.output
    report_path = Path(result.stdout.strip())
    report = json.loads(report_path.read_text())
    assert report["complete"] and report["splits"]["train"]["on_disk"] == 4
    summary = json.loads((tmp_path / "summary.json").read_text())  # the extraction stage's, as every stage's
    assert (summary["stage"], summary["cached"], summary["failed"]) == ("extract", 0, {})
    assert summary["done"] == summary["planned"] >= 2
    assert "expected" in result.stderr and "fingerprint" in result.stderr
    assert len(list((out / "by_class" / "train").rglob("*.mp4"))) == 4


def test_classes_file_and_limit(mirror: FaultServer, tmp_path: Path) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("# one per line\npassing American football (in game)\n")
    out = tmp_path / "k400"
    result = _invoke("--out", str(out), "--base-url", mirror.url, "--split", "train", "--classes", str(classes),
                     "--limit-per-class", "1")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (out / "train").iterdir()] == ["tr001000abc_000000_000001.mp4"]


def test_youtube_failures_exit_1_with_a_resume_hint(mirror: FaultServer, tmp_path: Path, source) -> None:
    _, made = source
    (mirror.root / "videos" / f"{made['val'][0].youtube_id}.mp4").unlink()
    out = tmp_path / "k400"
    result = _invoke("--out", str(out), "--source", "youtube", "--base-url", mirror.url, "--split", "val",
                     "--url-template", mirror.url + "/videos/{youtube_id}.mp4")
    assert result.exit_code == 1
    assert "failed (unavailable)" in result.stderr
    assert "1 failure(s) in this run; re-run the same command to resume" in result.stderr
    label = made["val"][1].label
    assert (out / "val" / label / f"{made['val'][1].clip_id}.mp4").exists()


def test_bad_output_locations_are_one_line_and_exit_2(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (["--out", str(afile / "k400")], ["--out", str(tmp_path / "k"), "--report", str(afile / "r.json")],
                 ["--out", str(tmp_path / "k"), "--summary-json", str(tmp_path)]):
        result = _invoke(*args, "--base-url", "http://127.0.0.1:9/")
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_bad_split_is_a_clear_error(tmp_path: Path) -> None:
    result = _invoke("--out", str(tmp_path / "x"), "--split", "train,holdout", "--dry-run")
    assert result.exit_code == 1
    assert "must be a non-empty subset of train, val, test" in result.stderr


def test_youtube_dry_run_lists_clip_destinations(mirror: FaultServer, tmp_path: Path, source) -> None:
    _, made = source
    out = tmp_path / "k400"
    result = _invoke("--out", str(out), "--source", "youtube", "--base-url", mirror.url, "--split", "train, test",
                     "--dry-run", "--limit-per-class", "1")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(rows) == 3  # one per class in train, plus the unlabelled test clip
    first = made["train"][0]
    assert rows[0] == [f"https://www.youtube.com/watch?v={first.youtube_id}", "?",
                       str(out / "train" / first.label / f"{first.clip_id}.mp4")]
    assert rows[2][2] == str(out / "test" / f"{made['test'][0].clip_id}.mp4")
    assert not out.exists()
