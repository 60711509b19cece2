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


# --- the list is checked as the runners check theirs; a failed measure is a failed run -------------


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    from videoprep.synth import write_video

    root = tmp_path / "videos"
    for name in ("a.mp4", "b.mp4"):
        write_video(root / name, num_frames=30, width=64, height=48)
    return root


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("second", "expected"), [
    ("b.mp4 30 -1", "label -1 (b.mp4) is negative"),
    ("b.mp4 300 1", "frame_num 300 of b.mp4 is more than the 30 frames it has"),
])
def test_bench_checks_its_list_before_measuring(second, expected, videos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"a.mp4 30 0\n{second}\n")
    out = tmp_path / "bench"
    result = videoprep("bench", str(listing), "--root-path", str(videos), "--out", str(out))
    assert result.returncode == 1
    line = one_line(result)
    assert str(listing) in line and expected in line and "fix the list" in line
    assert not out.exists()


def test_bench_takes_every_backend_videoprep_backends_lists(tmp_path):
    from pipelines.backends import backend_names
    from pipelines.bench import BenchConfig

    assert "torchcodec" in backend_names()
    for name in backend_names():
        assert BenchConfig(out_dir=tmp_path, generate=True, backends=(name,)).backends == (name,)
    result = videoprep("bench", "--generate", "--backends", "opencv", "--out", str(tmp_path / "b"))
    assert result.returncode != 0 and "torchcodec" in result.stderr and "opencv" in result.stderr


@pytest.fixture
def broken_frames(tmp_path: Path) -> Path:
    """A JPEG frame folder whose middle frames are not JPEG: every measure of the val clip fails."""
    from PIL import Image

    folder = tmp_path / "frames" / "f1"
    folder.mkdir(parents=True)
    for i in range(1, 21):
        path = folder / f"img_{i:05d}.jpg"
        if 6 <= i <= 15:
            path.write_bytes(b"not a jpeg")
        else:
            Image.new("RGB", (64, 48), (i * 10, 0, 0)).save(path)
    listing = tmp_path / "frames.txt"
    listing.write_text("f1 20 0\n")
    return listing


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_failed_measure_exits_1_unless_keep_going(broken_frames, tmp_path):
    args = ["bench", str(broken_frames), "--root-path", str(tmp_path / "frames"), "--backends", "frames",
            "--no-peers", "--workers", "0", "--clips", "1", "--repeats", "1", "--views", "val", "--seq-length", "4",
            "--sample-rate", "2"]
    failed = videoprep(*args, "--out", str(tmp_path / "b1"), timeout_s=200)
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "measure(s) failed" in errors[0] and "--keep-going" in errors[0]
    assert (tmp_path / "b1" / "bench.json").is_file()  # the report of what ran is still written
    kept = videoprep(*args, "--out", str(tmp_path / "b2"), "--keep-going", timeout_s=200)
    assert kept.returncode == 0, kept.stderr
