"""`--num_clips K`: the training runner takes K clips of each video per step (repeated augmentation)."""

from __future__ import annotations

import io
from pathlib import Path

from tests.train.conftest import TinyData, tiny_flags
from train.config import parse_train_args
from train.main import run_training


def test_num_clips_trains_on_k_clips_per_video(tiny_data: TinyData, tmp_path: Path) -> None:
    cfg = parse_train_args(tiny_flags(tiny_data, tmp_path, epochs=1) + ["--num_clips", "2"])
    assert cfg.num_clips == 2 and parse_train_args(["a", "b"]).num_clips == 1
    out = io.StringIO()
    result = run_training(cfg, stream=out)
    assert result.last_eval is not None and result.last_eval.count == 3  # validation stays one clip per video
    assert "Epoch: [0][1/" in out.getvalue()
