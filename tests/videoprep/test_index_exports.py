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
