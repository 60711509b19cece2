"""`videoprep bench` on bad inputs, through the real CLI: one line, the right exit status, nothing written, no hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cliproc import can_mount_readonly, one_line, videoprep


@pytest.fixture
def list_file(tmp_path: Path) -> Path:
    path = tmp_path / "list.txt"
    path.write_text("clip.mp4 12 0\n")
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("generate", [False, True])
def test_bench_out_under_a_regular_file_is_one_line_exit_2(generate, list_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    source = ["--generate"] if generate else [str(list_file)]
    result = videoprep("bench", *source, "--out", str(blocker / "sub"))
    assert result.returncode == 2
    line = one_line(result)
    assert "--out" in line and "is a file, not a folder" in line
    assert blocker.read_text() == "not a folder"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("generate", [False, True])
def test_bench_out_on_a_readonly_disk_is_one_line_exit_2(generate, list_file, tmp_path):
    if not can_mount_readonly(tmp_path):
        pytest.skip("needs a private mount namespace (root with CAP_SYS_ADMIN) for a read-only bind mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    source = ["--generate"] if generate else [str(list_file)]
    result = videoprep("bench", *source, "--out", str(disk / "bench"), readonly=[disk])
    assert result.returncode == 2
    line = one_line(result)
    assert "--out" in line and "not writable" in line
    assert list(disk.iterdir()) == []
