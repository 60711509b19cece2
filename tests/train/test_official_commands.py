"""The official README commands, flag for flag, through our runners (reduced by flags appended after them).

Training starts as the README does, from 2-D "ImageNet" C2D+BAT weights with --soft_resume
(inflated / skipped / missing keys), on a tiny real video list read in --read_mode video.
Slow: a real ResNet-50 with 3D-BAT runs on CPU (at 112 px instead of 224).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.train.conftest import TinyData
from train.checkpoint import best_path, checkpoint_path
from train.models import build_model

pytestmark = pytest.mark.slow

# The README's commands after `python main.py` / `python test_models.py`, paths left out.
README_TRAIN = shlex.split("--read_mode video --soft_resume --arch c2d_resnet50 --nonlocal_mod 2 --nltype bat --k 8 --tk 4 "
                           "--num_segments 1 --seq_length 8 --sample_rate 8 --lr 0.01 --lr_steps 40 80 --epochs 100 "
                           "--eval-freq 5 --save-freq 5 -b 64 -j 48 --dropout 0.5")
README_TEST_3CROP = shlex.split("--read_mode video --arch c2d_resnet50 --nonlocal_mod 2 --nltype bat --k 8 --tk 4 "
                                "--test_segments 10 --test_crops 3 --seq_length 8 --sample_rate 8 -j 16")
README_TEST_10CROP = shlex.split("--read_mode video --arch c2d_resnet50 --nonlocal_mod 2 --nltype bat --k 8 --tk 4 "
                                 "--test_segments 25 --seq_length 8 --sample_rate 8 -j 16")
# What makes them fit a CPU test: 1 epoch of 2-video batches, no workers, 112 px, 2 classes.
SMALL = ["-j", "0", "--num_classes", "2", "--device", "cpu", "--progress", "off"]


def imagenet_bat_weights(path: Path) -> Path:
    """A 2-D ResNet-50 + 2-D BAT state dict as the released ImageNet files: 4-D kernels, Linear fc of 1000."""
    torch.manual_seed(0)
    state = build_model("c2d_resnet50", nonlocal_mod=2, nltype="bat", k=8).state_dict()
    flat = {k: (v.squeeze(2) if v.dim() == 5 else v) for k, v in state.items()}
    flat["fc.weight"], flat["fc.bias"] = torch.randn(1000, 2048), torch.zeros(1000)
    torch.save({f"module.{k}": v for k, v in flat.items()}, path)
    return path


@pytest.fixture(scope="module")
def official_run(tiny_data: TinyData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The README training command (plus SMALL, 1 epoch, 112 px) run by `python -m train.main`'s entry point."""
    from train.main import main

    out = tmp_path_factory.mktemp("official")
    weights = imagenet_bat_weights(out / "resnet50_bat_imagenet.pth")
    argv = [str(tiny_data.train_list), str(tiny_data.val_list), *README_TRAIN, "--resume", str(weights),
            "--root_path", str(tiny_data.root), *SMALL, "--epochs", "1", "-b", "2", "--crop-size", "112",
            "--scale-size", "128", "--seed", "1", "--snapshot_dir", str(out / "ckpt"), "--log_dir", str(out / "log")]
    assert main(argv) == 0
    return out, (out / "log" / "log.txt").read_text()


def test_readme_training_command_runs(official_run: tuple[Path, str]):
    out, log = official_run
    assert "soft: epoch and best restart at 0" in log
    assert "Epoch: [0][1/2], lr: 0.01000" in log and "Testing Results: Prec@1" in log
    ckpt = torch.load(checkpoint_path(out / "ckpt", "c2d_resnet50"), map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["arch"] == "c2d_resnet50"
    assert ckpt["state_dict"]["layer2.nl1.batransform.conv_t.weight"].shape == (64, 8, 4, 1, 1)  # 3D-BAT
    assert best_path(out / "ckpt", "c2d_resnet50").is_file()  # epoch 1 of 1 is in the last 10%: validated


def test_readme_test_commands_run(tiny_data: TinyData, official_run: tuple[Path, str],
                                  capsys: pytest.CaptureFixture[str]):
    from train.test_models import main

    out, _ = official_run
    best = str(best_path(out / "ckpt", "c2d_resnet50"))
    base = [str(tiny_data.val_list), best]
    small = ["--root_path", str(tiny_data.root), *SMALL, "--img_size", "112"]
    assert main([*base, *README_TEST_3CROP, *small, "--save_scores", str(out / "s3.npz")]) == 0
    printed = capsys.readouterr().out
    assert "model epoch 1 best prec@1" in printed and "30 views per video" in printed
    assert "Overall top-1:" in printed and "Mean class accuracy:" in printed
    with np.load(out / "s3.npz") as z:
        assert z["scores"].shape == (3, 30, 1, 2)  # 10 segments x 3 fully-convolutional crops
    # 10 crops x 25 segments, cut to 1 segment here: 10 views of 112 px.
    assert main([*base, *README_TEST_10CROP, *small, "--test_segments", "1"]) == 0
    assert "10 views per video" in capsys.readouterr().out


def test_readme_click_commands_run(tiny_data: TinyData, official_run: tuple[Path, str], tmp_path: Path):
    from cli import cli

    out, _ = official_run
    best = str(best_path(out / "ckpt", "c2d_resnet50"))
    result = CliRunner().invoke(cli, ["test", "--preset", "c2d_3dbat", "--backend", "pyav", str(tiny_data.val_list),
                                      best, "--save_scores", str(tmp_path / "s.npz"), "--root_path",
                                      str(tiny_data.root), *SMALL, "--img_size", "112", "--test_segments", "1"])
    assert result.exit_code == 0, result.output
    assert "3 views per video" in result.stdout and (tmp_path / "s.npz").is_file()
    # The README's shortest command on `videoprep index` output: lists with classes.txt beside them, no
    # --backend and no --num_classes (inferred, each said in one line).
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train.txt", "val.txt"):
        (lists / name).write_text((tiny_data.root / name).read_text())
    (lists / "classes.txt").write_text("a\nb\n")
    weights = imagenet_bat_weights(tmp_path / "resnet50_bat.pth")
    small = [flag for flag in SMALL if flag not in ("--num_classes", "2")]
    result = CliRunner().invoke(cli, ["train", str(lists / "train.txt"), str(lists / "val.txt"), "--root_path",
                                      str(tiny_data.root), "--preset", "c2d_3dbat", "--resume", str(weights),
                                      "--soft_resume", *small, "--epochs", "1", "-b", "2",
                                      "--crop-size", "112", "--scale-size", "128", "--seed", "1",
                                      "--snapshot_dir", str(tmp_path / "ckpt"), "--log_dir", str(tmp_path / "log")])
    assert result.exit_code == 0, result.output
    assert f"num_classes 2 (the lines of {lists / 'classes.txt'}; --num_classes overrides)" in result.stdout
    assert f"backend lintel ({lists / 'train.txt'} lists video files (" in result.stdout
    assert " entries looked at, --read_mode video; --backend overrides)" in result.stdout
    assert "Epoch: [0][1/2], lr: 0.01000" in result.stdout
