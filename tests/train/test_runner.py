"""The training runner end to end on tiny real videos: official outputs, exact resume, soft resume, CLI."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.races import signal_mid_run
from tests.train.conftest import TinyData, tiny_flags
from train.checkpoint import best_path, checkpoint_path
from train.config import PRESETS, TEST_PRESETS, TrainConfig, parse_train_args, preset_argv
from train.logging_utils import read_metrics
from train.main import eval_due, run_training, save_due
from train.runtime import RunnerConfigError

REPO = Path(__file__).resolve().parents[2]


class Interrupted(Exception):
    """Stands for the process dying right after an epoch's checkpoint hit the disk."""


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _run(argv: list[str], **kwargs):
    out = io.StringIO()
    result = run_training(parse_train_args(argv), stream=out, **kwargs)
    return result, out.getvalue()


# ---------------------------------------------------------------- flags


def test_official_readme_command_parses_with_official_defaults():
    argv = ["train.lst", "val.lst", "--read_mode", "video", "--resume", "r50.pth", "--soft_resume",
            "--arch", "c2d_resnet50", "--nonlocal_mod", "2", "--nltype", "bat", "--k", "8", "--tk", "4",
            "--num_segments", "1", "--seq_length", "8", "--sample_rate", "8", "--lr", "0.01",
            "--lr_steps", "40", "80", "--epochs", "100", "--eval-freq", "5", "--save-freq", "5",
            "-b", "64", "-j", "48", "--dropout", "0.5"]
    cfg = parse_train_args(argv)
    assert (cfg.nonlocal_mod, cfg.nltype, cfg.k, cfg.tk, cfg.lr_steps) == ([2], "bat", 8, 4, [40.0, 80.0])
    assert cfg.loader_backend == "lintel" and cfg.soft_resume and cfg.workers == 48
    defaults = parse_train_args(["a", "b"])
    assert defaults == TrainConfig(train_list="a", val_list="b")
    assert (defaults.read_mode, defaults.loader_backend, defaults.batch_size, defaults.clip_gradient) == (
        "img", "frames", 64, 20.0)
    assert parse_train_args(["a", "b", "--read_mode", "video", "--backend", "pyav"]).loader_backend == "pyav"
    assert parse_train_args(["a", "b", "--gd", "0"]).clip_gradient is None


def test_bgr_channel_order_only_for_the_official_img_mode():
    """img mode on JPEG frames flips to BGR (as the official code); video mode and video backends stay RGB."""
    assert parse_train_args(["a", "b"]).bgr  # --read_mode img -> frames
    assert not parse_train_args(["a", "b", "--backend", "pyav"]).bgr
    assert not parse_train_args(["a", "b", "--read_mode", "video", "--backend", "frames"]).bgr
    assert not parse_train_args(["a", "b", "--norm", "imagenet"]).bgr


# Every flag of the official main.py (opts.py) with its default: (flag, config field, default).
OFFICIAL_TRAIN_FLAGS = [
    ("--root_path", "root_path", ""), ("--log_dir", "log_dir", "log"), ("--num_segments", "num_segments", 1),
    ("--seq_length", "seq_length", 8), ("--sample_rate", "sample_rate", 8), ("--read_mode", "read_mode", "img"),
    ("--num_classes", "num_classes", 400), ("--arch", "arch", "c2d_resnet50"), ("--dropout", "dropout", 0.5),
    ("--nonlocal_mod", "nonlocal_mod", [1000]), ("--nltype", "nltype", "nl3d"), ("--k", "k", 4), ("--tk", "tk", 0),
    ("--ts", "ts", 4), ("--nl_drop", "nl_drop", 0.2), ("--freeze_bn", "freeze_bn", False),
    ("--epochs", "epochs", 100), ("--batch-size", "batch_size", 64), ("--lr", "lr", 0.01),
    ("--lr_steps", "lr_steps", [20.0, 40.0]), ("--warmup_epochs", "warmup_epochs", 0), ("--coslr", "coslr", False),
    ("--momentum", "momentum", 0.9), ("--weight-decay", "weight_decay", 1e-4),
    ("--clip-gradient", "clip_gradient", 20.0), ("--nesterov", "nesterov", False),
    ("--use_affine", "use_affine", False), ("--print-freq", "print_freq", 20), ("--eval-freq", "eval_freq", 5),
    ("--save-freq", "save_freq", 5), ("--save-vg", "save_vg", False), ("--workers", "workers", 4),
    ("--resume", "resume", ""), ("--soft_resume", "soft_resume", False), ("--evaluate", "evaluate", False),
    ("--snapshot_dir", "snapshot_dir", "checkpoints"), ("--start-epoch", "start_epoch", 0), ("--seed", "seed", -1),
]


