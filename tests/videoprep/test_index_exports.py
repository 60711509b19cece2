"""The exports for other tools: the Parquet manifest (pandas + pyarrow) and Hugging Face videofolder metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from videoprep.index import IndexConfig, read_manifest, run_index
from videoprep.synth import write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "videos"
    write_video(root / "train" / "abseiling" / "a.mp4", num_frames=30)
    write_video(root / "train" / "air drumming" / "b.mp4", num_frames=31)
    write_video(root / "val" / "abseiling" / "c.mp4", num_frames=32)
    (root / "val" / "abseiling" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    return root


def test_parquet_manifest_holds_every_row_of_the_csv(tree, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="pip install 'videoprep[parquet]'")
    out = tmp_path / "lists"
    result = run_index(IndexConfig(video_root=tree, out_dir=out, jobs=1, exports=("parquet",)))
    assert out / "manifest.parquet" in result.exports
    frame = pd.read_parquet(out / "manifest.parquet")
    csv_rows = read_manifest(out / "manifest.csv")
    assert list(frame["relpath"]) == [r["relpath"] for r in csv_rows]
    assert list(frame.columns) == list(csv_rows[0])
    broken = frame[frame["relpath"] == "val/abseiling/broken.mp4"].iloc[0]
    assert broken["status"] == "error" and pd.isna(broken["frames"])
    assert frame.loc[frame["relpath"] == "train/abseiling/a.mp4", "frames"].item() == 30
    assert str(frame["frames"].dtype) == "Int64"


def test_hf_videofolder_metadata_points_at_every_listed_video(tree, tmp_path):
    out = tmp_path / "lists"
    run_index(IndexConfig(video_root=tree, out_dir=out, jobs=1, exports=("hf",)))
    for split, expected in (("train", {"a.mp4": 0, "b.mp4": 1}), ("val", {"c.mp4": 0})):
        folder = out / "hf" / split
        rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
        assert {os.path.basename(r["file_name"]): r["label"] for r in rows} == expected  # broken.mp4 is not listed
        for row in rows:
            assert (folder / row["file_name"]).is_file()
            assert row["label_name"] in ("abseiling", "air drumming") and row["frames"] >= 30


def test_the_cli_starts_without_pandas():
    """pandas and pyarrow load only for the Parquet export: `videoprep --help` does not import them."""
    code = "import sys, cli; cli.cli(['--help'], standalone_mode=False); print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_stats_and_comparison_of_two_manifests(tree, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    pytest.importorskip("pandas")
    first = tmp_path / "first"
    run_index(IndexConfig(video_root=tree, out_dir=first, jobs=1))
    # a month later: one clip re-encoded longer, one removed, one added
    write_video(tree / "train" / "abseiling" / "a.mp4", num_frames=40)
    (tree / "val" / "abseiling" / "c.mp4").unlink()
    write_video(tree / "val" / "air drumming" / "d.mp4", num_frames=25)
    second = tmp_path / "second"
    run_index(IndexConfig(video_root=tree, out_dir=second, jobs=1))

    result = CliRunner().invoke(cli, ["stats", str(first / "manifest.csv"), "--compare", str(second / "manifest.csv")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["videos"] == 4 and record["classes"] == 2
    assert record["by_split_and_status"] == {"train": {"ok": 2}, "val": {"ok": 1, "error": 1}}
    assert record["clips_per_class"] == {"abseiling": {"train": 1, "val": 1}, "air drumming": {"train": 1, "val": 0}}
    assert record["frames"]["max"] == 32 and record["duration_s"]["min"] > 0
    assert sum(record["failures_by_reason"].values()) == 1
    diff = record["compare"]
    assert diff["removed"] == ["val/abseiling/c.mp4"] and diff["added"] == ["val/air drumming/d.mp4"]
    assert [c["relpath"] for c in diff["changed"]] == ["train/abseiling/a.mp4"]
    assert diff["changed"][0]["frames"] == [30, 40] and diff["unchanged"] == 2
    assert "1 added, 1 removed, 1 changed" in result.stderr

    bad = CliRunner().invoke(cli, ["stats", str(first / "classes.txt")])
    assert bad.exit_code == 1 and "not a videoprep manifest" in bad.output and "Traceback" not in bad.output


def test_stats_reads_the_parquet_manifest_alike(tree, tmp_path):
    pytest.importorskip("pyarrow")
    from videoprep.stats import manifest_stats, read_manifest_frame

    run_index(IndexConfig(video_root=tree, out_dir=tmp_path / "l", jobs=1, exports=("parquet",)))
    from_csv = manifest_stats(read_manifest_frame(tmp_path / "l" / "manifest.csv"))
    assert manifest_stats(read_manifest_frame(tmp_path / "l" / "manifest.parquet")) == from_csv
