"""Dataset statistics in the index report, and `videoprep compare` of two manifests."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.videoprep.helpers import write_tree
from videoprep.errors import PathError
from videoprep.stats import STATS_NAME, compare_manifests, dataset_stats

TREE = {
    "train/abseiling/a1.mp4": (64, 48, 25.0, 50),
    "train/abseiling/a2.mp4": (64, 48, 25.0, 25),
    "train/air drumming/b1.mp4": (64, 48, 25.0, 75),
    "val/abseiling/a3.mp4": (64, 48, 25.0, 30),
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """A tiny tree (one empty file among its videos) indexed through the CLI; returns the lists folder."""
    root = write_tree(tmp_path_factory.mktemp("k") / "videos", TREE)
    (root / "val" / "air drumming").mkdir(parents=True)
    (root / "val" / "air drumming" / "empty.mp4").write_bytes(b"")
    out = root.parent / "lists"
    result = CliRunner().invoke(cli, ["index", str(root), "--out", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "dataset statistics" in result.output
    return out


def test_index_writes_statistics_per_split_and_class(indexed: Path):
    stats = json.loads((indexed / STATS_NAME).read_text())
    train, val = stats["splits"]["train"], stats["splits"]["val"]
    assert (train["listed"], train["classes"], train["errors"]) == (3, 2, 0)
    assert train["per_class"] == {"abseiling": 2, "air drumming": 1}
    assert train["clips_per_class"] == {"min": 1, "median": 1.5, "max": 2}
    assert train["duration_s"]["total"] == pytest.approx((50 + 25 + 75) / 25.0, abs=0.01)
    assert train["frames"] == 150
    assert train["size_bytes"]["total"] == sum(
        (indexed.parent / "videos" / rel).stat().st_size for rel in TREE if rel.startswith("train/"))
    assert (val["listed"], val["errors"]) == (1, 1)
    assert stats["all"]["listed"] == 4
    assert sum(stats["failed_by_reason"].values()) == 1  # the empty file, by the engine's reason


def _rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of a manifest with `change(rows)` applied."""
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    rows = change(rows)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return dst


def _differ(rows: list[dict]) -> list[dict]:
    by_path = {r["relpath"]: r for r in rows}
    by_path["train/abseiling/a1.mp4"]["label"] = "air drumming"
    by_path["train/abseiling/a2.mp4"]["frames"] = "24"
    return [r for r in rows if r["relpath"] != "val/abseiling/a3.mp4"] + [
        {**by_path["val/abseiling/a3.mp4"], "relpath": "val/abseiling/new.mp4"}]


def test_identical_manifests_exit_0(indexed: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(indexed, copy)
    result = CliRunner().invoke(cli, ["compare", str(indexed), str(copy / "manifest.csv")])
    assert result.exit_code == 0, result.output
    assert "same clips" in result.output


def test_differences_are_listed_and_exit_1(indexed: Path, tmp_path: Path):
    other = _rewrite(indexed / "manifest.csv", tmp_path / "b" / "manifest.csv", _differ)
    report = tmp_path / "diff.json"
    result = CliRunner().invoke(cli, ["compare", str(indexed / "manifest.csv"), str(other), "--report", str(report)])
    assert result.exit_code == 1
    lines = set(result.output.splitlines())
    assert {"only_a\tval/abseiling/a3", "only_b\tval/abseiling/new", "label\ttrain/abseiling/a1\tabseiling\tair drumming",
            "frames\ttrain/abseiling/a2\t25\t24"} <= lines
    assert "Error: the manifests differ: 1 only_a, 1 only_b, 1 label, 1 frames, 0 status" in result.output
    record = json.loads(report.read_text())
    assert record["identical"] is False and record["stats_b"]["splits"]["train"]["listed"] == 3


def test_stem_key_matches_a_flat_copy_against_class_folders(indexed: Path, tmp_path: Path):
    def flatten(rows):
        return [{**r, "relpath": r["split"] + "/" + r["relpath"].rsplit("/", 1)[-1]} for r in rows]

    flat = _rewrite(indexed / "manifest.csv", tmp_path / "flat.csv", flatten)
    assert not compare_manifests(indexed / "manifest.csv", flat, key="relpath").identical
    assert compare_manifests(indexed / "manifest.csv", flat, key="stem").identical


def test_a_file_that_is_not_a_manifest_is_one_line(tmp_path: Path, indexed: Path):
    wrong = tmp_path / "train.txt"
    wrong.write_text("a.mp4 10 0\n")
    with pytest.raises(PathError, match="not a videoprep manifest"):
        dataset_stats(wrong)
    result = CliRunner().invoke(cli, ["compare", str(wrong), str(indexed)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {wrong}: not a videoprep manifest")


def test_the_manifest_as_parquet_keeps_every_row_and_its_types(indexed: Path, tmp_path: Path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="the parquet extra is not installed")
    root = indexed.parent / "videos"
    out = tmp_path / "lists"
    result = CliRunner().invoke(cli, ["index", str(root), "--out", str(out), "--export", "parquet,mmaction"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "manifest.parquet")
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(table["relpath"]) == [r["relpath"] for r in rows]
    assert str(table["frames"].dtype) == "Int64" and table["frames"].isna().sum() == 1  # the empty file
    assert table.loc[table["relpath"] == "train/abseiling/a1.mp4", "frames"].item() == 50
    assert (out / "train_mmaction.txt").exists()


def test_an_unknown_export_names_parquet_among_the_choices(tmp_path: Path):
    result = CliRunner().invoke(cli, ["index", str(tmp_path), "--out", str(tmp_path / "o"), "--export", "feather"])
    assert result.exit_code == 2
    assert "mmaction, rawframes, slowfast, dali, hf, parquet" in result.output