def test_every_official_main_flag_and_alias_is_accepted_with_its_default():
    from train.config import build_train_parser

    known = {opt for action in build_train_parser()._actions for opt in action.option_strings}
    defaults = parse_train_args(["a", "b"])
    for flag, name, default in OFFICIAL_TRAIN_FLAGS:
        assert flag in known, flag
        assert getattr(defaults, name) == default, name
    aliases = {"--do": "0.3", "-b": "8", "--learning-rate": "0.2", "--wd": "0.5", "--gd": "7", "-p": "3",
               "-ef": "2", "-sf": "4", "-j": "0"}
    cfg = parse_train_args(["a", "b", *(x for pair in aliases.items() for x in pair), "-e", "--save-vg"])
    assert (cfg.dropout, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.clip_gradient, cfg.print_freq,
            cfg.eval_freq, cfg.save_freq, cfg.workers, cfg.evaluate, cfg.save_vg) == (
        0.3, 8, 0.2, 0.5, 7.0, 3, 2, 4, 0, True, True)


def test_presets_match_the_official_scripts():
    cfg = parse_train_args(["a", "b", *preset_argv("c2d_3dbat")])
    assert (cfg.arch, cfg.nonlocal_mod, cfg.nltype, cfg.k, cfg.tk) == ("c2d_resnet50", [2], "bat", 8, 4)
    assert (cfg.read_mode, cfg.loader_backend, cfg.bgr) == ("video", "lintel", False)  # the scripts' video mode
    assert (cfg.seq_length, cfg.sample_rate, cfg.lr, cfg.lr_steps, cfg.epochs, cfg.batch_size, cfg.dropout) == (
        8, 8, 0.01, [40.0, 80.0], 100, 64, 0.5)
    assert parse_train_args(["a", "b", *preset_argv("i3d"), "--epochs", "3"]).epochs == 3  # later flag wins
    assert parse_train_args(["a", "b", *preset_argv("i3d_nl")]).nltype == "nl3d"
    assert set(PRESETS) == set(TEST_PRESETS) == {"c2d", "c2d_nl", "c2d_bat", "c2d_3dbat", "i3d", "i3d_nl", "i3d_bat"}
    with pytest.raises(ValueError, match="preset 'x' is not one of c2d, "):
        preset_argv("x")


def test_eval_and_save_rule_is_official():
    evals = [e for e in range(100) if eval_due(e, eval_freq=5, epochs=100)]
    assert evals[:3] == [4, 9, 14] and evals[-11:] == [89, *range(90, 100)][-11:]
    assert 88 not in evals and 89 in evals
    assert [e for e in range(10) if save_due(e, save_freq=5)] == [4, 9]


# ---------------------------------------------------------------- runs


