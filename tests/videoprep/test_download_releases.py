"""Every Kinetics release end to end: a loopback mirror in each release's CVDF layout, fetched through the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.videoprep.httpfaults import SourceClip, make_kinetics_folder, serve_mirror
from videoprep.download import DownloadConfig
from videoprep.download.mirror import parse_url_list
from videoprep.download.releases import RELEASES

LIST_NAMES = {"kinetics400": "k400", "kinetics600": "k600", "kinetics700-2020": "k700_2020"}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[SourceClip]]]:
    root = tmp_path_factory.mktemp("relsrc")
    return root, make_kinetics_folder(root, per_class={"train": 2, "val": 1}, test_count=1, window=(0, 1),
                                      num_frames=10, fps=10)


def _without_is_cc(src: Path, dest: Path) -> None:
    """Kinetics-600 / 700-2020 CSVs have no is_cc column: copy the source with that column dropped."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("annotations"))
    (dest / "annotations").mkdir()
    for csv_path in (src / "annotations").glob("*.csv"):
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))
        keep = [i for i, name in enumerate(rows[0]) if name != "is_cc"]
        with open(dest / "annotations" / csv_path.name, "w", newline="") as f:
            csv.writer(f).writerows([[row[i] for i in keep] for row in rows])


@pytest.mark.parametrize("dataset", list(RELEASES))
def test_each_release_downloads_from_its_mirror_layout(dataset: str, source, tmp_path: Path) -> None:
    src, made = source
    if dataset != "kinetics400":
        _without_is_cc(src, tmp_path / "src")
        src = tmp_path / "src"
    out = tmp_path / "out"
    with serve_mirror(src, tmp_path / "mirror", clips_per_part=3, release=dataset) as server:
        tag = LIST_NAMES[dataset]
        assert sorted(p.name for p in (tmp_path / "mirror").glob("*/*_path.txt")) == [
            f"{tag}_{s}_path.txt" for s in ("test", "train", "val")]
        result = CliRunner().invoke(cli, ["download", dataset, "--out", str(out), "--base-url", server.url,
                                          "--backoff", "0.01", "--timeout", "10"])
        assert result.exit_code == 0, result.output
        asked = {r.path for r in server.log if r.method == "GET"}
    assert {f"/{s}/{tag}_{s}_path.txt" for s in ("train", "val", "test")} <= asked
    assert {f"/annotations/{s}.csv" for s in ("train", "val", "test")} <= asked
    replacement = RELEASES[dataset].replacement
    assert (replacement is not None) == any(p.endswith(".tgz") for p in asked)
    for split, clips in made.items():
        assert sorted(p.stem for p in (out / split).glob("*.mp4")) == sorted(c.clip_id for c in clips)
        assert (out / "annotations" / f"{split}.csv").read_bytes() == (src / "annotations" / f"{split}.csv").read_bytes()
    classes = (out / "annotations" / "classes.txt").read_text().splitlines()
    assert classes == sorted({c.label for c in made["train"]})
    report = json.loads(Path(result.stdout.strip()).read_text())
    assert report["dataset"] == dataset and report["complete"]
    wanted = RELEASES[dataset].num_classes
    assert f"the annotations name 2 classes; {dataset} has {wanted}" in report["notes"]


def test_release_defaults_to_its_cvdf_folder_and_moves_its_absolute_urls() -> None:
    config = DownloadConfig(out_dir=Path("unused"), dataset="kinetics700-2020")
    assert config.mirror_url == "https://s3.amazonaws.com/kinetics/700_2020"
    assert DownloadConfig(out_dir=Path("unused"), dataset="kinetics600").mirror_url.endswith("/kinetics/600")
    k700 = RELEASES["kinetics700-2020"]
    listed = "https://s3.amazonaws.com/kinetics/700_2020/train/part_0.tar.gz\n"
    assert parse_url_list(listed, list_url="http://copy/train/k700_2020_train_path.txt", base_url="http://copy",
                          release=k700) == ["http://copy/train/part_0.tar.gz"]


def test_dry_run_of_a_release_lists_its_parts(source, tmp_path: Path) -> None:
    src, _ = source
    with serve_mirror(src, tmp_path / "mirror", clips_per_part=3, release="kinetics600") as server:
        result = CliRunner().invoke(cli, ["download", "kinetics600", "--out", str(tmp_path / "out"), "--dry-run",
                                          "--base-url", server.url, "--split", "val"])
    assert result.exit_code == 0, result.output
    urls = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert urls == [f"{server.url}/annotations/val.csv", f"{server.url}/val/part_0.tar.gz"]
    assert not (tmp_path / "out").exists()


def test_unknown_release_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["download", "kinetics700", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "kinetics700-2020" in result.output
