"""Runners that cannot be misused: the checkpoint builds its model, the list gives backend and classes,
outputs and lists are checked before a model exists, every flag shows in --help with its default."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.train.conftest import TinyData, TrainedRun, tiny_flags
from train.config import build_test_parser, build_train_parser, parse_test_args, parse_train_args
from train.data import inspect_lists
from train.evaluate import run_test
from train.logging_utils import read_metrics
from train.main import run_training
from train.models import build_model
from train.runtime import RunnerConfigError
from train.weights import CheckpointError
from videoprep.errors import OutputLocationError

BAT = {"nonlocal_mod": [2], "nltype": "bat", "k": 4, "tk": 0, "ts": 4}
# What every test run here needs whatever the checkpoint says: where the videos are, and a CPU-sized run.
TEST_RUN = ["-j", "0", "--device", "cpu", "--progress", "off", "--test_crops", "1", "--test_segments", "1"]


def _without(flags: list[str], *names: str) -> list[str]:
    """tiny_flags minus some flags and their values."""
    out, skip = [], False
    for item in flags:
        if skip:
            skip = False
        elif item in names:
            skip = True
        else:
            out.append(item)
    return out


def _bat_checkpoint(path: Path, *, ours: bool) -> Path:
    """A 2-class C2D-18 + 2-D BAT checkpoint: ours records model and clips; the official layout does not."""
    torch.manual_seed(3)
    model = build_model("c2d_resnet18", num_classes=2, nonlocal_mod=2, nltype="bat", k=4)
    if ours:
        state = {"epoch": 1, "arch": "c2d_resnet18", "best_prec1": 50.0, "state_dict": model.state_dict(),
                 "model": {"arch": "c2d_resnet18", "num_classes": 2, **BAT},
                 "clip": {"seq_length": 4, "sample_rate": 1, "norm": "official"}}
    else:
        state = {"epoch": 1, "arch": "c2d_resnet18", "best_prec1": 50.0,
                 "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(state, path)
    return path


def _test(data: TinyData, weights: Path, *extra: str) -> tuple[object, str]:
    out = io.StringIO()
    argv = [str(data.val_list), str(weights), "--root_path", str(data.root), *TEST_RUN, "--img_size", "112", *extra]
    return run_test(parse_test_args(argv), stream=out), out.getvalue()


# ---------------------------------------------------------------- the checkpoint knows its model


def test_test_builds_the_model_our_checkpoint_records(tiny_data: TinyData, tmp_path: Path):
    weights = _bat_checkpoint(tmp_path / "bat.pth", ours=True)
    result, out = _test(tiny_data, weights)  # no --arch, --nonlocal_mod, --nltype, --k, --num_classes, --seq_length
    assert result.num_videos == 3
    assert (f"model and clips as {weights} records them: arch c2d_resnet18, num_classes 2, nonlocal_mod 2, "
            "nltype bat, k 4, tk 0, ts 4, seq_length 4, sample_rate 1, norm official\n") in out
    assert (f"backend pyav ({tiny_data.val_list} lists video files (v4.mp4), 3 of 3 entries looked at; "
            "--backend overrides)\n") in out


def test_test_flag_contradicting_the_checkpoint_names_both_values(tiny_data: TinyData, tmp_path: Path):
    weights = _bat_checkpoint(tmp_path / "bat.pth", ours=True)
    with pytest.raises(RunnerConfigError) as caught:
        _test(tiny_data, weights, "--nltype", "nl3d")
    assert str(caught.value) == (f"{weights}: --nltype nl3d contradicts the checkpoint, which records nltype bat; "
                                 "drop --nltype (the checkpoint builds the model)")
    with pytest.raises(RunnerConfigError, match=r"--nonlocal_mod 1000 contradicts the checkpoint, which records "
                                                r"nonlocal_mod 2; "):
        _test(tiny_data, weights, "--nonlocal_mod", "1000")


def test_a_model_trained_on_bgr_frames_is_not_fed_rgb_video(tiny_data: TinyData, tmp_path: Path):
    weights = _bat_checkpoint(tmp_path / "bat.pth", ours=True)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state["clip"]["channels"] = "bgr"  # trained in the official img mode on JPEG frames
    torch.save(state, weights)
    with pytest.raises(RunnerConfigError) as caught:
        _test(tiny_data, weights)
    assert str(caught.value) == (f"{weights}: the model was trained on BGR clips but this run feeds RGB (backend pyav, "
                                 "--read_mode img); feed it JPEG frame folders with --backend frames --read_mode img, "
                                 "as it was trained")


def test_official_checkpoint_needs_the_flags_and_loads_strictly(tiny_data: TinyData, tmp_path: Path):
    weights = _bat_checkpoint(tmp_path / "official.pth.tar", ours=False)
    with pytest.raises(CheckpointError) as caught:  # the BAT flags left out: 64 layer2.nl1.* tensors unused
        _test(tiny_data, weights, "--arch", "c2d_resnet18", "--num_classes", "2", "--seq_length", "4")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{weights}: does not fit the model (64 unexpected: layer2.nl1.conv1.0.weight, ")
    assert message.endswith("; pass the model flags it was trained with (--arch, --nonlocal_mod, --nltype, --k, --tk, "
                            "--num_classes), or --non-strict to load what fits")
    result, _ = _test(tiny_data, weights, "--arch", "c2d_resnet18", "--num_classes", "2", "--seq_length", "4",
                      "--nonlocal_mod", "2", "--nltype", "bat", "--k", "4")
    assert result.num_videos == 3
    with pytest.raises(CheckpointError, match=r"the checkpoint has 2 classes: pass --num_classes 2 \(or --non-strict"):
        _test(tiny_data, weights, "--arch", "c2d_resnet18", "--num_classes", "3", "--seq_length", "4",
              "--nonlocal_mod", "2", "--nltype", "bat", "--k", "4")
    result, _ = _test(tiny_data, weights, "--arch", "c2d_resnet18", "--num_classes", "2", "--seq_length", "4",
                      "--non-strict")
    assert result.num_videos == 3  # --non-strict: loads what fits


def test_bad_checkpoint_files_are_one_line_errors_from_both_commands(tiny_data: TinyData, tmp_path: Path):
    from cli import cli

    text = tmp_path / "notes.pth"
    text.write_text("hello\n")
    result = CliRunner().invoke(cli, ["test", str(tiny_data.val_list), str(text), *TEST_RUN])
    assert result.exit_code == 1
    assert result.output == (f"Error: {text}: is a text file ('hello'...), not a checkpoint; check WEIGHTS (the second "
                             "argument) (a file written by torch.save, e.g. a run's {arch}_checkpoint.pth.tar)\n")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes(range(1, 256)) * 4)
    result = CliRunner().invoke(cli, ["train", *tiny_flags(tiny_data, tmp_path), "--resume", str(noise)])
    assert result.exit_code == 1
    assert result.output == (f"Error: {noise}: is not a PyTorch checkpoint (neither a torch.save zip archive nor a "
                             "pickle); check --resume (a file written by torch.save, e.g. a run's "
                             "{arch}_checkpoint.pth.tar)\n")


# ---------------------------------------------------------------- the list knows its backend and classes


def test_training_infers_backend_and_classes_records_its_model_and_reports_data_wait(trained_run: TrainedRun):
    lists, text = trained_run.lists, trained_run.printed  # trained without --backend and --num_classes
    assert f"num_classes 2 (the lines of {lists / 'classes.txt'}; --num_classes overrides)\n" in text
    assert f"backend pyav ({lists / 'train.txt'} lists video files (" in text
    saved = torch.load(trained_run.checkpoint, map_location="cpu", weights_only=True)
    assert saved["model"] == {"arch": "c2d_resnet18", "num_classes": 2, "nonlocal_mod": [1000], "nltype": "nl3d",
                              "k": 4, "tk": 0, "ts": 4}
    assert saved["clip"] == {"seq_length": 4, "sample_rate": 1, "norm": "official", "channels": "rgb"}
    # data-wait fraction: in the epoch line and in the epoch record of metrics.jsonl
    assert "Epoch: [0] done: Loss " in text and "% of step time\n" in text
    (epoch,) = [r for r in read_metrics(trained_run.log_dir) if r["kind"] == "epoch"]
    assert 0.0 < epoch["data_wait_fraction"] < 1.0


def test_resume_builds_the_model_the_checkpoint_records(tiny_data: TinyData, trained_run: TrainedRun, tmp_path: Path):
    ckpt = trained_run.checkpoint
    bare = _without(tiny_flags(tiny_data, tmp_path), "--arch", "--num_classes", "--seq_length", "--sample_rate")
    out = io.StringIO()
    result = run_training(parse_train_args(bare + ["--resume", str(ckpt), "--evaluate"]), stream=out)
    assert result.last_eval is not None and result.last_eval.count == 3
    assert (f"model and clips as {ckpt} records them: arch c2d_resnet18, num_classes 2, nonlocal_mod 1000, "
            "nltype nl3d, k 4, tk 0, ts 4, seq_length 4, sample_rate 1, norm official\n") in out.getvalue()


def test_read_mode_img_with_video_files_names_backend(tiny_data: TinyData, tmp_path: Path):
    flags = _without(tiny_flags(tiny_data, tmp_path), "--backend") + ["--read_mode", "img"]
    with pytest.raises(RunnerConfigError) as caught:
        run_training(parse_train_args(flags), stream=io.StringIO())
    assert str(caught.value).startswith(f"{tiny_data.train_list}: lists video files (v0.mp4), ")
    assert str(caught.value).endswith(" entries looked at, but --read_mode img reads JPEG frame folders; "
                                      "pass --backend pyav (or --read_mode video)")
    assert not (tmp_path / "log").exists()


def test_frame_folders_give_the_frames_backend(tmp_path: Path):
    (tmp_path / "clip0").mkdir()
    (tmp_path / "list.txt").write_text("clip0 12 0\n")
    base = [str(tmp_path / "list.txt"), str(tmp_path / "list.txt"), "--root_path", str(tmp_path)]
    cfg = parse_train_args(base)
    assert inspect_lists(cfg, [cfg.train_list]) == [
        "num_classes 1 (the largest label in the lists + 1: no classes.txt beside "
        f"{tmp_path / 'list.txt'}; --num_classes overrides)",
        f"backend frames ({tmp_path / 'list.txt'} lists frame folders (clip0), 1 of 1 entries looked at; "
        "--backend overrides)"]
    assert cfg.loader_backend == "frames" and cfg.bgr  # the official img mode
    video = parse_train_args(base + ["--read_mode", "video"])
    with pytest.raises(RunnerConfigError) as caught:
        inspect_lists(video, [video.train_list])
    assert str(caught.value) == (f"{tmp_path / 'list.txt'}: lists frame folders (clip0), 1 of 1 entries looked at, "
                                 "but --read_mode video reads video files; pass --backend frames (or --read_mode img)")


def test_lists_are_checked_before_the_model_is_built(tiny_data: TinyData, tmp_path: Path):
    flags = tiny_flags(tiny_data, tmp_path)
    flags[1] = str(tmp_path / "missing_val.txt")
    result = CliRunner().invoke(_cli(), ["train", *flags, "--arch", "c2d_resnet101"])
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'missing_val.txt'}: list file not found\n"
    assert not (tmp_path / "log").exists() and not (tmp_path / "ckpt").exists()


def _cli():
    from cli import cli

    return cli


# ---------------------------------------------------------------- outputs checked first


def test_output_locations_are_checked_before_anything_runs(tiny_data: TinyData, trained_checkpoint: Path,
                                                           tmp_path: Path):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    snap = afile / "ckpt"
    result = CliRunner().invoke(_cli(), ["train", *tiny_flags(tiny_data, tmp_path), "--snapshot_dir", str(snap)])
    assert result.exit_code == 2
    assert result.output == (f"Error: {snap}: --snapshot_dir cannot be created: {afile} is a file, not a folder; "
                             "pass another --snapshot_dir\n")
    result = CliRunner().invoke(_cli(), ["train", *tiny_flags(tiny_data, tmp_path), "--log_dir", str(afile)])
    assert result.exit_code == 2
    assert result.output == f"Error: {afile}: --log_dir is a file, not a folder; pass another --log_dir\n"
    scores = afile / "s.npz"
    result = CliRunner().invoke(_cli(), ["test", str(tiny_data.val_list), str(trained_checkpoint), "--root_path",
                                         str(tiny_data.root), *TEST_RUN, "--save_scores", str(scores)])
    assert result.exit_code == 2
    assert result.output == (f"Error: {scores}: --save_scores cannot be created: {afile} is a file, not a folder; "
                             "pass another --save_scores\n")
    assert "model epoch" not in result.output  # nothing was loaded or run
    folder = tmp_path / "d.npz"
    folder.mkdir()
    with pytest.raises(OutputLocationError) as caught:
        _test(tiny_data, trained_checkpoint, "--save_scores", str(folder))
    assert str(caught.value) == f"{folder}: --save_scores is a folder, not a file; pass a file path to --save_scores"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_snapshot_dir_is_refused_before_training(tiny_data: TinyData, tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputLocationError) as caught:
        run_training(parse_train_args(tiny_flags(tiny_data, tmp_path) + ["--snapshot_dir", str(locked / "ckpt")]))
    assert str(caught.value) == (f"{locked / 'ckpt'}: --snapshot_dir cannot be created: {locked} is not writable; "
                                 "pass another --snapshot_dir")


# ---------------------------------------------------------------- help


@pytest.mark.parametrize(("command", "parser"), [("train", build_train_parser), ("test", build_test_parser)])
def test_help_shows_every_runner_flag_with_its_default(command: str, parser):
    result = CliRunner().invoke(_cli(), [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    section = result.output.split("Runner flags (the same as python -m ")[1]
    entries = {" ".join(e.split()).split("  ")[0]: " ".join(e.split()) for e in re.split(r"\n  (?=-)", section)[1:]}
    for action in parser()._actions:
        if not action.option_strings or "-h" in action.option_strings:
            continue
        flags = ", ".join(action.option_strings)
        (entry,) = [text for text in entries.values() if text == flags or text.startswith(flags + " ")]
        assert "[default: " in entry, entry
    expected = "[default: 20.0 40.0]" if command == "train" else "[default: 10]"  # --lr_steps / --test_crops
    assert expected in result.output
