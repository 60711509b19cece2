"""The runners on bad inputs, through the real CLI: one line, the right exit status, nothing written, no hang."""

from __future__ import annotations

import pytest
import torch

from tests.cliproc import one_line, videoprep


@pytest.mark.timeout(120)
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda is valid here")
@pytest.mark.parametrize("runner", ["train", "test"])
def test_device_cuda_without_a_gpu_is_one_line_before_any_work(runner, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("clip.mp4 12 0\n")
    second = listing if runner == "train" else tmp_path / "weights.pth"
    outputs = (["--log_dir", str(tmp_path / "logs"), "--snapshot_dir", str(tmp_path / "snap")] if runner == "train"
               else ["--save_scores", str(tmp_path / "scores")])
    result = videoprep(runner, str(listing), str(second), "--device", "cuda", *outputs)
    assert result.returncode == 1
    line = one_line(result)
    assert "--device cuda" in line and "--device cpu" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]  # no log, snapshot or scores folder
