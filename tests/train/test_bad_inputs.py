"""The runners on bad inputs, through the real CLI: one line, the right exit status, nothing written, no hang."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import cli
from tests.cliproc import one_line, videoprep
from tests.train.conftest import NUM_FRAMES, TinyData
from train.config import parse_train_args
from train.data import inspect_lists
from train.models import build_model
from videoprep.errors import PathError


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


# --- no silent guess: classes, loaded weights, the backend -------------------------------------------


def _lists(root: Path, data: TinyData, labels: list[int]) -> Path:
    """A list of tiny_data's videos with these labels, in a folder without classes.txt."""
    folder = root / "lists"
    folder.mkdir(exist_ok=True)
    path = folder / "list.txt"
    path.write_text("".join(f"v{i}.mp4 {NUM_FRAMES} {label}\n" for i, label in enumerate(labels)))
    return path


@pytest.mark.timeout(120)
def test_num_classes_without_classes_txt_is_the_largest_label_plus_one_and_said(tiny_data: TinyData, tmp_path):
    listing = _lists(tmp_path, tiny_data, [0, 2, 1, 2])
    inferred = parse_train_args([str(listing), str(listing), "--root_path", str(tiny_data.root)])
    assert inspect_lists(inferred, [inferred.train_list, inferred.val_list])[0] == (
        f"num_classes 3 (the largest label in the lists + 1: no classes.txt beside {listing}; --num_classes overrides)")
    assert inferred.num_classes == 3


@pytest.mark.timeout(120)
def test_num_classes_smaller_than_a_label_is_one_line_naming_the_flag(tiny_data: TinyData, tmp_path):
    listing = _lists(tmp_path, tiny_data, [0, 2, 1, 2])
    result = CliRunner().invoke(cli, ["train", str(listing), str(listing), "--root_path", str(tiny_data.root),
                                      "--num_classes", "2", "--log_dir", str(tmp_path / "log"),
                                      "--snapshot_dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"Error: {listing}: label 2 (v1.mp4) does not fit 2 classes (from --num_classes 2); "
                     "pass --num_classes 3 or more, or fix the list"]
    assert not (tmp_path / "log").exists() and not (tmp_path / "ckpt").exists()


@pytest.mark.timeout(120)
def test_a_negative_label_is_one_line(tiny_data: TinyData, tmp_path):
    listing = _lists(tmp_path, tiny_data, [0, -1])
    result = CliRunner().invoke(cli, ["train", str(listing), str(listing), "--root_path", str(tiny_data.root),
                                      "--log_dir", str(tmp_path / "log"), "--snapshot_dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"Error: {listing}: label -1 (v1.mp4) is negative; labels are 0..N-1"]


@pytest.mark.timeout(120)
def test_a_folder_named_like_a_video_first_in_the_list_does_not_pick_the_frames_backend(tiny_data: TinyData,
                                                                                          tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    (root / "x.mp4").mkdir()  # a folder with a video's name, first in the list
    for i in range(4):
        (root / f"v{i}.mp4").symlink_to(tiny_data.root / f"v{i}.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text(f"x.mp4 {NUM_FRAMES} 0\n" + "".join(f"v{i}.mp4 {NUM_FRAMES} {i % 2}\n" for i in range(4)))
    cfg = parse_train_args([str(listing), str(listing), "--root_path", str(root)])
    said = inspect_lists(cfg, [cfg.train_list])
    assert cfg.backend == "pyav"
    assert said[1] == (f"backend pyav ({listing} lists video files (v0.mp4), 4 of 5 entries looked at "
                       "(1 not, e.g. x.mp4/); --backend overrides)")
    missing = parse_train_args([str(listing), str(listing), "--root_path", str(tmp_path / "nowhere")])
    with pytest.raises(PathError, match=r"none of the 5 entries looked at exists \(the first: .*x.mp4'\); "
                                        r"check --root_path"):
        inspect_lists(missing, [missing.train_list])


def _partial_checkpoint(path: Path, *, keep: int) -> Path:
    """A checkpoint of c2d_resnet18 (2 classes) holding only its first `keep` tensors: most do not come from it."""
    model = build_model("c2d_resnet18", num_classes=2)
    state = dict(list(model.state_dict().items())[:keep])
    torch.save({"state_dict": state}, path)
    return path


@pytest.mark.timeout(180)
def test_a_non_strict_load_prints_its_summary_once_and_warns_under_half(tiny_data: TinyData, tmp_path):
    weights = _partial_checkpoint(tmp_path / "few.pth", keep=20)
    args = ["test", str(tiny_data.val_list), str(weights), "--root_path", str(tiny_data.root), "--arch",
            "c2d_resnet18", "--num_classes", "2", "--non-strict", "-j", "0", "--device", "cpu", "--progress", "off",
            "--test_crops", "1", "--test_segments", "1", "--seq_length", "4", "--sample_rate", "1",
            "--img_size", "112"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summaries = [line for line in result.output.splitlines() if line.startswith(f"{weights}: loaded 20 tensors")]
    assert len(summaries) == 1 and "missing" in summaries[0] and "unexpected 0" in summaries[0]
    warnings = [line for line in result.output.splitlines() if line.startswith("WARNING: only 20 of the model's")]
    assert len(warnings) == 1 and "--arch" in warnings[0]
    full = _partial_checkpoint(tmp_path / "all.pth", keep=10_000)
    result = CliRunner().invoke(cli, args[:2] + [str(full)] + args[3:])
    assert result.exit_code == 0, result.output
    assert f"{full}: loaded " in result.output and "WARNING" not in result.output


# --- option values: one line, no usage dump ---------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("value", "reason"), [("0", "0 must be >= 1"), ("x", "'x' is not a whole number (>= 1)")])
def test_a_bad_num_clips_is_one_line_naming_the_option(value, reason, tiny_data: TinyData):
    result = CliRunner().invoke(cli, ["train", str(tiny_data.train_list), str(tiny_data.val_list), "--num_clips",
                                      value])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"python -m train.main: error: argument --num_clips: {reason} (--help lists every flag)"]


@pytest.mark.timeout(120)
def test_a_preset_that_contradicts_the_checkpoint_names_preset(tiny_data: TinyData, tmp_path):
    from tests.train.test_runner_checks import _bat_checkpoint

    weights = _bat_checkpoint(tmp_path / "bat.pth", ours=True)  # records arch c2d_resnet18
    result = CliRunner().invoke(cli, ["test", str(tiny_data.val_list), str(weights), "--root_path",
                                      str(tiny_data.root), "--preset", "c2d", "--device", "cpu"])
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"Error: {weights}: --preset c2d (it sets --arch c2d_resnet50) contradicts the checkpoint, which records "
        "arch c2d_resnet18; drop --preset (the checkpoint builds the model)"]
    own = CliRunner().invoke(cli, ["test", str(tiny_data.val_list), str(weights), "--root_path",
                                   str(tiny_data.root), "--preset", "c2d", "--arch", "c2d_resnet34"])
    assert own.exit_code == 1 and "--arch c2d_resnet34 contradicts the checkpoint" in own.output
