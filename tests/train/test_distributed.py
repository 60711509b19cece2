"""Real 2-process DDP runs on CPU (Gloo) launched with torchrun, plus the single-process context."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train.conftest import TinyData, tiny_flags
from train.checkpoint import checkpoint_path
from train.config import parse_test_args, parse_train_args
from train.distributed import DistContext, env_world, setup_distributed, split_batch_size
from train.evaluate import run_test
from train.logging_utils import read_metrics
from train.main import run_training

REPO = Path(__file__).resolve().parents[2]


def _torchrun(module: str, argv: list[str], *, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", module, *argv]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_single_process_context_without_torchrun(monkeypatch: pytest.MonkeyPatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert env_world() == (0, 0, 1)
    ctx = setup_distributed(device="cpu")
    assert ctx == DistContext() and ctx.is_main and not ctx.is_distributed
    assert split_batch_size(64, DistContext(world_size=8)) == 8
    with pytest.raises(ValueError, match=r"batch-size \(6\) must be divisible by the number of processes \(4\)"):
        split_batch_size(6, DistContext(world_size=4))


def test_two_process_gloo_training_with_exact_evaluation(tiny_data: TinyData, tmp_path: Path):
    """torchrun --nproc_per_node=2: rank 0 alone logs and saves; 3 val videos over 2 ranks are counted once."""
    argv = tiny_flags(tiny_data, tmp_path / "ddp", epochs=1)
    run = _torchrun("train.main", argv)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("Testing Results: Prec@1") == 1  # one logging rank
    assert "Epoch: [0][1/2]" in run.stdout  # 4 videos, total batch 2 -> 1 per process -> 2 steps per rank
    ckpt = torch.load(checkpoint_path(tmp_path / "ddp" / "ckpt", "c2d_resnet18"), map_location="cpu",
                      weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    val = [r for r in read_metrics(tmp_path / "ddp" / "log") if r["kind"] == "val"]
    assert [r["count"] for r in val] == [3]

    # The same weights evaluated by one process give the same numbers.
    resume = ["--resume", str(checkpoint_path(tmp_path / "ddp" / "ckpt", "c2d_resnet18")), "-e"]
    single = run_training(parse_train_args(tiny_flags(tiny_data, tmp_path / "one") + resume), stream=io.StringIO())
    assert single.last_eval is not None
    assert single.last_eval.count == 3
    assert single.last_eval.top1 == pytest.approx(val[0]["prec1"])
    assert single.last_eval.loss == pytest.approx(val[0]["loss"], rel=1e-5)


@pytest.mark.slow
def test_two_process_test_runner_matches_one_process(tiny_data: TinyData, trained_checkpoint: Path, tmp_path: Path):
    """Test-set sharding: every video scored once, put back in list order, same scores as one process."""
    common = [str(tiny_data.val_list), str(trained_checkpoint), "--root_path", str(tiny_data.root),
              "--backend", "pyav", "--arch", "c2d_resnet18", "--num_classes", "2", "--seq_length", "4",
              "--sample_rate", "1", "-j", "0", "--device", "cpu", "--progress", "off", "--img_size", "32",
              "--test_crops", "1", "--test_segments", "2"]
    run = _torchrun("train.test_models", common + ["--save_scores", str(tmp_path / "ddp.npz")])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("Mean class accuracy:") == 1
    run_test(parse_test_args(common + ["--save_scores", str(tmp_path / "one.npz")]), stream=io.StringIO())
    with np.load(tmp_path / "ddp.npz") as a, np.load(tmp_path / "one.npz") as b:
        assert list(a["names"]) == list(b["names"]) and np.array_equal(a["labels"], b["labels"])
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-5 * float(np.abs(b["scores"]).max()))
