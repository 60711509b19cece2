"""The testing runner: views, score averaging, named metrics, the official npz, --div, CLI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.train.conftest import TinyData
from train.config import parse_test_args
from train.evaluate import run_test, summarize, write_scores
from train.runtime import RunnerConfigError


@pytest.fixture
def trained(trained_checkpoint: Path) -> Path:
    """The shared one-epoch checkpoint (tests/train/conftest.py)."""
    return trained_checkpoint


def _test_argv(data: TinyData, weights: Path, *extra: str) -> list[str]:
    return [str(data.val_list), str(weights), "--root_path", str(data.root), "--backend", "pyav",
            "--arch", "c2d_resnet18", "--num_classes", "2", "--seq_length", "4", "--sample_rate", "1",
            "-j", "0", "--device", "cpu", "--progress", "off", "--img_size", "32", *extra]


def test_summarize_names_top1_top5_and_mean_class_accuracy():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 1])
    top1, top5, mean_cls, per_class = summarize(scores, labels)
    assert top1 == pytest.approx(50.0) and top5 == pytest.approx(100.0)  # top-5 capped at 3 classes
    assert per_class == {0: pytest.approx(100.0), 1: pytest.approx(100 / 3)}
    assert mean_cls == pytest.approx((100.0 + 100 / 3) / 2)  # classes weigh equally, unlike top-1


def test_write_scores_sorts_by_name_like_the_official_script(tmp_path: Path):
    views = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    path = write_scores(tmp_path / "s", names=["b.mp4", "c.mp4", "a.mp4"], view_scores=views,
                        labels=np.array([1, 0, 1]))
    assert path.name == "s.npz"
    with np.load(path) as z:  # plain arrays: no pickle needed
        assert z["scores"].shape == (3, 2, 1, 2)
        assert list(z["names"]) == ["a.mp4", "b.mp4", "c.mp4"]
        assert list(z["labels"]) == [1, 1, 0]
        assert np.array_equal(z["scores"][0, :, 0], views[2])


def test_single_crop_test_of_a_trained_model(tiny_data: TinyData, trained: Path, tmp_path: Path):
    out = io.StringIO()
    scores = tmp_path / "scores.npz"
    result = run_test(parse_test_args(_test_argv(tiny_data, trained, "--test_segments", "2", "--test_crops", "1",
                                                 "--save_scores", str(scores))), stream=out)
    text = out.getvalue()
    assert result.num_videos == 3 and result.views == 2
    assert "model epoch 1 best prec@1" in text
    assert "Overall top-1:" in text and "Overall top-5:" in text and "Mean class accuracy:" in text
    with np.load(scores) as z:
        video = z["scores"].mean(axis=(1, 2))
        top1, top5, mean_cls, _ = summarize(video, z["labels"])
    assert (top1, top5, mean_cls) == pytest.approx((result.top1, result.top5, result.mean_class_accuracy))


def test_div_and_batching_do_not_change_scores(tiny_data: TinyData, trained: Path, tmp_path: Path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    run_test(parse_test_args(_test_argv(tiny_data, trained, "--test_crops", "3", "--save_scores", str(a))),
             stream=io.StringIO())
    run_test(parse_test_args(_test_argv(tiny_data, trained, "--test_crops", "3", "--div", "3", "-b", "2",
                                        "--save_scores", str(b))), stream=io.StringIO())
    with np.load(a) as za, np.load(b) as zb:
        assert za["scores"].shape == (3, 3, 1, 2)  # 3 fully-convolutional crops (36x36 here) per video
        scale = float(np.abs(za["scores"]).max())  # batch size changes float summation order only
        np.testing.assert_allclose(za["scores"], zb["scores"], rtol=0, atol=1e-5 * scale)


def test_ten_crops_give_ten_views_per_segment(tiny_data: TinyData, trained: Path, tmp_path: Path):
    result = run_test(parse_test_args(_test_argv(tiny_data, trained, "--test_crops", "10", "--test_segments", "2",
                                                 "--save_scores", str(tmp_path / "s.npz"))), stream=io.StringIO())
    assert result.views == 20
    with np.load(tmp_path / "s.npz") as z:
        assert z["scores"].shape == (3, 20, 1, 2)
        assert not np.allclose(z["scores"][:, 0], z["scores"][:, 1])  # crop 0 and its flip differ


def test_tsm_flag_is_a_clear_error_not_a_crash(tiny_data: TinyData, trained: Path):
    with pytest.raises(RunnerConfigError, match="--tsm"):
        run_test(parse_test_args(_test_argv(tiny_data, trained, "--tsm")))


def test_official_test_flags_and_defaults():
    from train.config import build_test_parser

    official = {"--arch": "c2d_resnet50", "--tsm": False, "--num_classes": 400, "--img_size": 224,
                "--nonlocal_mod": [1000], "--nltype": "nl3d", "--k": 4, "--tk": 0, "--ts": 4, "--save_scores": None,
                "--seq_length": 32, "--sample_rate": 2, "--test_segments": 1, "--workers": 8, "--test_crops": 10,
                "--root_path": "", "--div": 1, "--read_mode": "img"}
    known = {opt for action in build_test_parser()._actions for opt in action.option_strings}
    cfg = parse_test_args(["val.lst", "w.pth"])
    for flag, default in official.items():
        assert flag in known and getattr(cfg, flag.lstrip("-")) == default, flag
    assert parse_test_args(["v", "w", "-j", "2"]).workers == 2
    assert cfg.scale == 256 and parse_test_args(["v", "w", "--img_size", "112"]).scale == 128


def test_cli_test_reports_named_metrics(tiny_data: TinyData, trained: Path):
    from cli import cli

    argv = _test_argv(tiny_data, trained, "--test_crops", "1")
    result = CliRunner().invoke(cli, ["test", "--preset", "c2d", *argv[:2], *argv[2:], "--test_segments", "1"])
    assert result.exit_code == 0, result.output
    assert "Mean class accuracy:" in result.stdout
    state = torch.load(trained, map_location="cpu", weights_only=True)
    assert state["arch"] == "c2d_resnet18"
