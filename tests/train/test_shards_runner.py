"""`videoprep train --shards`: one tiny epoch streamed from WebDataset shards, classes from their index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from cli import cli
from tests.shard_data import make_clip_list
from tests.train.conftest import TinyData, tiny_flags
from train.checkpoint import checkpoint_path
from train.config import parse_test_args, parse_train_args
from train.logging_utils import read_metrics
from videoprep.shards import ShardConfig, run_shard


def _shards(tmp_path: Path) -> Path:
    """train.json and val.json (6 and 3 clips, two classes) in one folder."""
    out = tmp_path / "shards"
    for name, count in (("train", 6), ("val", 3)):
        clips = make_clip_list(tmp_path / name, count=count, name=name, frames=12)
        run_shard(ShardConfig(list_file=clips.list_file, root_path=clips.root, out_dir=out, jobs=1,
                              shard_size=40_000))
    return out


def test_train_one_epoch_from_shards_with_classes_from_the_index(tmp_path: Path):
    out = _shards(tmp_path)
    data = TinyData(root=tmp_path, train_list=tmp_path / "unused", val_list=tmp_path / "unused")
    flags = [f for f in tiny_flags(data, tmp_path / "run", epochs=1)[4:] if f]
    drop = flags.index("--num_classes")
    flags = flags[:drop] + flags[drop + 2:]  # from the index
    result = CliRunner().invoke(cli, ["-q", "train", "--shards", str(out / "train.json"), *flags,
                                      "--eval-freq", "1"])
    assert result.exit_code == 0, result.output
    assert "num_classes 2 (from" in result.output
    val = [r for r in read_metrics(tmp_path / "run" / "log") if r["kind"] == "val"]
    assert [r["count"] for r in val] == [3]  # every validation clip once
    train = [r for r in read_metrics(tmp_path / "run" / "log") if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2]  # 6 clips, batch 2: 3 steps (step 0 is not printed)

    # test the checkpoint on the val shards (its model and classes come from the checkpoint)
    ckpt = checkpoint_path(tmp_path / "run" / "ckpt", "c2d_resnet18")
    scores = tmp_path / "scores.npz"
    tested = CliRunner().invoke(cli, ["test", "--shards", str(out / "val.json"), str(ckpt), "-j", "0",
                                      "--device", "cpu", "--progress", "off", "--img_size", "32",
                                      "--test_segments", "1", "--test_crops", "1", "--save_scores", str(scores)])
    assert tested.exit_code == 0, tested.output
    assert "(3 videos, " in tested.output
    with np.load(scores) as saved:
        assert sorted(saved["names"]) == sorted(r.path for r in make_clip_list(tmp_path / "again", count=3,
                                                                                   name="val", frames=12).records)


def test_shards_replace_the_lists_and_test_keeps_its_weights():
    cfg = parse_train_args(["--shards", "d/train.json"])
    assert (cfg.shards, cfg.train_list, cfg.val_list) == ("d/train.json", "", "")
    test = parse_test_args(["--shards", "d/test-{000000..000003}.tar", "w.pth"])
    assert (test.shards, test.test_list, test.weights) == ("d/test-{000000..000003}.tar", "", "w.pth")
    result = CliRunner().invoke(cli, ["train", "--shards", "d/train.json", "a.txt", "b.txt"])
    assert result.exit_code == 2 and "not both" in result.output
    missing = CliRunner().invoke(cli, ["train", "a.txt"])
    assert missing.exit_code == 2 and "required: val_list" in missing.output


def test_pipe_shards_need_their_index_given(tmp_path: Path):
    import pytest

    from train.data import inspect_shards
    from train.runtime import RunnerConfigError

    out = _shards(tmp_path)
    pattern = f"pipe:cat {out}/train-{{000000..000001}}.tar"
    with pytest.raises(RunnerConfigError, match="--shards-index"):
        inspect_shards(parse_train_args(["--shards", pattern]))
    cfg = parse_train_args(["--shards", pattern, "--shards-index", str(out / "train.json")])
    said = inspect_shards(cfg)
    assert cfg.num_classes == 2 and cfg.backend == "pyav" and "from" in said[0]