def test_resumed_run_equals_uninterrupted_and_writes_official_outputs(tiny_data: TinyData, tmp_path: Path):
    flags = ["--dropout", "0.5", "-sf", "1", "-ef", "1"]
    straight, out = _run(tiny_flags(tiny_data, tmp_path / "a") + flags)
    # official outputs of the uninterrupted run
    assert straight.epochs_done == 2 and straight.last_eval is not None and straight.last_eval.count == 3
    assert "Epoch: [0][1/2], lr: 0.05000\t" in out and "Epoch: [1][1/2], lr: 0.00500\t" in out
    assert out.count("Testing Results: Prec@1 ") == 2
    a = _load(checkpoint_path(tmp_path / "a" / "ckpt", "c2d_resnet18"))
    assert {"epoch", "arch", "state_dict", "best_prec1", "optim"} <= set(a)
    assert a["epoch"] == 2 and a["arch"] == "c2d_resnet18" and a["seed"] == 7
    assert a["best_prec1"] == pytest.approx(straight.best_prec1)
    assert not any(k.startswith("module.") for k in a["state_dict"])
    assert best_path(tmp_path / "a" / "ckpt", "c2d_resnet18").is_file()
    assert not [p for p in (tmp_path / "a" / "ckpt").iterdir() if p.name.endswith(".part")]
    kinds = [r["kind"] for r in read_metrics(tmp_path / "a" / "log")]
    assert kinds.count("val") == 2 and kinds.count("epoch") == 2 and "train" in kinds
    params = json.loads((tmp_path / "a" / "log" / "params.json").read_text())
    assert params["arch"] == "c2d_resnet18" and params["seed"] == 7

    def die_after_first(epoch: int) -> None:
        if epoch == 0:
            raise Interrupted

    with pytest.raises(Interrupted):
        _run(tiny_flags(tiny_data, tmp_path / "b") + flags, on_epoch_end=die_after_first)
    ckpt_b = checkpoint_path(tmp_path / "b" / "ckpt", "c2d_resnet18")
    assert _load(ckpt_b)["epoch"] == 1
    resumed, out = _run(tiny_flags(tiny_data, tmp_path / "b") + flags + ["--resume", str(ckpt_b)])
    assert "Epoch: [0]" not in out and "Epoch: [1][1/2]" in out

    b = _load(ckpt_b)
    assert b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for pid, state in a["optim"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optim"]["state"][pid]["momentum_buffer"])
    assert resumed.best_prec1 == straight.best_prec1
    assert resumed.last_eval == straight.last_eval


def test_soft_resume_starts_over_from_loaded_weights(tiny_data: TinyData, trained_checkpoint: Path, tmp_path: Path):
    _, out = _run(tiny_flags(tiny_data, tmp_path, epochs=1) + ["--resume", str(trained_checkpoint), "--soft_resume",
                                                               "--num_classes", "3", "--lr", "0"])
    assert "Epoch: [0][1/2]" in out and "soft: epoch and best restart at 0" in out
    ckpt = _load(checkpoint_path(tmp_path / "ckpt", "c2d_resnet18"))
    assert ckpt["epoch"] == 1 and ckpt["state_dict"]["fc.weight"].shape[0] == 3
    first = _load(trained_checkpoint)["state_dict"]
    assert torch.equal(ckpt["state_dict"]["conv1.weight"], first["conv1.weight"])  # lr 0: loaded weights kept


def official_layout(checkpoint: Path, target: Path) -> Path:
    """Our checkpoint as the official code writes it: its five keys only, DataParallel `module.` names,
    the optimizer groups' `name_list`, torch's legacy (pre-1.6) serialization."""
    ours = _load(checkpoint)
    optim = ours["optim"]
    for group in optim["param_groups"]:
        group["name_list"] = group.pop("param_names")
    torch.save({"epoch": ours["epoch"], "arch": ours["arch"], "best_prec1": ours["best_prec1"], "optim": optim,
                "state_dict": {f"module.{k}": v for k, v in ours["state_dict"].items()}},
               target, _use_new_zipfile_serialization=False)
    return target


def test_official_checkpoint_resumes_at_its_epoch_and_tests(
    tiny_data: TinyData, trained_checkpoint: Path, tmp_path: Path
):
    from train.config import parse_test_args
    from train.evaluate import run_test

    official = official_layout(trained_checkpoint, tmp_path / "official.pth.tar")
    result, out = _run(tiny_flags(tiny_data, tmp_path) + ["--resume", str(official)])
    assert "(epoch 1)" in out and "Epoch: [0]" not in out and "Epoch: [1][1/2]" in out
    assert result.epochs_done == 2 and _load(checkpoint_path(tmp_path / "ckpt", "c2d_resnet18"))["epoch"] == 2
    tested = run_test(parse_test_args([str(tiny_data.val_list), str(official), "--root_path", str(tiny_data.root),
                                       "--backend", "pyav", "--arch", "c2d_resnet18", "--num_classes", "2",
                                       "--seq_length", "4", "--sample_rate", "1", "-j", "0", "--device", "cpu",
                                       "--progress", "off", "--img_size", "32", "--test_crops", "1"]),
                      stream=io.StringIO())
    assert tested.num_videos == 3


def test_resume_flag_contradicting_the_checkpoint_names_both_values(
    tiny_data: TinyData, trained_checkpoint: Path, tmp_path: Path
):
    with pytest.raises(RunnerConfigError) as caught:
        _run(tiny_flags(tiny_data, tmp_path, epochs=1) + ["--resume", str(trained_checkpoint), "--num_classes", "3"])
    assert str(caught.value) == (
        f"{trained_checkpoint}: --num_classes 3 contradicts the checkpoint, which records num_classes 2; "
        "drop --num_classes (the checkpoint builds the model), or add --soft_resume to start a new model from its weights")
    assert not (tmp_path / "log").exists()  # refused before anything was written


def test_unknown_arch_is_refused_before_anything_is_written(tiny_data: TinyData, tmp_path: Path):
    with pytest.raises(RunnerConfigError, match="--arch 'resnet50' is not one of c2d_resnet101, "):
        _run(tiny_flags(tiny_data, tmp_path) + ["--arch", "resnet50"])
    assert not (tmp_path / "log").exists() and not (tmp_path / "ckpt").exists()


def test_evaluate_only_counts_every_val_video(tiny_data: TinyData, trained_checkpoint: Path, tmp_path: Path):
    result, out = _run(tiny_flags(tiny_data, tmp_path) + ["--resume", str(trained_checkpoint), "-e"])
    assert result.last_eval is not None and result.last_eval.count == 3
    assert "Testing Results: Prec@1" in out and "Epoch:" not in out


def test_cli_train_with_freeze_bn_bf16_and_channels_last(tiny_data: TinyData, tmp_path: Path):
    from cli import cli

    flags = tiny_flags(tiny_data, tmp_path, epochs=1) + ["--freeze_bn", "--amp", "bf16", "--channels-last", "--save-vg"]
    result = CliRunner().invoke(cli, ["-q", "train", "--preset", "c2d", "--backend", "pyav", *flags])
    assert result.exit_code == 0, result.output
    assert "Epoch: [0][1/2]" in result.stdout and "Testing Results" in result.stdout
    state = _load(checkpoint_path(tmp_path / "ckpt", "c2d_resnet18"))["state_dict"]
    assert torch.equal(state["bn1.running_mean"], torch.zeros_like(state["bn1.running_mean"]))  # BN frozen
    assert torch.equal(state["bn1.weight"], torch.ones_like(state["bn1.weight"]))
    assert not torch.equal(state["conv1.weight"], _fresh_conv1())  # but the convolutions trained
    vg = [r for r in read_metrics(tmp_path / "log") if r["kind"] == "vg"]  # --save-vg: at each printed step (i = 1 of 2)
    assert len(vg) == 1 and vg[0]["grad/conv1.weight"] > 0 and vg[0]["value/bn1.weight"] == 1.0
    assert "grad/bn1.weight" not in vg[0]  # frozen BN has no gradient
    bad = CliRunner().invoke(cli, ["train", str(tiny_data.train_list), str(tiny_data.val_list), "--epochs", "x"])
    assert bad.exit_code == 2


def _fresh_conv1() -> torch.Tensor:
    from train.models import build_model
    from train.runtime import seed_everything

    seed_everything(7)
    return build_model("c2d_resnet18", num_classes=2).state_dict()["conv1.weight"]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_weights(tiny_data: TinyData, tmp_path: Path):
    """A real kill -9 mid-run; --resume from the last checkpoint ends where an unbroken run ends."""
    flags = ["-sf", "1", "-ef", "100"]
    _run(tiny_flags(tiny_data, tmp_path / "a", epochs=4) + flags)
    argv = tiny_flags(tiny_data, tmp_path / "b", epochs=4) + flags
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # as this process: same float sums
    proc = subprocess.Popen([sys.executable, "-m", "train.main", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = checkpoint_path(tmp_path / "b" / "ckpt", "c2d_resnet18")
    status = signal_mid_run(proc, ckpt.exists, what="training killed after its first checkpoint", timeout_s=120)
    assert status == -signal.SIGKILL
    done = _load(ckpt)["epoch"]
    assert 1 <= done < 4
    _run(argv + ["--resume", str(ckpt)])
    a = _load(checkpoint_path(tmp_path / "a" / "ckpt", "c2d_resnet18"))["state_dict"]
    b = _load(ckpt)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path):
    import random

    import numpy as np

    from train.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint({"epoch": 1, "rng": capture_rng_state()}, snapshot_dir=tmp_path, arch="x", is_best=True)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(_load(checkpoint_path(tmp_path, "x"))["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert _load(best_path(tmp_path, "x"))["epoch"] == 1


def test_mid_epoch_checkpoint_resumes_inside_the_epoch(tiny_data: TinyData, tmp_path: Path):
    """--save-iter-freq 1: killed after step 0 of epoch 0, resumed at step 1, ends where an unbroken run ends."""
    flags = ["--dropout", "0.5", "-sf", "1", "-ef", "100", "--save-iter-freq", "1"]
    straight, _ = _run(tiny_flags(tiny_data, tmp_path / "a") + flags)
    # -ef 100 over 2 epochs: epoch 0 is only saved (-sf 1), epoch 1 (>= 90% of the run) validated and saved.
    assert [r["kind"] for r in read_metrics(tmp_path / "a" / "log") if r["kind"] in ("epoch", "val")] == [
        "epoch", "epoch", "val"]

    def die_after_first_step(epoch: int, iteration: int) -> None:
        if (epoch, iteration) == (0, 0):
            raise Interrupted

    with pytest.raises(Interrupted):
        _run(tiny_flags(tiny_data, tmp_path / "b") + flags, on_step=die_after_first_step)
    ckpt_b = checkpoint_path(tmp_path / "b" / "ckpt", "c2d_resnet18")
    mid = _load(ckpt_b)
    assert (mid["epoch"], mid["iteration"]) == (0, 1)  # official 'epoch' = epochs done
    _, out = _run(tiny_flags(tiny_data, tmp_path / "b") + flags + ["--resume", str(ckpt_b)])
    assert "(epoch 0, iteration 1)" in out and "Epoch: [0][1/2]" in out
    a, b = _load(checkpoint_path(tmp_path / "a" / "ckpt", "c2d_resnet18")), _load(ckpt_b)
    assert (b["epoch"], b["iteration"]) == (2, 0)
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_amp_channels_last_run_and_exact_resume(tiny_data: TinyData, tmp_path: Path, amp: str):
    """On a GPU: AMP + channels-last train, and (with --deterministic) resume to the same weights."""
    extra = ["--device", "cuda", "--amp", amp, "--channels-last", "--deterministic", "-sf", "1", "-ef", "100"]
    _run(tiny_flags(tiny_data, tmp_path / "a") + extra)  # the later --device wins

    def die(epoch: int) -> None:
        if epoch == 0:
            raise Interrupted

    with pytest.raises(Interrupted):
        _run(tiny_flags(tiny_data, tmp_path / "b") + extra, on_epoch_end=die)
    ckpt_b = checkpoint_path(tmp_path / "b" / "ckpt", "c2d_resnet18")
    _run(tiny_flags(tiny_data, tmp_path / "b") + extra + ["--resume", str(ckpt_b)])
    a, b = _load(checkpoint_path(tmp_path / "a" / "ckpt", "c2d_resnet18")), _load(ckpt_b)
    assert bool(a["scaler"]) == (amp == "fp16")  # the gradient scaler runs only for fp16
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())
